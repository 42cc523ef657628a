"""Numbers for people: 1.2M rather than 1234567.891, 12.3% rather than 0.12345."""

from __future__ import annotations

import math

CURRENCY = "£"


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def count(value) -> str:
    return "–" if _is_missing(value) else f"{round(value):,}"


def money(value) -> str:
    """£950, £12.3k, £1.2M, £3.4bn (a minus sign in front of the currency when negative)."""
    if _is_missing(value):
        return "–"
    sign = "-" if value < 0 else ""
    value = abs(float(value))
    for limit, suffix in ((1e9, "bn"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{sign}{CURRENCY}{value / limit:,.1f}{suffix}"
    return f"{sign}{CURRENCY}{value:,.0f}"


def share(value, digits: int = 1) -> str:
    return "–" if _is_missing(value) else f"{value * 100:.{digits}f}%"


def change(value) -> str | None:
    """A relative change as st.metric's delta wants it (None hides the delta)."""
    return None if _is_missing(value) else f"{value * 100:+.1f}%"


def kpi_value(value, kind: str) -> str:
    return {"count": count, "money": money, "share": share}[kind](value)
