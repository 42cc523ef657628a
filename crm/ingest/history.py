"""The first day of the history: declared in the config, or ``auto``: whatever the sources hold.

Ingestion is not partitioned by day (docs/sources.md, "How a build reads"), so the history's
length costs nothing by itself: ``auto`` simply sets no lower bound, and every row a source holds
is read once. An explicit ``history_start`` is a filter: rows dated before it are counted and
reported (``ops.ingest_batches.rows_outside``, `crm check`, `crm audit`), never loaded silently,
and a source whose rows all lie before it fails its step with a message that names the dates.
"""

from __future__ import annotations

from datetime import date

from crm.settings import Settings


def history_start(settings: Settings) -> date | None:
    """The declared first day, or None for ``auto`` (everything the sources hold)."""
    return None if settings.history_start == "auto" else settings.history_start
