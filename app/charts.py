"""The dashboard's charts, in Vega-Lite through Altair (what Streamlit draws natively).

Why Altair and not plotly: in headless Chromium on this machine a page with four plotly charts took
about five seconds longer to finish drawing than the same page without charts; the same four charts in
Vega-Lite took well under one (benchmarks/bench_browser.py, docs/benchmarks.md).

Conventions every chart follows: human axis titles, money with £, shares in %, one colour per loyalty
tier and churn band everywhere, and a partial month drawn lighter with a dashed outline (bars) or a
hollow point on a dotted line (lines), never like a full month.
"""

from __future__ import annotations

import altair as alt
import polars as pl

TIER_ORDER = ["Bronze", "Silver", "Gold", "Platinum"]
TIER_COLOURS = {"Bronze": "#a5672e", "Silver": "#9aa4ad", "Gold": "#d4a62a", "Platinum": "#4d6b7c"}
BAND_ORDER = ["low", "medium", "high"]
BAND_COLOURS = {"low": "#2e7d32", "medium": "#f0a020", "high": "#c62828"}
MAIN = "#1f6fb2"
LIGHT = "#a9c8e6"
MONEY_AXIS = "'£' + format(datum.value, '~s')"
SHARE_AXIS = "format(datum.value, '~%')"

_FORMATS = {"money": ",.0f", "count": ",.0f", "share": ".1%", "hours": ",.1f", "number": ",.2f"}


def _axis(kind: str, title: str | None) -> alt.Axis:
    expression = {"money": MONEY_AXIS, "share": SHARE_AXIS}.get(kind)
    return alt.Axis(title=title, labelExpr=expression) if expression else alt.Axis(title=title, format="~s")


def _title(text: str) -> alt.TitleParams:
    return alt.TitleParams(text, anchor="start", fontSize=15)


def _tooltip(field: str, title: str, kind: str) -> alt.Tooltip:
    if kind == "money":
        title = f"{title} (£)"
    return alt.Tooltip(field, title=title, format=_FORMATS.get(kind, ",.0f"))


def monthly(frame: pl.DataFrame, value: str, *, title: str, axis: str, kind: str = "count", line: bool = False):
    """One value per month; months the data covers only in part are drawn apart (lighter, outlined)."""
    data = frame.select(
        pl.col("month"),
        pl.col(value).alias("value"),
        pl.when(pl.col("is_partial")).then(pl.lit("partial month")).otherwise(pl.lit("full month")).alias("period"),
        pl.col("covered_from").dt.strftime("%d %b").alias("from"),
        pl.col("covered_to").dt.strftime("%d %b").alias("to"),
    )
    base = alt.Chart(data).encode(
        x=alt.X("yearmonth(month):T", title=None, axis=alt.Axis(format="%b %Y", labelAngle=0, tickCount="month")),
        y=alt.Y("value:Q", axis=_axis(kind, axis)),
        tooltip=[
            alt.Tooltip("yearmonth(month):T", title="month", format="%B %Y"),
            _tooltip("value", axis, kind),
            alt.Tooltip("period:N", title="data"),
            alt.Tooltip("from:N", title="covers from"),
            alt.Tooltip("to:N", title="to"),
        ],
    )
    legend = alt.Legend(title=None, orient="bottom")
    if line:
        full = base.transform_filter("datum.period == 'full month'").mark_line(color=MAIN, point=True)
        # The partial point joins its neighbour with a dotted line, so the drop does not read as real.
        bridge = (
            base.transform_window(order="rank()", sort=[alt.SortField("month", order="descending")])
            .transform_filter("datum.order <= 2")
            .mark_line(color=LIGHT, strokeDash=[3, 3])
        )
        points = base.mark_point(size=70, filled=True).encode(
            shape=alt.Shape(
                "period:N",
                scale=alt.Scale(domain=["full month", "partial month"], range=["circle", "circle"]),
                legend=legend,
            ),
            fill=alt.Fill(
                "period:N",
                scale=alt.Scale(domain=["full month", "partial month"], range=[MAIN, "white"]),
                legend=legend,
            ),
            stroke=alt.value(MAIN),
        )
        has_partial = bool(frame["is_partial"].tail(1).any()) if frame.height else False
        chart = (full + bridge + points) if has_partial else (full + points)
    else:
        chart = base.mark_bar().encode(
            color=alt.Color(
                "period:N", scale=alt.Scale(domain=["full month", "partial month"], range=[MAIN, LIGHT]), legend=legend
            ),
            strokeDash=alt.condition("datum.period == 'partial month'", alt.value([4, 3]), alt.value([1, 0])),
            stroke=alt.value(MAIN),
            strokeWidth=alt.condition("datum.period == 'partial month'", alt.value(1.5), alt.value(0)),
        )
    return chart.properties(title=_title(title), height=300)


def hbar(
    frame: pl.DataFrame,
    *,
    x: str,
    y: str,
    title: str,
    x_title: str,
    kind: str = "count",
    color: str | None = None,
    colors: dict[str, str] | None = None,
    tooltip: list | None = None,
    sort: str | list = "-x",
    height: int | None = None,
):
    """Horizontal bars, one label per bar however many (the axis never skips every other one)."""
    encoding = {
        "x": alt.X(f"{x}:Q", axis=_axis(kind, x_title)),
        "y": alt.Y(f"{y}:N", sort=sort, title=None, axis=alt.Axis(labelLimit=320, labelOverlap=False)),
        "tooltip": tooltip or [alt.Tooltip(f"{y}:N", title=" "), _tooltip(x, x_title, kind)],
    }
    if color:
        scale = alt.Scale(domain=list(colors), range=list(colors.values())) if colors else alt.Undefined
        encoding["color"] = alt.Color(f"{color}:N", scale=scale, legend=alt.Legend(title=None, orient="bottom"))
    mark = alt.Chart(frame).mark_bar(color=MAIN if not color else alt.Undefined)
    return mark.encode(**encoding).properties(title=_title(title), height=height or max(160, 26 * frame[y].n_unique()))


def vbar(
    frame: pl.DataFrame,
    *,
    x: str,
    y: str,
    title: str,
    y_title: str,
    x_title: str | None = None,
    kind: str = "count",
    colors: dict[str, str] | None = None,
    order: list[str] | None = None,
    tooltip: list | None = None,
    label: bool = False,
    height: int = 300,
):
    """Vertical bars over categories; ``colors`` gives each category its colour (tiers, bands)."""
    encoding = {
        "x": alt.X(
            f"{x}:N",
            sort=order or "-y",
            title=x_title,
            axis=alt.Axis(labelAngle=0 if frame.height <= 6 else -30, labelLimit=140, labelOverlap=False),
        ),
        "y": alt.Y(f"{y}:Q", axis=_axis(kind, y_title)),
        "tooltip": tooltip or [alt.Tooltip(f"{x}:N", title=x_title or " "), _tooltip(y, y_title, kind)],
    }
    if colors:
        encoding["color"] = alt.Color(
            f"{x}:N", scale=alt.Scale(domain=list(colors), range=list(colors.values())), legend=None
        )
    bars = alt.Chart(frame).mark_bar(color=MAIN if not colors else alt.Undefined).encode(**encoding)
    if label:
        text = f"'£' + format(datum['{y}'], '.3~s')" if kind == "money" else f"format(datum['{y}'], ',.0f')"
        labels = (
            alt.Chart(frame)
            .transform_calculate(label=text)
            .mark_text(dy=-7)
            .encode(x=encoding["x"], y=encoding["y"], text="label:N")
        )
        bars = bars + labels
    return bars.properties(title=_title(title), height=height)


def histogram(
    frame: pl.DataFrame,
    *,
    start: str,
    end: str,
    count: str,
    title: str,
    x_title: str,
    kind: str = "count",
    color: str | None = None,
    colors: dict[str, str] | None = None,
):
    """Bars over value ranges [start, end) on a linear axis; ``color`` splits them (stacked only by category)."""
    encoding = {
        "x": alt.X(f"{start}:Q", bin="binned", axis=_axis(kind, x_title)),
        "x2": f"{end}:Q",
        "y": alt.Y(f"sum({count}):Q", title="customers", stack=True),
        "tooltip": [
            _tooltip(start, "from", kind),
            _tooltip(end, "to", kind),
            alt.Tooltip(f"sum({count}):Q", title="customers", format=",.0f"),
        ],
    }
    if color:
        scale = alt.Scale(domain=list(colors), range=list(colors.values())) if colors else alt.Undefined
        encoding["color"] = alt.Color(f"{color}:N", scale=scale, legend=alt.Legend(title=None, orient="bottom"))
        encoding["tooltip"].insert(0, alt.Tooltip(f"{color}:N", title=" "))
    return (
        alt.Chart(frame)
        .mark_bar(color=MAIN if not color else alt.Undefined, binSpacing=1)
        .encode(**encoding)
        .properties(title=_title(title), height=300)
    )


def heatmap(
    frame: pl.DataFrame,
    *,
    x: str,
    y: str,
    value: str,
    text: str,
    title: str | None,
    x_title: str,
    y_title: str,
    x_order: list | None = None,
    y_order: list | None = None,
    scheme: str = "blues",
    share: bool = False,
    tooltip: list | None = None,
    height: int | None = None,
    x_top: bool = False,
):
    """Cells coloured by ``value`` with ``text`` written in them; a null ``value`` leaves a cell uncoloured."""
    rows = len(y_order) if y_order else frame[y].n_unique()
    base = alt.Chart(frame).encode(
        x=alt.X(
            f"{x}:O",
            sort=x_order,
            title=x_title,
            axis=alt.Axis(
                labelAngle=-30 if x_top else 0, orient="top" if x_top else "bottom", labelLimit=140, labelOverlap=False
            ),
        ),
        y=alt.Y(f"{y}:O", sort=y_order, title=y_title, axis=alt.Axis(labelLimit=160, labelOverlap=False)),
    )
    cells = base.mark_rect(stroke="white", strokeWidth=1).encode(
        color=alt.Color(
            f"{value}:Q",
            scale=alt.Scale(scheme=scheme, domain=[0, 1] if share else alt.Undefined),
            legend=alt.Legend(title=None, format=".0%" if share else "~s", orient="right"),
        ),
        tooltip=tooltip or alt.Undefined,
    )
    # Dark text on light cells, white on dark ones.
    threshold = 0.55 if share else None
    labels = base.mark_text(fontSize=11).encode(
        text=alt.Text(f"{text}:N"),
        color=alt.condition(f"datum['{value}'] > {threshold}", alt.value("white"), alt.value("#262730"))
        if threshold is not None
        else alt.value("#262730"),
        tooltip=tooltip or alt.Undefined,
    )
    chart = (cells + labels).properties(height=height or max(220, 26 * rows))
    return chart.properties(title=_title(title)) if title else chart


def calibration(frame: pl.DataFrame, *, title: str):
    """Predicted against observed churn per tenth of customers, and the diagonal of a perfect model."""
    diagonal = (
        alt.Chart(pl.DataFrame({"p": [0.0, 1.0]})).mark_line(color="grey", strokeDash=[5, 4]).encode(x="p:Q", y="p:Q")
    )
    model = (
        alt.Chart(frame)
        .mark_line(color=MAIN, point=True)
        .encode(
            x=alt.X(
                "mean_predicted:Q",
                axis=alt.Axis(title="predicted churn, per tenth of customers", format=".0%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            y=alt.Y(
                "observed_rate:Q",
                axis=alt.Axis(title="share that churned", format=".0%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            tooltip=[
                alt.Tooltip("decile:Q", title="tenth"),
                alt.Tooltip("mean_predicted:Q", title="predicted", format=".1%"),
                alt.Tooltip("observed_rate:Q", title="observed", format=".1%"),
                alt.Tooltip("customers:Q", title="customers", format=",.0f"),
            ],
        )
    )
    return (diagonal + model).properties(title=_title(title), height=300)


def funnel(frame: pl.DataFrame, *, step: str, value: str, title: str):
    """Customers at each step of a campaign, in the order of the steps, with the count on each bar."""
    order = frame[step].to_list()
    base = alt.Chart(frame).encode(
        y=alt.Y(f"{step}:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False)),
        x=alt.X(f"{value}:Q", title="customers", axis=alt.Axis(format="~s")),
        tooltip=[alt.Tooltip(f"{step}:N", title="step"), alt.Tooltip(f"{value}:Q", title="customers", format=",.0f")],
    )
    bars = base.mark_bar(color=MAIN)
    labels = base.mark_text(align="left", dx=4).encode(text=alt.Text(f"{value}:Q", format=",.0f"))
    return (bars + labels).properties(title=_title(title), height=220)
