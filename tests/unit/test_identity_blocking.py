"""Blocking passes are chosen for the whole company, also when training looks at a sample of it.

At the large company (2.2M profiles) the passes chosen on the 200k training sample compared 375M
pairs when every profile was scored (119 times what the sample showed), and Splink's spill filled
the disk. The budget is now counted on the company: a pass that fits the sample but not the
company is narrowed (or left out).
"""

from __future__ import annotations

import polars as pl

from crm.identity.matching import _connect, choose_blocking, count_pairs


def _profiles(n: int) -> pl.DataFrame:
    # five birth dates shared by everyone, a postcode of one's own
    return pl.DataFrame(
        {
            "profile_key": [f"p{i}" for i in range(n)],
            "dob_key": [f"19{70 + i % 5}-01-01" for i in range(n)],
            "postcode_key": [f"PC{i}" for i in range(n)],
        }
    )


def test_a_pass_that_fits_the_sample_but_not_the_company_is_narrowed():
    sample = _profiles(2_000)
    con = _connect()
    try:
        con.register("_p", sample.to_arrow())
        con.execute("create table profiles as select * from _p")
        present = {"dob_key", "postcode_key"}
        # 5 blocks of 400: 399,000 pairs, inside the 2M floor of a 2,000-profile company
        assert count_pairs(con, "profiles", ["dob_key"]) == 399_000

        alone, notes = choose_blocking(con, "profiles", present, sample.height)
        assert ["dob_key"] in alone and notes == []

        # the same table as a 1% sample of 200,000 profiles: ~4 billion pairs on the company
        # against a budget of 4M, so the pass is narrowed by the postcode
        sampled, notes = choose_blocking(con, "profiles", present, sample.height, company_profiles=200_000)
        assert ["dob_key"] not in sampled
        assert ["dob_key", "postcode_key"] in sampled and notes == []
    finally:
        con.close()


def test_a_pass_that_cannot_be_narrowed_enough_is_left_out_with_the_company_s_count():
    sample = _profiles(2_000).drop("postcode_key")
    con = _connect()
    try:
        con.register("_p", sample.to_arrow())
        con.execute("create table profiles as select * from _p")
        chosen, notes = choose_blocking(con, "profiles", {"dob_key"}, sample.height, company_profiles=200_000)
        assert ["dob_key"] not in chosen
        (note,) = [n for n in notes if n.startswith("blocking on dob_key left out")]
        # 399,000 x (200,000 x 199,999) / (2,000 x 1,999): about 3.99 billion
        assert "about 3,99" in note and note.endswith("pairs")
    finally:
        con.close()
