"""Steward decisions taken outside the warehouse (from the dashboard): merge two records or keep them apart.

The dashboard never writes the build warehouse (the nightly build holds it), so a decision is
appended to ``<data_dir>/steward/decisions.jsonl``; the next identity run loads the latest
decision for each pair of records into ``identity.steward_decisions`` and applies it like the
seed and the ``identity.steward_overrides`` table: a merge is an edge that always wins, a split a
constraint no edge may break. A later decision on the same pair replaces an earlier one, so a
steward can undo a merge. Each decision is also recorded in the audit trail.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import polars as pl

from crm import audit

DECISIONS_FILE = Path("steward") / "decisions.jsonl"
DECISION_SCHEMA = {
    "action": pl.String,
    "left_source": pl.String,
    "left_key": pl.String,
    "right_source": pl.String,
    "right_key": pl.String,
    "reason": pl.String,
    "requested_by": pl.String,
    "requested_at": pl.Datetime("us"),
}


def decisions_path(data_dir: Path) -> Path:
    return Path(data_dir) / DECISIONS_FILE


def record_decision(
    data_dir: Path,
    *,
    action: Literal["merge", "split"],
    left: tuple[str, str],
    right: tuple[str, str],
    reason: str,
    decided_by: str,
    role: str = "steward",
) -> dict:
    """Append a decision on two records (``(source, source_key)`` each) and audit it."""
    if action not in ("merge", "split"):
        raise ValueError(f"a steward decision is 'merge' or 'split', not {action!r}")
    if left == right:
        raise ValueError("a steward decision needs two different records")
    decision = {
        "action": action,
        "left_source": left[0],
        "left_key": left[1],
        "right_source": right[0],
        "right_key": right[1],
        "reason": reason,
        "requested_by": decided_by,
        "requested_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
    }
    path = decisions_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(decision) + "\n")
    audit.record(
        data_dir,
        actor=decided_by,
        role=role,
        action=f"steward_{action}",
        target=f"{left[0]}:{left[1]} / {right[0]}:{right[1]}",
        details={"reason": reason},
    )
    return decision


def load_decisions(data_dir: Path | None) -> pl.DataFrame:
    """The latest decision for each pair of records (either order), oldest first."""
    path = decisions_path(data_dir) if data_dir is not None else None
    if path is None or not path.exists():
        return pl.DataFrame(schema=DECISION_SCHEMA)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        return pl.DataFrame(schema=DECISION_SCHEMA)
    frame = pl.DataFrame(rows).with_columns(pl.col("requested_at").str.to_datetime(time_unit="us"))
    left = pl.col("left_source") + ":" + pl.col("left_key")
    right = pl.col("right_source") + ":" + pl.col("right_key")
    pair = pl.concat_list(pl.min_horizontal(left, right), pl.max_horizontal(left, right))
    return (
        frame.with_row_index("_order")
        .with_columns(pair.alias("_pair"))
        .sort("_order")
        .group_by("_pair", maintain_order=True)
        .last()
        .sort("_order")
        .select(list(DECISION_SCHEMA))
        .cast(DECISION_SCHEMA)
    )
