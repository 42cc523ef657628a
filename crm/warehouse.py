"""The one function that opens the build warehouse (a DuckDB file).

Every writer (ingestion, identity, scoring, publishing) and every tool that reads the build file
(`crm audit`, `crm evaluate`) opens it here, with the same memory cap: big batches spill to disk
instead of growing past the machine's budget. DuckDB allows one writer process per file, so
connections are short-lived. The app never opens this file: it reads published snapshots.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

DEFAULT_MEMORY_LIMIT = "4GB"


def connect(
    path: str | Path,
    *,
    read_only: bool = False,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse at ``path`` (created with its folder when writable and absent)."""
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"No warehouse at {path}.")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    # Set after opening, not as open-time config: DuckDB refuses a second in-process connection to
    # one file whose open-time config differs, and the settings apply to the whole database anyway.
    con.execute(f"SET memory_limit = '{memory_limit}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con
