"""Identity resolution in a process of its own: what the build's identity step runs.

At a million customers a resolution holds the company's records, profiles and scored pairs in
memory, several GB at its peak. Freed, much of that stays with the process that allocated it (the
allocators keep what they took), and the build process would carry it through dbt, the scores and
the snapshot. Resolved in a child process, it goes back to the system when the child ends.

The warehouse is opened by the child alone: the caller holds no connection to it meanwhile (DuckDB
allows one writing process per file).
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import polars as pl

from crm import warehouse
from crm.identity.resolution import IdentityRunSummary, IdentitySettings, run_identity_resolution

# Identity's own reads and writes of the warehouse (the company's records, a few million rows) need
# little of DuckDB's memory: past this it spills to disk, and the rest of the process's memory is
# left to the records, profiles and pairs in polars. At a million customers, a nightly run with
# nothing new took 110.9 s and 7,042 MiB at DuckDB's 4 GB, 83.9 s and 5,871 MiB at 1.5 GB.
IDENTITY_DUCKDB_MEMORY = "1536MB"
# Polars' allocator (jemalloc) keeps freed pages for seconds before it returns them; through a
# resolution that is GBs held for nothing while the next frames are built. Returned at once, a
# nightly run at a million customers peaked at 4,328 MiB instead of 4,724 MiB, in the same time
# (71.3 s against 70.5 s). Read when polars loads: set for the child, before it starts.
POLARS_ALLOCATOR_CONF = ("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def _bytes(size: str) -> float | None:
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-z]*)\s*", size.lower())
    if not match or match.group(2) not in _UNITS:
        return None  # a share ('80%') or a form we do not read: taken as larger
    return float(match.group(1)) * _UNITS[match.group(2)]


def identity_memory_limit(configured: str) -> str:
    """The warehouse's memory limit for identity: the configured one, at most IDENTITY_DUCKDB_MEMORY."""
    size = _bytes(configured)
    return configured if size is not None and size <= _bytes(IDENTITY_DUCKDB_MEMORY) else IDENTITY_DUCKDB_MEMORY


def resolve_warehouse(
    path: Path,
    settings: IdentitySettings,
    *,
    memory_limit: str = warehouse.DEFAULT_MEMORY_LIMIT,
    threads: int | None = None,
    run_id: str | None = None,
    steward_decisions: pl.DataFrame | None = None,
) -> IdentityRunSummary:
    """Resolve the identities of the warehouse at ``path`` in this process."""
    con = warehouse.connect(path, memory_limit=identity_memory_limit(memory_limit), threads=threads)
    try:
        return run_identity_resolution(con, settings, run_id=run_id, steward_decisions=steward_decisions)
    finally:
        con.close()


def child_environment() -> dict[str, str]:
    """The identity process's environment: this one's, with polars' allocator returning what is
    freed at once (unless the variable is set already)."""
    name, value = POLARS_ALLOCATOR_CONF
    return {name: value, **os.environ}


def resolve_warehouse_in_child(path: Path, settings: IdentitySettings, **options) -> IdentityRunSummary:
    """:func:`resolve_warehouse` in a fresh Python process (``python -m crm.identity.isolated``);
    its errors are raised here.

    A plain subprocess, not multiprocessing: a spawned child re-runs the parent's ``__main__``,
    which in a Dagster code server or a test process is not ours to run."""
    with tempfile.TemporaryDirectory(prefix="crm_identity_child_") as folder:
        request, answer = Path(folder) / "request.pickle", Path(folder) / "answer.pickle"
        request.write_bytes(pickle.dumps((Path(path), settings, options)))
        done = subprocess.run(
            [sys.executable, "-m", __name__, str(request), str(answer)], check=False, env=child_environment()
        )
        if not answer.exists():
            raise RuntimeError(f"identity resolution's process ended without an answer (exit code {done.returncode})")
        ok, value = pickle.loads(answer.read_bytes())
    if not ok:
        raise value
    return value


def _serve(request: Path, answer: Path) -> None:
    path, settings, options = pickle.loads(request.read_bytes())
    try:
        result = (True, resolve_warehouse(path, settings, **options))
    except Exception as error:  # handed to the parent, which raises it
        try:
            pickle.dumps(error)
        except Exception:
            error = RuntimeError("".join(traceback.format_exception(error)))
        result = (False, error)
    answer.write_bytes(pickle.dumps(result))


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), Path(sys.argv[2]))
