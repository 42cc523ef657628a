"""The scores' settings (config/scoring.yml): horizon, retraining cadence, gate, tiers, benefits, actions.

Plain models only: the file is read by the domain package (``crm.settings.load_scoring_config``),
so models_ml stays free of files and environment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TIERS = ("Bronze", "Silver", "Gold", "Platinum")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bands(_Strict):
    medium_from: float = 0.35
    high_from: float = 0.6

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if not 0 < self.medium_from < self.high_from < 1:
            raise ValueError("bands: need 0 < medium_from < high_from < 1")
        return self


class ChurnModelSettings(_Strict):
    max_iter: int = Field(150, ge=1)
    learning_rate: float = Field(0.1, gt=0)
    max_leaf_nodes: int = Field(31, ge=2)
    min_samples_leaf: int = Field(40, ge=1)
    l2_regularization: float = Field(1.0, ge=0)
    max_training_rows: int = Field(150_000, ge=1_000)
    features: list[str] | None = None  # default: every feature of models_ml.features


class ChurnSettings(_Strict):
    horizon_days: int = Field(90, ge=7, le=365)
    bands: Bands = Bands()
    model: ChurnModelSettings = ChurnModelSettings()


class RetrainSettings(_Strict):
    cadence_days: int = Field(7, ge=0)


class GateSettings(_Strict):
    max_roc_auc_drop: float = Field(0.02, ge=0)
    max_brier_rise: float = Field(0.01, ge=0)


class DriftSettings(_Strict):
    psi_warn: float = Field(0.25, gt=0)
    features: list[str] = Field(default_factory=lambda: ["recency_days", "orders_365d", "churn_probability"])


class ValueSettings(_Strict):
    # clv_12m: "supervised_correction" = BG/NBD x Gamma-Gamma times a correction learned on the past
    # year (models_ml.forecast; falls back to plain BG/NBD when the history is shorter); "bgnbd" = plain.
    forecast_method: Literal["bgnbd", "supervised_correction"] = "supervised_correction"


class LoyaltySettings(_Strict):
    weights: dict[Literal["value", "engagement", "satisfaction"], float] = Field(
        default_factory=lambda: {"value": 0.5, "engagement": 0.3, "satisfaction": 0.2}
    )
    tiers: dict[Literal["Silver", "Gold", "Platinum"], float] = Field(
        default_factory=lambda: {"Silver": 40, "Gold": 65, "Platinum": 85}
    )
    hysteresis: float = Field(4, ge=0, le=20)

    @model_validator(mode="after")
    def _valid(self) -> LoyaltySettings:
        if set(self.tiers) != {"Silver", "Gold", "Platinum"}:
            raise ValueError("loyalty.tiers: give the lowest score of Silver, Gold and Platinum")
        bounds = [self.tiers[t] for t in TIERS[1:]]
        if not (0 < bounds[0] < bounds[1] < bounds[2] < 100):
            raise ValueError(f"loyalty.tiers: need 0 < Silver < Gold < Platinum < 100, got {bounds}")
        if sum(self.weights.values()) <= 0 or min(self.weights.values()) < 0:
            raise ValueError("loyalty.weights: non-negative, not all zero")
        return self

    def lower_bounds(self) -> list[float]:
        return [0.0] + [float(self.tiers[t]) for t in TIERS[1:]]


class TierBenefits(_Strict):
    discount_pct: float = Field(0, ge=0, le=100)
    payment_deferral_days: int = Field(0, ge=0)
    free_shipping: bool = False
    priority_support: bool = False


class BenefitSettings(_Strict):
    shipping_cost_per_order: float = Field(6.0, ge=0)
    priority_support_cost_per_year: float = Field(25.0, ge=0)
    cost_of_capital_annual: float = Field(0.08, ge=0)
    tiers: dict[Literal["Bronze", "Silver", "Gold", "Platinum"], TierBenefits]

    @model_validator(mode="after")
    def _every_tier(self) -> BenefitSettings:
        missing = [t for t in TIERS if t not in self.tiers]
        if missing:
            raise ValueError(f"benefits.tiers: missing {missing}")
        return self


class ActionRule(_Strict):
    action: str
    priority: int = Field(ge=1)
    when: dict[str, str | float | bool | list[str]] = Field(default_factory=dict)
    value_at_stake: Literal["risk", "growth"] = "risk"
    uplift: float = Field(0.1, ge=0)


class ActionSettings(_Strict):
    rules: list[ActionRule]

    @model_validator(mode="after")
    def _catch_all(self) -> ActionSettings:
        if not self.rules or self.rules[-1].when:
            raise ValueError("actions.rules: the last rule must have an empty `when` so every customer gets an action")
        return self


class ScoringConfig(_Strict):
    churn: ChurnSettings = ChurnSettings()
    retrain: RetrainSettings = RetrainSettings()
    gate: GateSettings = GateSettings()
    drift: DriftSettings = DriftSettings()
    value: ValueSettings = ValueSettings()
    loyalty: LoyaltySettings = LoyaltySettings()
    benefits: BenefitSettings
    actions: ActionSettings
