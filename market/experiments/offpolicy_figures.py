"""The figures of off-policy evaluation: each estimator's total over the units with its 95%
interval, one run's evaluation, and several runs pooled (`market.experiments.offpolicy`
computes them).

Intervals are normal approximations on a sum of per-unit contributions: the total's variance
is n × their sample variance (units independent); SNIPS's is the delta method's. Pooled runs
(independent seeds) are estimated again over all their units as one sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ESTIMATORS = ("dm", "ips", "snips", "dr")
#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054
NO_OVERLAP = ("no logged bid falls where the target bids (every weight is 0): widen "
              "--bandwidth, or log with a wider explore range")


@dataclass(frozen=True, slots=True)
class Estimate:
    """One estimator's figure: a total over the units (USD) with its 95% interval, or why it
    is not available."""

    estimator: str
    total_usd: float = math.nan
    low_usd: float = math.nan
    high_usd: float = math.nan
    per_order_usd: float = math.nan
    variance: float = math.nan  # of the total (USD²), for pooling runs
    available: bool = True
    reason: str = ""

    def covers(self, value: float) -> bool | None:
        if not self.available or math.isnan(value):
            return None
        return bool(self.low_usd <= value <= self.high_usd)


def total_interval(estimator: str, contributions: np.ndarray) -> Estimate:
    """The sum of per-unit `contributions` with a 95% normal interval: the total's variance
    is n × the contributions' sample variance (units independent)."""
    n = contributions.size
    total = float(contributions.sum())
    variance = float(n * contributions.var(ddof=1)) if n > 1 else 0.0
    half = Z95 * math.sqrt(variance)
    return Estimate(estimator, total, total - half, total + half, total / n if n else math.nan,
                    variance)


def self_normalized(weights: np.ndarray, rewards: np.ndarray) -> Estimate:
    """SNIPS: n × Σ w r / Σ w, with a delta-method 95% interval (influence of unit i:
    w_i (r_i − mean) / mean weight)."""
    n = weights.size
    if not n or weights.sum() <= 0:
        return Estimate("snips", available=False, reason=NO_OVERLAP)
    mean = float((weights * rewards).sum() / weights.sum())
    influence = weights * (rewards - mean) / weights.mean()
    variance = float(n * influence.var(ddof=1)) if n > 1 else 0.0
    half = Z95 * math.sqrt(variance)
    total = n * mean
    return Estimate("snips", total, total - half, total + half, mean, variance)


@dataclass(slots=True)
class UnitFigures:
    """Per unit, USD: DM's lease profit under the target, L's realized one, DM's at the
    logged bids; and each unit's IPS weight (None: the logging density is unknown)."""

    dm: np.ndarray
    realized: np.ndarray
    dm_logged: np.ndarray
    weights: np.ndarray | None

    @classmethod
    def joined(cls, parts: list[UnitFigures]) -> UnitFigures:
        """Several runs' units as one sample (runs are independent seeds)."""
        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(part, name) for part in parts])

        known = all(part.weights is not None for part in parts)
        return cls(cat("dm"), cat("realized"), cat("dm_logged"),
                   cat("weights") if known else None)

    def estimates(self, no_density: str) -> dict[str, Estimate]:
        """Each estimator's figure over these units (`no_density`: why IPS, SNIPS and DR are
        not available when the weights are unknown)."""
        if not self.dm.size:
            empty = "no order in the log has a bid of the population"
            return {name: Estimate(name, available=False, reason=empty) for name in ESTIMATORS}
        figures = {"dm": total_interval("dm", self.dm)}
        w = self.weights
        if w is None:
            for name in ("ips", "snips", "dr"):
                figures[name] = Estimate(name, available=False, reason=no_density)
            return figures
        # With no positive weight, 0 ± 0 would claim a certainty IPS does not have.
        figures["ips"] = total_interval("ips", w * self.realized) if (w > 0).any() \
            else Estimate("ips", available=False, reason=NO_OVERLAP)
        figures["snips"] = self_normalized(w, self.realized)
        figures["dr"] = total_interval("dr", self.dm + w * (self.realized - self.dm_logged))
        return {name: figures[name] for name in ESTIMATORS}

    def mean_weight(self) -> float:
        w = self.weights
        return float(w.mean()) if w is not None and w.size else math.nan

    def effective_units(self) -> float:
        """(Σw)² / Σw²: how many units the IPS estimate really rests on."""
        w = self.weights
        if w is None or not (w ** 2).sum() > 0:
            return math.nan
        return float(w.sum() ** 2 / (w ** 2).sum())


@dataclass(slots=True)
class RunEvaluation:
    """Every figure of one run folder's evaluation."""

    run: str
    seed: int
    population: str
    target: str
    logging: str
    units: int
    bidders: int                 # L's bids on those orders
    won_logged: int              # units L won in the log
    won_dm: int                  # units L wins under the target, by DM
    fidelity: float              # share of logged outcomes DM reproduces at the logged bids
    hand_picked: int             # orders L bid on whose winner the tenant picked: left out
    overlap_violations: float    # share of L's bids whose target lies outside the support
    mean_weight: float
    effective_units: float       # (Σw)² / Σw²: how many units IPS really rests on
    job_hours: str               # "rebuilt run" or "lease only" (see offpolicy_jobs)
    capacity: str                # DM's: "as logged" or "less DM's own leases"
    crowded: int                 # target bids DM left out: its own leases held the GPUs
    logged_usd: float            # L's lease profit in the log
    realized_usd: float          # ... in the market re-run with the target (NaN: not run)
    estimates: dict[str, Estimate] = field(default_factory=dict)
    figures: UnitFigures | None = None  # the units' own figures, for pooling

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in (
            "run", "seed", "population", "target", "logging", "units", "bidders", "won_logged",
            "won_dm", "fidelity", "hand_picked", "overlap_violations", "mean_weight",
            "effective_units", "job_hours", "capacity", "crowded", "logged_usd",
            "realized_usd")}
        data["estimates"] = {name: _estimate_dict(e, self.realized_usd)
                             for name, e in self.estimates.items()}
        return _finite(data)


def _estimate_dict(estimate: Estimate, realized: float) -> dict[str, Any]:
    if not estimate.available:
        return {"available": False, "reason": estimate.reason}
    return {"available": True, "estimate_usd": estimate.total_usd,
            "ci_low_usd": estimate.low_usd, "ci_high_usd": estimate.high_usd,
            "per_order_usd": estimate.per_order_usd,
            "covers_realized": estimate.covers(realized),
            "gap_usd": realized - estimate.total_usd if not math.isnan(realized) else None}


def _finite(value: Any) -> Any:
    """NaN as None, recursively (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


@dataclass(slots=True)
class Evaluation:
    """Every run's evaluation and, over several, their pooled figures (totals summed over
    runs, variances added: runs are independent seeds)."""

    runs: list[RunEvaluation]
    pooled: RunEvaluation | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"runs": [run.to_dict() for run in self.runs]}
        if self.pooled is not None:
            data["pooled"] = self.pooled.to_dict()
        return data


def pool_runs(runs: list[RunEvaluation]) -> RunEvaluation:
    """The runs' figures pooled: counts and USD figures summed, shares weighted by units,
    and every estimate made again over all the runs' units as one sample (independent
    seeds): a run whose target never bids where its log did adds its zeros, not a gap."""
    first = runs[0]
    units = sum(r.units for r in runs)

    def weighted(name: str) -> float:
        pairs = [(getattr(r, name), r.units) for r in runs if not math.isnan(getattr(r, name))]
        total = sum(n for _, n in pairs)
        return sum(v * n for v, n in pairs) / total if total else math.nan

    figures = UnitFigures.joined([r.figures for r in runs if r.figures is not None])
    no_density = next((e.reason for r in runs for name, e in r.estimates.items()
                       if name == "dr" and not e.available), "")
    realized = [r.realized_usd for r in runs]
    return RunEvaluation(
        run="pooled", seed=-1, population=first.population, target=first.target,
        logging=first.logging, units=units, bidders=sum(r.bidders for r in runs),
        won_logged=sum(r.won_logged for r in runs), won_dm=sum(r.won_dm for r in runs),
        fidelity=weighted("fidelity"), hand_picked=sum(r.hand_picked for r in runs),
        overlap_violations=weighted("overlap_violations"), mean_weight=figures.mean_weight(),
        effective_units=figures.effective_units(),
        job_hours=first.job_hours if len({r.job_hours for r in runs}) == 1 else "mixed",
        capacity=first.capacity, crowded=sum(r.crowded for r in runs),
        logged_usd=sum(r.logged_usd for r in runs),
        realized_usd=math.nan if any(math.isnan(v) for v in realized) else sum(realized),
        estimates=figures.estimates(no_density), figures=figures)
