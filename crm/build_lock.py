"""One build at a time per warehouse: a lock file that a second build finds held and refuses at once.

DuckDB allows one writer per file. Without a lock a second `crm build` plans, starts, and fails
minutes later on DuckDB's "Could not set lock on file"; with it the second build stops before it
starts and names the build that runs (process id, start time, command).

The lock is an ``flock`` on ``<warehouse>.build-lock``: the operating system releases it when the
holding process ends, even when it is killed, so a dead build never blocks the next one. It is
re-entrant within a process (`crm build` takes it, and so does each Dagster run's warehouse
resource), and the file keeps the holder's description for the refusal message.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path


class BuildRunningError(RuntimeError):
    """Another process is building this warehouse."""


_held: dict[Path, tuple[int, int]] = {}  # lock path -> (file descriptor, depth)
_guard = threading.Lock()


def lock_path(warehouse_path: Path) -> Path:
    return warehouse_path.with_name(warehouse_path.name + ".build-lock")


def holder(warehouse_path: Path) -> dict | None:
    """Who holds (or last held) the lock, as it wrote itself down; None when unknown."""
    try:
        return json.loads(lock_path(warehouse_path).read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None


def _describe(info: dict | None, path: Path) -> str:
    if not info:
        return f"another process holds {path}"
    return (
        f"process {info.get('pid')} started {info.get('started_at')} ({info.get('command')}) holds {path}; "
        f"wait for it to finish, or stop it (kill {info.get('pid')}): a killed build is recovered by the next one"
    )


@contextmanager
def build_lock(warehouse_path: Path, *, what: str | None = None) -> Iterator[None]:
    """Hold the build lock of ``warehouse_path`` for the block; raise BuildRunningError when held elsewhere."""
    path = lock_path(Path(warehouse_path).resolve())
    with _guard:
        if path in _held:
            fd, depth = _held[path]
            _held[path] = (fd, depth + 1)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise BuildRunningError(
                    f"another build of this warehouse is running: {_describe(holder(Path(warehouse_path)), path)}"
                ) from None
            info = {
                "pid": os.getpid(),
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": what or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200],
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            _held[path] = (fd, 1)
    try:
        yield
    finally:
        with _guard:
            fd, depth = _held[path]
            if depth > 1:
                _held[path] = (fd, depth - 1)
            else:
                del _held[path]
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
