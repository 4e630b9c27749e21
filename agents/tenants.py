"""Tenants: jobs arrive with a value and a deadline, are posted, re-posted, or leave.

Arrivals are a Poisson process whose rate follows a daily cycle, grows week over week, and
jumps during occasional demand spikes (sampled by thinning). Each job is sized with the
transformer rule of thumb (`agents.workloads`), which fixes, given the job's deadline, the GPUs
it needs and its duration on every GPU model.

- **Outside option** O: the cheapest way to run the whole job at a hyperscaler's list prices
  (the models the scenario's hyperscalers rent).
- **Value** V: what serving the whole job is worth to its tenant, `tenants.value_to_outside`
  × O (log-uniform): some jobs are worth more than the outside option, some less (work that
  is only done because a marketplace is cheaper).
- **The order**: the GPUs of the model the tenant expects to be cheapest per job on this
  market (by published marketplace prices); it accepts every model that can do the job with
  that many GPUs (memory, interconnect, min TFLOPS) and finish by the deadline. A slow GPU
  is acceptable for patient, latency-insensitive work.
- **Max price** (per GPU-hour, one for the whole order as on Akash): a fraction of the job's
  value per GPU-hour on its fastest acceptable model, V / (GPUs × hours there), so it lets
  through every model that could be worth it. The market's selection then compares bids by
  price per job and refuses a bid whose cost for the whole job is above the tenant's budget
  (the max price over the fastest run), never above V (`market.core.auction.AuctionContext`).

After an expired order the tenant re-posts higher (never above V); after a failed lease it
re-posts the remaining work; after too many of either it takes the rest of the job to a
hyperscaler if it is worth the list price there, and drops it otherwise. Where the market
offers interruptible orders, a share of jobs is posted interruptible, bidding a fraction of
the on-demand price it expects for its GPU (the median of recently published on-demand
prices, or the marketplace price before there are any), never above its max price nor above
what makes the job cost more than V; after an expiry the bid is raised like a max price, and
once it would reach the expected on-demand price the job goes on demand instead. A lease
paused longer than the tenant's patience is closed and the rest of the work re-posted on
demand.

Jobs come from a source: the synthetic arrivals above, a trace file (`agents.trace_demand`,
the scenario's `tenants.trace`), or both. Each source makes a job (its GPUs, acceptable
models, work per model, value, outside option, max price) and hands it to `Tenants.admit`;
from there on every job lives the lifecycle described here, whatever its source.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.demand_curve import DemandCurve
from agents.policies import Fraction
from agents.workloads import JOB_KINDS, JobKind, plan_jobs, sample_jobs
from market.core.outside import outside_cost_fraction, outside_models
from market.core.records import PROVIDER_FAULTS
from market.core.resources import gpu_units
from market.errors import MarketError
from market.events import Event, LeaseClosed, LeaseCreated, LeasePaused, OrderExpired
from market.units import GIB, SECONDS_PER_DAY, SECONDS_PER_HOUR, usd_to_micro

if TYPE_CHECKING:
    from market.builder import Market
    from market.scenario import Tenants as TenantsConfig

#: GPU interfaces with a fast interconnect between the GPUs of a node.
INTERCONNECT = frozenset({"sxm4", "sxm5", "oam", "neuronlink"})

_CHUNK = 1024  # jobs sampled and planned per numpy call

#: Thinning draws candidate arrivals at the peak rate over the whole horizon, however few it
#: keeps: more than this many (a few minutes of numpy) and the run is refused rather than
#: left to spin between arrivals (huge weekly growth, spikes or rates).
MAX_THINNING_CANDIDATES = 1e10


def job_kinds(config: TenantsConfig) -> tuple[JobKind, ...]:
    """The scenario's job mix as workload kinds, in JOB_KINDS order."""
    kinds = []
    for name in JOB_KINDS:
        spec = config.jobs.get(name)
        if spec is None:
            continue
        fields = spec.model_dump()
        for key in ("params_b", "tokens_b", "duration_h", "tokens_per_s", "deadline_h"):
            if fields[key] is not None:
                fields[key] = tuple(fields[key])
        kinds.append(JobKind(name=name, **fields))
    return tuple(kinds)


class TenantJob:
    """What a tenant remembers about one of its jobs between orders, whichever source made
    it (the synthetic arrivals, a trace)."""

    __slots__ = ("attempts", "expiries", "failures", "fast_hours", "gpus", "kind",
                 "max_price", "model", "outside_cost_usd", "outside_gpu_h",
                 "outside_served_usd", "outside_usd", "pref_hours", "spot_bid", "spot_units",
                 "tenant", "units", "value", "value_rate", "work_left", "work_s")

    def __init__(self, **values: Any) -> None:
        for key, value in values.items():
            setattr(self, key, value)


class Tenants:
    """The scenario's tenant population, acting through the market's public methods."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.config = config = market.scenario.tenants
        catalog = market.catalog
        self.kinds = job_kinds(config)
        self.tflops = catalog.array("tflops_bf16_dense")
        self.memory_bytes = catalog.array("memory_gib") * GIB
        self.bandwidth_tb_s = catalog.array("memory_bandwidth_tb_s")  # paces inference decode
        self.interconnect = np.array([m.interface in INTERCONNECT for m in catalog])
        self.list_price = catalog.array("list_usd_per_gpu_hour")
        # The outside option is what the scenario's hyperscalers rent (without any, every
        # model), at list price; serving it costs them a fraction of that.
        self.outside = outside_models(market.scenario, catalog)
        self.outside_cost_fraction = outside_cost_fraction(market.scenario, catalog)
        # What a tenant expects to pay on this market: the marketplace price where one is
        # known, else a specialty cloud's, else the list price.
        self.belief = np.array([m.marketplace_usd_per_gpu_hour or m.specialty_usd_per_gpu_hour
                                or m.list_usd_per_gpu_hour for m in catalog])
        self.ids = catalog.ids
        self.arrival_rng = market.streams.get("tenants.arrivals")
        self.job_rng = market.streams.get("tenants.jobs")
        self.choice_rng = market.streams.get("tenants.choices")
        self.tenants = [market.add_tenant(f"tenant-{i}", config.wallet_usd)
                        for i in range(config.count)]
        self.jobs: dict[int, TenantJob] = {}
        self.policy = config.policy.build()
        self.policy.bind(market)
        self.spikes = self._spikes()
        res = config.resources_per_gpu
        self._per_gpu = {"cpu_millicores_per_gpu": res.cpu_millicores,
                         "memory_bytes_per_gpu": int(res.memory_gib * GIB),
                         "storage_bytes_per_gpu": int(res.storage_gib * GIB),
                         "storage_class": res.storage_class}
        self.rented = np.array([k.name == "online_inference" for k in self.kinds])
        self.needs_link = np.array([k.needs_interconnect for k in self.kinds])
        self.value_log_range = np.log(np.array(config.value_to_outside, dtype=float))
        self._unit_cache: dict[tuple[int, bytes], tuple[Any, ...]] = {}
        self._chunk: dict[str, Any] = {}
        self._next = _CHUNK
        # Interruptible orders, where the mechanism offers them (else no draw: the other
        # streams stay as they are).
        offered = bool(getattr(market.mechanism, "interruptible", False))
        self.spot_terms = config.interruptible if offered else None
        self.spot = self.spot_terms if offered and config.interruptible.share > 0 else None
        self.spot_rng = market.streams.get("tenants.interruptible")
        # Jobs from a trace file, with their own streams (the synthetic ones stay as they
        # are): `agents.trace_demand.TraceArrivals`, attached before `start` by whoever builds
        # the population (`agents.populate.start_tenants`).
        self.trace: Any = None

    def start(self) -> None:
        if self.config.trace is not None and self.trace is None:
            raise MarketError("tenants.trace: the trace's arrivals are not attached; start "
                              "the tenants with agents.populate.start_tenants")
        kinds: tuple[type[Event], ...] = (OrderExpired, LeaseClosed)
        # Every lease would wake the tenants for nothing if the policy learns nothing from it.
        if getattr(type(self.policy), "after_fill", None) is not Fraction.after_fill:
            kinds += (LeaseCreated,)
        self.market.subscribe(self.on_event, kinds=kinds)
        if self.spot is not None or (self.trace is not None and self.spot_terms is not None):
            self.market.subscribe(self._paused, kinds=(LeasePaused,))
        if self.trace is not None:
            self.market.env.process(self.trace.arrivals())
            if self.trace.config.mode == "replace":
                return
        self.demand = DemandCurve(self.market, self.config)
        candidates = self.peak_rate_per_s() * self.demand.cap * self.market.horizon_s
        if not candidates <= MAX_THINNING_CANDIDATES:  # inf and NaN too
            config = self.config
            weeks = self.market.horizon_s / (7 * SECONDS_PER_DAY)
            field = ("tenants.weekly_growth" if math.log1p(config.weekly_growth) * weeks
                     > math.log(config.spikes.multiplier) else "tenants.spikes.multiplier"
                     if config.spikes.multiplier > 10 else "tenants.arrivals_per_hour")
            raise MarketError(
                f"{field}: arrivals peak at {self.peak_rate_per_s():.3g} jobs per "
                f"second (arrivals_per_hour x daily cycle x growth over the run x spike "
                f"multiplier), so thinning would draw about {candidates:.2g} candidate arrivals "
                f"(limit {MAX_THINNING_CANDIDATES:.0e}); lower the growth, the spike "
                f"multiplier or the rate, or shorten duration_days")
        self.market.env.process(self._arrivals())

    # ------------------------------------------------------------------ arrivals

    def _spikes(self) -> np.ndarray:
        """Start times (simulated seconds) of the demand spikes in the horizon."""
        spikes = self.config.spikes
        horizon = self.market.horizon_s
        expected = spikes.per_week * horizon / (7 * SECONDS_PER_DAY)
        count = self.arrival_rng.poisson(expected) if expected > 0 else 0
        return np.sort(self.arrival_rng.uniform(0.0, horizon, size=count))

    def rate_per_s(self, t_s: np.ndarray | float) -> np.ndarray:
        """Arrival rate of new jobs at simulated times `t_s`, per simulated second."""
        config = self.config
        t_s = np.asarray(t_s, dtype=float)
        hour = t_s / SECONDS_PER_HOUR
        daily = 1.0 + config.daily_amplitude * np.cos(2 * np.pi * (hour - config.peak_hour) / 24)
        growth = (1.0 + config.weekly_growth) ** (t_s / (7 * SECONDS_PER_DAY))
        index = np.searchsorted(self.spikes, t_s, side="right") - 1
        since = t_s - self.spikes[np.maximum(index, 0)] if self.spikes.size else t_s
        spiking = (index >= 0) & (since < config.spikes.duration_h * SECONDS_PER_HOUR)
        return (config.arrivals_per_hour / SECONDS_PER_HOUR * daily * growth
                * np.where(spiking, config.spikes.multiplier, 1.0))

    def peak_rate_per_s(self) -> float:
        """The highest arrival rate of the run, per simulated second (thinning's bound)."""
        config = self.config
        weeks = self.market.horizon_s / (7 * SECONDS_PER_DAY)
        try:
            growth = max(1.0, (1 + config.weekly_growth) ** weeks)
        except OverflowError:
            growth = float("inf")
        return (config.arrivals_per_hour / SECONDS_PER_HOUR * (1 + config.daily_amplitude)
                * growth * config.spikes.multiplier)

    def _arrivals(self):
        env = self.market.env
        demand = self.demand
        # Thinning: candidates at the peak rate (times the demand curve's cap), kept with
        # probability rate(t) × cap / peak; then the demand curve keeps each with probability
        # multiplier / cap (`agents.demand_curve`; cap 1 and always kept without elasticity).
        peak = self.peak_rate_per_s() * demand.cap
        rng = self.arrival_rng
        t = env.now
        while True:
            times = t + np.cumsum(rng.exponential(1.0 / peak, size=_CHUNK))
            kept = times[rng.random(_CHUNK) * peak <= self.rate_per_s(times) * demand.cap]
            t = float(times[-1])
            for arrival in kept.tolist():
                yield env.timeout(arrival - env.now)
                if demand.admits():
                    self._new_job()

    # ------------------------------------------------------------------ jobs

    def _plan_chunk(self) -> None:
        """Sample and plan the next `_CHUNK` jobs at once: the order each becomes (GPUs,
        acceptable models, work per model), its value and outside option, and what the
        tenant's max price is anchored to."""
        batch = sample_jobs(self.job_rng, _CHUNK, self.kinds)
        plan = plan_jobs(batch, self.kinds, self.tflops, self.memory_bytes, self.interconnect,
                         memory_bandwidth_tb_s=self.bandwidth_tb_s)
        rows = np.arange(_CHUNK)
        runs = plan.eligible  # by the job's deadline
        seconds = np.where(runs, plan.duration_s, 0.0)  # inf where it cannot: zeroed
        gpu_s = plan.gpus * seconds
        outside_usd, outside_gpu_h, outside_served_usd, outside_best_usd = \
            self.outside_option(runs, gpu_s)
        # The order: the GPUs of the model the tenant expects to be cheapest per job here.
        preferred = np.argmin(np.where(runs, gpu_s * self.belief, np.inf), axis=1)
        n = np.maximum(plan.gpus[rows, preferred], 1)
        # With n GPUs, a model that needs fewer finishes proportionally sooner (so still by
        # the deadline); an endpoint (online inference) is rented for its duration whatever
        # the GPU. A job that needs a fast interconnect spreads over n GPUs only where there
        # is one.
        rented = self.rented[batch.kind][:, None]
        scaled = np.where(rented, seconds, seconds * plan.gpus / n[:, None])
        linked = ~(self.needs_link[batch.kind][:, None] & (n[:, None] > 1) & ~self.interconnect)
        acceptable = runs & (plan.gpus <= n[:, None]) & linked
        hours = np.where(acceptable, scaled / SECONDS_PER_HOUR, np.inf)
        fast_hours = hours.min(axis=1)
        pref_hours = hours[rows, preferred]
        low, high = self.config.max_price_factor
        factor = self.choice_rng.uniform(low, high, _CHUNK)
        error = self.choice_rng.lognormal(0.0, self.config.duration_error_sigma, _CHUNK)
        tenant = self.choice_rng.integers(0, len(self.tenants), _CHUNK)
        log_low, log_high = self.value_log_range
        value = outside_usd * np.exp(self.choice_rng.uniform(log_low, log_high, _CHUNK))
        # The job's value per GPU-hour of the order on its fastest acceptable model: a max
        # price up to it lets through every model on which the job could be worth its cost.
        with np.errstate(divide="ignore", invalid="ignore"):
            value_rate = value / (n * fast_hours)
        self._chunk = {
            "valid": runs.any(axis=1).tolist(),
            "kind": batch.kind.tolist(),
            "tenant": tenant.tolist(),
            "gpus": n.tolist(),
            "acceptable": acceptable,
            # The estimate misses the real duration by `error`, except for an endpoint rented
            # for a set time; inf marks models the job never runs on.
            "work_s": np.where(acceptable, np.where(rented, scaled, scaled * error[:, None]),
                               np.inf),
            "value": value.tolist(),
            "value_rate": value_rate.tolist(),
            "model": preferred.tolist(),
            "factor": factor.tolist(),
            "outside_usd": outside_usd.tolist(),
            "outside_served_usd": outside_served_usd.tolist(),
            "outside_cost_usd": outside_best_usd.tolist(),
            "outside_gpu_h": outside_gpu_h.tolist(),
            # The tenant's estimates (whole job): its budget is its max price over the
            # fastest run, its escrow covers that budget (see `_post`).
            "fast_hours": fast_hours.tolist(),
            "pref_hours": pref_hours.tolist(),
        }
        self._next = 0

    def outside_option(self, runs: np.ndarray, gpu_s: np.ndarray) -> tuple[np.ndarray, ...]:
        """For jobs (rows) that can run on the models `runs` for `gpu_s` GPU-seconds on each
        (0 where they cannot): the outside option O, the cheapest way to run the whole job
        at a hyperscaler's list prices (USD), its GPU-hours there, what serving it costs
        the hyperscaler on that model and at best (USD)."""
        rows = np.arange(len(runs))
        reference = runs & self.outside
        reference = np.where(reference.any(axis=1)[:, None], reference, runs)
        outside_cost = np.where(reference, gpu_s * self.list_price, np.inf)
        outside = np.argmin(outside_cost, axis=1)
        outside_usd = outside_cost[rows, outside] / SECONDS_PER_HOUR
        outside_gpu_h = gpu_s[rows, outside] / SECONDS_PER_HOUR
        # What it costs the hyperscaler: on the model the tenant rents there, and at best.
        served_cost = outside_cost * self.outside_cost_fraction
        outside_served_usd = served_cost[rows, outside] / SECONDS_PER_HOUR
        outside_best_usd = served_cost.min(axis=1) / SECONDS_PER_HOUR
        return outside_usd, outside_gpu_h, outside_served_usd, outside_best_usd

    def _on_demand_expected(self, model: int) -> float:
        """What a GPU-hour of catalog model `model` costs on demand here, as a tenant can
        tell: the median of recently published on-demand lease prices, or the marketplace
        price it believes in while fewer than 5 are published."""
        recent = self.market.prices_seen.recent(self.ids[model])
        return float(np.median(recent)) if recent.size >= 5 else float(self.belief[model])

    def _units(self, n: int, acceptable: np.ndarray) -> tuple[Any, ...]:
        """Resource units for n GPUs of the acceptable models; one shared object per shape,
        so that the market recognizes it."""
        key = (n, acceptable.tobytes())
        units = self._unit_cache.get(key)
        if units is None:
            models = tuple(self.ids[m] for m in np.flatnonzero(acceptable))
            units = gpu_units(n, models, **self._per_gpu)
            self._unit_cache[key] = units
        return units

    def _new_job(self) -> None:
        if self._next >= _CHUNK:
            self._plan_chunk()
        i = self._next
        self._next += 1
        chunk = self._chunk
        if not chunk["valid"][i]:
            return  # no GPU model in the catalog can run it: not a job for this market
        n = chunk["gpus"][i]
        tenant = self.tenants[chunk["tenant"][i]]
        value_rate, fast_hours = chunk["value_rate"][i], chunk["fast_hours"][i]
        # The escrow deposit per USD of max price: the policy weighs a budget with it.
        max_price = self.policy.max_price(tenant, value_rate, chunk["factor"][i],
                                          n * fast_hours * self.config.deposit_factor)
        job = TenantJob(
            tenant=tenant, kind=self.kinds[chunk["kind"][i]].name, gpus=n,
            units=self._units(n, chunk["acceptable"][i]), work_s=chunk["work_s"][i],
            max_price=max_price, value=chunk["value"][i], value_rate=value_rate,
            outside_usd=chunk["outside_usd"][i], outside_gpu_h=chunk["outside_gpu_h"][i],
            outside_served_usd=chunk["outside_served_usd"][i],
            outside_cost_usd=chunk["outside_cost_usd"][i],
            fast_hours=fast_hours, pref_hours=chunk["pref_hours"][i], attempts=0,
            expiries=0, failures=0, work_left=1.0, spot_bid=0.0, model=chunk["model"][i],
            spot_units=None)
        self.admit(job)

    # ------------------------------------------------------------------ the lifecycle

    def admit(self, job: TenantJob, interruptible: bool | None = None,
              rng: np.random.Generator | None = None) -> None:
        """A new job enters the lifecycle, from whichever source (the synthetic arrivals, a
        trace): posted on demand, or interruptible where the market offers it (`None`: with
        the scenario's `interruptible.share`; a trace says so itself, and bids with draws
        from its own `rng`), or taken elsewhere when its max price is beyond its budget."""
        if interruptible is None:
            spot = self.spot
            bids = spot is not None and job.max_price is not None \
                and self.spot_rng.random() < spot.share
        else:
            spot = self.spot_terms
            bids = interruptible and spot is not None and job.max_price is not None
        if bids:
            draw = self.spot_rng if rng is None else rng
            # Never a bid at which the job on its GPU would cost more than it is worth.
            job.spot_bid = min(job.max_price, job.value / (job.gpus * job.pref_hours),
                               draw.uniform(*spot.bid_fraction)
                               * self._on_demand_expected(job.model))
            # A bid per GPU-hour is for one model (on Vast, for one machine): its own.
            only = np.zeros(len(self.ids), bool)
            only[job.model] = True
            job.spot_units = self._units(job.gpus, only)
        if job.max_price is None:  # beyond the tenant's budget: the job goes elsewhere
            self._leave(-1, job, "budget", 1.0)
            return
        self._post(job, None, 1.0)

    def _post(self, job: TenantJob, job_id: int | None, work_left: float) -> None:
        interruptible = job.spot_bid > 0
        # An interruptible order's max price is its bid, for its one GPU model.
        price = job.spot_bid if interruptible else job.max_price
        hours = job.pref_hours if interruptible else job.fast_hours
        # The escrow covers the most the tenant would pay: its max price over the (estimated)
        # fastest run, with a margin, and never more than the work is worth.
        deposit = min(price * job.gpus * hours * self.config.deposit_factor,
                      job.value) * work_left
        market = self.market
        job.work_left = work_left
        # Rounded as post_order rounds the deposit it locks: the check passes exactly when
        # the engine can lock it.
        if not market.settlement.can_lock(market.tenant_accounts[job.tenant],
                                          usd_to_micro(deposit)):
            # Cannot fund the escrow: the job goes to a hyperscaler (job id -1: never posted).
            self._leave(-1 if job_id is None else job_id, job, "budget", work_left)
            return
        order_id = market.post_order(
            job.tenant, job.spot_units if interruptible else job.units, price, deposit_usd=deposit,
            job_value_usd=job.value, outside_usd=job.outside_usd,
            outside_cost_usd=job.outside_cost_usd, job_id=job_id,
            job_kind=job.kind,
            work_s=job.work_s * work_left, work_left=work_left, attempt=job.attempts,
            interruptible=interruptible)
        if job_id is None:
            self.jobs[order_id] = job  # the first order's id names the job

    def _leave(self, job_id: int, job: TenantJob, reason: str, work_left: float) -> None:
        """Give up on the market: take the rest of the job to a hyperscaler if it is worth
        the list price there; drop it otherwise (a rational tenant pays no more than V)."""
        self.jobs.pop(job_id, None)
        if job.value < job.outside_usd:
            return
        self.market.tenant_left(job.tenant, job_id, reason, job.outside_gpu_h * work_left,
                                job.outside_usd * work_left, value_usd=job.value * work_left,
                                cost_usd=job.outside_served_usd * work_left)

    # ------------------------------------------------------------------ reactions

    def _paused(self, event: LeasePaused) -> None:
        """Give a paused lease `patience_s`; if it is still paused then (the same pause),
        close it and post the rest of the work on demand."""
        if event.job_id not in self.jobs:
            return
        market = self.market
        pauses = market.leases[event.lease_id].pauses

        def give_up(_event: Any) -> None:
            lease = market.leases.get(event.lease_id)
            job = self.jobs.get(event.job_id)
            if lease is None or lease.running or lease.pauses != pauses or job is None:
                return
            job.spot_bid = 0.0
            market.close_lease(event.lease_id, reopen=False)  # LeaseClosed re-posts the rest

        market.env.timeout(self.spot_terms.patience_s).callbacks.append(give_up)

    def on_event(self, event: Event) -> None:
        kind = type(event)
        if kind is LeaseCreated:
            job = self.jobs.get(event.job_id)
            if job is not None:
                self.policy.after_fill(job.tenant, event.waited_s, job.attempts)
        elif kind is OrderExpired:
            job = self.jobs.get(event.job_id)
            if job is None:
                return
            job.attempts += 1
            job.expiries += 1
            if job.expiries > self.config.max_reposts:
                self._leave(event.job_id, job, "expired", job.work_left)
                return
            if job.spot_bid:
                raised = min(self.policy.after_expiry(job.tenant, job.spot_bid,
                                                      job.value_rate),
                             job.max_price, job.value / (job.gpus * job.pref_hours))
                # Bidding up to the on-demand price buys nothing: take on-demand then.
                job.spot_bid = raised if raised < self._on_demand_expected(job.model) else 0.0
            else:
                job.max_price = self.policy.after_expiry(job.tenant, job.max_price,
                                                         job.value_rate)
            self._post(job, event.job_id, job.work_left)
        elif kind is LeaseClosed:
            job = self.jobs.get(event.job_id)
            if job is None:
                return
            if event.work_left <= 0:
                del self.jobs[event.job_id]
                return
            job.attempts += 1
            if event.reason == "insufficient_funds":
                # The estimate was short: deposit more for the rest.
                job.fast_hours *= 2
                job.pref_hours *= 2
            if event.reason in PROVIDER_FAULTS:
                job.failures += 1
                if job.failures >= self.config.max_failures:
                    self._leave(event.job_id, job, "failures", event.work_left)
                    return
            self._post(job, event.job_id, event.work_left)
