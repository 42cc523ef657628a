"""The warehouse end to end through Dagster on the hand-made raw fixture (tests/fixtures/raw_fixture.py).

One build of the fixture (dbt staging -> identity resolution -> dbt intermediate/marts, every dbt
test as an asset check) is shared by the tests of this module; a second, incremental run checks
that ids are stable, the change log and the steward overrides.
"""

from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from typer.testing import CliRunner

from tests.fixtures.raw_fixture import EXPECTED_RFM, PERSONS, build_raw_fixture, write_ground_truth


def _warehouse_defs() -> dg.Definitions:
    """The warehouse as `crm build` runs it: dbt around identity resolution, then the scoring step
    that customer_360 waits for (on this tiny fixture it trains nothing and scores no one)."""
    from crm.settings import load_settings
    from pipelines.definitions import warehouse_definitions

    return warehouse_definitions(load_settings())


def _materialize(defs: dg.Definitions, selection=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(list(defs.assets), resources=defs.resources, selection=selection, raise_on_error=False)


def _failures(result: dg.ExecuteInProcessResult) -> list[str]:
    out = [e.message or "" for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    for e in result.all_events:
        if e.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = e.event_specific_data
            if not ev.passed:
                out.append(f"check failed: {ev.asset_key.to_user_string()} {ev.check_name}")
    return out


def _checks(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build the fixture warehouse once; yields (warehouse path, defs, first result)."""
    root = tmp_path_factory.mktemp("wh")
    db = build_raw_fixture(root / "crm.duckdb")
    truth = write_ground_truth(root / "ground_truth")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRM_WAREHOUSE_PATH", str(db))
        mp.setenv("CRM_GROUND_TRUTH_DIR", str(truth))
        mp.setenv("CRM_DATA_DIR", str(root / "data"))
        defs = _warehouse_defs()
        result = _materialize(defs)
        yield db, defs, result


def _customer_of(con, source: str, key: str) -> str:
    return con.execute(
        "select customer_id from identity.records where source = ? and source_key = ?", [source, key]
    ).fetchall()[0][0]


def test_build_succeeds_with_every_dbt_test_as_a_passing_asset_check(built):
    _, _, result = built
    assert result.success, _failures(result)
    assert _failures(result) == []
    assert _checks(result) > 80  # dbt tests surface as asset checks (plus the identity check)


def test_asset_graph_places_identity_between_staging_and_marts(built):
    _, defs, _ = built
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for expected in [
        "staging/stg_sales__orders",
        "staging/stg_marketing__events",
        "seeds/rfm_segments",
        "identity/records",
        "identity/customer_id_changes",
        "intermediate/int_customers_survived",
        "marts/customers",
        "marts/customer_360",
        "marts/orders",
        "marts/order_lines",
        "marts/marketing_events",
        "marts/support_tickets",
        "marts/campaign_performance",
        "marts/rep_performance",
        "marts/customer_rfm",
        "marts/customer_rfm_history",
        "marts/cohort_retention",
    ]:
        assert expected in keys, expected
    parents = lambda k: {p.to_user_string() for p in graph.get(dg.AssetKey(k.split("/"))).parent_keys}  # noqa: E731
    assert "raw/sales_orders" in parents("staging/stg_sales__orders")
    assert "staging/stg_sales__contacts" in parents("identity/records")
    assert "identity/records" in parents("intermediate/int_customer_records")


def test_found_customers_are_the_true_persons(built):
    db, _, _ = built
    con = duckdb.connect(str(db), read_only=True)
    try:
        for person, recs in PERSONS.items():
            ids = {_customer_of(con, s, k) for s, k in recs}
            assert len(ids) == 1, (person, ids)
        all_ids = [_customer_of(con, *recs[0]) for recs in PERSONS.values()]
        assert len(set(all_ids)) == len(PERSONS)  # nobody merged with someone else
        rule = con.execute(
            "select match_rule from identity.records where record_key = 'support_tickets:fixture:5003'"
        ).fetchall()[0][0]
        assert rule == "probabilistic"  # Ivy's ticket: only Splink can join it
        n360 = con.execute("select count(*), count(distinct customer_id) from marts.customer_360").fetchall()[0]
        assert n360 == (len(PERSONS), len(PERSONS))
    finally:
        con.close()


def test_rfm_matches_hand_computed_scores_and_segments(built):
    db, _, _ = built
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = {
            r[0]: r[1:]
            for r in con.execute(
                "select customer_id, recency_days, frequency, monetary, r_score, f_score, m_score, segment "
                "from marts.customer_rfm"
            ).fetchall()
        }
        assert len(rows) == len(EXPECTED_RFM)
        for person, exp in EXPECTED_RFM.items():
            cid = _customer_of(con, *PERSONS[person][0])
            assert rows[cid] == (
                exp["recency_days"],
                exp["frequency"],
                exp["monetary"],
                exp["r"],
                exp["f"],
                exp["m"],
                exp["segment"],
            ), person
        hist = con.execute(
            "select count(distinct snapshot_date), max(snapshot_date) from marts.customer_rfm_history"
        ).fetchall()[0]
        assert hist[0] == 23 and str(hist[1]) == "2024-06-30"  # Aug 2022 .. Jun 2024 month ends
    finally:
        con.close()


def test_golden_record_and_360_for_one_customer(built):
    db, _, _ = built
    con = duckdb.connect(str(db), read_only=True)
    try:
        cid = _customer_of(con, "sales_contacts", "101")
        c = con.execute(
            "select full_name, email, email_source, phone, phone_source, postcode, city, segment, owner_rep_name, "
            "email_consent from marts.customers where customer_id = ?",
            [cid],
        ).fetchall()[0]
        assert c == (
            "Ann Lee",
            "ann.lee@example.com",
            "marketing_contacts",
            "+442079460018",
            "sales_contacts",
            "SW1A 1AA",
            "London",
            "B2C",
            "Rita Rep",
            True,
        )
        r = con.execute(
            "select orders_lifetime, revenue_lifetime, returns_lifetime, favourite_category, days_since_last_order, "
            "sends_90d, opens_90d, clicks_90d, tickets_90d, open_tickets, last_satisfaction, is_unsubscribed "
            "from marts.customer_360 where customer_id = ?",
            [cid],
        ).fetchall()[0]
        assert r == (3, 350.0, 1, "Gadgets", 10, 2, 2, 1, 1, 0, "good", False)
        # the duplicate event E4 is counted once, the late event E6 on its true day
        n = con.execute("select count(*) from marts.marketing_events where event_id = 'E4'").fetchall()[0][0]
        assert n == 1
        day = con.execute("select occurred_on from marts.marketing_events where event_id = 'E6'").fetchall()[0][0]
        assert str(day) == "2024-05-03"
    finally:
        con.close()


def test_evaluate_identity_command_reports_perfect_match(built, monkeypatch):
    db, _, _ = built
    monkeypatch.setenv("CRM_WAREHOUSE_PATH", str(db))
    monkeypatch.setenv("CRM_GROUND_TRUTH_DIR", str(Path(db).parent / "ground_truth"))
    from pipelines.commands.evaluate import evaluate_app

    out = CliRunner().invoke(evaluate_app, ["identity", "--json"])
    assert out.exit_code == 0, out.output
    import json

    m = json.loads(out.output)
    assert (m["precision"], m["recall"], m["true_customers"], m["found_customers"]) == (1.0, 1.0, 9, 9)
    table = CliRunner().invoke(evaluate_app, ["identity"])
    assert table.exit_code == 0 and "precision" in table.output


def test_second_run_keeps_ids_logs_changes_and_applies_steward_overrides(built):
    """Regression guard for stable ids: a new record must not renumber anyone."""
    db, defs, _ = built
    con = duckdb.connect(str(db))
    try:
        before = dict(con.execute("select record_key, customer_id from identity.records").fetchall())
        # a new sales contact for Bob (same mobile, new address) and a steward split of Ann's ticket
        con.execute(
            "insert into raw.sales_contacts (contact_id, account_id, first_name, last_name, email, phone, city, "
            "postcode, created_at, updated_at, _ingested_at, _source_system) values (204, 2, 'Robert', 'Stone', "
            "'rstone@home.example', '+44 7700 900123', 'Leeds', 'LS1 4AP', ?, ?, ?, 'fixture')",
            [datetime(2024, 6, 1), datetime(2024, 6, 1), datetime(2024, 6, 2)],
        )
        con.execute(
            "insert into identity.steward_overrides values ('split', 'sales_contacts', '101', 'support_tickets', "
            "'5001', 'ticket raised by her assistant', 'test', ?)",
            [datetime(2024, 6, 30)],
        )
    finally:
        con.close()
    selection = dg.AssetSelection.groups("warehouse") - dg.AssetSelection.key_prefixes(["staging"], ["seeds"])
    result = _materialize(defs, selection=selection)
    assert result.success, _failures(result)
    assert _failures(result) == []

    con = duckdb.connect(str(db), read_only=True)
    try:
        after = dict(con.execute("select record_key, customer_id from identity.records").fetchall())
        bob = before["sales_contacts:fixture:201"]
        assert after["sales_contacts:fixture:204"] == bob
        ann = before["sales_contacts:fixture:101"]
        assert after["support_tickets:fixture:5001"] != ann
        unchanged = {k: v for k, v in before.items() if k != "support_tickets:fixture:5001"}
        assert {k: after[k] for k in unchanged} == unchanged
        changes = con.execute(
            "select change_type, customer_id, related_customer_id from identity.customer_id_changes"
        ).fetchall()
        assert changes == [("split", ann, after["support_tickets:fixture:5001"])]
        n360 = con.execute("select count(*) from marts.customer_360").fetchall()[0][0]
        assert n360 == len(PERSONS) + 1
    finally:
        con.close()


def test_a_dashboard_steward_decision_changes_the_next_runs_clusters(built):
    """A decision taken in the dashboard (a file under the data folder, not the warehouse) is applied
    by the next identity run, and the blocking check sees it honoured."""
    from crm.identity.steward import record_decision
    from crm.settings import load_settings

    db, defs, _ = built
    with duckdb.connect(str(db), read_only=True) as con:
        before = dict(con.execute("select record_key, customer_id from identity.records").fetchall())
    assert before["sales_contacts:fixture:101"] != before["sales_contacts:fixture:201"]
    record_decision(
        load_settings().data_dir,
        action="merge",
        left=("sales_contacts", "101"),
        right=("sales_contacts", "201"),
        reason="test: one household account",
        decided_by="steward-test",
    )
    # the identity step writes all its tables at once: select it whole
    result = _materialize(
        defs, selection=dg.AssetSelection.keys(["identity", "records"]).required_multi_asset_neighbors()
    )
    assert result.success, _failures(result)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"steward_overrides_honoured": True}
    with duckdb.connect(str(db), read_only=True) as con:
        after = dict(con.execute("select record_key, customer_id from identity.records").fetchall())
        applied = con.execute("select action, left_key, right_key from identity.steward_decisions").fetchall()
    assert after["sales_contacts:fixture:101"] == after["sales_contacts:fixture:201"]
    assert applied == [("merge", "101", "201")]


def test_empty_company_builds_with_every_test_passing(tmp_path, monkeypatch):
    db = build_raw_fixture(tmp_path / "crm.duckdb", empty=True)
    monkeypatch.setenv("CRM_WAREHOUSE_PATH", str(db))
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path / "data"))
    result = _materialize(_warehouse_defs())
    assert result.success, _failures(result)
    assert _failures(result) == []
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("select count(*) from marts.customer_360").fetchall()[0][0] == 0
    finally:
        con.close()
