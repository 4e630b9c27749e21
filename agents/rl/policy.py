"""Learned bid policies: a linear markup policy over a few scale-free features, saved as a
JSON file, and the strategy `learned` that bids with one wherever a strategy bids (offline
markets, tournaments, remote bots). numpy only: no Gymnasium on this path.

**The policy** (`LinearPolicy`): for each GPU model m of the catalog,

    markup_m = clip(θ · x_m, markup_low, markup_high)

with the features x_m of `FEATURES`, read from an observation (`agents.rl.features.observe`)
and free of units (a price is divided by the model's own cost), so that one θ serves every
model and every market size:

    bias              1
    clearing_markup   mean published lease price of m / own cost of m − 1 (0: none yet)
    utilization       own GPUs of m busy / own GPUs of m (0: none)
    order_headroom    the order's max price per GPU-hour / own cost of m − 1, when the order
                      accepts m (0: no order, or it does not accept m)

The two ratios are clipped to [−1, `RATIO_CAP`]: one odd order (a tenant who would pay a
hundred times cost) must not swing θ · x across the whole markup range. A model the
population has no GPU of gets the markup of x = [1, ratio, 0, 0]: it is never bid with.

**The file** (`save_policy`, `load_policy`): JSON with a format tag and version, the
features' names, θ, the markup range, the decision mode the policy was trained in and its
interval, and how it was trained (scenario, population, seeds, iterations). Loading checks
every field and raises `PolicyError`, one line naming the file and the field.

**The strategy** `learned{path="policy.json"}` (`Learned`): prices an order as the policy's
markups price it (`BidSpace.bids`, as the environments do). A policy trained with
`decision="order"` decides once per order, on the observation with that order; one trained
with `decision="interval"` decides at the first order it prices in each interval of
`interval_s` simulated seconds (counted from the start), on an observation without an order,
and keeps those markups until the next interval. Both are where the environments
(`agents.rl.session`) hand the decision out, so the strategy runs the market the policy was
trained in, bid for bid.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from agents.rl.features import DECISIONS, BidSpace, observe
from market.strategy import OrderView

FORMAT = "gpumarket.policy"
"""The format tag of a policy file."""
VERSION = 1
"""The version of the format this module writes and reads."""
KIND = "linear"

FEATURES: tuple[str, ...] = ("bias", "clearing_markup", "utilization", "order_headroom")
"""The names of the features x_m, in θ's order (the module docstring defines each)."""

RATIO_CAP = 10.0
"""Upper clip of the two price ratios (clearing_markup, order_headroom)."""



class PolicyError(ValueError):
    """A policy file or policy field is invalid; the message is one line naming it."""


def features(obs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The features x_m of every GPU model of `obs` (an `observe` dict): an array
    [models, len(FEATURES)] (the module docstring defines each column)."""
    cost = np.asarray(obs["cost_usd_per_gpu_hour"], dtype=float)
    clearing = np.asarray(obs["clearing_usd_per_gpu_hour"], dtype=float)
    gpus = np.asarray(obs["gpus"], dtype=float)
    free = np.asarray(obs["free_gpus"], dtype=float)
    accepts = np.asarray(obs["order_models"], dtype=float) > 0
    order_max = float(np.asarray(obs["order_max_usd_per_gpu_hour"]).reshape(-1)[0])
    priced = cost > 0
    clearing_markup = _ratio_less_one(clearing, cost, priced & (clearing > 0))
    utilization = np.divide(gpus - free, gpus, out=np.zeros_like(gpus), where=gpus > 0)
    headroom = _ratio_less_one(np.full_like(cost, order_max), cost,
                               priced & accepts & (order_max > 0))
    return np.column_stack([np.ones_like(cost), clearing_markup, utilization, headroom])


def _ratio_less_one(top: np.ndarray, bottom: np.ndarray, where: np.ndarray) -> np.ndarray:
    ratio = np.divide(top, bottom, out=np.ones_like(top), where=where) - 1.0
    return np.clip(ratio, -1.0, RATIO_CAP)


@dataclass(frozen=True)
class LinearPolicy:
    """markup_m = clip(θ · x_m, markup_low, markup_high) (the module docstring).

    `decision` and `interval_s` say how the policy was trained to decide (per order, or per
    interval of `interval_s` simulated seconds); `training` says how it was trained (free
    form, saved with it)."""

    theta: tuple[float, ...]
    markup_low: float = 0.0
    markup_high: float = 3.0
    decision: str = "order"
    interval_s: float = 3600.0
    training: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        theta = tuple(float(x) for x in self.theta)
        object.__setattr__(self, "theta", theta)
        if len(theta) != len(FEATURES) or not all(math.isfinite(x) for x in theta):
            raise PolicyError(f"theta: expected {len(FEATURES)} finite numbers (one per "
                              f"feature: {', '.join(FEATURES)}), got {list(self.theta)}")
        if not -1.0 < self.markup_low < self.markup_high < math.inf:
            raise PolicyError(f"markup range: expected -1 < markup_low < markup_high, got "
                              f"[{self.markup_low}, {self.markup_high}]")
        if self.decision not in DECISIONS:
            raise PolicyError(f"decision: expected one of {', '.join(DECISIONS)}, got "
                              f"{self.decision!r}")
        if not 0 < self.interval_s < math.inf:
            raise PolicyError(f"interval_s: expected a number of seconds > 0, got "
                              f"{self.interval_s}")

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The markup per GPU model for observation `obs`: a `BidSpace` "markup" action
        (float32, one per model of the catalog)."""
        markups = features(obs) @ np.asarray(self.theta)
        return np.clip(markups, self.markup_low, self.markup_high).astype(np.float32)

    def space(self, gpu_models: tuple[str, ...]) -> BidSpace:
        """The `BidSpace` this policy's actions live in, for a catalog of `gpu_models`."""
        return BidSpace(gpu_models, "markup", self.markup_low, self.markup_high)

    def to_dict(self) -> dict[str, Any]:
        """The policy file's content (the module docstring)."""
        return {"format": FORMAT, "version": VERSION, "kind": KIND,
                "features": list(FEATURES), "theta": list(self.theta),
                "markup_low": self.markup_low, "markup_high": self.markup_high,
                "decision": self.decision, "interval_s": self.interval_s,
                "training": dict(self.training)}


def save_policy(policy: LinearPolicy, path: str | Path) -> Path:
    """Write `policy` to `path` as JSON (the same policy writes the same bytes)."""
    target = Path(path)
    target.write_text(json.dumps(policy.to_dict(), indent=2, allow_nan=False) + "\n",
                      encoding="utf-8")
    return target


def load_policy(path: str | Path) -> LinearPolicy:
    """Read a policy file. Raises PolicyError, one line naming the file and what is wrong."""
    where = f"policy file {str(path)!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise PolicyError(f"{where}: cannot read it ({reason})") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError) as error:
        raise PolicyError(f"{where}: not a JSON policy ({error})") from None
    try:
        return policy_from_dict(data)
    except PolicyError as error:
        raise PolicyError(f"{where}: {error}") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def policy_from_dict(data: Any) -> LinearPolicy:
    """A policy from a policy file's content. Raises PolicyError naming the field."""
    if not isinstance(data, dict):
        raise PolicyError(f"expected a JSON object with format {FORMAT!r}, got "
                          f"{type(data).__name__}")
    if data.get("format") != FORMAT:
        raise PolicyError(f"format: expected {FORMAT!r}, got {data.get('format')!r}")
    if data.get("version") != VERSION:
        raise PolicyError(f"version: expected {VERSION} (this gpumarket reads version "
                          f"{VERSION}), got {data.get('version')!r}")
    if data.get("kind", KIND) != KIND:
        raise PolicyError(f"kind: expected {KIND!r}, got {data.get('kind')!r}")
    if data.get("features") != list(FEATURES):
        raise PolicyError(f"features: expected {list(FEATURES)}, got {data.get('features')!r}")
    known = {"format", "version", "kind", "features", "theta", "markup_low", "markup_high",
             "decision", "interval_s", "training"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PolicyError(f"{unknown[0]}: not a field of a policy file (fields: "
                          f"{', '.join(sorted(known))})")
    theta = data.get("theta")
    if not isinstance(theta, list) or not all(_is_number(x) for x in theta):
        raise PolicyError(f"theta: expected a list of {len(FEATURES)} numbers, got {theta!r}")
    for name in ("markup_low", "markup_high", "interval_s"):
        if name in data and not _is_number(data[name]):
            raise PolicyError(f"{name}: expected a number, got {data[name]!r}")
    training = data.get("training", {})
    if not isinstance(training, dict):
        raise PolicyError(f"training: expected an object, got {training!r}")
    return LinearPolicy(tuple(theta), float(data.get("markup_low", 0.0)),
                        float(data.get("markup_high", 3.0)), data.get("decision", "order"),
                        float(data.get("interval_s", 3600.0)), training)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Learned:
    """Strategy `learned`: bid as the policy saved at `path` (a `save_policy` file) says.

    Bids are the providers' cost basis × (1 + the policy's markup for their GPU model) ×
    `view.fee_gross_up()` (as `cost_plus` prices; the environment's "markup" action); a bid
    above the order's max price is dropped by the market. Decides per order or per interval
    as the policy was trained (the module docstring)."""

    #: Parameters that name a file on this machine: a scenario from outside (a live market's
    #: client) must not set them, or the server would read a file of its choosing.
    file_params: ClassVar[tuple[str, ...]] = ("path",)

    def __init__(self, path: str) -> None:
        if not isinstance(path, str | Path) or not str(path):
            raise PolicyError(f"path: expected the path of a policy file, got {path!r}")
        self.path = str(path)
        self.policy = load_policy(path)
        self._spaces: dict[tuple[str, ...], BidSpace] = {}
        # Per view (a strategy may price for several populations): what the last decision
        # was taken for (an order id, or an interval's index) and its markups.
        self._decided: dict[int, tuple[int, np.ndarray]] = {}

    def prices(self, order: OrderView, providers: np.ndarray, view: Any) -> np.ndarray:
        """The policy's bids for own `providers` on `order`, USD per GPU-hour."""
        markups = self._markups(order, view)
        models = view.gpu_models
        space = self._spaces.get(models)
        if space is None:
            space = self._spaces[models] = self.policy.space(models)
        return space.bids(markups, providers, view)

    def _markups(self, order: OrderView, view: Any) -> np.ndarray:
        policy = self.policy
        if policy.decision == "order":
            key, seen = order.order_id, order
        else:
            key, seen = int(view.now_s // policy.interval_s), None
        decided = self._decided.get(id(view))
        if decided is not None and decided[0] == key:
            return decided[1]
        markups = policy.act(observe(view, seen))
        self._decided[id(view)] = (key, markups)
        return markups


def constant(markup: float, markup_low: float = 0.0, markup_high: float = 3.0,
             **kwargs: Any) -> LinearPolicy:
    """The policy of one markup for every model and order (θ = [markup, 0, 0, 0]): what
    `cost_plus{markup}` bids, as a policy (a starting point, a test's known answer)."""
    theta = np.zeros(len(FEATURES))
    theta[0] = markup
    return LinearPolicy(tuple(theta), markup_low, markup_high, **kwargs)


def theta_dict(theta: Sequence[float]) -> dict[str, float]:
    """θ by feature name."""
    return {name: float(x) for name, x in zip(FEATURES, theta, strict=True)}
