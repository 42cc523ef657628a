"""The audit trail: who did what with which data, kept outside the warehouse and the snapshots.

Logins, unmasking, exports, steward decisions and erasures append one JSON line each to
``<data_dir>/audit/events.jsonl``: a rebuild never touches it, a lock keeps concurrent writers
(several dashboard sessions, a `crm` command) from interleaving, and only the service's user can
read it. Values that identify a person are not written here; callers pass what the event needs
(a segment definition, a row count, a file hash, a salted hash of an erased address).
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FILE = Path("audit") / "events.jsonl"


def audit_path(data_dir: Path) -> Path:
    return Path(data_dir) / AUDIT_FILE


def record(
    data_dir: Path,
    *,
    actor: str,
    role: str,
    action: str,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append one event and return it; the file is created readable by its owner only."""
    event = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "actor": actor,
        "role": role,
        "action": action,
        "target": target,
        "details": details or {},
    }
    path = audit_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = (json.dumps(event, default=str, sort_keys=True) + "\n").encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)
    return event


def events(data_dir: Path, *, action: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Recorded events, newest first (optionally one kind of action only)."""
    path = audit_path(data_dir)
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        if action is None or event.get("action") == action:
            found.append(event)
    found.reverse()
    return found[:limit] if limit is not None else found
