"""Tenants: jobs arrive, get priced against the hyperscaler, are posted, re-posted, or leave.

Arrivals are a Poisson process whose rate follows a daily cycle, grows week over week, and
jumps during occasional demand spikes (sampled by thinning). Each job is sized with the
transformer rule of thumb (`agents.workloads`), which fixes the GPUs it needs and its duration
on every GPU model. The tenant prefers the model that would be cheapest at hyperscaler list
prices, accepts any model that can run the job with that many GPUs at most
`slowdown_tolerance` times slower, and sets its max price as a fraction of the list price.
After an expired order it re-posts higher; after a failed lease it re-posts the remaining work;
after too many of either it takes the job to a hyperscaler.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.workloads import JOB_KINDS, JobKind, plan_jobs, sample_jobs
from market.events import Event, LeaseClosed, OrderExpired
from market.records import PROVIDER_FAULTS
from market.resources import gpu_units
from market.units import GIB, SECONDS_PER_DAY, SECONDS_PER_HOUR

if TYPE_CHECKING:
    from market.engine import Market
    from market.scenario import Tenants as TenantsConfig

#: GPU interfaces with a fast interconnect between the GPUs of a node.
INTERCONNECT = frozenset({"sxm4", "sxm5", "oam", "neuronlink"})

_CHUNK = 1024  # jobs sampled and planned per numpy call


def job_kinds(config: TenantsConfig) -> tuple[JobKind, ...]:
    """The scenario's job mix as workload kinds, in JOB_KINDS order."""
    kinds = []
    for name in JOB_KINDS:
        spec = config.jobs.get(name)
        if spec is None:
            continue
        fields = spec.model_dump()
        for key in ("params_b", "tokens_b", "duration_h", "tokens_per_s"):
            if fields[key] is not None:
                fields[key] = tuple(fields[key])
        kinds.append(JobKind(name=name, **fields))
    return tuple(kinds)


class _Job:
    """What a tenant remembers about one of its jobs between orders."""

    __slots__ = ("attempts", "est_hours", "failures", "gpus", "kind", "list_usd_per_gpu_hour",
                 "max_price", "models", "tenant", "units", "value", "work_left", "work_s")

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
        self.interconnect = np.array([m.interface in INTERCONNECT for m in catalog])
        self.list_price = catalog.array("list_usd_per_gpu_hour")
        self.ids = catalog.ids
        self.arrival_rng = market.streams.get("tenants.arrivals")
        self.job_rng = market.streams.get("tenants.jobs")
        self.choice_rng = market.streams.get("tenants.choices")
        self.tenants = [market.add_tenant(f"tenant-{i}", config.wallet_usd)
                        for i in range(config.count)]
        self.jobs: dict[int, _Job] = {}
        self.spikes = self._spikes()
        res = config.resources_per_gpu
        self._per_gpu = {"cpu_millicores_per_gpu": res.cpu_millicores,
                         "memory_bytes_per_gpu": int(res.memory_gib * GIB),
                         "storage_bytes_per_gpu": int(res.storage_gib * GIB),
                         "storage_class": res.storage_class}
        self._batch: Any = None
        self._plan: Any = None
        self._draws: Any = None
        self._next = _CHUNK

    def start(self) -> None:
        self.market.subscribe(self.on_event)
        self.market.env.process(self._arrivals())

    # ------------------------------------------------------------------ arrivals

    def _spikes(self) -> np.ndarray:
        """Start times (simulated seconds) of the demand spikes in the horizon."""
        spikes = self.config.spikes
        horizon = self.market.horizon_s
        expected = spikes.per_week * horizon / (7 * SECONDS_PER_DAY)
        count = self.arrival_rng.poisson(expected) if expected > 0 else 0
        return np.sort(self.arrival_rng.uniform(0.0, horizon, size=count))

    def rate_per_s(self, t_s: float) -> float:
        """Arrival rate of new jobs at `t_s`, per simulated second."""
        config = self.config
        hour = t_s / SECONDS_PER_HOUR
        daily = 1.0 + config.daily_amplitude * math.cos(2 * math.pi * (hour - config.peak_hour)
                                                        / 24)
        growth = (1.0 + config.weekly_growth) ** (t_s / (7 * SECONDS_PER_DAY))
        spike_s = config.spikes.duration_h * SECONDS_PER_HOUR
        index = np.searchsorted(self.spikes, t_s, side="right") - 1
        spiking = index >= 0 and t_s - self.spikes[index] < spike_s
        return (config.arrivals_per_hour / SECONDS_PER_HOUR * daily * growth
                * (config.spikes.multiplier if spiking else 1.0))

    def _arrivals(self):
        config = self.config
        env = self.market.env
        weeks = self.market.horizon_s / (7 * SECONDS_PER_DAY)
        peak = (config.arrivals_per_hour / SECONDS_PER_HOUR * (1 + config.daily_amplitude)
                * max(1.0, (1 + config.weekly_growth) ** weeks) * config.spikes.multiplier)
        rng = self.arrival_rng
        t = env.now
        while True:
            # Thinning: candidates at the peak rate, kept with probability rate(t) / peak.
            gaps = rng.exponential(1.0 / peak, size=_CHUNK)
            keep = rng.random(_CHUNK)
            for gap, u in zip(gaps.tolist(), keep.tolist(), strict=True):
                t += gap
                if u * peak <= self.rate_per_s(t):
                    yield env.timeout(t - env.now)
                    self._new_job()

    # ------------------------------------------------------------------ jobs

    def _next_job(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        if self._next >= _CHUNK:
            self._batch = sample_jobs(self.job_rng, _CHUNK, self.kinds)
            self._plan = plan_jobs(self._batch, self.kinds, self.tflops, self.memory_bytes,
                                   self.interconnect)
            low, high = self.config.max_price_factor
            self._draws = np.column_stack([
                self.choice_rng.integers(0, len(self.tenants), _CHUNK),
                self.choice_rng.uniform(low, high, _CHUNK),
                self.choice_rng.lognormal(0.0, self.config.duration_error_sigma, _CHUNK),
            ])
            self._next = 0
        i = self._next
        self._next += 1
        return int(self._batch.kind[i]), self._plan.gpus[i], self._plan.duration_s[i], \
            self._draws[i]

    def _new_job(self) -> None:
        kind, gpus, duration_s, (tenant, factor, error) = self._next_job()
        eligible = gpus > 0
        if not eligible.any():
            return  # no GPU model in the catalog can run it: not a job for this market
        hours = np.where(eligible, duration_s, 0.0)  # inf where ineligible; zeroed to multiply
        list_cost = np.where(eligible, gpus * hours * self.list_price, np.inf)
        preferred = int(np.argmin(list_cost))
        n = int(gpus[preferred])
        # With n GPUs, a model that needs fewer finishes proportionally sooner; an endpoint
        # (online inference) is rented for its duration whatever the GPU.
        scaled = hours if self.kinds[kind].name == "online_inference" else hours * gpus / n
        acceptable = eligible & (gpus <= n) & (
            scaled <= self.config.slowdown_tolerance * scaled[preferred])
        models = tuple(self.ids[m] for m in np.flatnonzero(acceptable))
        list_price = float(self.list_price[preferred])
        est_hours = float(scaled[preferred]) / SECONDS_PER_HOUR
        job = _Job(tenant=self.tenants[int(tenant)], kind=self.kinds[kind].name, gpus=n,
                   models=models, units=gpu_units(n, models, **self._per_gpu),
                   work_s=np.where(acceptable, scaled * error, np.inf),  # inf: never leased
                   max_price=min(factor, self.config.max_price_cap_factor) * list_price,
                   value=list_price, list_usd_per_gpu_hour=list_price, est_hours=est_hours,
                   attempts=0, failures=0, work_left=1.0)
        self._post(job, None, 1.0)

    def _post(self, job: _Job, job_id: int | None, work_left: float) -> None:
        deposit = job.max_price * job.gpus * job.est_hours * work_left * \
            self.config.deposit_factor
        market = self.market
        job.work_left = work_left
        if market.ledger.balance(market.tenant_accounts[job.tenant]) < round(deposit * 1e6):
            if job_id is not None:
                self._leave(job_id, job, "budget", work_left)
            return
        order_id = market.post_order(
            job.tenant, job.units, job.max_price, deposit_usd=deposit,
            value_usd_per_gpu_hour=job.value, job_id=job_id, job_kind=job.kind,
            work_s=job.work_s * work_left, work_left=work_left, attempt=job.attempts)
        if job_id is None:
            self.jobs[order_id] = job  # the first order's id names the job

    def _leave(self, job_id: int, job: _Job, reason: str, work_left: float) -> None:
        gpu_hours = job.gpus * job.est_hours * work_left
        self.jobs.pop(job_id, None)
        self.market.tenant_left(job.tenant, job_id, reason, gpu_hours,
                                gpu_hours * job.list_usd_per_gpu_hour)

    # ------------------------------------------------------------------ reactions

    def on_event(self, event: Event) -> None:
        kind = type(event)
        if kind is OrderExpired:
            job = self.jobs.get(event.job_id)
            if job is None:
                return
            job.attempts += 1
            if job.attempts > self.config.max_reposts:
                self._leave(event.job_id, job, "expired", job.work_left)
                return
            job.max_price = min(job.max_price * self.config.reprice_factor,
                                job.list_usd_per_gpu_hour * self.config.max_price_cap_factor)
            self._post(job, event.job_id, job.work_left)
        elif kind is LeaseClosed:
            job = self.jobs.get(event.job_id)
            if job is None:
                return
            if event.work_left <= 0:
                del self.jobs[event.job_id]
                return
            job.attempts += 1
            if event.reason in PROVIDER_FAULTS:
                job.failures += 1
                if job.failures >= self.config.max_failures:
                    self._leave(event.job_id, job, "failures", event.work_left)
                    return
            self._post(job, event.job_id, event.work_left)
