"""Scenarios: what a run simulates, as TOML files validated by pydantic.

A scenario file is an overlay: it names a `base` scenario (default: the built-in `default`) and
overrides any of its fields; tables merge key by key, arrays replace. A provider population
names an `archetype` whose preset (`market/data/archetypes.toml`) fills the fields it omits.
Every error a user can cause comes out as one `ScenarioError` line naming the field.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticSerializationError, to_jsonable_python

from market.catalog import BOUNDS as CATALOG_BOUNDS
from market.catalog import GpuCatalog, load_catalog
from market.core.resources import STORAGE_CLASSES
from market.registry import UnknownName
from market.registry import load as load_plugin
from market.registry import names as registry_names

JOB_KINDS = ("training", "fine_tuning", "batch_inference", "online_inference")

Fraction = Annotated[float, Field(ge=0, le=1)]

# Bounds. Every number a scenario holds is finite and bounded, generously for real experiments
# (a year-long market, tens of thousands of providers, spikes of 100x, growth of 10x a week,
# prices up to 1,000 USD per GPU-hour), so that no value can overflow the engine's integer
# micro-USD and byte counts or make a loop spin without advancing simulated time. What a run
# costs within these bounds is for `market.budget` to judge, before anything is built.
SECONDS_PER_YEAR = 365 * 86_400
MAX_DAYS = 365.0
MAX_PROVIDERS = 100_000          # per population
MAX_TENANTS = 1_000_000
MAX_GPUS_PER_PROVIDER = 4_096
#: One machine's GPUs, as for a node list's machines (agents.node_lists).
MAX_GPUS_PER_NODE = 1_024
#: Machines a population's drawn providers may own at most, all together (a few dozen bytes
#: each in the per-node table, and more while it is built): enough for the most providers of
#: any archetype's preset (100,000 hyperscalers of 16 machines), not for 4,096 one-GPU machines
#: a provider. What a run within it costs is for `market.budget` to judge.
MAX_MACHINES_PER_POPULATION = 2_000_000
MAX_USD_PER_GPU_HOUR = 1_000.0
#: Periodic processes (withdrawals, price index ticks) run at most once a simulated minute.
MIN_PERIOD_S = 60.0
#: Providers fail or leave at most once a simulated minute each (see market.core.reliability).
MAX_EVENTS_PER_DAY = 1_440.0
MAX_NAME_CHARS = 200
MAX_TEXT_CHARS = 10_000


def _span(high: float, least: float | None = None) -> Any:
    """A [min, max] pair, each in (0, high] (or [least, high]), min <= max."""
    bound = Annotated[float, Field(gt=0, le=high) if least is None else Field(ge=least, le=high)]
    return Annotated[tuple[bound, bound], AfterValidator(_ordered)]


def _ordered(value: tuple[Any, Any]) -> tuple[Any, Any]:
    low, high = value
    if low > high:
        raise ValueError(f"min {low} is above max {high}")
    return value


Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Usd = Annotated[float, Field(ge=0, le=1e9)]
UsdPerGpuHour = Annotated[float, Field(ge=0, le=MAX_USD_PER_GPU_HOUR)]
#: Plug-in parameters: numbers as bounded as any other field, strings short.
Param = Annotated[float, Field(ge=-1e12, le=1e12)] | Annotated[int, Field(ge=-10**12, le=10**12)] \
    | Name | bool
Hours = _span(SECONDS_PER_YEAR / 3600)
CATALOG_MAX = max(high for _low, high in CATALOG_BOUNDS.values())


class ScenarioError(ValueError):
    """A scenario, a scenario file or an override is invalid; the message is one line."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def model_copy(self, *, update: Mapping[str, Any] | None = None,
                   deep: bool = False) -> Self:
        """A copy; with `update` (field -> new value, replacing the field whole), a validated
        one. Pydantic's own `model_copy(update=...)` skips validation, so a take rate of 5.0
        would run and fail days into a run: here the copy passes every check a scenario
        file's fields pass, or raises a one-line ScenarioError naming the field. To change a
        field deep inside a scenario, `Scenario.with_values` takes dotted paths."""
        if not update:
            return super().model_copy(deep=deep)
        where = f"{type(self).__name__}.model_copy"
        try:
            changes = to_jsonable_python(dict(update))
        except (TypeError, ValueError, PydanticSerializationError) as error:
            raise ScenarioError(f"{where}: update: expected plain values (numbers, text, "
                                f"lists, tables or models): {error}") from None
        data = {**self.model_dump(mode="json"), **changes}
        _check_nesting(data, where)
        try:
            return type(self).model_validate(data)
        except ValidationError as error:
            raise _first_error(error, where) from None
        except UnknownName as error:
            raise ScenarioError(f"{where}: {error}") from None


class AktPrice(_Model):
    """The AKT/USD price path under BME settlement (`market.bme.price`), on its own seeded
    stream: geometric Brownian motion, or a series replayed from a CSV file."""

    model: Literal["gbm", "csv"] = Field(description="gbm: geometric Brownian motion from "
                                         "start_usd; csv: replay `path` (time_s, price_usd)")
    start_usd: Annotated[float, Field(gt=0, le=1e6)] = Field(
        description="gbm: the price at the start, USD per AKT")
    drift_per_year: Annotated[float, Field(ge=-10, le=10)] = Field(
        description="gbm: expected log-return per year, before the -volatility^2/2 term")
    volatility_per_year: Annotated[float, Field(ge=0, le=20)] = Field(
        description="gbm: standard deviation of the log-return over a year")
    step_s: Annotated[float, Field(ge=1, le=86_400)] = Field(
        description="gbm: a new price every this many seconds; it holds in between")
    path: Name | None = Field(None, description="csv: the price series, columns time_s "
                              "(seconds from the run's start, ascending) and price_usd; "
                              "relative to the scenario file")

    @model_validator(mode="after")
    def _csv_has_path(self) -> AktPrice:
        if self.model == "csv":
            if self.path is None:
                raise ValueError("path: model 'csv' needs the price series file")
            if not Path(self.path).is_file():
                raise ValueError(f"path: no such file {_cut(self.path)!r}")
        return self


class BmeRules(_Model):
    """Burn-Mint Equilibrium (Akash AEP-76): tenants prepay in ACT minted by burning AKT at
    the oracle price, leases settle in AKT paid from the vault or minted
    (`market.bme.settlement`). Used when `market.settlement` is "bme"."""

    akt_price: AktPrice
    twap_window_s: Annotated[float, Field(ge=1, le=86_400)] = Field(
        description="the oracle's price: the time-weighted mean of the AKT price over this "
                    "many seconds")
    oracle_max_staleness_s: Annotated[float, Field(ge=1, le=SECONDS_PER_YEAR)] = Field(
        description="the oracle is unhealthy when its newest price is older than this")
    oracle_max_deviation: Annotated[float, Field(gt=0, le=10)] = Field(
        description="... or when the TWAP and the spot price (the second source) differ by "
                    "more than this fraction of the spot price")
    mint_spread_bps: Annotated[float, Field(ge=0, le=10_000)] = Field(
        description="kept back when ACT is minted: ACT = AKT burned x price x (1 - spread)")
    settle_spread_bps: Annotated[float, Field(ge=0, le=10_000)] = Field(
        description="kept back when a provider is paid: AKT = floor(ACT x (1 - spread) / "
                    "price)")
    runway_days: Annotated[float, Field(ge=0, le=MAX_DAYS)] = Field(
        description="tenants keep this many days of their leases' run-rate in ACT")
    recharge_below: Fraction = Field(
        description="a tenant tops up (to the full runway, in one batch) when its ACT falls "
                    "below this share of the runway")
    check_interval_s: Annotated[float, Field(ge=MIN_PERIOD_S, le=SECONDS_PER_YEAR)] = Field(
        description="how often the oracle, the collateral ratio and tenants' runways are "
                    "checked, seconds")
    cr_warning: Annotated[float, Field(gt=0, le=10)] = Field(
        description="below this collateral ratio, mints slow: each must cover at least "
                    "min_topup_days of the tenant's run-rate")
    cr_halt: Annotated[float, Field(gt=0, le=10)] = Field(
        description="below this collateral ratio, new ACT mints stop: tenants pay in AKT "
                    "directly until it recovers")
    min_topup_days: Annotated[float, Field(ge=0, le=MAX_DAYS)] = Field(
        description="the smallest mint while the collateral ratio is below cr_warning, days "
                    "of run-rate")
    cashout_interval_s: Annotated[float, Field(ge=MIN_PERIOD_S, le=SECONDS_PER_YEAR)] = Field(
        description="providers sell the AKT they earned this often (and at the run's end), "
                    "at the spot price")

    @model_validator(mode="after")
    def _breakers_ordered(self) -> BmeRules:
        if self.cr_halt > self.cr_warning:
            raise ValueError(f"cr_halt: {self.cr_halt:g} is above cr_warning "
                             f"{self.cr_warning:g}; expected cr_halt <= cr_warning")
        return self


class MarketRules(_Model):
    """Platform rules: the auction and escrow (Akash's defaults unless stated)."""

    mechanism: Name = Field(description="allocation mechanism by name: tenant_pick, "
                           "first_price, second_price, or a registered plug-in")
    selection: Literal["cheapest", "first", "score"] = Field(
        description="tenant_pick: accept the cheapest bid when the window ends, the first to "
                    "arrive, or the lowest price per job given GPU speed and reliability")
    bidding_window_s: Annotated[float, Field(ge=0.001, le=86_400)] = Field(
        description="how long an order collects bids, seconds")
    # Bids placed are bounded by the providers anyway; a live market may want them all.
    order_max_bids: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        description="bids kept per order, in arrival order (Akash: 20)")
    bid_deposit_usd: Annotated[float, Field(ge=0, le=1e6)] = Field(
        description="locked per bid, refunded when it ends")
    # At least a second: a hand-picked order re-checks its bids once per timeout.
    bid_timeout_s: Annotated[float, Field(ge=1, le=SECONDS_PER_YEAR)] = Field(
        description="a provider drops a bid held this many seconds without a lease")
    manifest_timeout_s: Annotated[float, Field(ge=1, le=SECONDS_PER_YEAR)] = Field(
        description="a lease without a manifest closes after this many seconds")
    manifest_failure_prob: Fraction = Field(description="chance a tenant never sends it")
    settlement: Literal["aep23", "bme"] = Field(
        description="how leases are paid: aep23 (USD escrow, the platform takes take_rate of "
                    "every payout; Akash until March 2026) or bme (ACT escrow settled in AKT, "
                    "no take rate; Akash since AEP-76)")
    take_rate: Annotated[float, Field(ge=0, lt=1)] = Field(description="platform's share of "
                                                           "every payout (aep23 only)")
    bme: BmeRules = Field(description="Burn-Mint Equilibrium's parameters (settlement bme)")
    # Periodic processes: every run pays for each of their ticks, so no finer than a minute.
    withdraw_interval_s: Annotated[float, Field(ge=MIN_PERIOD_S, le=SECONDS_PER_YEAR)] = Field(
        description="providers withdraw this often, seconds")
    health_check_failures: Annotated[int, Field(ge=1, le=10_000)] = Field(
        description="failed health checks before a provider closes a lease as unstable")
    health_check_interval_s: _span(86_400) = Field(
        description="[min, max] seconds between checks")
    price_index_interval_s: Annotated[float, Field(ge=MIN_PERIOD_S, le=SECONDS_PER_YEAR)] = \
        Field(description="bucket of the price series, seconds")
    bids_net_of_fee: bool = Field(
        True, description="built-in bid strategies price net of the take rate: an ask that "
        "must cover cost c is at least c / (1 - take_rate); false makes them ignore the fee "
        "(to study who bears it)")

    mechanism_params: Annotated[dict[Name, Param], Field(max_length=100)] = Field(
        default_factory=dict, description="the mechanism's parameters, e.g. { step = 0.01 }")

    @property
    def fee_rate(self) -> float:
        """The platform's share of every payout as it applies: `take_rate` under aep23, none
        under bme (AEP-76 removed the take rates)."""
        return self.take_rate if self.settlement == "aep23" else 0.0

    @field_validator("mechanism")
    @classmethod
    def _known_mechanism(cls, value: str) -> str:
        load_plugin("mechanisms", value)  # UnknownName lists the known ones
        return value

    def build_mechanism(self) -> Any:
        """The mechanism with its parameters (`selection` goes to those that take it)."""
        factory = load_plugin("mechanisms", self.mechanism)
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
    name: Name
    params: Annotated[dict[Name, Param], Field(max_length=100)] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        load_plugin(cls.group, value)  # UnknownName lists the known ones
        return value

    @model_validator(mode="after")
    def _buildable(self) -> _PluginRef:
        factory = load_plugin(self.group, self.name)
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
        return load_plugin(self.group, self.name)(**self.params)


class StrategyRef(_PluginRef):
    """A bid strategy (`gpumarket.strategies`) and its parameters."""

    group: ClassVar[str] = "strategies"

    def label(self) -> str:
        """Its name in results: the strategy's, followed by the parameters given for it as
        a TOML inline table (`cost_plus{markup=0.5}`)."""
        def toml(value: Any) -> str:
            if isinstance(value, bool):
                return str(value).lower()
            if isinstance(value, int | float):
                return repr(value)
            return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

        if not self.params:
            return self.name
        return self.name + "{" + ", ".join(f"{key}={toml(self.params[key])}"
                                           for key in sorted(self.params)) + "}"


class PolicyRef(_PluginRef):
    """A tenant policy (`gpumarket.tenant_policies`) and its parameters."""

    group: ClassVar[str] = "tenant_policies"


class Spikes(_Model):
    """Occasional demand spikes: arrivals multiply for a while (a Poisson number per week)."""

    per_week: Annotated[float, Field(ge=0, le=1_000)] = Field(description="spikes a week")
    multiplier: Annotated[float, Field(ge=1, le=100)] = Field(
        description="arrivals multiply by this during a spike")
    duration_h: Annotated[float, Field(gt=0, le=SECONDS_PER_YEAR / 3600)] = Field(
        description="hours a spike lasts")


class JobKindConfig(_Model):
    """One kind of job in the tenants' mix, sized with the transformer rule of thumb."""

    share: Annotated[float, Field(ge=0, le=1e6)] = Field(
        description="relative weight in the job mix")
    params_b: _span(100_000) = Field(description="model size, billions of parameters [min, max]")
    tokens_b: _span(1e7) | None = Field(None, description="billions of tokens [min, max]")
    duration_h: Hours | None = Field(None, description="online inference: hours rented")
    tokens_per_s: _span(1e9) | None = Field(None, description="online inference: throughput")
    bytes_per_param: Annotated[float, Field(gt=0, le=1_000)]
    memory_overhead: Annotated[float, Field(ge=1, le=1_000)]
    utilization: Annotated[float, Field(gt=0, le=1)]
    min_tflops: Annotated[float, Field(ge=0, le=1e7)]
    needs_interconnect: bool
    max_gpus: Annotated[int, Field(ge=1, le=MAX_GPUS_PER_PROVIDER)]
    deadline_h: Hours | None = Field(
        None, description="every kind but online inference: hours from the lease's start by "
                          "which a job must be done [min, max], drawn per job; a GPU model that "
                          "cannot finish it in time with max_gpus is not acceptable")
    decode_batch_tokens: Annotated[float, Field(gt=0, le=1e9)] | None = Field(
        None, description="inference kinds only: tokens served per read of the weights, so "
                          "FLOP/s per GPU <= 2 x this x memory bandwidth / bytes_per_param; "
                          "left out: compute-bound (TFLOPS x utilization) only")


class InterruptibleJobs(_Model):
    """How tenants use interruptible orders where the market's mechanism offers them."""

    share: Fraction = Field(description="chance a new job is posted interruptible")
    bid_fraction: _span(1.0) = Field(
        description="the interruptible bid as a fraction of the marketplace price the tenant "
                    "expects for its GPU [min, max] (never above its max price)")
    patience_s: Annotated[float, Field(ge=1, le=SECONDS_PER_YEAR)] = Field(
        description="a lease paused this many seconds is closed and its rest re-posted on "
                    "demand")

    @field_validator("bid_fraction")
    @classmethod
    def _at_most_one(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[1] > 1:
            raise ValueError(f"expected fractions <= 1, got {list(value)}")
        return value


class ResourcesPerGpu(_Model):
    """What a job asks for besides GPUs, per GPU unit."""

    cpu_millicores: Annotated[int, Field(ge=0, le=1_000_000)]
    memory_gib: Annotated[float, Field(ge=0, le=4_096)]
    storage_gib: Annotated[float, Field(ge=0, le=100_000)]
    storage_class: Literal["ephemeral", "beta1", "beta2", "beta3"]


class NodeListSource(_Model):
    """A provider population made of a real cluster's machines (`agents.node_lists`)."""

    path: Name = Field(description="the node list (CSV); relative to the scenario file")
    format: Literal["alibaba_v2023", "alibaba_spot_v2026", "generic"] = Field(
        description="its columns: alibaba_v2023 (sn, cpu_milli, memory_mib, gpu, model), "
                    "alibaba_spot_v2026 (gpu_model, gpu_capacity_num, cpu_num, node_name), "
                    "generic (node, gpus, model, [cpu_millicores], [memory_gib])")
    gpu_map: Annotated[dict[Name, Name], Field(max_length=1_000)] = Field(
        default_factory=dict, description="the list's GPU name -> catalog id (a name that is "
        "a catalog model's id or full name maps to it by default)")
    placement: Literal["per_node", "pooled"] = Field(
        "per_node", description="per_node: each replica of an order must fit on one node; "
        "pooled: a provider's machines count as one (to measure what fragmentation costs)")

    @field_validator("path")
    @classmethod
    def _exists(cls, value: str) -> str:
        if not Path(value).is_file():
            raise ValueError(f"no such file {_cut(value)!r}")
        return value


class TraceDemand(_Model):
    """Jobs read from a trace file (`agents.trace_files`), instead of or besides the
    synthetic arrivals; they live as synthetic jobs do (deposits, re-posts, failures, the
    outside option)."""

    path: Name = Field(description="the trace file (CSV); relative to the scenario file")
    format: Literal["alibaba_v2023", "alibaba_spot_v2026", "alibaba_v2020", "generic"] = \
        Field(description="its columns: alibaba_v2023 (pod list), alibaba_spot_v2026 "
                          "(spot-GPU jobs), alibaba_v2020 (pai_job_table, with tasks_path), "
                          "generic (submit_s, duration_s, gpus, ...)")
    tasks_path: Name | None = Field(None, description="alibaba_v2020: the pai_task_table file")
    mode: Literal["replace", "add"] = Field(
        "replace", description="replace the synthetic arrivals, or add to them")
    gpu_map: Annotated[dict[Name, Name], Field(max_length=1_000)] = Field(
        default_factory=dict, description="trace GPU name -> catalog id (a name that is a "
        "catalog model's id or full name maps to it by default)")
    reference_gpu: Name | None = Field(
        None, description="catalog id the trace's durations were measured on (default: "
                          "each job's slowest acceptable model)")
    window_s: _span(1e12, least=0) | None = Field(
        None, description="[start, end) of submit times kept, trace seconds")
    time_scale: Annotated[float, Field(gt=0, le=1e6)] = Field(
        1.0, description="simulated seconds per trace second between arrivals (0.5 replays "
                         "arrivals twice as fast); durations are kept")
    sample_fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        1.0, description="chance each job is kept (drawn from the run's seed)")
    gpu_share: Literal["whole", "skip"] = Field(
        "whole", description="a job asking for a share of a GPU rents whole GPUs, or is "
                             "skipped")
    cpu_only: Literal["skip", "keep"] = Field(
        "skip", description="a job asking for no GPU is skipped, or rents one GPU")
    max_gpus: Annotated[int, Field(ge=1, le=MAX_GPUS_PER_PROVIDER)] = Field(
        1_024, description="jobs asking for more GPUs are skipped")
    reorder_rows: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        10_000, description="rows held to put a trace out of submission order back in order")
    interruptible_qos: Annotated[list[Name], Field(max_length=20)] = Field(
        default_factory=lambda: ["BE"], description="alibaba_v2023: qos classes posted "
                                                    "interruptible")

    @field_validator("path", "tasks_path")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file {_cut(value)!r}")
        return value

    @model_validator(mode="after")
    def _tasks(self) -> TraceDemand:
        if (self.format == "alibaba_v2020") != (self.tasks_path is not None):
            raise ValueError("tasks_path: must be given for alibaba_v2020 (the task table) "
                             "and only for it")
        return self


class Tenants(_Model):
    """Tenants post jobs as a Poisson process with a daily cycle, spikes and growth."""

    count: Annotated[int, Field(ge=1, le=MAX_TENANTS)]
    arrivals_per_hour: Annotated[float, Field(gt=0, le=100_000)] = Field(
        description="mean new jobs per hour")
    daily_amplitude: Fraction = Field(description="relative swing of the daily cycle")
    peak_hour: Annotated[float, Field(ge=0, lt=24)]
    weekly_growth: Annotated[float, Field(gt=-1, le=10)] = Field(
        description="0.5 = +50% a week; at most 10 (11x a week)")
    spikes: Spikes
    value_to_outside: _span(1_000, least=0.001) = Field(
        description="a job's value as a multiple of its outside option (the cheapest way to "
                    "run it at a hyperscaler's list prices) [min, max], drawn log-uniformly")
    max_price_factor: _span(100, least=0.001) = Field(
        description="first max price as a fraction of the job's value per GPU-hour on its "
                    "fastest acceptable GPU model [min, max]")
    policy: PolicyRef = Field(description="how tenants set and revise max prices")
    max_reposts: Annotated[int, Field(ge=0, le=100)]
    max_failures: Annotated[int, Field(ge=1, le=100)] = Field(
        description="failed leases after which a tenant leaves for a hyperscaler")
    deposit_factor: Annotated[float, Field(gt=0, le=100)] = Field(
        description="escrow deposit = max price × estimated duration × this")
    duration_error_sigma: Annotated[float, Field(ge=0, le=5)] = Field(
        description="lognormal error of the tenant's duration estimate")
    wallet_usd: Annotated[float, Field(gt=0, le=1e12)]
    interruptible: InterruptibleJobs
    resources_per_gpu: ResourcesPerGpu
    jobs: dict[Literal["training", "fine_tuning", "batch_inference", "online_inference"],
               JobKindConfig]
    trace: TraceDemand | None = Field(None, description="jobs read from a trace file")
    price_elasticity: Annotated[float, Field(ge=0, le=10)] = Field(
        0.0, description="elasticity of new jobs' arrival rate to the market's price index: "
        "the rate is arrivals_per_hour x (index / reference_price_to_list)^-elasticity, "
        "capped at max_demand_multiplier times it (0: a fixed rate)")
    reference_price_to_list: Annotated[float, Field(gt=0, le=10)] = Field(
        0.5, description="the price index (price paid per GPU-hour over its model's list "
        "price, over the last price interval) at which arrivals_per_hour holds")
    max_demand_multiplier: Annotated[float, Field(ge=1, le=100)] = Field(
        4.0, description="how far low prices may raise the arrival rate, as a multiple")

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

    median_s: Annotated[float, Field(gt=0, le=86_400)]
    sigma: Annotated[float, Field(ge=0, le=5)]


class Deviator(_Model):
    """One textbook bidder (the first, `bidder-0`) that bids otherwise than the rest: its own
    strategy's bid times `shading`. Its costs are drawn as they would be without it."""

    strategy: StrategyRef | None = Field(
        None, description="its strategy (default: the textbook's `strategy`)")
    shading: Annotated[float, Field(gt=0, le=100)] = Field(
        1.0, description="multiplies every bid of its strategy (1: no deviation)")


class Textbook(_Model):
    """The textbook procurement auction: `bidders` providers with i.i.d. costs, drawn afresh
    for every auction, bid for one-unit orders posted one at a time (see `population`)."""

    bidders: Annotated[int, Field(ge=1, le=10_000)] = Field(
        description="providers in every auction")
    auctions: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        description="orders, auctioned one by one")
    cost_distribution: Literal["uniform"] = Field(description="distribution F of the costs")
    cost_low_usd_per_gpu_hour: UsdPerGpuHour
    cost_high_usd_per_gpu_hour: Annotated[float, Field(gt=0, le=MAX_USD_PER_GPU_HOUR)]
    gpu_model: Name = Field(description="the one GPU every order asks for")
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

    strategies: Annotated[list[StrategyRef], Field(min_length=1, max_length=100)] = Field(
        description="the competitors, each once, with parameters: in a population whose own "
                    "strategy is the same they override its own, elsewhere they are all it gets")
    shares: list[Annotated[float, Field(gt=0, le=1e6)]] | None = Field(
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
        """Each competitor's name in results (`StrategyRef.label`)."""
        return [ref.label() for ref in self.strategies]

    def params_for(self, index: int, own: StrategyRef) -> dict[str, Any]:
        """Parameters of competitor `index` in a population whose own strategy is `own`."""
        competitor = self.strategies[index]
        kept = own.params if own.name == competitor.name else {}
        return {**kept, **competitor.params}


class ProviderPopulation(_Model):
    """A population of providers of one archetype (fields not given come from its preset)."""

    name: Name
    archetype: Literal["datacenter", "home_rig", "hyperscaler"]
    count: Annotated[int, Field(ge=0, le=MAX_PROVIDERS)]
    gpu_mix: Annotated[dict[Name, Annotated[float, Field(ge=0, le=1e6)]],
                       Field(max_length=1_000)] = Field(description="GPU id -> share of providers")
    gpus_per_provider: Annotated[
        tuple[Annotated[int, Field(ge=1, le=MAX_GPUS_PER_PROVIDER)],
              Annotated[int, Field(ge=1, le=MAX_GPUS_PER_PROVIDER)]],
        AfterValidator(_ordered)] = Field(description="[min, max] GPUs of one provider")
    gpu_step: Annotated[int, Field(ge=1, le=MAX_GPUS_PER_PROVIDER)] = Field(
        description="GPUs come in multiples of this")
    gpus_per_node: Annotated[int, Field(ge=0, le=MAX_GPUS_PER_NODE)] = Field(
        0, description="GPUs per machine: a drawn provider's GPUs are ceil(GPUs / this) "
        "machines of this many (the last one the remainder), each with cpu_millicores_per_gpu "
        "and memory_gib_per_gpu per GPU it holds, and each replica of an order must fit on "
        "one machine; 0: one machine with all its GPUs. A population with a node list takes "
        "its machines from the list instead")
    cpu_millicores_per_gpu: Annotated[int, Field(ge=0, le=1_000_000)]
    memory_gib_per_gpu: Annotated[float, Field(ge=0, le=4_096)]
    storage_gib_per_gpu: Annotated[float, Field(ge=0, le=100_000)]
    storage_classes: Annotated[list[Literal["ephemeral", "beta1", "beta2", "beta3"]],
                               Field(max_length=16)]
    ip_leases: Annotated[int, Field(ge=0, le=1_000_000)]
    audited: bool
    pue: Annotated[float, Field(ge=1, le=10)]
    electricity_usd_per_kwh: _span(100)
    ops_usd_per_gpu_hour: UsdPerGpuHour
    lifetime_years: Annotated[float, Field(ge=0.01, le=100)]
    capex_factor: Annotated[float, Field(gt=0, le=100)]
    idle_power_fraction: Fraction
    wear_usd_per_gpu_hour: UsdPerGpuHour = Field(
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
    failure_rate_per_day: Annotated[float, Field(ge=0, le=MAX_EVENTS_PER_DAY)] = Field(
        description="failures per provider per day (at most one a minute)")
    repair_hours: Hours = Field(description="[min, max] hours a failure lasts")
    churn_per_day: Annotated[float, Field(ge=0, le=MAX_EVENTS_PER_DAY)] = Field(
        description="departures per provider per day (at most one a minute)")
    offline_days: _span(MAX_DAYS) = Field(description="[min, max] days a departure lasts")
    bid_latency: Latency
    strategy: StrategyRef
    nodes: NodeListSource | None = Field(
        None, description="make the population's `count` providers of a real cluster's "
        "machines (each keeps its nodes; GPU models and capacity come from the list, costs "
        "from the population)")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        archetype = data.get("archetype")
        presets = _archetypes()
        if not isinstance(archetype, str) or archetype not in presets:
            raise ValueError(f"archetype: expected one of {', '.join(sorted(presets))}, "
                             f"got {_short(archetype)}")
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

    @model_validator(mode="after")
    def _machines_within_bounds(self) -> ProviderPopulation:
        if self.gpus_per_node and self.nodes is None:
            # The most GPUs a draw gives one provider (a step above the range gives the step).
            gpus = max(self.gpus_per_provider[1], self.gpu_step)
            most = self.count * -(-gpus // self.gpus_per_node)
            if most > MAX_MACHINES_PER_POPULATION:
                raise ValueError(
                    f"gpus_per_node: {self.count:,} providers of up to {gpus:,} GPUs at "
                    f"{self.gpus_per_node} per machine "
                    f"make up to {most:,} machines, above {MAX_MACHINES_PER_POPULATION:,}; "
                    "expected more GPUs per machine, or fewer or smaller providers")
        return self


class EntryExit(_Model):
    """Providers leave when their avoidable costs go uncovered, and new ones enter when the
    expected long-run profit beats a hurdle (`agents.entry_exit`). Off unless given."""

    review_days: Annotated[float, Field(ge=0.01, le=MAX_DAYS)] = Field(
        7.0, description="how often providers and prospective entrants review the market, "
        "simulated days")
    window_days: Annotated[float, Field(ge=0.01, le=MAX_DAYS)] = Field(
        28.0, description="the recent past a review looks at (revenue and costs for exit; "
        "prices and utilization for entry), simulated days; a whole number of reviews")
    hurdle: Annotated[float, Field(ge=0, le=10)] = Field(
        0.1, description="enter when expected long-run profit per GPU-hour over the full "
        "cost per GPU-hour is above this")
    investment_lag_days: Annotated[float, Field(ge=0, le=MAX_DAYS)] = Field(
        30.0, description="from the decision to enter to the new provider's arrival, "
        "simulated days")
    entrants: Annotated[list[Name], Field(max_length=100)] | None = Field(
        None, description="populations whose kind of provider may enter (default: all)")
    exiters: Annotated[list[Name], Field(max_length=100)] | None = Field(
        None, description="populations whose providers may exit (default: all)")
    max_entrants_per_review: Annotated[int, Field(ge=0, le=1_000)] = Field(
        1, description="new providers one population may commit to at one review")
    max_entrants: Annotated[int, Field(ge=0, le=MAX_PROVIDERS)] = Field(
        200, description="new providers over the whole run, all populations together")

    @model_validator(mode="after")
    def _whole_reviews(self) -> EntryExit:
        reviews = self.window_days / self.review_days
        if reviews < 1 - 1e-9 or abs(reviews - round(reviews)) > 1e-9:
            raise ValueError(f"window_days: expected a whole number of reviews (a multiple "
                             f"of review_days {self.review_days:g}), got {self.window_days:g}")
        return self


class Scenario(_Model):
    """Everything a run simulates; with a seed, everything it does."""

    name: Name
    description: Text = ""
    population: Name = Field("default", description="who takes part: `default` (the "
                            "scenario's tenants and provider populations), `textbook` (the "
                            "textbook auction), or a registered plug-in")
    duration_days: Annotated[float, Field(gt=0, le=MAX_DAYS)] = Field(
        description="simulated days")
    market: MarketRules
    tenants: Tenants
    providers: Annotated[list[ProviderPopulation], Field(min_length=1, max_length=100)]
    gpus: Annotated[dict[Name, dict[Name, Annotated[float, Field(gt=0, le=CATALOG_MAX)]]],
                    Field(max_length=1_000)] = Field(
        default_factory=dict, description="GPU catalog overrides: id -> field -> value, each "
        "within its catalog range (market.catalog.BOUNDS; prices at most 1,000 USD per "
        "GPU-hour)")
    textbook: Textbook | None = None
    tournament: Tournament | None = None
    entry_exit: EntryExit | None = Field(
        None, description="providers exit and enter on their profits (off when absent)")

    @field_validator("gpus", mode="before")
    @classmethod
    def _catalog_ranges(cls, value: Any) -> Any:
        # Each catalog field has its own range: say which, before the loose common bound.
        if not isinstance(value, Mapping):
            return value
        for gpu, changes in value.items():
            if not isinstance(changes, Mapping):
                continue
            for name, number in changes.items():
                bounds = CATALOG_BOUNDS.get(name)
                if bounds is None or isinstance(number, bool) \
                        or not isinstance(number, int | float):
                    continue
                low, high = bounds
                if not (low <= number <= high):  # NaN fails too
                    raise ValueError(f"{gpu}.{name}: expected a number from {low:g} to "
                                     f"{high:g}, got {_short(number)}")
        return value

    @field_validator("population")
    @classmethod
    def _known_population(cls, value: str) -> str:
        load_plugin("populations", value)  # UnknownName lists the known ones
        return value

    @model_validator(mode="after")
    def _known_gpus(self) -> Scenario:
        catalog = self.catalog()  # validates `gpus` overrides
        for index, population in enumerate(self.providers):
            for gpu in population.gpu_mix:
                if gpu not in catalog:
                    raise ValueError(f"providers.{index}.gpu_mix: unknown GPU model {gpu!r}; "
                                     f"known: {', '.join(catalog.ids)}")
            if population.nodes is not None:
                for name, gpu in population.nodes.gpu_map.items():
                    if gpu not in catalog:
                        raise ValueError(f"providers.{index}.nodes.gpu_map.{name}: unknown "
                                         f"GPU model {gpu!r}; known: {', '.join(catalog.ids)}")
        trace = self.tenants.trace
        if trace is not None:
            named = [(f"gpu_map.{name}", gpu) for name, gpu in trace.gpu_map.items()]
            for field, gpu in (*named, ("reference_gpu", trace.reference_gpu)):
                if gpu is not None and gpu not in catalog:
                    raise ValueError(f"tenants.trace.{field}: unknown GPU model {gpu!r}; "
                                     f"known: {', '.join(catalog.ids)}")
        names = [p.name for p in self.providers]
        if len(set(names)) != len(names):
            raise ValueError(f"providers: population names must be unique, got {names}")
        if self.entry_exit is not None:
            for field in ("entrants", "exiters"):
                for name in getattr(self.entry_exit, field) or ():
                    if name not in names:
                        raise ValueError(f"entry_exit.{field}: unknown population {name!r}; "
                                         f"known: {', '.join(names)}")
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

    def with_values(self, values: Mapping[str, Any] | None = None, /,
                    **fields: Any) -> Scenario:
        """A new, validated scenario with `values` (dotted path -> value, as `--set` and a
        sweep's values name them) and `fields` (top-level fields by keyword) changed; this
        one is left as it is. The same rules as `--set`: a path must exist, except the last
        key of a table that takes new keys; a value replaces what was there whole (a table
        given as a dict replaces the table). Raises ScenarioError, one line naming the field.

        >>> load_scenario().with_values({"market.take_rate": 0.1}, duration_days=1).market.take_rate
        0.1
        """
        where = f"scenario {self.name!r}"
        if values is not None and not isinstance(values, Mapping):
            raise ScenarioError(f"{where}: with_values: expected a dict of dotted path -> "
                                f"value, got {type(values).__name__}")
        changes = {**(values or {}), **fields}
        for path in changes:
            if not isinstance(path, str) or not path or any(
                    not part for part in path.split(".")):
                raise ScenarioError(f"{where}: with_values: {_short(path)}: expected a dotted "
                                    "scenario path like market.take_rate")
        data = self.model_dump(mode="json")
        for path, value in changes.items():
            apply_override(data, path.split("."), value, f"{where}: with_values")
        return validate_scenario(data, where)

    def _repr_html_(self) -> str:
        """The scenario at a glance in a notebook: name, description, duration, who takes
        part, and the market's main rules (every text escaped)."""
        from market.observe.reprs import scenario_html

        return scenario_html(self)


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


#: Tables and arrays nest at most this deep in a scenario (the deepest field is 5 levels down):
#: deeper input is refused before anything recurses through it.
MAX_NESTING = 16


def _read_toml(text: str, where: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{where}: not valid TOML: {error}") from None
    except ValueError as error:  # an integer beyond Python's int-string conversion limit
        raise ScenarioError(f"{where}: {_too_long(error)}") from None
    except RecursionError:
        raise ScenarioError(f"{where}: tables or arrays nested too deeply (at most "
                            f"{MAX_NESTING} levels)") from None
    _check_nesting(data, where)
    return data


def _too_long(error: ValueError) -> str:
    """The int-string conversion limit's error in one line of the scenario's words."""
    if "digits" in str(error):
        return (f"an integer has too many digits (at most {sys.get_int_max_str_digits()}; "
                "no field takes more than 13)")
    return f"not valid TOML: {error}"


def _check_nesting(value: Any, where: str) -> None:
    """Refuse tables and arrays nested deeper than MAX_NESTING (iteratively: no recursion)."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, Mapping | list | tuple):
            if len(path) > MAX_NESTING:
                field = ".".join(path[:4])
                raise ScenarioError(f"{where}: field `{field}`: tables or arrays nested too "
                                    f"deeply (at most {MAX_NESTING} levels)")
            items = node.items() if isinstance(node, Mapping) else enumerate(node)
            stack.extend((child, (*path, str(key)[:40])) for key, child in items)


def _archetypes() -> dict[str, Any]:
    return _builtin_data("data", "archetypes.toml")


_data_cache: dict[tuple[str, str], dict[str, Any]] = {}


def _builtin_data(folder: str, filename: str) -> dict[str, Any]:
    key = (folder, filename)
    if key not in _data_cache:
        text = resources.files("market").joinpath(folder, filename).read_text("utf-8")
        _data_cache[key] = _read_toml(text, f"built-in {folder}/{filename}")
    return _data_cache[key]


def builtin_tomls(folder: str) -> list[str]:
    """Names of the TOML files that ship inside the package in `market/<folder>/` (built-in
    scenarios, sweeps, sensitivity analyses, calibrations)."""
    files = resources.files("market").joinpath(folder)
    return sorted(p.name.removesuffix(".toml") for p in files.iterdir()
                  if p.name.endswith(".toml"))


def builtin_scenarios() -> list[str]:
    """Names of the scenarios that ship inside the package."""
    return builtin_tomls("scenarios")


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
        _file_paths_from(data, path.parent)
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


def _file_paths_from(data: dict[str, Any], folder: Path) -> None:
    """Make a scenario file's relative paths (its trace's, its node lists', its AKT price
    series') relative to its
    folder."""
    tenants = data.get("tenants")
    trace = tenants.get("trace") if isinstance(tenants, Mapping) else None
    if isinstance(trace, Mapping):
        data["tenants"]["trace"] = _relative_to(trace, folder, ("path", "tasks_path"))
    market = data.get("market")
    bme = market.get("bme") if isinstance(market, Mapping) else None
    price = bme.get("akt_price") if isinstance(bme, Mapping) else None
    if isinstance(price, Mapping):
        data["market"] = {**market, "bme": {**bme, "akt_price": _relative_to(price, folder,
                                                                             ("path",))}}
    providers = data.get("providers")
    for population in providers if isinstance(providers, list) else ():
        nodes = population.get("nodes") if isinstance(population, dict) else None
        if isinstance(nodes, Mapping):
            population["nodes"] = _relative_to(nodes, folder, ("path",))


def _relative_to(table: Mapping[str, Any], folder: Path, keys: tuple[str, ...]
                 ) -> dict[str, Any]:
    """`table` with its relative paths at `keys` made relative to `folder`."""
    table = dict(table)
    for key in keys:
        if isinstance(table.get(key), str) and table[key] and not Path(table[key]).is_absolute():
            table[key] = str(folder / table[key])
    return table


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """`a.b.0.c=VALUE` -> (["a", "b", "0", "c"], value); VALUE is read as TOML, else a string."""
    path, sep, text = assignment.partition("=")
    if not sep or not path.strip():
        raise ScenarioError(f"--set {assignment!r}: expected PATH=VALUE, e.g. "
                            "market.take_rate=0.1")
    label = f"--set {path.strip()[:100]}"
    keys = path.strip().split(".")
    if len(keys) > MAX_NESTING:
        raise ScenarioError(f"{label}: the path is {len(keys)} levels deep (at most "
                            f"{MAX_NESTING})")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    except ValueError as error:  # an integer beyond Python's int-string conversion limit
        raise ScenarioError(f"{label}: {_too_long(error)}") from None
    except RecursionError:
        raise ScenarioError(f"{label}: the value nests tables or arrays too deeply (at most "
                            f"{MAX_NESTING} levels)") from None
    _check_nesting(value, label)
    return keys, value


def apply_override(data: dict[str, Any], keys: list[str], value: Any,
                   label: str = "--set") -> None:
    """Set `value` at the dotted `keys` inside `data` (in place); the path must exist, except
    for the last key of a table that allows new keys (catalog overrides, mixes). Errors name
    the path after `label` (where the override came from)."""
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = _cut(".".join(keys[: depth + 1]))
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ScenarioError(f"{label} {_cut('.'.join(keys))}: `{where}`: expected an index "
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
                    raise ScenarioError(f"{label} {_cut('.'.join(keys))}: `{where}` is a value, "
                                        "not a table")
                node[key] = child
                node = child
        else:
            raise ScenarioError(f"{label} {_cut('.'.join(keys))}: `{where}` is a value, "
                                "not a table")


_BOUND_ERRORS = frozenset(("greater_than", "greater_than_equal", "less_than", "less_than_equal",
                           "finite_number"))


@functools.cache
def _schema_defs() -> tuple[dict[str, Any], dict[str, Any]]:
    schema = Scenario.model_json_schema()
    return schema, schema.get("$defs", {})


def _valid_range(loc: tuple[Any, ...]) -> str | None:
    """Both bounds of the number at `loc`, from the schema (pydantic names only the one
    broken): "a number > 0 and <= 100"; None where the schema does not say."""
    node, defs = _schema_defs()

    def plain(node: dict[str, Any]) -> dict[str, Any]:
        while True:
            if "$ref" in node:
                node = defs[node["$ref"].rsplit("/", 1)[-1]]
            elif "anyOf" in node:  # optional: the branch that is not null
                options = [option for option in node["anyOf"] if option.get("type") != "null"]
                if len(options) != 1:
                    return node
                node = options[0]
            else:
                return node

    for part in loc:
        node = plain(node)
        if isinstance(part, str) and part in node.get("properties", {}):
            node = node["properties"][part]
        elif isinstance(part, int) and "prefixItems" in node:
            items = node["prefixItems"]
            node = items[part] if part < len(items) else {}
        elif isinstance(part, int) and isinstance(node.get("items"), dict):
            node = node["items"]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    node = plain(node)
    kind = {"integer": "an integer", "number": "a number"}.get(node.get("type", ""))
    sides = [f"{sign} {_number(node[key])}" for key, sign in (
        ("exclusiveMinimum", ">"), ("minimum", ">="), ("exclusiveMaximum", "<"),
        ("maximum", "<=")) if key in node]
    return f"{kind} {' and '.join(sides)}" if kind and sides else None


def _number(value: float) -> str:
    """A bound as people write it: 100,000 rather than 1e+05."""
    if float(value).is_integer() and abs(value) < 1e13:
        return f"{int(value):,}"
    return f"{value:g}"


#: Tags pydantic puts in an error's path for the member of a union that failed.
_UNION_TAGS = frozenset(("constrained-float", "constrained-int", "constrained-str", "bool",
                         "float", "int", "str", "tuple[...]", "list[...]", "dict[...]"))
_PARAM_VALUE = ("a number >= -1e12 and <= 1e12, text of 1 to 200 characters, or true/false")


def _first_error(error: ValidationError, where: str) -> ScenarioError:
    count = error.error_count()
    detail = error.errors(include_url=False)[0]
    loc = tuple(part for part in detail["loc"] if part not in _UNION_TAGS)
    field = _cut(".".join(_cut(str(part), 60) for part in loc), 200)
    message = detail["msg"].removeprefix("Value error, ")
    if len(loc) != len(detail["loc"]) and len(loc) >= 2 \
            and loc[-2] in ("params", "mechanism_params"):
        message, count = f"expected {_PARAM_VALUE}", 1  # one error per member of the union
    elif detail["type"] in _BOUND_ERRORS:
        valid = _valid_range(loc)
        if valid:
            message = f"expected {valid}"
    # Validators name the field they check first ("gpu_mix: ..."): make it part of the path.
    named = re.match(r"([A-Za-z_][\w.]*): (.*)", message)
    if named:
        if not field.endswith(named[1]):
            field = f"{field}.{named[1]}" if field else named[1]
        message = named[2]
    got = detail.get("input")
    shown = "" if isinstance(got, Mapping | list) or got is None else f" (got {_short(got)})"
    more = f" (and {count - 1} more)" if count > 1 else ""
    prefix = f"field `{field}`: " if field else ""
    return ScenarioError(f"{where}: {prefix}{message}{shown}{more}")


def _cut(text: str, limit: int = 120) -> str:
    """A path or name from outside, cut to fit in a one-line message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(value: Any) -> str:
    """`value` for an error message: one line, cut short (a 5,000-digit integer has no repr)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def validate_scenario(data: Mapping[str, Any], where: str = "scenario") -> Scenario:
    """Validate raw fields into a Scenario, or raise a one-line ScenarioError."""
    _check_nesting(data, where)
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as error:
        raise _first_error(error, where) from None
    except UnknownName as error:
        raise ScenarioError(f"{where}: {error}") from None
    except RecursionError:  # belt and braces: _check_nesting bounds what validation walks
        raise ScenarioError(f"{where}: tables or arrays nested too deeply") from None


def load_scenario(name_or_path: str | Path = "default",
                  overrides: list[str] | tuple[str, ...] = (),
                  values: Mapping[str, Any] | None = None, label: str = "--set", *,
                  outside: bool = False) -> Scenario:
    """Load a built-in scenario by name or a TOML file by path, apply `--set` style overrides
    (``"market.take_rate=0.1"``), then `values` (dotted path -> value, as a sweep sets them),
    and validate. Raises ScenarioError (one line) on bad input; `label` says where `values`
    came from in its messages. `outside`: the overrides come from outside this machine (a
    server's client), so they may not name a file on it (`tenants.trace`).

    >>> load_scenario("default", ["market.take_rate=0.1"]).market.take_rate
    0.1
    """
    return _resolve(_raw(name_or_path), overrides, values, label,
                    f"scenario {str(name_or_path)!r}", outside=outside)


def scenario_from_toml(text: str, overrides: list[str] | tuple[str, ...] = (),
                       where: str = "scenario_toml", base: str = "default") -> Scenario:
    """A scenario from TOML text, as a scenario file holds it: an overlay on the built-in
    scenario its `base` names (`base` if none), then `--set` style overrides. Text from
    outside (an upload) may name only built-in bases, never a file on this machine (neither
    as a base nor as a trace).

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
    return _resolve(_merge(_raw(base), data), overrides, None, "--set", where, outside=True)


def _resolve(data: dict[str, Any], overrides: list[str] | tuple[str, ...],
             values: Mapping[str, Any] | None, label: str, where: str,
             outside: bool = False) -> Scenario:
    """Fill presets, apply overrides and `values`, validate; with `outside`, refuse what
    would read a file on this machine, before anything looks at it."""
    # Fill populations from their presets first, so that an override edits what the run uses
    # (`providers.1.gpu_mix.rtx4090=0.9` changes one share of the preset's mix).
    presets = _archetypes()
    if isinstance(data.get("providers"), list):
        data["providers"] = [
            {**presets[p["archetype"]], **p}
            if isinstance(p, Mapping) and isinstance(p.get("archetype"), str)
            and p["archetype"] in presets else p
            for p in data["providers"]]
    for assignment in overrides:
        keys, value = parse_override(assignment)
        apply_override(data, keys, value)
    for path, value in (values or {}).items():
        apply_override(data, path.split("."), value, label)
    if outside:
        _refuse_files(data, where)
    return validate_scenario(data, where)


def _refuse_files(data: Mapping[str, Any], where: str) -> None:
    """Raise ScenarioError if a scenario from outside names a file on this machine (a trace,
    a node list, a strategy's file such as a learned policy's)."""
    tenants = data.get("tenants")
    fields = ["tenants.trace"] if isinstance(tenants, Mapping) \
        and tenants.get("trace") is not None else []
    providers = data.get("providers")
    fields += [f"providers.{index}.nodes"
               for index, population in enumerate(providers if isinstance(providers, list)
                                                  else ())
               if isinstance(population, Mapping) and population.get("nodes") is not None]
    fields += _strategy_files(data, [])
    if fields:
        raise ScenarioError(f"{where}: field `{fields[0]}`: a scenario from outside may not "
                            "read a file on this machine; run it with `gpumarket run`")


def _strategy_files(data: Any, path: list[str]) -> list[str]:
    """The fields, anywhere in `data`, that give a strategy a parameter naming a file (the
    strategy's `file_params`): wherever a strategy is named (populations, the textbook, its
    deviator, a tournament's line-up), `{name = ..., params = {...}}` is how."""
    found: list[str] = []
    if isinstance(data, Mapping):
        name, params = data.get("name"), data.get("params")
        if isinstance(name, str) and isinstance(params, Mapping) \
                and name in registry_names("strategies"):
            reads = getattr(load_plugin("strategies", name), "file_params", ())
            found += [".".join([*path, "params", key]) for key in params if key in reads]
        for key, value in data.items():
            found += _strategy_files(value, [*path, str(key)])
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _strategy_files(value, [*path, str(index)])
    return found


def scenario_schema() -> dict[str, Any]:
    """JSON schema of a (fully merged) scenario."""
    return Scenario.model_json_schema()


__all__ = [
    "JOB_KINDS", "STORAGE_CLASSES", "JobKindConfig", "MarketRules", "ProviderPopulation",
    "Scenario", "ScenarioError", "Tenants", "builtin_scenarios", "load_scenario",
    "scenario_from_toml", "scenario_schema", "validate_scenario",
]
