"""Trace-driven demand: jobs read from a trace file enter the tenants' lifecycle.

A trace row (`agents.trace_files`) gives when a job was submitted, how long it ran, on how
many GPUs and which GPU models it accepts. Here it becomes a job as the synthetic arrivals
make one (`agents.tenants`), then the same lifecycle takes it (`Tenants.admit`): deposits,
re-posts after an expiry, failures, leaving for a hyperscaler, interruptible orders.

- **Time**: simulated time 0 is the start of `window_s` (else the first job's submit time);
  a job arrives at (submit − origin) × `time_scale`. Durations are kept as the trace has
  them.
- **Work on other models**: the trace's duration was measured on the job's reference model
  (`reference_gpu`, else its slowest acceptable model by dense BF16 TFLOPS). As in
  `agents.workloads` (a job is a number of FLOPs done at a rate proportional to TFLOPS),
  it runs on model m in duration × TFLOPS(reference) / TFLOPS(m), on the same GPUs.
- **Value and max price**: the trace's own (generic CSV) where it has them; otherwise the
  synthetic rule: value = outside option × `value_to_outside` (log-uniform), first max price
  from the tenants' policy with `max_price_factor`; the tenant's duration estimate misses by
  the lognormal `duration_error_sigma` (the work itself is the trace's).
- **Tenants**: a trace that names its tenants (organization, user, tenant) gets one tenant
  per name, `trace:<name>`, each with `wallet_usd`; jobs that name none go to one of the
  scenario's `tenants.count` tenants, drawn uniformly.
- **Sampling**: each job is kept with probability `sample_fraction`, drawn from the run's
  stream `tenants.trace.sample` (same seed, same jobs; a smaller fraction keeps a subset of
  what a larger one keeps).

The file is read twice, row by row: once when the market is built (every row checked, so a
malformed row fails before the run with its file, line and column; the digest; the tenants;
the skipped rows by reason), and once as the run replays it, never ahead of simulated time.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.tenants import TenantJob
from agents.trace_files import (
    Skipped,
    TraceError,
    TraceJob,
    TraceRules,
    file_digest,
    resolve_gpu_map,
    trace_rows,
)

if TYPE_CHECKING:
    from agents.tenants import Tenants
    from market.scenario import TraceDemand



def trace_rules(config: TraceDemand, catalog: Any) -> TraceRules:
    """The rules that make the scenario's trace rows jobs."""
    return TraceRules(
        format=config.format, gpu_map=resolve_gpu_map(catalog, config.gpu_map),
        gpu_share=config.gpu_share, cpu_only=config.cpu_only, max_gpus=config.max_gpus,
        window_s=None if config.window_s is None else tuple(config.window_s),
        reorder_rows=config.reorder_rows, interruptible_qos=tuple(config.interruptible_qos))


class TraceArrivals:
    """A trace as a source of jobs for `tenants`."""

    def __init__(self, tenants: Tenants, config: TraceDemand) -> None:
        self.tenants = tenants
        self.config = config
        market = tenants.market
        self.market = market
        self.rules = trace_rules(config, market.catalog)
        self.rng = market.streams.get("tenants.trace")
        # Its own stream, one draw per job: a smaller fraction keeps a subset of the jobs a
        # larger one keeps (same seed), and the jobs kept draw the same values either way.
        self.sample_rng = market.streams.get("tenants.trace.sample")
        index = {model: i for i, model in enumerate(market.catalog.ids)}
        self.model_index = index
        self.reference = None if config.reference_gpu is None else index[config.reference_gpu]
        self.files = {"path": config.path, "sha256": file_digest(config.path)}
        if config.tasks_path is not None:
            self.files.update(tasks_path=config.tasks_path,
                              tasks_sha256=file_digest(config.tasks_path))
        # The first pass: check every row, count what is skipped, meet the tenants.
        self.skipped: Counter[str] = Counter()
        self.rows = self.jobs = 0
        first: float | None = None
        self.named: dict[str, int] = {}
        wallet = tenants.config.wallet_usd
        for item in trace_rows(config.path, self.rules, config.tasks_path):
            self.rows += 1
            if isinstance(item, Skipped):
                self.skipped[item.reason] += 1
                continue
            self.jobs += 1
            if first is None:
                first = item.row.submit_s
            name = item.row.tenant
            if name and name not in self.named:
                self.named[name] = market.add_tenant(f"trace:{name}", wallet)
        self.origin_s = config.window_s[0] if config.window_s is not None else (first or 0.0)
        # What the replay does, for the summary.
        self.replayed = Counter({"arrived": 0, "sampled_out": 0,
                                 "interruptible_posted_on_demand": 0})
        market.trace_demand = self  # the run's result reports it (market.observe.result)

    def summary(self) -> dict[str, Any]:
        """What the run read and did with it: the files and their digests, rows, jobs,
        skipped rows by reason, jobs that arrived, were sampled out, or lay beyond the end
        of the run."""
        replayed = dict(self.replayed)
        reached = replayed["arrived"] + replayed["sampled_out"]
        return {**self.files, "format": self.config.format, "mode": self.config.mode,
                "rows": self.rows, "jobs": self.jobs,
                "skipped": dict(sorted(self.skipped.items())), **replayed,
                "beyond_end_of_run": self.jobs - reached}

    def arrivals(self):
        """The SimPy process: each job at its (scaled) submit time, read as time comes."""
        env = self.market.env
        horizon = self.market.horizon_s
        fraction = self.config.sample_fraction
        scale = self.config.time_scale
        for item in trace_rows(self.config.path, self.rules, self.config.tasks_path):
            if isinstance(item, Skipped):
                continue
            at = (item.row.submit_s - self.origin_s) * scale
            if at >= horizon:
                return
            if self.sample_rng.random() >= fraction:
                self.replayed["sampled_out"] += 1
                continue
            if at > env.now:
                yield env.timeout(at - env.now)
            self.replayed["arrived"] += 1
            self._new_job(item)

    def _new_job(self, item: TraceJob) -> None:
        tenants = self.tenants
        config = tenants.config
        rng = self.rng
        row = item.row
        n = item.gpus
        tflops = tenants.tflops
        if item.models:
            acceptable = np.zeros(len(tflops), bool)
            acceptable[[self.model_index[model] for model in item.models]] = True
        else:
            acceptable = np.ones(len(tflops), bool)
        reference = self.reference if self.reference is not None else \
            int(np.argmin(np.where(acceptable, tflops, np.inf)))
        # Work is FLOPs: on model m it takes duration × TFLOPS(reference) / TFLOPS(m).
        work_s = np.where(acceptable, row.duration_s * tflops[reference] / tflops, np.inf)
        gpu_s = np.where(acceptable, n * work_s, 0.0)
        outside_usd, outside_gpu_h, served_usd, best_usd = (
            float(a[0]) for a in tenants.outside_option(acceptable[None, :], gpu_s[None, :]))
        # Every draw is made for every job, used or not: a job's draws do not depend on the
        # trace's columns.
        error = rng.lognormal(0.0, config.duration_error_sigma)
        log_low, log_high = tenants.value_log_range
        value_draw = float(np.exp(rng.uniform(log_low, log_high)))
        factor = rng.uniform(*config.max_price_factor)
        pick = int(rng.integers(0, len(tenants.tenants)))
        estimate_h = work_s / error / 3600  # what the tenant expects, inf where it cannot
        preferred = int(np.argmin(np.where(acceptable, gpu_s * tenants.belief, np.inf)))
        fast_hours = float(estimate_h.min())
        value = row.value_usd if row.value_usd is not None else outside_usd * value_draw
        value_rate = value / (n * fast_hours)
        tenant = self.named[row.tenant] if row.tenant else tenants.tenants[pick]
        if row.max_price_usd_per_gpu_hour is not None:
            max_price = row.max_price_usd_per_gpu_hour
        else:
            max_price = tenants.policy.max_price(tenant, value_rate, factor,
                                                 n * fast_hours * config.deposit_factor)
        job = TenantJob(
            tenant=tenant, kind="trace", gpus=n, units=tenants._units(n, acceptable),
            work_s=work_s, max_price=max_price, value=value, value_rate=value_rate,
            outside_usd=outside_usd, outside_gpu_h=outside_gpu_h,
            outside_served_usd=served_usd, outside_cost_usd=best_usd, fast_hours=fast_hours,
            pref_hours=float(estimate_h[preferred]), attempts=0, expiries=0, failures=0,
            work_left=1.0, spot_bid=0.0, model=preferred, spot_units=None)
        interruptible = row.interruptible
        if interruptible and tenants.spot_terms is None:
            self.replayed["interruptible_posted_on_demand"] += 1
            interruptible = False
        tenants.admit(job, interruptible, rng)


__all__ = ["TraceArrivals", "TraceError", "trace_rules"]
