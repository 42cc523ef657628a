"""Every page through Streamlit's AppTest on the published snapshot: renders, shows the SQL's
numbers, filters change the count, downloads hold exactly the filtered consenting rows."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import duckdb
import polars as pl
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from app.format import count, money, share
from tests.app.conftest import APP_SCRIPT, PAGES, republish, sign_in

TIMEOUT = 60


def open_page(page: str, role: str = "admin") -> AppTest:
    app = sign_in(AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT), role)
    if page != "overview":
        app.switch_page(f"app_pages/{page}.py")
        app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(page, app_env, clear_app_caches):
    app = open_page(page)
    assert app.title[0].value
    assert not app.error, [e.value for e in app.error]


def test_overview_kpis_equal_sql(app_env, clear_app_caches):
    app = open_page("overview")
    with app_env.connect() as con:
        clv = con.execute("SELECT sum(clv_12m) FROM marts.customer_scores").fetchall()[0][0]
        customers = con.execute("SELECT count(*) FROM marts.customer_360").fetchall()[0][0]
        revenue = con.execute(
            "SELECT sum(revenue_amount) FROM marts.orders, (SELECT max(as_of_date) d FROM marts.customer_360) "
            "WHERE order_day > d - 90 AND order_day <= d"
        ).fetchall()[0][0]
    assert metric(app, "Revenue") == money(revenue)
    assert metric(app, "Expected 12-month value") == money(clv)
    sidebar = " ".join(c.value for c in app.sidebar.caption)
    assert f"{count(customers)} customers" in sidebar


def test_customers_page_finds_a_customer_and_masks_contact_details(app_env, clear_app_caches):
    with app_env.connect() as con:
        customer_id, email = con.execute(
            "SELECT customer_id, email FROM marts.customer_360 WHERE email IS NOT NULL ORDER BY customer_id LIMIT 1"
        ).fetchall()[0]
    app = open_page("customers")
    app.text_input(key="customer_search").input(customer_id).run()
    assert app.selectbox(key="customer_pick").value == customer_id
    page_text = " ".join(m.value for m in app.markdown)
    assert email not in page_text and email[0] + "***@" in page_text
    app.sidebar.toggle(key="show_pii").set_value(True).run()
    assert email in " ".join(m.value for m in app.markdown)
    assert not app.exception


@pytest.fixture
def downloads(monkeypatch):
    """File name -> the callable Streamlit would run when the download button is clicked."""
    captured = {}
    original = MediaFileManager.add_deferred

    def capture(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        captured[file_name] = data_callable
        return original(self, data_callable, mimetype, coordinates, file_name=file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", capture)
    return captured


def test_segment_builder_filters_change_the_count_and_the_download_holds_exactly_the_consenting_rows(
    app_env, clear_app_caches, downloads
):
    app = open_page("segment_builder")
    everyone = int(metric(app, "Customers in segment").replace(",", ""))
    app.multiselect(key="filter_columns").set_value(["segment"]).run()
    app.multiselect(key="filter_segment").set_value(["B2C"]).run()
    b2c = int(metric(app, "Customers in segment").replace(",", ""))
    app.radio(key="segment_channel").set_value("email campaign").run()
    sendable = int(metric(app, "Customers in segment").replace(",", ""))
    excluded = int(metric(app, "Left out: no email consent").replace(",", ""))
    with app_env.connect() as con:
        b2c_sql, consenting = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE email_consent AND NOT is_unsubscribed AND email IS NOT NULL) "
            "FROM marts.customer_360 WHERE segment = 'B2C'"
        ).fetchall()[0]
        consenting_ids = {
            r[0]
            for r in con.execute(
                "SELECT customer_id FROM marts.customer_360 WHERE segment = 'B2C' AND email_consent "
                "AND NOT is_unsubscribed AND email IS NOT NULL"
            ).fetchall()
        }
    assert everyone > b2c == b2c_sql > sendable == consenting and excluded == b2c - consenting
    assert not app.exception

    csv_name = next(name for name in downloads if name.endswith(".csv"))
    exported = pl.read_csv(io.BytesIO(downloads[csv_name]()))
    assert set(exported["customer_id"].to_list()) == consenting_ids and exported.height == len(consenting_ids)
    assert all("***@" in e for e in exported["email"].drop_nulls()), "PII is masked by default, downloads too"


def test_segment_builder_saves_a_named_segment_outside_the_warehouse(app_env, clear_app_caches, tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    republish(app_env.snapshot.path, tmp_path, "save-test", app_env.snapshot)
    app = open_page("segment_builder")
    app.multiselect(key="filter_columns").set_value(["churn_band"]).run()
    app.multiselect(key="filter_churn_band").set_value(["high"]).run()
    app.text_input(key="segment_name").input("Win back high risk").run()
    app.button(key="segment_save").click().run()
    saved = tmp_path / "segments" / "win_back_high_risk.json"
    assert saved.exists(), [s.value for s in app.success]
    assert '"churn_band"' in saved.read_text() and '"high"' in saved.read_text()
    app.run()
    assert "Win back high risk" in app.selectbox(key="segment_start").options


def test_my_book_lists_the_reps_ranked_actions(app_env, clear_app_caches):
    app = open_page("my_book")
    rep_id = app.selectbox(key="rep_pick").value
    with app_env.connect() as con:
        actions = con.execute("SELECT count(*) FROM marts.rep_actions WHERE rep_id = ?", [rep_id]).fetchall()[0][0]
    assert metric(app, "Customers to act on") == f"{actions:,}"
    assert app.dataframe[0].value.shape[0] == actions


def test_data_health_shows_the_published_check_results(app_env, clear_app_caches):
    app = open_page("data_health")
    with app_env.connect() as con:
        checks, passed = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE passed) FROM ops.asset_check_results"
        ).fetchall()[0]
    assert metric(app, "Checks passed") == f"{count(passed)} / {count(checks)}"


def test_no_snapshot_shows_how_to_get_one(monkeypatch, tmp_path, clear_app_caches):
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    for page in ("overview", "data_health"):
        app = open_page(page)
        assert any("No snapshot yet — run `crm build`" in i.value for i in app.info)


def test_score_pages_say_scores_are_not_built_yet_when_they_are_absent(
    app_env, monkeypatch, tmp_path, clear_app_caches
):
    def drop_scores(con):
        for table in ("marts.customer_scores", "marts.rep_actions", "ml.model_registry"):
            con.execute(f"DROP TABLE IF EXISTS {table}")

    republish(app_env.snapshot.path, tmp_path / "data", "no-scores", app_env.snapshot, drop_scores)
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path / "data"))
    for page in ("churn_value", "my_book", "overview"):
        app = open_page(page)
        assert any(i.value.startswith("Scores not built yet") for i in app.info), page


def test_the_app_answers_while_a_build_holds_the_warehouse_writer(
    app_env, built_company, tmp_path, monkeypatch, clear_app_caches
):
    """The app reads the snapshot, never the build warehouse: another process holding DuckDB's one
    writer lock on the warehouse (as the nightly build does) does not stop any page."""
    warehouse = tmp_path / "warehouse.duckdb"
    warehouse.write_bytes(built_company.warehouse.read_bytes())
    data_dir = tmp_path / "data"
    republish(app_env.snapshot.path, data_dir, "serving-during-build", app_env.snapshot)
    monkeypatch.setenv("CRM_DATA_DIR", str(data_dir))
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, duckdb
            con = duckdb.connect({str(warehouse)!r})
            con.execute("CREATE OR REPLACE TABLE marts.building AS SELECT 1 AS step")
            print("holding", flush=True)
            sys.stdin.read()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "holding"
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(warehouse), read_only=True)
        for page in PAGES:
            app = open_page(page)
            assert not app.exception, page
    finally:
        writer.stdin.close()
        writer.wait(timeout=30)


def test_a_saved_segment_loads_back_into_the_filters_with_the_same_count(
    app_env, clear_app_caches, tmp_path, monkeypatch
):
    from crm.serving.segments import Condition, SegmentDefinition, count_segment, save_segment

    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    snapshot = republish(app_env.snapshot.path, tmp_path, "load-test", app_env.snapshot)
    definition = SegmentDefinition(
        name="Gold sms",
        channel="sms",
        conditions=[
            Condition(column="loyalty_tier", op="in", value=["Gold"]),
            Condition(column="revenue_lifetime", op="between", value=[50, 1e9]),
            Condition(column="email_consent", op="is_true"),
        ],
    )
    save_segment(tmp_path, definition)
    with duckdb.connect(str(snapshot.path), read_only=True) as con:
        matched, excluded = count_segment(con, definition)
    app = open_page("segment_builder")
    app.selectbox(key="segment_start").set_value("Gold sms").run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.multiselect(key="filter_columns").value == ["loyalty_tier", "revenue_lifetime", "email_consent"]
    assert metric(app, "Customers in segment") == count(matched - excluded)
    assert metric(app, "Left out: no sms consent") == count(excluded)


def test_campaign_page_shows_the_chosen_campaigns_rates(app_env, clear_app_caches):
    app = open_page("campaigns_support")
    campaign_id = app.selectbox(key="campaign_pick").value
    with app_env.connect() as con:
        open_rate, conversion_rate = con.execute(
            "SELECT open_rate, conversion_rate FROM marts.campaign_performance WHERE campaign_id = ?", [campaign_id]
        ).fetchall()[0]
    assert metric(app, "Open rate") == share(open_rate)
    assert metric(app, "Conversion rate") == share(conversion_rate)


def test_churn_page_shows_the_current_models_card(app_env, clear_app_caches):
    app = open_page("churn_value")
    with app_env.connect() as con:
        version, high = con.execute(
            "SELECT model_version, (SELECT avg((churn_band = 'high')::INT) FROM marts.customer_scores) "
            "FROM ml.model_registry WHERE status = 'current' ORDER BY trained_at DESC LIMIT 1"
        ).fetchall()[0]
    assert any(version in c.value for c in app.caption)
    assert metric(app, "Share at high churn risk") == share(high)


def test_a_newly_published_snapshot_is_picked_up_on_the_next_rerun(app_env, clear_app_caches, tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    first = republish(app_env.snapshot.path, tmp_path, "first-night", app_env.snapshot)
    app = open_page("overview")
    assert first.snapshot_id in " ".join(c.value for c in app.sidebar.caption)
    second = republish(
        app_env.snapshot.path,
        tmp_path,
        "second-night",
        app_env.snapshot,
        lambda con: con.execute(
            "DELETE FROM marts.customer_360 WHERE customer_id IN (SELECT customer_id FROM marts.customer_360 LIMIT 7)"
        ),
    )
    app.run()
    sidebar = " ".join(c.value for c in app.sidebar.caption)
    assert second.snapshot_id in sidebar and first.snapshot_id not in sidebar
    assert f"{count(second.row_counts['marts.customer_360'])} customers" in sidebar
    assert second.row_counts["marts.customer_360"] == first.row_counts["marts.customer_360"] - 7
    assert not app.exception
