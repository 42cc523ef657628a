"""Great Expectations suites for each ingested batch, validated on frames (GE's SQL path breaks on DuckDB).

Each suite is built from the canonical entity, so a new column or rule needs no second edit here.
Expectations carry a severity on purpose: ``critical`` ones (schema, keys present, accepted
values, ranges) block everything downstream; ``warning`` ones (key uniqueness inside a batch,
which at-least-once sources legitimately break) only report.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from crm.ingest.entities import Entity
from crm.security.redaction import safe_examples

# Above this many rows a batch is validated on a seeded random sample: the row rules in
# validate.py already checked every row; the suite guards against those rules being wrong.
MAX_VALIDATED_ROWS = 500_000


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    severity: str  # critical | warning
    success: bool
    unexpected_count: int
    examples: list


@lru_cache(maxsize=1)
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("ingest")
        .add_dataframe_asset("batch")
        .add_batch_definition_whole_dataframe("whole_batch")
    )
    return context, batch_definition


def build_suite(entity: Entity):
    import great_expectations as gx

    expectations = gx.expectations
    suite = gx.ExpectationSuite(name=f"raw_{entity.name}")
    suite.add_expectation(
        expectations.ExpectTableColumnsToMatchSet(
            column_set=entity.column_names, exact_match=False, severity="critical"
        )
    )
    for column in entity.columns:
        if column.required:
            suite.add_expectation(expectations.ExpectColumnValuesToNotBeNull(column=column.name, severity="critical"))
        if column.accepted_values:
            allowed = list(column.accepted_values) + [v.lower() for v in column.accepted_values]
            allowed += [v.upper() for v in column.accepted_values] + [v.title() for v in column.accepted_values]
            suite.add_expectation(
                expectations.ExpectColumnValuesToBeInSet(
                    column=column.name, value_set=sorted(set(allowed)), severity="critical"
                )
            )
        if column.min_value is not None or column.max_value is not None:
            suite.add_expectation(
                expectations.ExpectColumnValuesToBeBetween(
                    column=column.name, min_value=column.min_value, max_value=column.max_value, severity="critical"
                )
            )
    if not entity.key_repeats_in_raw and len(entity.key) == 1:
        suite.add_expectation(expectations.ExpectColumnValuesToBeUnique(column=entity.key[0], severity="warning"))
    elif len(entity.key) == 1:
        # Versions of a changed row repeat the key across days; inside one source day they should not.
        suite.add_expectation(
            expectations.ExpectCompoundColumnsToBeUnique(
                column_list=[entity.key[0], "_source_location"], severity="warning"
            )
        )
    return suite


def validate_frame(entity: Entity, frame: pd.DataFrame) -> list[ExpectationOutcome]:
    context, batch_definition = _context()
    name = f"raw_{entity.name}"
    try:
        suite = context.suites.get(name)
    except Exception:  # noqa: BLE001 - GE raises its own not-found type, which moves between releases
        suite = context.suites.add(build_suite(entity))
    if len(frame) > MAX_VALIDATED_ROWS:
        frame = frame.sample(n=MAX_VALIDATED_ROWS, random_state=0)
    result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    outcomes = []
    for item in result.results:
        config = item.expectation_config
        column = config.kwargs.get("column") or ",".join(config.kwargs.get("column_list", []) or []) or None
        outcomes.append(
            ExpectationOutcome(
                expectation=config.type,
                column=column,
                severity=str(getattr(config, "severity", "critical")).split(".")[-1].lower(),
                success=bool(item.success),
                unexpected_count=int(item.result.get("unexpected_count") or 0),
                # Never a person's values: these examples reach Dagster's event log and the snapshot.
                examples=safe_examples(column, (item.result.get("partial_unexpected_list") or [])[:5]),
            )
        )
    return outcomes
