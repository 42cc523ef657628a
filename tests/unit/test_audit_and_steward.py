"""The audit trail and the dashboard's steward decisions: files under the data folder, outside the warehouse."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor

from crm import audit
from crm.identity.steward import load_decisions, record_decision


def test_audit_events_append_newest_first_and_only_the_owner_can_read_them(tmp_path):
    audit.record(tmp_path, actor="ann", role="marketer", action="export", details={"rows": 12, "sha256": "ab"})
    audit.record(tmp_path, actor="bob", role="analyst", action="login")
    found = audit.events(tmp_path)
    assert [e["action"] for e in found] == ["login", "export"]
    assert found[1]["details"] == {"rows": 12, "sha256": "ab"}
    assert audit.events(tmp_path, action="export")[0]["actor"] == "ann"
    mode = stat.S_IMODE(audit.audit_path(tmp_path).stat().st_mode)
    assert mode == 0o600


def test_concurrent_writers_never_interleave_lines(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: audit.record(
                    tmp_path, actor=f"u{i}", role="analyst", action="view", details={"payload": "x" * 5000}
                ),
                range(200),
            )
        )
    found = audit.events(tmp_path)
    assert len(found) == 200 and {e["actor"] for e in found} == {f"u{i}" for i in range(200)}


def test_the_latest_decision_on_a_pair_wins_whatever_the_order_of_its_records(tmp_path):
    record_decision(
        tmp_path,
        action="merge",
        left=("sales_contacts", "1"),
        right=("support_tickets", "9"),
        reason="same person",
        decided_by="ann",
    )
    record_decision(
        tmp_path,
        action="merge",
        left=("sales_contacts", "2"),
        right=("support_tickets", "3"),
        reason="same person",
        decided_by="bob",
    )
    record_decision(
        tmp_path,
        action="split",
        left=("support_tickets", "9"),
        right=("sales_contacts", "1"),
        reason="her assistant",
        decided_by="ann",
    )
    decisions = load_decisions(tmp_path)
    assert decisions.select("action", "left_key", "right_key").rows() == [("merge", "2", "3"), ("split", "9", "1")]
    assert [e["action"] for e in audit.events(tmp_path)] == ["steward_split", "steward_merge", "steward_merge"]
    assert load_decisions(tmp_path / "nothing-here").height == 0
