"""Scenarios: what a run simulates, as TOML files validated by pydantic.

A scenario file is an overlay: it names a `base` scenario (default: the built-in `default`) and
overrides any of its fields; tables merge key by key, arrays replace. A provider population
names an `archetype` whose preset (`market/data/archetypes.toml`) fills the fields it omits.
Every error a user can cause comes out as one `ScenarioError` line naming the field.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from market import registry
from market.catalog import GpuCatalog, load_catalog
from market.resources import STORAGE_CLASSES

JOB_KINDS = ("training", "fine_tuning", "batch_inference", "online_inference")

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class ScenarioError(ValueError):
    """A scenario, a scenario file or an override is invalid; the message is one line."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _ordered(value: tuple[Any, Any]) -> tuple[Any, Any]:
    low, high = value
    if low > high:
        raise ValueError(f"min {low} is above max {high}")
    return value


#: [min, max], both > 0, min <= max.
PositiveRange = Annotated[tuple[PositiveFloat, PositiveFloat], AfterValidator(_ordered)]


class MarketRules(_Model):
    """Platform rules: the auction and escrow (Akash's defaults unless stated)."""

    mechanism: str = Field(description="allocation mechanism by name: tenant_pick, "
                           "first_price, second_price, or a registered plug-in")
    selection: Literal["cheapest", "first", "score"] = Field(
        description="tenant_pick: accept the cheapest bid when the window ends, the first to "
                    "arrive, or the lowest price per job given GPU speed and reliability")
    bidding_window_s: PositiveFloat = Field(description="how long an order collects bids")
    order_max_bids: Annotated[int, Field(ge=1)] = Field(description="bids kept per order, "
                                                       "in arrival order (Akash: 20)")
    bid_deposit_usd: NonNegFloat = Field(description="locked per bid, refunded when it ends")
    bid_timeout_s: PositiveFloat = Field(description="a provider drops a bid without a lease")
    manifest_timeout_s: PositiveFloat = Field(description="a lease without a manifest closes")
    manifest_failure_prob: Fraction = Field(description="chance a tenant never sends it")
    take_rate: Annotated[float, Field(ge=0, lt=1)] = Field(description="platform's share of "
                                                           "every payout")
    withdraw_interval_s: PositiveFloat = Field(description="providers withdraw this often")
    health_check_failures: Annotated[int, Field(ge=1)] = Field(
        description="failed health checks before a provider closes a lease as unstable")
    health_check_interval_s: PositiveRange = Field(description="[min, max] between checks")
    price_index_interval_s: PositiveFloat = Field(description="bucket of the price series")
    bids_net_of_fee: bool = Field(
        True, description="built-in bid strategies price net of the take rate: an ask that "
        "must cover cost c is at least c / (1 - take_rate); false makes them ignore the fee "
        "(to study who bears it)")

    mechanism_params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="the mechanism's parameters, e.g. { step = 0.01 }")

    @field_validator("mechanism")
    @classmethod
    def _known_mechanism(cls, value: str) -> str:
        registry.load("mechanisms", value)  # UnknownName lists the known ones
        return value

    def build_mechanism(self) -> Any:
        """The mechanism with its parameters (`selection` goes to those that take it)."""
        factory = registry.load("mechanisms", self.mechanism)
        kwargs = dict(self.mechanism_params)
        if "selection" in inspect.signature(factory).parameters:
            kwargs.setdefault("selection", self.selection)
        return factory(**kwargs)

    @model_validator(mode="after")
    def _buildable(self) -> MarketRules:
        try:
            self.build_mechanism()
        except (TypeError, ValueError) as error:
            raise ValueError(f"mechanism_params: {self.mechanism}: {error}") from None
        return self


class _PluginRef(_Model):
    """A plug-in by registered name, with the keyword arguments it is built with."""

    group: ClassVar[str] = ""
    name: str
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        registry.load(cls.group, value)  # UnknownName lists the known ones
        return value

    @model_validator(mode="after")
    def _buildable(self) -> _PluginRef:
        factory = registry.load(self.group, self.name)
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):  # no signature to check against: trust the params
            return self
        try:
            signature.bind(**self.params)
        except TypeError as error:
            takes = ", ".join(signature.parameters) or "no parameters"
            raise ValueError(f"params: {self.name} {error} (it takes: {takes})") from None
        try:  # the plug-in's own checks of its parameters, reported as the scenario's
            factory(**self.params)
        except (TypeError, ValueError) as error:
            raise ValueError(f"params: {self.name}: {error}") from None
        return self

    def build(self) -> Any:
        """A new instance of the plug-in with these parameters."""
        return registry.load(self.group, self.name)(**self.params)


class StrategyRef(_PluginRef):
    """A bid strategy (`gpumarket.strategies`) and its parameters."""

    group: ClassVar[str] = "strategies"


class PolicyRef(_PluginRef):
    """A tenant policy (`gpumarket.tenant_policies`) and its parameters."""

    group: ClassVar[str] = "tenant_policies"


class Spikes(_Model):
    """Occasional demand spikes: arrivals multiply for a while (a Poisson number per week)."""

    per_week: NonNegFloat
    multiplier: Annotated[float, Field(ge=1)]
    duration_h: PositiveFloat


class JobKindConfig(_Model):
    """One kind of job in the tenants' mix, sized with the transformer rule of thumb."""

    share: NonNegFloat
    params_b: PositiveRange = Field(description="model size, billions of parameters [min, max]")
    tokens_b: PositiveRange | None = Field(None, description="billions of tokens [min, max]")
    duration_h: PositiveRange | None = Field(None, description="online inference: hours rented")
    tokens_per_s: PositiveRange | None = Field(None, description="online inference: throughput")
    bytes_per_param: PositiveFloat
    memory_overhead: Annotated[float, Field(ge=1)]
    utilization: Annotated[float, Field(gt=0, le=1)]
    min_tflops: NonNegFloat
    needs_interconnect: bool
    max_gpus: Annotated[int, Field(ge=1)]
    deadline_h: PositiveRange | None = Field(
        None, description="every kind but online inference: hours from the lease's start by "
                          "which a job must be done [min, max], drawn per job; a GPU model that "
                          "cannot finish it in time with max_gpus is not acceptable")
    decode_batch_tokens: PositiveFloat | None = Field(
        None, description="inference kinds only: tokens served per read of the weights, so "
                          "FLOP/s per GPU <= 2 x this x memory bandwidth / bytes_per_param; "
                          "left out: compute-bound (TFLOPS x utilization) only")


class InterruptibleJobs(_Model):
    """How tenants use interruptible orders where the market's mechanism offers them."""

    share: Fraction = Field(description="chance a new job is posted interruptible")
    bid_fraction: PositiveRange = Field(
        description="the interruptible bid as a fraction of the marketplace price the tenant "
                    "expects for its GPU [min, max] (never above its max price)")
    patience_s: PositiveFloat = Field(description="a lease paused this long is closed and "
                                      "its rest re-posted on demand")

    @field_validator("bid_fraction")
    @classmethod
    def _at_most_one(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[1] > 1:
            raise ValueError(f"expected fractions <= 1, got {list(value)}")
        return value


class ResourcesPerGpu(_Model):
    """What a job asks for besides GPUs, per GPU unit."""

    cpu_millicores: Annotated[int, Field(ge=0)]
    memory_gib: NonNegFloat
    storage_gib: NonNegFloat
    storage_class: Literal["ephemeral", "beta1", "beta2", "beta3"]


class Tenants(_Model):
    """Tenants post jobs as a Poisson process with a daily cycle, spikes and growth."""

    count: Annotated[int, Field(ge=1)]
    arrivals_per_hour: PositiveFloat = Field(description="mean new jobs per hour")
    daily_amplitude: Fraction = Field(description="relative swing of the daily cycle")
    peak_hour: Annotated[float, Field(ge=0, lt=24)]
    weekly_growth: Annotated[float, Field(gt=-1)] = Field(description="0.5 = +50% a week")
    spikes: Spikes
    value_to_outside: PositiveRange = Field(
        description="a job's value as a multiple of its outside option (the cheapest way to "
                    "run it at a hyperscaler's list prices) [min, max], drawn log-uniformly")
    max_price_factor: PositiveRange = Field(
        description="first max price as a fraction of the job's value per GPU-hour on its "
                    "fastest acceptable GPU model [min, max]")
    policy: PolicyRef = Field(description="how tenants set and revise max prices")
    max_reposts: Annotated[int, Field(ge=0)]
    max_failures: Annotated[int, Field(ge=1)] = Field(
        description="failed leases after which a tenant leaves for a hyperscaler")
    deposit_factor: PositiveFloat = Field(description="escrow deposit = max price × "
                                          "estimated duration × this")
    duration_error_sigma: NonNegFloat = Field(description="lognormal error of the tenant's "
                                              "duration estimate")
    wallet_usd: PositiveFloat
    interruptible: InterruptibleJobs
    resources_per_gpu: ResourcesPerGpu
    jobs: dict[Literal["training", "fine_tuning", "batch_inference", "online_inference"],
               JobKindConfig]

    @field_validator("jobs")
    @classmethod
    def _some_share(cls, value: dict[str, JobKindConfig]) -> dict[str, JobKindConfig]:
        if not any(kind.share > 0 for kind in value.values()):
            raise ValueError("at least one job kind needs a share > 0")
        # Online inference is rented for a duration at a throughput; the other kinds run
        # their tokens to completion by a deadline.
        for name, kind in value.items():
            rented = name == "online_inference"
            for field, wanted in (("tokens_b", not rented), ("deadline_h", not rented),
                                  ("duration_h", rented), ("tokens_per_s", rented)):
                given = getattr(kind, field) is not None
                if given != wanted:
                    need = "a [min, max] range" if wanted else "left out"
                    raise ValueError(f"{name}.{field}: must be {need} for this kind")
            # Only inference reads the weights once per batch of generated tokens.
            if kind.decode_batch_tokens is not None and "inference" not in name:
                raise ValueError(f"{name}.decode_batch_tokens: must be left out for this kind "
                                 "(training and fine-tuning are compute-bound)")
        return value


class Latency(_Model):
    """Lognormal bid latency: median seconds and sigma of log."""

    median_s: PositiveFloat
    sigma: NonNegFloat


class Deviator(_Model):
    """One textbook bidder (the first, `bidder-0`) that bids otherwise than the rest: its own
    strategy's bid times `shading`. Its costs are drawn as they would be without it."""

    strategy: StrategyRef | None = Field(
        None, description="its strategy (default: the textbook's `strategy`)")
    shading: PositiveFloat = Field(
        1.0, description="multiplies every bid of its strategy (1: no deviation)")


class Textbook(_Model):
    """The textbook procurement auction: `bidders` providers with i.i.d. costs, drawn afresh
    for every auction, bid for one-unit orders posted one at a time (see `population`)."""

    bidders: Annotated[int, Field(ge=1)] = Field(description="providers in every auction")
    auctions: Annotated[int, Field(ge=1)] = Field(description="orders, auctioned one by one")
    cost_distribution: Literal["uniform"] = Field(description="distribution F of the costs")
    cost_low_usd_per_gpu_hour: NonNegFloat
    cost_high_usd_per_gpu_hour: PositiveFloat
    gpu_model: str = Field(description="the one GPU every order asks for")
    strategy: StrategyRef = Field(description="how every bidder bids")
    deviator: Deviator | None = Field(
        None, description="one bidder that deviates from `strategy` (incentive checks)")

    @model_validator(mode="after")
    def _range(self) -> Textbook:
        if self.cost_low_usd_per_gpu_hour >= self.cost_high_usd_per_gpu_hour:
            raise ValueError("cost_low_usd_per_gpu_hour: must be below "
                             "cost_high_usd_per_gpu_hour")
        return self


class Tournament(_Model):
    """Bid strategies competing in one market (`gpumarket tournament`, population
    `stratified`): every provider population is drawn as in an ordinary run, then dealt among
    the strategies by `shares`, stratified by GPU model, GPU count and cost. A population
    whose own strategy is a competitor keeps its parameters for it, under those given here."""

    strategies: Annotated[list[StrategyRef], Field(min_length=1)] = Field(
        description="the competitors, each once, with parameters: in a population whose own "
                    "strategy is the same they override its own, elsewhere they are all it gets")
    shares: list[PositiveFloat] | None = Field(
        None, description="each competitor's share of every population (default: equal)")

    @model_validator(mode="after")
    def _line_up(self) -> Tournament:
        labels = self.labels()
        for label in labels:
            if labels.count(label) > 1:
                raise ValueError(f"strategies: each strategy once, got {label} twice")
        if self.shares is not None and len(self.shares) != len(self.strategies):
            raise ValueError(f"shares: expected {len(self.strategies)} (one per strategy), "
                             f"got {len(self.shares)}")
        return self

    def labels(self) -> list[str]:
        """Each competitor's name in results: its strategy's, followed by the parameters
        given for it as a TOML inline table (`cost_plus{markup=0.5}`)."""
        def toml(value: Any) -> str:
            if isinstance(value, bool):
                return str(value).lower()
            if isinstance(value, int | float):
                return repr(value)
            return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

        return [ref.name + ("{" + ", ".join(f"{key}={toml(ref.params[key])}"
                                           for key in sorted(ref.params)) + "}"
                            if ref.params else "") for ref in self.strategies]

    def params_for(self, index: int, own: StrategyRef) -> dict[str, Any]:
        """Parameters of competitor `index` in a population whose own strategy is `own`."""
        competitor = self.strategies[index]
        kept = own.params if own.name == competitor.name else {}
        return {**kept, **competitor.params}


class ProviderPopulation(_Model):
    """A population of providers of one archetype (fields not given come from its preset)."""

    name: str
    archetype: Literal["datacenter", "home_rig", "hyperscaler"]
    count: Annotated[int, Field(ge=0)]
    gpu_mix: dict[str, NonNegFloat] = Field(description="GPU id -> share of providers")
    gpus_per_provider: Annotated[tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]],
                                 AfterValidator(_ordered)]
    gpu_step: Annotated[int, Field(ge=1)] = Field(description="GPUs come in multiples of this")
    cpu_millicores_per_gpu: Annotated[int, Field(ge=0)]
    memory_gib_per_gpu: NonNegFloat
    storage_gib_per_gpu: NonNegFloat
    storage_classes: list[Literal["ephemeral", "beta1", "beta2", "beta3"]]
    ip_leases: Annotated[int, Field(ge=0)]
    audited: bool
    pue: Annotated[float, Field(ge=1)]
    electricity_usd_per_kwh: PositiveRange
    ops_usd_per_gpu_hour: NonNegFloat
    lifetime_years: PositiveFloat
    capex_factor: PositiveFloat
    idle_power_fraction: Fraction
    wear_usd_per_gpu_hour: NonNegFloat = Field(
        0.0, description="wear and tear while a GPU serves a lease, USD per GPU-hour")
    count_capex: bool = Field(
        True, description="charge capex amortization in long-run profit (false: the GPU was "
        "bought anyway, its capex is sunk, e.g. a home gaming rig)")
    sells_elsewhere_at_list: bool = Field(
        False, description="capacity not sold here sells elsewhere at a share of the GPU's "
        "list price (a hyperscaler; the share is elsewhere_fraction_of_list): serving a "
        "lease here costs that (its opportunity cost), and no idle power, operations or "
        "capex are charged to this market")
    elsewhere_fraction_of_list: Annotated[float, Field(gt=0, le=1)] = Field(
        1.0, description="with sells_elsewhere_at_list: what a GPU-hour not sold here fetches "
        "elsewhere, as a fraction of list (1: sold on demand at list; spare capacity sold as "
        "spot fetches less), so its opportunity cost is this fraction of list")
    cost_basis: Literal["full", "marginal"]
    failure_rate_per_day: NonNegFloat
    repair_hours: PositiveRange
    churn_per_day: NonNegFloat
    offline_days: PositiveRange
    bid_latency: Latency
    strategy: StrategyRef

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        archetype = data.get("archetype")
        presets = _archetypes()
        if archetype not in presets:
            raise ValueError(f"archetype: expected one of {', '.join(sorted(presets))}, "
                             f"got {archetype!r}")
        # Field by field: a population's own gpu_mix or strategy replaces the preset's whole.
        merged = {**presets[archetype], **data}
        merged.setdefault("name", archetype)
        return merged

    @field_validator("gpu_mix")
    @classmethod
    def _some_share(cls, value: dict[str, float]) -> dict[str, float]:
        if not any(value.values()):
            raise ValueError("at least one share must be > 0")
        return value


class Scenario(_Model):
    """Everything a run simulates; with a seed, everything it does."""

    name: str
    description: str = ""
    population: str = Field("default", description="who takes part: `default` (the "
                            "scenario's tenants and provider populations), `textbook` (the "
                            "textbook auction), or a registered plug-in")
    duration_days: PositiveFloat
    market: MarketRules
    tenants: Tenants
    providers: Annotated[list[ProviderPopulation], Field(min_length=1)]
    gpus: dict[str, dict[str, PositiveFloat]] = Field(
        default_factory=dict, description="GPU catalog overrides: id -> field -> value")
    textbook: Textbook | None = None
    tournament: Tournament | None = None

    @field_validator("population")
    @classmethod
    def _known_population(cls, value: str) -> str:
        registry.load("populations", value)  # UnknownName lists the known ones
        return value

    @model_validator(mode="after")
    def _known_gpus(self) -> Scenario:
        catalog = self.catalog()  # validates `gpus` overrides
        for index, population in enumerate(self.providers):
            for gpu in population.gpu_mix:
                if gpu not in catalog:
                    raise ValueError(f"providers.{index}.gpu_mix: unknown GPU model {gpu!r}; "
                                     f"known: {', '.join(catalog.ids)}")
        names = [p.name for p in self.providers]
        if len(set(names)) != len(names):
            raise ValueError(f"providers: population names must be unique, got {names}")
        if self.population == "stratified" and self.tournament is None:
            raise ValueError("tournament: the stratified population needs a [tournament] table")
        if self.population == "textbook":
            if self.textbook is None:
                raise ValueError("textbook: the textbook population needs a [textbook] table")
            if self.textbook.gpu_model not in catalog:
                raise ValueError(f"textbook.gpu_model: unknown GPU model "
                                 f"{self.textbook.gpu_model!r}; known: {', '.join(catalog.ids)}")
        return self

    def catalog(self) -> GpuCatalog:
        """The built-in GPU catalog with this scenario's overrides applied."""
        base = load_catalog()
        return base.with_overrides(self.gpus) if self.gpus else base


# ----------------------------------------------------------------------------- loading

def _merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge: tables merge key by key, anything else (arrays included) replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{where}: not valid TOML: {error}") from None


def _archetypes() -> dict[str, Any]:
    return _builtin_data("data", "archetypes.toml")


_data_cache: dict[tuple[str, str], dict[str, Any]] = {}


def _builtin_data(folder: str, filename: str) -> dict[str, Any]:
    key = (folder, filename)
    if key not in _data_cache:
        text = resources.files("market").joinpath(folder, filename).read_text("utf-8")
        _data_cache[key] = _read_toml(text, f"built-in {folder}/{filename}")
    return _data_cache[key]


def builtin_scenarios() -> list[str]:
    """Names of the scenarios that ship inside the package."""
    folder = resources.files("market").joinpath("scenarios")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir()
                  if p.name.endswith(".toml"))


def _raw(name_or_path: str | Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The scenario's fields with its base chain merged in, not yet validated."""
    text_name = str(name_or_path)
    is_file = not (text_name in builtin_scenarios() and not Path(text_name).suffix)
    if not is_file:
        where = f"scenario {text_name!r}"
        data = dict(_builtin_data("scenarios", f"{text_name}.toml"))
    else:
        path = Path(name_or_path)
        where = f"scenario file {str(path)!r}"
        if not path.is_file():
            known = ", ".join(builtin_scenarios())
            raise ScenarioError(f"scenario: {text_name!r} is neither a file nor a built-in "
                                f"scenario ({known})")
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ScenarioError(f"{where}: cannot be read as UTF-8 text: {error}") from None
        data = _read_toml(text, where)
        data.setdefault("name", path.stem)  # a file's scenario is named after it by default
    if where in seen:
        raise ScenarioError(f"{where}: base chain loops ({' -> '.join((*seen, where))})")
    base = data.pop("base", None if text_name == "default" else "default")
    if base is None or base == "":
        return data
    if not isinstance(base, str):
        raise ScenarioError(f"{where}: field `base`: expected a scenario name or path")
    if is_file and not Path(base).is_absolute() and Path(base).suffix:
        base = str(Path(name_or_path).parent / base)  # relative to the file that names it
    return _merge(_raw(base, (*seen, where)), data)


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """`a.b.0.c=VALUE` -> (["a", "b", "0", "c"], value); VALUE is read as TOML, else a string."""
    path, sep, text = assignment.partition("=")
    if not sep or not path.strip():
        raise ScenarioError(f"--set {assignment!r}: expected PATH=VALUE, e.g. "
                            "market.take_rate=0.1")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return path.strip().split("."), value


def apply_override(data: dict[str, Any], keys: list[str], value: Any,
                   label: str = "--set") -> None:
    """Set `value` at the dotted `keys` inside `data` (in place); the path must exist, except
    for the last key of a table that allows new keys (catalog overrides, mixes). Errors name
    the path after `label` (where the override came from)."""
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ScenarioError(f"{label} {'.'.join(keys)}: `{where}`: expected an index "
                                    f"from 0 to {len(node) - 1}")
            if last:
                node[int(key)] = value
            else:
                node[int(key)] = dict(node[int(key)]) if isinstance(node[int(key)], Mapping) \
                    else node[int(key)]
                node = node[int(key)]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                child = node.get(key)
                if child is None:
                    child = {}
                elif isinstance(child, Mapping):
                    child = dict(child)
                elif isinstance(child, list):
                    child = list(child)
                else:
                    raise ScenarioError(f"{label} {'.'.join(keys)}: `{where}` is a value, "
                                        "not a table")
                node[key] = child
                node = child
        else:
            raise ScenarioError(f"{label} {'.'.join(keys)}: `{where}` is a value, not a table")


def _first_error(error: ValidationError, where: str) -> ScenarioError:
    count = error.error_count()
    detail = error.errors(include_url=False)[0]
    field = ".".join(str(part) for part in detail["loc"])
    message = detail["msg"].removeprefix("Value error, ")
    # Validators name the field they check first ("gpu_mix: ..."): make it part of the path.
    named = re.match(r"([A-Za-z_][\w.]*): (.*)", message)
    if named:
        if not field.endswith(named[1]):
            field = f"{field}.{named[1]}" if field else named[1]
        message = named[2]
    got = detail.get("input")
    shown = "" if isinstance(got, Mapping | list) or got is None else f" (got {got!r})"
    more = f" (and {count - 1} more)" if count > 1 else ""
    prefix = f"field `{field}`: " if field else ""
    return ScenarioError(f"{where}: {prefix}{message}{shown}{more}")


def validate_scenario(data: Mapping[str, Any], where: str = "scenario") -> Scenario:
    """Validate raw fields into a Scenario, or raise a one-line ScenarioError."""
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as error:
        raise _first_error(error, where) from None
    except registry.UnknownName as error:
        raise ScenarioError(f"{where}: {error}") from None


def load_scenario(name_or_path: str | Path = "default",
                  overrides: list[str] | tuple[str, ...] = (),
                  values: Mapping[str, Any] | None = None, label: str = "--set") -> Scenario:
    """Load a built-in scenario by name or a TOML file by path, apply `--set` style overrides
    (``"market.take_rate=0.1"``), then `values` (dotted path -> value, as a sweep sets them),
    and validate. Raises ScenarioError (one line) on bad input; `label` says where `values`
    came from in its messages.

    >>> load_scenario("default", ["market.take_rate=0.1"]).market.take_rate
    0.1
    """
    return _resolve(_raw(name_or_path), overrides, values, label,
                    f"scenario {str(name_or_path)!r}")


def scenario_from_toml(text: str, overrides: list[str] | tuple[str, ...] = (),
                       where: str = "scenario_toml", base: str = "default") -> Scenario:
    """A scenario from TOML text, as a scenario file holds it: an overlay on the built-in
    scenario its `base` names (`base` if none), then `--set` style overrides. Text from
    outside (an upload) may name only built-in bases, never a file on this machine.

    >>> scenario_from_toml("duration_days = 0.5").duration_days
    0.5
    """
    data = _read_toml(text, where)
    base = data.pop("base", base)
    known = builtin_scenarios()
    if base not in known:
        raise ScenarioError(f"{where}: field `base`: expected a built-in scenario "
                            f"({', '.join(known)}), got {base!r}")
    data.setdefault("name", "uploaded")
    return _resolve(_merge(_raw(base), data), overrides, None, "--set", where)


def _resolve(data: dict[str, Any], overrides: list[str] | tuple[str, ...],
             values: Mapping[str, Any] | None, label: str, where: str) -> Scenario:
    """Fill presets, apply overrides and `values`, validate."""
    # Fill populations from their presets first, so that an override edits what the run uses
    # (`providers.1.gpu_mix.rtx4090=0.9` changes one share of the preset's mix).
    presets = _archetypes()
    if isinstance(data.get("providers"), list):
        data["providers"] = [
            {**presets[p["archetype"]], **p}
            if isinstance(p, Mapping) and p.get("archetype") in presets else p
            for p in data["providers"]]
    for assignment in overrides:
        keys, value = parse_override(assignment)
        apply_override(data, keys, value)
    for path, value in (values or {}).items():
        apply_override(data, path.split("."), value, label)
    return validate_scenario(data, where)


def scenario_schema() -> dict[str, Any]:
    """JSON schema of a (fully merged) scenario."""
    return Scenario.model_json_schema()


__all__ = [
    "JOB_KINDS", "STORAGE_CLASSES", "JobKindConfig", "MarketRules", "ProviderPopulation",
    "Scenario", "ScenarioError", "Tenants", "builtin_scenarios", "load_scenario",
    "scenario_from_toml", "scenario_schema", "validate_scenario",
]
