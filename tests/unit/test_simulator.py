"""The simulated company: deterministic, agrees with its ground truth, and as messy as promised.

Every rate is recomputed here from the files the simulator wrote (read back the way an outsider
would) and the ground truth; the mess report is only compared with those recomputations.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path

import phonenumbers
import polars as pl
import pytest

from crm.ingest.entities import (
    ENTITIES,
    EVENT_TYPES,
    ORDER_STATUSES,
    TICKET_PRIORITIES,
    TICKET_STATUSES,
)
from simulator import SimulationConfig, generate

SMALL = dict(customers=1500, seed=11, start=date(2024, 1, 1), days=300)
TINY = dict(customers=300, seed=5, start=date(2024, 3, 1), days=120)
TS = "%Y-%m-%d %H:%M:%S"
SCORES = ENTITIES["support_tickets"].column("satisfaction_score").accepted_values
STAGES = ENTITIES["sales_opportunities"].column("stage").accepted_values


def _parse_ts(value) -> datetime | None:
    try:
        return datetime.strptime(value, TS)
    except (TypeError, ValueError):
        return None


def _is_number(value) -> bool:
    if isinstance(value, (int, float)):
        return True
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


@dataclass
class Line:
    path: str  # relative to the sources folder
    line: int  # 1-based physical line, header = 1
    row: dict | None  # None when the line cannot be parsed
    problem: str | None = None  # encoding | field_count | json


@dataclass
class Company:
    cfg: SimulationConfig
    report: dict
    out: Path
    truth: Path
    _cache: dict = field(default_factory=dict)

    @cached_property
    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.out / "sales" / "sales.sqlite")

    def sql(self, query: str) -> list[tuple]:
        return self.db.execute(query).fetchall()

    def csv_lines(self, folder: str) -> list[Line]:
        if folder not in self._cache:
            lines = []
            for path in sorted((self.out / "marketing" / folder).glob("*.csv")):
                rel = path.relative_to(self.out).as_posix()
                raw = path.read_bytes().split(b"\n")
                assert raw[-1] == b"", f"{rel} does not end with a newline"
                header = next(csv.reader([raw[0].decode("utf-8")]))
                for no, data in enumerate(raw[1:-1], start=2):
                    try:
                        text = data.decode("utf-8")
                    except UnicodeDecodeError:
                        lines.append(Line(rel, no, None, "encoding"))
                        continue
                    fields = next(csv.reader([text]))
                    if len(fields) != len(header):
                        lines.append(Line(rel, no, None, "field_count"))
                    else:
                        lines.append(Line(rel, no, dict(zip(header, fields, strict=True))))
            self._cache[folder] = lines
        return self._cache[folder]

    @cached_property
    def pages(self) -> list[tuple[str, dict, list[Line]]]:
        out = []
        for path in sorted((self.out / "support" / "export").glob("page_*.jsonl")):
            rel = path.relative_to(self.out).as_posix()
            raw = path.read_bytes().split(b"\n")
            assert raw[-1] == b""
            header = json.loads(raw[0])
            lines = []
            for no, data in enumerate(raw[1:-1], start=2):
                try:
                    lines.append(Line(rel, no, json.loads(data.decode("utf-8"))))
                except UnicodeDecodeError:
                    lines.append(Line(rel, no, None, "encoding"))
                except json.JSONDecodeError:
                    lines.append(Line(rel, no, None, "json"))
            out.append((rel, header, lines))
        return out

    @cached_property
    def persons(self) -> pl.DataFrame:
        return pl.read_parquet(self.truth / "persons.parquet")

    @cached_property
    def record_map(self) -> pl.DataFrame:
        return pl.read_parquet(self.truth / "record_map.parquet")

    @cached_property
    def malformed(self) -> pl.DataFrame:
        return pl.read_parquet(self.truth / "malformed.parquet")

    def person_of(self, source: str) -> dict[str, int]:
        rm = self.record_map.filter(pl.col("source") == source)
        return dict(zip(rm["source_key"].to_list(), rm["person_id"].to_list(), strict=True))

    @cached_property
    def records(self) -> list[dict]:
        """Every person record in the three systems, as written in the files."""
        recs = []
        sales = self.person_of("sales_contacts")
        for cid, first, last, email, phone in self.sql("SELECT id, first_name, last_name, email, phone FROM contacts"):
            recs.append(dict(source="sales", person=sales[str(cid)], first=first, last=last, email=email, phone=phone))
        marketing = self.person_of("marketing_contacts")
        latest: dict[str, dict] = {}
        for ln in self.csv_lines("contacts"):
            if ln.row is not None:
                latest[ln.row["Email"]] = ln.row
        for email, row in latest.items():
            recs.append(
                dict(
                    source="marketing",
                    person=marketing[email],
                    first=row["First Name"],
                    last=row["Last Name"],
                    email=email,
                    phone=row["Phone"] or None,
                )
            )
        support = self.person_of("support_tickets")
        seen = set()
        for _, _, lines in self.pages:
            for ln in lines:
                if ln.row is None or ln.row["id"] in seen:
                    continue
                seen.add(ln.row["id"])
                req = ln.row["requester"]
                first, _, last = (req["name"] or "").partition(" ")
                recs.append(
                    dict(
                        source="support",
                        person=support[str(ln.row["id"])],
                        first=first,
                        last=last,
                        email=req["email"],
                        phone=req["phone"],
                    )
                )
        return recs

    @cached_property
    def valid_events(self) -> list[Line]:
        return [ln for ln in self.csv_lines("events") if ln.row is not None]


@pytest.fixture(scope="session")
def company(tmp_path_factory) -> Company:
    root = tmp_path_factory.mktemp("company")
    cfg = SimulationConfig(**SMALL, out=root / "sources")
    stages = []
    report = generate(cfg, progress=lambda stage, done, total: stages.append((stage, done, total)))
    assert stages and all(0 <= d <= t for _, d, t in stages)
    return Company(cfg, report, root / "sources", root / "ground_truth")


def _checksums(*folders: Path) -> dict[str, str]:
    sums = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = f"{folder.name}/{path.relative_to(folder).as_posix()}"
                sums[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return sums


# ------------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        cfg = SimulationConfig(**{**TINY, "seed": seed}, out=tmp_path / name / "sources")
        generate(cfg)
        runs[name] = _checksums(tmp_path / name / "sources", tmp_path / name / "ground_truth")
    assert len(runs["a"]) > 100  # the sqlite file, hundreds of daily files, five truth files
    assert runs["a"] == runs["b"]
    assert runs["a"].keys() & runs["c"].keys()
    differing = [k for k in runs["a"].keys() & runs["c"].keys() if runs["a"][k] != runs["c"][k]]
    assert "sources/sales/sales.sqlite" in differing and "ground_truth/persons.parquet" in differing


def test_generate_replaces_previous_output_and_leaves_no_temp_folders(tmp_path):
    out = tmp_path / "sources"
    (out / "marketing" / "events").mkdir(parents=True)
    stale = out / "marketing" / "events" / "events_1999-01-01.csv"
    stale.write_text("stale")
    (tmp_path / "ground_truth").mkdir()
    (tmp_path / "ground_truth" / "old.txt").write_text("stale")
    generate(SimulationConfig(**TINY, out=out))
    assert not stale.exists() and not (tmp_path / "ground_truth" / "old.txt").exists()
    assert (out / "sales" / "sales.sqlite").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ground_truth", "sources"]


def test_truth_folder_defaults_next_to_out_and_can_be_set(tmp_path):
    cfg = SimulationConfig(**TINY, out=tmp_path / "a" / "sources")
    assert cfg.truth_dir == tmp_path / "a" / "ground_truth"
    cfg = SimulationConfig(**TINY, out=tmp_path / "sources", truth_out=tmp_path / "elsewhere")
    assert cfg.truth_dir == tmp_path / "elsewhere"
    with pytest.raises(ValueError):
        generate(SimulationConfig(**TINY, out=tmp_path / "x", truth_out=tmp_path / "x" / "truth"))


# ------------------------------------------------------------------------------- the contract layout


def test_sales_database_has_the_contract_tables_and_columns(company):
    expected = {
        "sales_reps": ["id", "full_name", "email", "region", "hire_date", "created_at", "updated_at"],
        "accounts": ["id", "name", "type", "region", "owner_rep_id", "payment_terms_days", "created_at", "updated_at"],
        "contacts": [
            "id",
            "account_id",
            "first_name",
            "last_name",
            "email",
            "phone",
            "city",
            "postcode",
            "created_at",
            "updated_at",
        ],
        "products": ["id", "name", "category", "list_price", "created_at", "updated_at"],
        "opportunities": [
            "id",
            "account_id",
            "owner_rep_id",
            "stage",
            "amount",
            "stage_changed_at",
            "created_at",
            "updated_at",
        ],
        "opportunity_stage_history": ["id", "opportunity_id", "stage", "entered_at", "created_at", "updated_at"],
        "orders": [
            "id",
            "contact_id",
            "account_id",
            "ordered_at",
            "status",
            "channel",
            "discount_pct",
            "payment_terms_days",
            "owner_rep_id",
            "total_amount",
            "created_at",
            "updated_at",
        ],
        "order_lines": ["id", "order_id", "product_id", "quantity", "unit_price", "created_at", "updated_at"],
    }
    for table, columns in expected.items():
        info = company.sql(f"PRAGMA table_info({table})")
        assert [c[1] for c in info] == columns, table
        assert all(c[2] for c in info), f"{table} has a column without a declared type"
    assert {s for (s,) in company.sql("SELECT DISTINCT type FROM accounts")} == {"B2B", "B2C"}
    assert {s for (s,) in company.sql("SELECT DISTINCT stage FROM opportunities")} <= set(STAGES)
    assert {c for (c,) in company.sql("SELECT DISTINCT channel FROM orders")} <= {"web", "phone", "store", "partner"}


def test_sql_timestamps_are_valid_ordered_and_rows_change_after_creation(company):
    end = datetime.combine(company.cfg.end_date, datetime.max.time())
    for table in (
        "sales_reps",
        "accounts",
        "contacts",
        "products",
        "opportunities",
        "opportunity_stage_history",
        "orders",
        "order_lines",
    ):
        for created, updated in company.sql(f"SELECT created_at, updated_at FROM {table}"):
            c, u = _parse_ts(created), _parse_ts(updated)
            assert c and u and c <= u <= end, (table, created, updated)
    for table in ("orders", "contacts", "accounts"):
        changed, total = company.sql(f"SELECT sum(updated_at > created_at), count(*) FROM {table}")[0]
        assert changed / total > 0.2, table
    statuses = dict(company.sql("SELECT status, count(*) FROM orders GROUP BY 1"))
    assert {"placed", "shipped", "returned", "cancelled"} <= statuses.keys()


def test_marketing_files_follow_the_contract(company):
    out = company.out / "marketing"
    headers = {
        "campaigns": ["campaign_id", "name", "channel", "offer", "discount_pct", "launch_ts"],
        "contacts": [
            "Email",
            "First Name",
            "Last Name",
            "Phone",
            "Email Opt In",
            "Email Opt In Date",
            "SMS Opt In",
            "SMS Opt In Date",
            "Unsubscribed Date",
            "Last Modified",
        ],
    }
    for kind, header in headers.items():
        files = sorted((out / kind).iterdir())
        assert files and all(f.name.startswith(kind + "_") and f.suffix == ".csv" for f in files)
        for f in files:
            assert f.read_bytes().split(b"\n", 1)[0].decode() == ",".join(header)
            day = date.fromisoformat(f.stem.split("_", 1)[1])
            assert company.cfg.start <= day <= company.cfg.end_date
    consents = [ln.row for ln in company.csv_lines("contacts") if ln.row]
    assert {r["Email Opt In"] for r in consents} == {"true", "false"}
    assert any(r["Unsubscribed Date"] for r in consents) and any(r["SMS Opt In"] == "true" for r in consents)
    events = company.valid_events
    assert {ln.row["event_type"] for ln in events} >= set(EVENT_TYPES)
    conversions = [ln.row for ln in events if ln.row["event_type"] == "conversion"]
    assert conversions and all(r["revenue"] for r in conversions)
    assert not any(r["revenue"] for ln in events if (r := ln.row)["event_type"] in ("sent", "open"))


def test_support_export_is_a_cursor_chain_with_headers(company):
    pages = company.pages
    assert pages
    for i, (rel, header, lines) in enumerate(pages, start=1):
        assert rel.endswith(f"page_{i:06d}.jsonl")
        assert header["page"] == i and header["count"] == len(lines)
        assert header["after_cursor"] == f"page_{i + 1:06d}"
        assert header["end_of_stream"] is (i == len(pages))
    days = [date.fromisoformat(h["export_date"]) for _, h, _ in pages]
    assert days == sorted(set(days))
    tickets = [ln.row for _, _, lines in pages for ln in lines if ln.row]
    assert {t["via"] for t in tickets} >= {"email", "web", "phone"}
    versions = Counter(t["id"] for t in tickets)
    assert max(versions.values()) >= 3, "a ticket re-appears on each day it changes"
    rated = [t for t in tickets if t["satisfaction_rating"]["score"] in ("good", "bad")]
    assert rated and all(t["satisfaction_rating"]["comment"] for t in rated)
    assert all(t["solved_at"] for t in tickets if t.get("status") in ("solved", "closed"))


# --------------------------------------------------------------------------- truth agrees with sources


def test_record_map_covers_every_record_in_every_source(company):
    rm = company.record_map
    assert set(rm["source"].unique()) == {"sales_contacts", "marketing_contacts", "support_tickets"}
    assert rm.select("source", "source_key").is_duplicated().sum() == 0
    person_ids = set(company.persons["person_id"].to_list())
    assert set(rm["person_id"].to_list()) <= person_ids
    sales = company.person_of("sales_contacts")
    assert {str(i) for (i,) in company.sql("SELECT id FROM contacts")} == set(sales)
    marketing = company.person_of("marketing_contacts")
    emails = {ln.row["Email"] for ln in company.csv_lines("contacts") if ln.row}
    assert emails and emails <= set(marketing)
    event_emails = {ln.row["email"] for ln in company.valid_events if ln.row["email"]}
    assert event_emails <= set(marketing), "events are keyed by the marketing contact's address as written"
    support = company.person_of("support_tickets")
    ids = {str(ln.row["id"]) for _, _, lines in company.pages for ln in lines if ln.row}
    assert ids and ids <= set(support)


def test_orders_reference_contacts_of_real_persons_and_the_account_owner(company):
    sales = company.person_of("sales_contacts")
    rows = company.sql(
        "SELECT o.contact_id, o.account_id, c.account_id, o.owner_rep_id, a.owner_rep_id "
        "FROM orders o LEFT JOIN contacts c ON c.id = o.contact_id LEFT JOIN accounts a ON a.id = o.account_id"
    )
    with_contact = [r for r in rows if r[0] is not None]
    assert len(with_contact) > 0.98 * len(rows)
    assert all(str(r[0]) in sales for r in with_contact)
    assert all(r[1] == r[2] for r in with_contact), "an order's account is its contact's account"
    assert all(r[3] == r[4] for r in rows), "order owner rep = account owner rep"
    persons_per_account = defaultdict(set)
    for cid, acc in company.sql("SELECT id, account_id FROM contacts"):
        persons_per_account[acc].add(sales[str(cid)])
    types = dict(company.sql("SELECT id, type FROM accounts"))
    assert all(len(persons_per_account[a]) >= 2 for a, t in types.items() if t == "B2B")
    assert all(len(persons_per_account[a]) == 1 for a, t in types.items() if t == "B2C")


def test_report_row_counts_match_the_files(company):
    counts = company.report["row_counts"]
    table_of = {
        "sales_reps": "sales_reps",
        "sales_accounts": "accounts",
        "sales_contacts": "contacts",
        "sales_products": "products",
        "sales_opportunities": "opportunities",
        "sales_opportunity_stage_history": "opportunity_stage_history",
        "sales_orders": "orders",
        "sales_order_lines": "order_lines",
    }
    for key, table in table_of.items():
        assert counts[key] == company.sql(f"SELECT count(*) FROM {table}")[0][0], key
    for kind in ("campaigns", "contacts", "events"):
        assert counts[f"marketing_{kind}"] == len(company.csv_lines(kind)), kind
    assert counts["support_tickets"] == sum(len(lines) for _, _, lines in company.pages)
    saved = json.loads((company.truth / "mess_report.json").read_text())
    assert saved == json.loads(json.dumps(company.report))
    assert saved["end_date"] == company.cfg.end_date.isoformat() and saved["seed"] == 11
    assert saved["customers"] == 1500


def test_scale_is_roughly_as_promised(company):
    # ~10 orders / person over two years, ~50 events / person, ~1 ticket / person; this is 300 days.
    n = company.cfg.customers
    orders = company.report["row_counts"]["sales_orders"]
    assert 2 * n < orders < 12 * n
    assert 10 * n < company.report["row_counts"]["marketing_events"] < 60 * n
    tickets = {ln.row["id"] for _, _, lines in company.pages for ln in lines if ln.row}
    assert 0.15 * n < len(tickets) < 1.5 * n


# ----------------------------------------------------------------------------------------- mess rates


def _email_class(written: str | None, person: dict) -> str:
    if not written:
        return "missing"
    if written == person["email"]:
        return "exact"
    norm = written.strip().lower()
    if norm == person["email"]:
        return "case_or_space"
    if norm == person["alt_email"]:
        return "other_address"
    if norm.split("@")[0] in ("info", "office", "accounts"):
        return "shared"
    return "typo" if _edit_distance(norm, person["email"]) <= 2 else "unknown"


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (an adjacent swap costs 2, which the typo threshold allows)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_persons_appear_across_systems_with_differently_written_emails(company):
    persons = {p["person_id"]: p for p in company.persons.iter_rows(named=True)}
    systems = defaultdict(set)
    for r in company.records:
        systems[r["person"]].add(r["source"])
    multi = {p for p, s in systems.items() if len(s) >= 2}
    assert len(multi) / len(persons) >= 0.40
    cross = [r for r in company.records if r["person"] in multi]
    classes = Counter(_email_class(r["email"], persons[r["person"]]) for r in cross)
    share = {k: v / len(cross) for k, v in classes.items()}
    assert classes["unknown"] == 0, "every written email is explained by the truth"
    assert share["case_or_space"] >= 0.20
    assert share["typo"] >= 0.03
    assert share["other_address"] >= 0.10
    # The report also counts the few records whose only line in a file is malformed.
    reported = company.report["identity"]
    assert reported["persons_in_2plus_systems_share"] == pytest.approx(len(multi) / len(persons), abs=0.01)
    assert reported["email_typo_share"] == pytest.approx(share["typo"], abs=0.005)
    assert reported["email_other_address_share"] == pytest.approx(share["other_address"], abs=0.005)
    assert reported["email_written_differently_share"] == pytest.approx(share["case_or_space"], abs=0.005)


PHONE_SHAPES = {
    "international": re.compile(r"^\+44 \d+ [\d ]+$"),
    "e164": re.compile(r"^\+44\d{9,10}$"),
    "national": re.compile(r"^0\d+ [\d ]+$"),
    "bracketed": re.compile(r"^\(0\d+\) [\d-]+$"),
    "digits": re.compile(r"^0\d{9,10}$"),
}


def test_phones_come_in_several_formats_that_all_parse_to_the_true_number(company):
    persons = {p["person_id"]: p["phone"] for p in company.persons.iter_rows(named=True)}
    shapes = Counter()
    for r in company.records:
        if not r["phone"]:
            continue
        parsed = phonenumbers.parse(r["phone"], "GB")
        assert phonenumbers.is_valid_number(parsed), r["phone"]
        assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == persons[r["person"]]
        shape = [name for name, pattern in PHONE_SHAPES.items() if pattern.match(r["phone"])]
        assert len(shape) == 1, r["phone"]
        shapes[shape[0]] += 1
    assert sum(shapes.values()) > 1000
    assert len(shapes) >= 3 and min(shapes.values()) / sum(shapes.values()) > 0.05, shapes


def test_names_vary_and_some_b2b_people_share_a_mailbox(company):
    persons = {p["person_id"]: p for p in company.persons.iter_rows(named=True)}
    kinds = Counter()
    for r in company.records:
        p = persons[r["person"]]
        if r["first"] == p["first_name"] and r["last"] == p["last_name"]:
            continue
        if r["first"] and r["first"].endswith(".") and len(r["first"]) == 2:
            kinds["initial"] += 1
        elif r["last"] and r["last"] == p["last_name"].upper():
            kinds["upper"] += 1
        elif r["first"] and r["first"].isascii() and not p["first_name"].isascii():
            kinds["accent"] += 1
        elif r["first"] and r["first"] != p["first_name"] and r["first"][0] in p["first_name"]:
            kinds["nickname"] += 1
    assert min(kinds[k] for k in ("initial", "upper", "accent", "nickname")) > 0, kinds
    sales = company.person_of("sales_contacts")
    users = defaultdict(set)
    for cid, email in company.sql("SELECT id, email FROM contacts WHERE email IS NOT NULL"):
        users[email.strip().lower()].add(sales[str(cid)])
    shared = [e for e, who in users.items() if len(who) >= 2]
    assert shared and all(e.split("@")[0] in ("info", "office", "accounts") for e in shared)


def test_sales_holds_duplicate_contacts(company):
    sales = company.person_of("sales_contacts")
    per_person = Counter(sales.values())
    duplicates = sum(c - 1 for c in per_person.values())
    assert duplicates / len(sales) >= 0.02
    assert company.report["sales_duplicate_contacts_share"] == pytest.approx(duplicates / len(sales), abs=1e-4)


def test_marketing_events_are_duplicated_and_late(company):
    events = company.valid_events
    ids = Counter(ln.row["event_id"] for ln in events)
    dup_share = sum(c - 1 for c in ids.values()) / len(events)
    assert dup_share >= 0.01
    late = Counter()
    for ln in events:
        ts = _parse_ts(ln.row["event_ts"])
        if ts is None:
            continue
        drop_day = date.fromisoformat(Path(ln.path).stem.split("_", 1)[1])
        late[(drop_day - ts.date()).days] += 1
    assert min(late) == 0 and max(late) <= 3, "events arrive on their day, or a day or two later"
    assert (late[1] + late[2]) / sum(late.values()) >= 0.02
    stats = company.report["marketing_events"]
    assert stats["duplicate_share"] >= 0.01 and stats["late_share"] >= 0.02


def test_each_source_has_enough_malformed_rows_of_enough_kinds(company):
    m = company.malformed
    rows = {
        "sales": sum(
            company.sql(f"SELECT count(*) FROM {t}")[0][0]
            for t in (
                "sales_reps",
                "accounts",
                "contacts",
                "products",
                "opportunities",
                "opportunity_stage_history",
                "orders",
                "order_lines",
            )
        ),
        "marketing": sum(len(company.csv_lines(k)) for k in ("campaigns", "contacts", "events")),
        "support": sum(len(lines) for _, _, lines in company.pages),
    }
    for source, total in rows.items():
        assert m.filter(pl.col("source") == source).height / total >= 0.005, source
    assert m["kind"].n_unique() >= 5
    assert set(m["entity"].unique()) <= set(ENTITIES)
    assert m["location"].is_duplicated().sum() == 0


def test_malformed_locations_point_at_rows_broken_as_stated(company):
    m = company.malformed
    lines = {(ln.path, ln.line): ln for k in ("campaigns", "contacts", "events") for ln in company.csv_lines(k)}
    lines |= {(ln.path, ln.line): ln for _, _, page in company.pages for ln in page}
    products = {i for (i,) in company.sql("SELECT id FROM products")}
    checked = Counter()
    for source, entity, location, kind, fld in m.iter_rows():
        where, _, key = location.rpartition(":")
        if source == "sales":
            assert where in ("orders", "order_lines") and entity in ("sales_orders", "sales_order_lines")
            row = company.db.execute(f"SELECT * FROM {where} WHERE id = ?", (int(key),)).fetchone()
            names = [c[1] for c in company.sql(f"PRAGMA table_info({where})")]
            value = dict(zip(names, row, strict=True))[fld]
            broken = {
                "bad_date": lambda v: _parse_ts(v) is None,
                "unknown_value": lambda v: v not in ORDER_STATUSES,
                "missing_required": lambda v: v is None,
                "non_numeric": lambda v: isinstance(v, str) and not _is_number(v),
                "negative_quantity": lambda v: v < 0,
                "unknown_product": lambda v: v not in products,
            }[kind]
            assert broken(value), (location, kind, value)
        else:
            ln = lines[(where, int(key))]
            if kind in ("broken_csv_line", "wrong_encoding", "broken_json"):
                expected = {"broken_csv_line": "field_count", "wrong_encoding": "encoding", "broken_json": "json"}[kind]
                assert ln.problem == expected, (location, kind, ln.problem)
                checked[kind] += 1
                continue
            assert ln.row is not None, location
            value = ln.row.get(fld)
            if kind == "bad_date":
                assert _parse_ts(value) is None, location
            elif kind == "missing_required":
                assert value in (None, ""), location
            elif kind == "non_numeric":
                assert not _is_number(value), location
            elif kind == "unknown_value":
                accepted = {
                    "event_type": EVENT_TYPES,
                    "status": TICKET_STATUSES,
                    "priority": TICKET_PRIORITIES,
                    "urgency": TICKET_PRIORITIES,
                }[fld]
                assert value not in accepted, location
        checked[kind] += 1
    assert len(checked) >= 5
    # ...and the other way round: every line a reader cannot parse is listed.
    listed = set(m["location"].to_list())
    unparseable = [f"{ln.path}:{ln.line}" for ln in lines.values() if ln.row is None]
    assert unparseable and set(unparseable) <= listed


def test_a_strict_csv_reader_rejects_exactly_the_listed_broken_lines(company):
    """Regression: an extra *empty* trailing field is forgiven by DuckDB's reader, so a broken line
    must end in a non-empty extra field to really be broken for ingestion."""
    import duckdb

    m = company.malformed.filter(
        (pl.col("source") == "marketing") & pl.col("kind").is_in(["broken_csv_line", "wrong_encoding"])
    )
    expected = defaultdict(set)
    for loc in m["location"]:
        path, _, line = loc.rpartition(":")
        expected[path].add(int(line))
    assert expected
    con = duckdb.connect()
    for rel, lines in expected.items():
        path = company.out / rel
        header = next(csv.reader([path.open("rb").readline().decode()]))
        columns = "{" + ", ".join(f"'{h}': 'VARCHAR'" for h in header) + "}"
        con.execute("DROP TABLE IF EXISTS rejects; DROP TABLE IF EXISTS scans")
        con.execute(
            "CREATE OR REPLACE TEMP TABLE parsed AS SELECT * FROM read_csv(?, header=true, delim=',', quote='\"', "
            f"escape='\"', auto_detect=false, columns={columns}, store_rejects=true, rejects_table='rejects', "
            "rejects_scan='scans', strict_mode=true)",
            [str(path)],
        )
        rejected = {line for (line,) in con.execute("SELECT DISTINCT line FROM rejects").fetchall()}
        assert rejected == lines, rel


def test_unlisted_rows_are_clean(company):
    listed = set(company.malformed["location"].to_list())
    for kind, ts_column in (("contacts", "Last Modified"), ("campaigns", "launch_ts")):
        for ln in company.csv_lines(kind):
            if f"{ln.path}:{ln.line}" not in listed:
                assert ln.row is not None and _parse_ts(ln.row[ts_column]), ln
    for ln in company.valid_events:
        if f"{ln.path}:{ln.line}" in listed:
            continue
        r = ln.row
        assert r["email"] and r["event_type"] in EVENT_TYPES and _parse_ts(r["event_ts"]), ln
        assert r["revenue"] == "" or _is_number(r["revenue"]), ln
    for _, _, page in company.pages:
        for ln in page:
            if f"{ln.path}:{ln.line}" in listed:
                continue
            t = ln.row
            assert t["status"] in TICKET_STATUSES and _parse_ts(t["created_at"]), ln
            assert t.get("priority", t.get("urgency")) in TICKET_PRIORITIES
            assert t["satisfaction_rating"]["score"] in SCORES
    bad_orders = {
        f"orders:{i}"
        for i, contact, status, total, ordered_at in company.sql(
            "SELECT id, contact_id, status, total_amount, ordered_at FROM orders"
        )
        if contact is None or status not in ORDER_STATUSES or not isinstance(total, float) or not _parse_ts(ordered_at)
    }
    assert bad_orders == {x for x in listed if x.startswith("orders:")}
    products = {i for (i,) in company.sql("SELECT id FROM products")}
    bad_lines = {
        f"order_lines:{i}"
        for i, product, qty, price in company.sql("SELECT id, product_id, quantity, unit_price FROM order_lines")
        if product not in products or qty < 1 or not isinstance(price, float)
    }
    assert bad_lines == {x for x in listed if x.startswith("order_lines:")}


# ------------------------------------------------------------------------------------- schema change


def test_schema_change_days_are_visible_in_the_files(company):
    mk_day = date.fromisoformat(company.report["marketing_schema_change_day"])
    sup_day = date.fromisoformat(company.report["support_schema_change_day"])
    assert company.cfg.start < mk_day <= company.cfg.end_date and company.cfg.start < sup_day <= company.cfg.end_date
    for path in sorted((company.out / "marketing" / "events").glob("*.csv")):
        header = path.read_bytes().split(b"\n", 1)[0].decode().split(",")
        day = date.fromisoformat(path.stem.split("_", 1)[1])
        base = ["event_id", "email", "campaign_id", "event_type", "event_ts", "revenue"]
        assert header == (base + ["device"] if day >= mk_day else base), path.name
    saw_before = saw_after = False
    for _, header, page in company.pages:
        day = date.fromisoformat(header["export_date"])
        for ln in page:
            if ln.row is None:
                continue
            if day >= sup_day:
                assert "urgency" in ln.row and "priority" not in ln.row
                saw_after = True
            else:
                assert "priority" in ln.row and "urgency" not in ln.row
                saw_before = True
    assert saw_before and saw_after


# ------------------------------------------------------------------------------------------- process


def test_future_orders_are_after_the_end_and_only_for_persons_alive_then(company):
    future = pl.read_parquet(company.truth / "future_orders.parquet")
    persons = company.persons
    end = datetime.combine(company.cfg.end_date + timedelta(days=1), datetime.min.time())
    horizon = end + timedelta(days=company.cfg.horizon_days)
    assert future.height > 0
    assert future["ordered_at"].min() >= end and future["ordered_at"].max() < horizon
    assert (future["total_amount"] > 0).all()
    alive = persons.filter(pl.col("true_dropout_at").is_null() | (pl.col("true_dropout_at") >= end))
    assert set(future["person_id"].unique().to_list()) <= set(alive["person_id"].to_list())
    # the dropout times are real purchase times: at or after the first purchase
    dropped = persons.filter(pl.col("true_dropout_at").is_not_null())
    assert dropped.height > 0 and (dropped["true_dropout_at"] > dropped["first_purchase_at"]).all()


def test_visible_orders_follow_the_truth(company):
    """Orders start at the first purchase and stop at the true dropout."""
    sales = company.person_of("sales_contacts")
    persons = {p["person_id"]: p for p in company.persons.iter_rows(named=True)}
    by_person = defaultdict(list)
    for cid, ordered_at in company.sql("SELECT contact_id, ordered_at FROM orders WHERE contact_id IS NOT NULL"):
        ts = _parse_ts(ordered_at)
        if ts is not None:
            by_person[sales[str(cid)]].append(ts)
    assert len(by_person) > 0.95 * len(persons)
    for pid, times in by_person.items():
        p = persons[pid]
        assert min(times) >= p["first_purchase_at"].replace(microsecond=0)
        if p["true_dropout_at"] is not None:
            assert max(times) <= p["true_dropout_at"]
    # the latent rates are what the data says: frequent buyers buy more
    rates = sorted(persons.values(), key=lambda p: p["purchase_rate"])
    low = sum(len(by_person[p["person_id"]]) for p in rates[: len(rates) // 4])
    high = sum(len(by_person[p["person_id"]]) for p in rates[-len(rates) // 4 :])
    assert high > 2 * low
