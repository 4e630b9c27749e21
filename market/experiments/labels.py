"""Names and numbers as people read them: a human label with its unit for every metric key and
swept parameter, and one number formatter for the report page and the terminal table.

Labels are built by pattern, so a metric added tomorrow gets a sensible one: the key's unit
suffix (`_usd`, `_s`, `_micro`, `_usd_per_gpu_hour`, `gpu_hours`) gives the unit, a share (a
rate, efficiency, utilization, participation, savings) is shown in percent, a statistic
(`mean`, `median`, `p90`, ...) becomes a word in front, and the segments before the leaf
(an archetype, a GPU model) qualify it:

>>> metric("welfare.allocative_efficiency").title
'Allocative efficiency (%)'
>>> metric("price_usd_per_gpu_hour.h100.mean").title
'H100 mean price (USD/GPU-h)'
>>> metric("providers.datacenter.short_run_profit_usd").title
'Data center short-run profit (USD)'
>>> metric("time_to_lease_s.median").title
'Median time to lease (min)'
>>> metric("welfare.deadweight_loss_by_cause_usd.unserved").title
'Deadweight loss by cause, unserved (USD)'
>>> parameter("market.take_rate").title, parameter("market.bids_net_of_fee").title
('Take rate (%)', 'Bids net of fee')

Numbers: three significant digits, but a whole number's integer part is never rounded away
(`96,763`, not `96,800`); a mean with its interval is shown to the precision of the interval
(its half-width to two significant digits):

>>> format_number(0.49812), format_number(96763.4), format_number(-0.025)
('0.498', '96,763', '-0.025')
>>> format_interval(0.49812, 0.04619), format_interval(96763.4, 13831.2)
('0.498 ± 0.046', '96,763 ± 13,831')
>>> metric("fill_rate").show(0.49812)
'49.8'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# ----------------------------------------------------------------------------- quantities


@dataclass(frozen=True, slots=True)
class Quantity:
    """What a number measures, as people read it.

    label: the name, capitalized, without the unit ("H100 mean price").
    unit: "USD", "USD/GPU-h", "%", "min", "GPU-h", ... or "" for a count or a pure number.
    scale: shown value = stored value × scale (a share 0..1 is shown in percent, seconds in
        minutes, micro-USD in USD).
    """

    label: str
    unit: str = ""
    scale: float = 1.0

    @property
    def title(self) -> str:
        """"Label (unit)", or the label alone for a unitless number."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def difference_title(self) -> str:
        """The title of a difference of two such numbers: percent becomes percentage points.

        >>> metric("fill_rate").difference_title
        'Δ Fill rate (pp)'
        """
        unit = "pp" if self.unit == "%" else self.unit
        return f"Δ {self.label} ({unit})" if unit else f"Δ {self.label}"

    def show(self, value: float) -> str:
        """One value in this quantity's unit (the unit itself is left to the heading)."""
        return format_number(value * self.scale)


    def show_with_unit(self, value: float) -> str:
        """One value followed by its unit, for a legend or a parameter value ("10%").

        >>> parameter("market.take_rate").show_with_unit(0.1)
        '10%'
        """
        text = self.show(value)
        if self.unit == "%":
            return f"{text}%"
        return f"{text} {self.unit}" if self.unit else text


# Words that are not just the key with spaces: acronyms, brand spellings, hyphenation. Keys
# with "_" replace a run of segment words.
_WORDS = {
    "usd": "USD", "gpu_hours": "GPU-hours", "gpu": "GPU", "gpus": "GPUs", "hhi": "HHI",
    "cv": "CV", "id": "ID",
    "datacenter": "data center", "home_rig": "home rig", "short_run": "short-run",
    "long_run": "long-run", "p90_p10": "p90/p10", "on_demand": "on-demand",
    "hhi_provider_revenue": "provider revenue HHI", "vs_list": "vs hyperscaler list",
    "trainium2": "Trainium2", "a100-80gb": "A100 80GB", "a100-40gb": "A100 40GB",
    "lerner": "Lerner", "potential": "potential welfare", "realized": "realized welfare",
    "rtx4090": "RTX 4090", "rtx3090": "RTX 3090", "mi300x": "MI300X",
}
_PHRASES = sorted((k for k in _WORDS if "_" in k), key=len, reverse=True)

# A statistic as the last segment becomes a word in front of what it summarizes.
_STATS = {"mean": "mean", "median": "median", "p90": "90th percentile",
          "p10": "10th percentile", "min": "minimum", "max": "maximum", "sd": "SD of"}

# (suffix, unit, scale), longest first: the first suffix a segment ends with gives its unit.
_UNITS = (
    ("_usd_per_gpu_hour", "USD/GPU-h", 1.0),
    ("_per_gpu_hour", "per GPU-h", 1.0),
    ("_per_hour", "per hour", 1.0),
    ("_per_day", "per day", 1.0),
    ("gpu_hours", "GPU-h", 1.0),
    ("_usd", "USD", 1.0),
    ("_micro", "USD", 1e-6),  # integer micro-USD inside; people read dollars
    ("_days", "days", 1.0),
    ("_hours", "h", 1.0),
    ("_s", "min", 1 / 60),  # waits in this market are minutes long; seconds hide their size
)

# Keys whose words a pattern would get wrong (Burn-Mint Equilibrium's).
_KNOWN = {
    "market.settlement": Quantity("Settlement"),
    "market.bme.akt_price.volatility_per_year": Quantity("AKT annual volatility", "%", 100.0),
    "market.bme.runway_days": Quantity("ACT runway", "days"),
    "bme.providers.sale_to_settlement": Quantity("Providers' USD at sale per USD at "
                                                 "settlement"),
    "bme.net_supply_change_akt": Quantity("AKT supply change", "AKT"),
    "bme.outstanding_act_usd": Quantity("Outstanding ACT", "USD"),
    "bme.breaker_activations.warning": Quantity("Breakers tripped, warning"),
    "bme.breaker_activations.halt_cr": Quantity("Breakers tripped, halt (CR)"),
    "bme.breaker_activations.halt_oracle": Quantity("Breakers tripped, halt (oracle)"),
}

# A share of a whole (0..1), shown in percent.
_SHARE = re.compile(r"(^|_)(rate|share|fraction|efficiency|utilization|participation|"
                    r"savings_vs_list|savings|cv)$")
_GPU_MODEL = re.compile(r"[a-z]{1,4}\d[a-z0-9-]*")  # h100, l40s, a10, mi300x: in capitals
_GROUPS = {"market", "welfare", "market_power"}  # top-level groups a label does not need
_OWNERS = {"providers": "", "populations": " population"}  # providers.<archetype>.<leaf>


def _words(segment: str) -> str:
    """One key segment in words."""
    if segment in _WORDS:
        return _WORDS[segment]
    if _GPU_MODEL.fullmatch(segment):
        return segment.upper()
    if segment.isdigit():
        return f"[{segment}]"
    text = f"_{segment}_"
    for phrase in _PHRASES:
        text = text.replace(f"_{phrase}_", "_" + _WORDS[phrase].replace(" ", "\0") + "_")
    return " ".join(_WORDS.get(w, w) for w in text.strip("_").split("_") if w).replace(
        "\0", " ")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _unit_of(segment: str) -> tuple[str, str, float] | None:
    """(the segment without its unit suffix, unit, scale) when the segment names a unit."""
    for suffix, unit, scale in _UNITS:
        if segment == suffix.lstrip("_"):
            return "", unit, scale
        if segment.endswith(suffix) and len(segment) > len(suffix):
            return segment[: -len(suffix)].rstrip("_"), unit, scale
    return None


def metric(key: str) -> Quantity:
    """The human label, unit and display scale of a metric key (a dotted runs.parquet column).

    >>> metric("providers.home_rig.utilization").title
    'Home rig utilization (%)'
    >>> metric("flows_micro.take_rate").title
    'Flows, take rate (USD)'
    >>> metric("price_usd_per_gpu_hour.rtx4090.count").title
    'RTX 4090 leases'
    >>> metric("interruptible.on_demand_price_usd_per_gpu_hour.median").title
    'Interruptible median on-demand price (USD/GPU-h)'
    >>> metric("lease_close_reasons.owner").title
    'Lease close reasons, owner'
    """
    if key in _KNOWN:
        return _KNOWN[key]
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "price_usd_per_gpu_hour":
        return _model_price(parts[1], parts[2])
    return _generic(parts)


def parameter(path: str) -> Quantity:
    """The human label, unit and display scale of a swept parameter (a dotted scenario path).

    >>> parameter("tenants.arrivals_per_hour").title
    'Tenants arrivals (per hour)'
    >>> parameter("providers.0.count").title
    'Providers [0] count'
    """
    if path in _KNOWN:
        return _KNOWN[path]
    parts = path.split(".")
    if len(parts) >= 2 and parts[0] in _OWNERS and parts[1].isdigit():
        # a population by its place in the scenario's list: its name is not in the path
        rest = _generic(parts[2:] or ["count"])
        label = f"Providers [{parts[1]}] {rest.label[:1].lower()}{rest.label[1:]}"
        return Quantity(label, rest.unit, rest.scale)
    return _generic(parts)


def _model_price(model: str, leaf: str) -> Quantity:
    """price_usd_per_gpu_hour.<model>.<leaf>: the per-GPU-model price summary."""
    name = _words(model)
    if leaf in ("mean", "median", "p90", "p10"):
        return Quantity(f"{name} {_STATS[leaf]} price", "USD/GPU-h")
    known = {
        "count": Quantity(f"{name} leases"),
        "cv": Quantity(f"{name} price CV", "%", 100.0),
        "p90_p10": Quantity(f"{name} price p90/p10 ratio"),
        "list_usd_per_gpu_hour": Quantity(f"{name} list price", "USD/GPU-h"),
        "gpu_hours": Quantity(f"{name} GPU-hours served", "GPU-h"),
        "paid_usd": Quantity(f"{name} paid by tenants", "USD"),
        "savings_vs_list": Quantity(f"{name} savings vs hyperscaler list", "%", 100.0),
    }
    if leaf in known:
        return known[leaf]
    rest = _generic([leaf])
    return Quantity(f"{name} {rest.label[:1].lower()}{rest.label[1:]}", rest.unit, rest.scale)


def _generic(parts: list[str]) -> Quantity:
    stat = ""
    if len(parts) > 1 and parts[-1] in _STATS:
        stat, parts = _STATS[parts[-1]], parts[:-1]
    counted = len(parts) > 1 and parts[-1] == "count"
    if counted:  # time_to_lease_s.count: how many were timed, not a time
        parts = parts[:-1]
    # The unit comes from the leaf, else from the nearest parent that names one
    # (deadweight_loss_by_cause_usd.unserved, flows_micro.take_rate); what follows that
    # parent qualifies it.
    unit, scale, head, tail, found = "", 1.0, parts, [], None
    for index in range(len(parts) - 1, -1, -1):
        found = _unit_of(parts[index])
        if found:
            stem, unit, scale = found
            if unit == "GPU-h" and stem:  # paused_gpu_hours: the GPU-hours paused
                stem = f"{stem}_gpu_hours"
            head, tail = [*parts[:index], *([stem] if stem else [])], parts[index + 1:]
            break
    if counted:
        unit, scale, tail = "", 1.0, [*tail, "count"]
    raw_leaf = (tail or head or [""])[-1]
    if not unit and _SHARE.search(raw_leaf) and "per_" not in raw_leaf:
        unit, scale = "%", 100.0
    if head and head[0] in _OWNERS and len(head) >= 3:
        owner = _words(head[1]) + _OWNERS[head[0]]
        base = " ".join([owner, *map(_words, head[2:])])
    else:
        kept = [p for p in head if p not in _GROUPS] or head[-1:]
        if not found and len(kept) > 1 and kept[0] != "interruptible":
            kept, tail = kept[:-1], kept[-1:]  # lease_close_reasons.owner, welfare.jobs.served
        base = " ".join(map(_words, kept))
    if stat:
        # a statistic goes before what it summarizes, after an owner such as "interruptible"
        words = base.split(" ", 1)
        base = (f"{words[0]} {stat} {words[1]}" if words[0] == "interruptible"
                and len(words) > 1 else f"{stat} {base}")
    label = ", ".join([base, *map(_words, tail)]) if tail else base
    # a key that is only a unit (gpu_hours) is named by it
    return Quantity(_capital(label.strip() or " ".join(map(_words, parts))), unit, scale)


# ----------------------------------------------------------------------------- numbers

SIGNIFICANT = 3
"""Significant digits of a number shown alone; a whole number's integer part is kept."""

INTERVAL_DIGITS = 2
"""Significant digits of an interval's half-width; its mean is shown to the same place."""


def format_number(x: float, digits: int = SIGNIFICANT) -> str:
    """`x` to `digits` significant digits (trailing zeros dropped), thousands grouped, the
    integer part never rounded away; "—" for NaN (no value).

    >>> format_number(3.14159), format_number(1234567.8), format_number(0.000012345)
    ('3.14', '1,234,568', '1.23e-05')
    >>> format_number(float("nan")), format_number(0.0), format_number(-1e-20)
    ('—', '0', '-1e-20')
    """
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == 0:
        return "0"
    exponent = math.floor(math.log10(abs(x)))
    if exponent < -4:  # 0.0000123 is unreadable in fixed point
        return f"{x:.{digits}g}"
    text = f"{x:,.{max(0, digits - 1 - exponent)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "0") else text


def format_bounds(value: float, low: float, high: float) -> str:
    """"value [low, high]", for an interval that need not be symmetric (a bootstrap's); "—"
    when there is no value.

    >>> format_bounds(0.143, -0.187, 0.475), format_bounds(float("nan"), 0.0, 1.0)
    ('0.143 [-0.187, 0.475]', '—')
    """
    if math.isnan(value):
        return "—"
    return f"{format_number(value)} [{format_number(low)}, {format_number(high)}]"


def format_interval(mean: float, half_width: float, digits: int = INTERVAL_DIGITS) -> str:
    """"mean ± half-width": the half-width to `digits` significant digits and the mean to the
    same decimal place (more would be noise); a mean alone when there is no interval.

    >>> format_interval(2.0, 2.4841), format_interval(-0.04671, 0.02198)
    ('2.0 ± 2.5', '-0.047 ± 0.022')
    >>> format_interval(180.0, 0.0), format_interval(0.0, 0.0268)
    ('180 ± 0', '0 ± 0.027')
    """
    if math.isnan(mean):
        return "—"
    if math.isnan(half_width) or math.isinf(half_width):
        return format_number(mean)
    if half_width == 0:
        return f"{format_number(mean)} ± 0"
    exponent = math.floor(math.log10(abs(half_width)))
    decimals = min(max(0, digits - 1 - exponent), 12)
    shown = f"{mean:,.{decimals}f}" if mean else "0"
    if shown.startswith("-") and not shown.strip("-0.,"):
        shown = shown[1:]  # -0.000 is 0
    return f"{shown} ± {half_width:,.{decimals}f}"


def format_estimate(n: int, mean: float, half_width: float,
                    quantity: Quantity | None = None) -> str:
    """A mean over `n` runs with its interval, in `quantity`'s display unit: "mean ± hw";
    "mean (n=1)" for one run; "—" for none.

    >>> format_estimate(4, 0.49812, 0.04619, metric("fill_rate"))
    '49.8 ± 4.6'
    >>> format_estimate(1, 0.5, float("nan"))
    '0.5 (n=1)'
    """
    scale = quantity.scale if quantity else 1.0
    if n == 0:
        return "—"
    if n == 1:
        return f"{format_number(mean * scale)} (n=1)"
    return format_interval(mean * scale, half_width * scale)


def format_difference(n: int, mean: float, half_width: float,
                      quantity: Quantity | None = None) -> str:
    """A paired difference, "mean ± hw", with " *" when its interval excludes 0 (the seeds
    tell the two apart). Float noise around an exact 0 (|x| < 1e-12) shows as 0.

    >>> format_difference(3, 0.012, 0.004968, metric("fill_rate"))
    '1.20 ± 0.50 *'
    """
    mean = 0.0 if abs(mean) < 1e-12 else mean
    half_width = 0.0 if abs(half_width) < 1e-12 else half_width
    star = " *" if n > 1 and (mean - half_width > 0 or mean + half_width < 0) else ""
    return format_estimate(n, mean, half_width, quantity) + star


def format_param_value(path: str, value: object) -> str:
    """A swept parameter's value as people read it: yes/no, "10%", "(base)" where a point
    left it at the base scenario's.

    >>> format_param_value("market.take_rate", 0.35), format_param_value("x.flag", True)
    ('35%', 'yes')
    """
    if value is None:
        return "(base)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return parameter(path).show_with_unit(float(value))
    return str(value)


def group_title(values: dict[str, object]) -> str:
    """A combination of parameter values in words: "Take rate 10%, bids net of fee yes".

    >>> group_title({"market.take_rate": 0.1, "market.bids_net_of_fee": False})
    'Take rate 10%, bids net of fee no'
    """
    parts = [f"{parameter(p).label} {format_param_value(p, v)}" for p, v in values.items()]
    text = ", ".join(part[:1].lower() + part[1:] if i else part
                     for i, part in enumerate(parts))
    return text or "All runs"


__all__ = ["INTERVAL_DIGITS", "SIGNIFICANT", "Quantity", "format_bounds", "format_difference",
           "format_estimate", "format_interval", "format_number", "format_param_value",
           "group_title", "metric", "parameter"]
