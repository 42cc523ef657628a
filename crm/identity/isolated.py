"""Identity resolution in a process of its own: what the build's identity step runs.

At a million customers a resolution holds the company's records, profiles and scored pairs in
memory, several GB at its peak. Freed, much of that stays with the process that allocated it (the
allocators keep what they took), and the build process would carry it through dbt, the scores and
the snapshot. Resolved in a child process, it goes back to the system when the child ends.

The warehouse is opened by the child alone: the caller holds no connection to it meanwhile (DuckDB
allows one writing process per file).
"""

from __future__ import annotations

import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import polars as pl

from crm import warehouse
from crm.identity.resolution import IdentityRunSummary, IdentitySettings, run_identity_resolution

# Identity's own reads and writes of the warehouse (the company's records, a few million rows) need
# little of DuckDB's memory: past this it spills to disk, and the rest of the process's memory is
# left to the records, profiles and pairs in polars. At a million customers, a nightly run with
# nothing new took 110.9 s and 7,042 MiB at DuckDB's 4 GB, 83.9 s and 5,871 MiB at 1.5 GB.
IDENTITY_DUCKDB_MEMORY = "1536MB"
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


def resolve_warehouse_in_child(path: Path, settings: IdentitySettings, **options) -> IdentityRunSummary:
    """:func:`resolve_warehouse` in a fresh child process (spawned: nothing of this one is inherited);
    its errors are raised here."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(resolve_warehouse, Path(path), settings, **options).result()
