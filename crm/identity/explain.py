"""Why records are one customer, in words: the evidence of each link and of each suspected duplicate.

Every record gets ``match_evidence``: the strongest link that holds it in its customer (a rule and
the value it shared, the steward's decision, or the model's match weight with the comparisons that
contributed most). Every suspected duplicate (a pair just under the threshold) gets ``evidence``
in the words a steward uses: "same surname and postcode; first names jon/john similar; birth
dates differ".
"""

from __future__ import annotations

import math

import polars as pl

from crm.identity.matching import COMPARISONS, ComparisonSpec, Model, id_comparison
from crm.identity.profiles import PROFILE_KEY

# The profile column that shows a comparison's values to a person.
SHOWN = {
    "first_name": "first_name_canon",
    "last_name": "last_name_key",
    "birth_date": "dob_key",
    "street": "address_key",
    "house_number": "street_number_key",
    "address_line2": "address2_key",
    "place": "postcode_key",
    "email": "email_match",
    "phone": "phone_match",
}
TOP_CONTRIBUTIONS = 3


def _spec(name: str) -> ComparisonSpec:
    return next((spec for spec in COMPARISONS if spec.name == name), None) or id_comparison(name)


def _levels(model: Model) -> dict[str, dict[int, dict]]:
    """comparison -> gamma -> {label, kind, weight, noun}."""
    out = {}
    for name, levels in model.level_table().items():
        spec = _spec(name)
        kinds = {lvl.label: lvl.kind for lvl in spec.levels}
        out[name] = {
            row["gamma"]: {**row, "kind": kinds.get(row["label"], "differ"), "noun": spec.noun} for row in levels
        }
    return out


def _gammas(model: Model, text: str | None) -> dict[str, int]:
    values = (text or "").split(",")
    return {name: int(v) for name, v in zip(model.comparisons, values, strict=False) if v not in ("", "None")}


def _show(name: str, value) -> str:
    if value is None:
        return "?"
    if name == "birth_date" and len(str(value)) == 8:
        v = str(value)
        return f"{v[:4]}-{v[4:6]}-{v[6:]}"
    return str(value)


def contributions(model: Model, gammas: str | None) -> list[tuple[float, str]]:
    """(weight, level label) of each comparison with something to compare, strongest first."""
    table = _levels(model)
    out = []
    for name, gamma in _gammas(model, gammas).items():
        level = table.get(name, {}).get(gamma)
        if level is not None:
            out.append((level["weight"], level["label"]))
    return sorted(out, key=lambda item: -abs(item[0]))


def _strongest(model: Model, gammas: str | None) -> str:
    """'same surname +7.1, ...': the comparisons that weigh most for a pair with these levels."""
    parts = [f"{label} {w:+.1f}" for w, label in contributions(model, gammas) if w > 0][:TOP_CONTRIBUTIONS]
    return ", ".join(parts) or "no single comparison stands out"


def link_evidence(model: Model, weight: float, probability: float, gammas: str | None, other: str) -> str:
    """'Splink match weight 18.2 (probability 0.999) with <record>: same surname +7.1, ...'."""
    return f"Splink match weight {weight:.1f} (probability {probability:.3f}) with {other}: " + _strongest(
        model, gammas
    )


def plain_evidence(model: Model, gammas: str | None, left: dict, right: dict) -> str:
    """What two profiles agree and disagree on, in words a steward reads."""
    table = _levels(model)
    same, similar, differ = [], [], []
    for name, gamma in _gammas(model, gammas).items():
        level = table.get(name, {}).get(gamma)
        if level is None:
            continue
        column = SHOWN.get(name, name)
        a, b = _show(name, left.get(column)), _show(name, right.get(column))
        if level["kind"] in ("exact", "partial"):
            same.append(level["label"].removeprefix("same "))
        elif level["kind"] == "differ":
            differ.append(f"{level['noun']}s differ")
        elif level["kind"] == "swapped":
            similar.append(level["label"])
        else:
            similar.append(f"{level['label']} ({a}/{b})")
    parts = []
    if same:
        parts.append("same " + (" and ".join(same) if len(same) < 3 else ", ".join(same[:-1]) + " and " + same[-1]))
    parts += similar + differ
    return "; ".join(parts) or "nothing to compare"


def _prob(weight: float, lam: float) -> float:
    return 1.0 / (1.0 + 2.0 ** -(weight + math.log2(lam / (1 - lam))))


EVIDENCE_CHUNK = 100_000


def _link_texts(best: pl.DataFrame, model: Model | None, lam: float, reasons: dict[str | None, str]) -> list[str]:
    """Each record's link, in plain words."""
    ids = {c: best[c].to_list() for c in best.columns if c.startswith("id_")}
    texts = []
    columns = ("rule", "other_key", "match_weight", "weight", "gammas", "email", "phone_e164")
    for i, (rule, other, match_weight, weight, gammas, email, phone) in enumerate(
        zip(*(best[c].to_list() for c in columns), strict=True)
    ):
        if rule == "probabilistic" and model is not None:
            w = match_weight if match_weight is not None else weight
            if gammas not in reasons:
                reasons[gammas] = _strongest(model, gammas)
            texts.append(
                f"Splink match weight {w:.1f} (probability {_prob(w, lam):.3f}) with {other}: {reasons[gammas]}"
            )
        elif rule == "email":
            texts.append(f"same email {email} as {other}")
        elif rule == "phone":
            texts.append(f"same phone {phone} (and no other surname) as {other}")
        elif rule.startswith("external_id:"):
            kind = rule.split(":", 1)[1]
            value = ids["id_" + kind][i] if "id_" + kind in ids else None
            texts.append(f"same {kind.replace('_', ' ')} {value} as {other}")
        elif rule == "same_description":
            texts.append(f"the same description of a person as {other} (match weight {weight:.1f} on its own)")
        elif rule == "steward":
            texts.append(f"a steward merged it with {other}")
        else:
            texts.append(f"linked to {other} by {rule}")
    return texts


def attach_evidence(records: pl.DataFrame, edges: pl.DataFrame, scored: pl.DataFrame, matching, lam: float):
    """records + match_rule, match_probability, match_weight, match_evidence (each record's strongest
    link inside its cluster)."""
    labels = records["cluster"]
    key = records["record_key"]
    inside = edges.filter(labels.gather(edges["a"]) == labels.gather(edges["b"])) if edges.height else edges
    ends = pl.concat(
        [
            inside.select(pl.col("a").alias("record_id"), pl.col("b").alias("other"), "priority", "weight", "rule"),
            inside.select(pl.col("b").alias("record_id"), pl.col("a").alias("other"), "priority", "weight", "rule"),
        ]
    )
    best = (
        ends.sort(["record_id", "priority", "weight", "other"], descending=[False, False, True, False])
        .group_by("record_id", maintain_order=True)
        .first()
    )
    pair = pl.min_horizontal("record_id", "other").alias("a"), pl.max_horizontal("record_id", "other").alias("b")
    best = best.with_columns(*pair, key.gather(best["other"]).alias("other_key"))
    prob_pairs = scored.select(
        pl.min_horizontal("a", "b").alias("a"), pl.max_horizontal("a", "b").alias("b"), "match_weight", "gammas"
    ).unique(subset=["a", "b"])
    best = best.join(prob_pairs, on=["a", "b"], how="left")
    values = records.select("record_id", "email", "phone_e164", *[c for c in records.columns if c.startswith("id_")])
    best = best.join(values, on="record_id", how="left")
    model = matching.model
    # the strongest comparisons of a pair depend on its levels alone: worked out once per set of levels
    reasons: dict[str | None, str] = {}
    # written a slice of links at a time: a million customers' links as Python values would take GBs
    texts = [
        pl.Series("match_evidence", _link_texts(best.slice(start, EVIDENCE_CHUNK), model, lam, reasons), dtype=pl.Utf8)
        for start in range(0, best.height, EVIDENCE_CHUNK)
    ]
    best = best.with_columns(pl.concat(texts) if texts else pl.Series("match_evidence", [], dtype=pl.Utf8))
    prob_max = (
        ends.filter(pl.col("rule") == "probabilistic")
        .group_by("record_id")
        .agg(pl.col("weight").max().alias("w"))
        .with_columns(
            pl.col("w").alias("match_weight"),
            (1.0 / (1.0 + pl.lit(2.0).pow(-(pl.col("w") + (math.log2(lam / (1 - lam)) if lam > 0 else 0.0))))).alias(
                "match_probability"
            ),
        )
        .select("record_id", "match_weight", "match_probability")
    )
    # the new columns only, in the records' order: the company's records are not copied
    found = (
        records.select("record_id")
        .join(
            best.select("record_id", pl.col("rule").alias("match_rule"), "match_evidence"),
            on="record_id",
            how="left",
            maintain_order="left",
        )
        .join(prob_max, on="record_id", how="left", maintain_order="left")
        .select(
            pl.col("match_rule").fill_null("none"),
            pl.col("match_evidence").fill_null(pl.lit("no other record of this person was found")),
            "match_weight",
            "match_probability",
        )
    )
    return records.with_columns(found.get_columns())


SUSPECT_SCHEMA = {
    "record_key_l": pl.Utf8,
    "record_key_r": pl.Utf8,
    "customer_id_l": pl.Utf8,
    "customer_id_r": pl.Utf8,
    "match_probability": pl.Float64,
    "match_weight": pl.Float64,
    "evidence": pl.Utf8,
}


def suspected_duplicates(suspected: pl.DataFrame, matching, key_of: pl.DataFrame) -> pl.DataFrame:
    """The review table: each pair under the threshold with both records, customers and evidence."""
    if suspected.height == 0 or matching.model is None:
        return pl.DataFrame(schema=SUSPECT_SCHEMA)
    shown = pl.concat([suspected["profile_key_l"], suspected["profile_key_r"]]).unique()
    profiles = {
        row[PROFILE_KEY]: row
        for row in matching.profiles.filter(pl.col(PROFILE_KEY).is_in(shown.implode())).iter_rows(named=True)
    }
    rows = suspected.join(
        key_of.rename({"record_id": "a", "record_key": "record_key_l", "customer_id": "customer_id_l"}), on="a"
    )
    rows = rows.join(
        key_of.rename({"record_id": "b", "record_key": "record_key_r", "customer_id": "customer_id_r"}), on="b"
    )
    evidence = [
        plain_evidence(matching.model, g, profiles.get(pl_, {}), profiles.get(pr, {}))
        for g, pl_, pr in rows.select("gammas", "profile_key_l", "profile_key_r").iter_rows()
    ]
    return (
        rows.with_columns(pl.Series("evidence", evidence, dtype=pl.Utf8))
        .select(list(SUSPECT_SCHEMA))
        .cast(SUSPECT_SCHEMA)
        .sort("match_probability", descending=True)
    )
