"""Workloads: what a tenant's job needs, by the transformer rule of thumb.

A job runs a model of ``params`` parameters over ``tokens`` tokens. Training and fine-tuning
cost 6·n·p FLOPs (forward and backward pass), inference 2·n·p (forward only); memory is
``bytes_per_param`` per parameter times ``memory_overhead``.

How fast a GPU does those FLOPs is a roofline, per GPU, in FLOP/s:

    rate = min(TFLOPS · 10^12 · utilization,  2 · B · bandwidth_TB/s · 10^12 / bytes_per_param)

with TFLOPS the peak dense BF16 rate (10^12 FLOP/s), bandwidth the peak memory bandwidth
(TB/s = 10^12 bytes/s), B = ``decode_batch_tokens`` (tokens) and ``bytes_per_param`` (bytes).
The first term, the compute bound, is all there is for training and fine-tuning. The second,
the memory bound, applies to inference kinds that set B: a decode step reads every weight once
(p · bytes_per_param bytes) and serves B tokens at 2·p FLOPs each, so FLOP/s <=
2·p·B·bandwidth / (p·bytes_per_param); p cancels, and so does the GPU count (each of g GPUs
holding 1/g of the weights reads its share per step). Token generation is therefore paced by
memory bandwidth, not TFLOPS: decoding 16 tokens per weight read, an RTX 3090 (71 TFLOPS,
0.936 TB/s) runs at 93% of an RTX 4090's speed (165 TFLOPS, 1.008 TB/s), not 43%. Reads of
the KV cache are left out (they would only add memory traffic), and the bound takes the peak
bandwidth (serving stacks reach 60-85% of it): B is an effective batch that absorbs both.

A job that runs to completion has a **deadline**: the wall time, from the start of its lease,
by which it must be done (latency-insensitive batch work waits days, a fine-tune is wanted
back the same day).
:func:`sample_jobs` draws a :class:`JobBatch` (struct of arrays); :func:`plan_jobs` says, for
every job and GPU model, how many GPUs the tenant rents and for how long, and which models
cannot meet the deadline at all.

>>> import numpy as np
>>> batch = sample_jobs(np.random.default_rng(3), 4)
>>> [JOB_KINDS[k] for k in batch.kind]
['training', 'fine_tuning', 'online_inference', 'batch_inference']
>>> plan = plan_jobs(batch, DEFAULT_JOB_KINDS, tflops=np.array([989.0, 165.0]),
...                  memory_bytes=np.array([80.0, 24.0]) * 2**30,
...                  interconnect=np.array([True, False]),
...                  memory_bandwidth_tb_s=np.array([3.35, 1.008]))  # H100 SXM, RTX 4090
>>> (batch.deadline_s / 3600).round(1).tolist()  # online inference: rented, no deadline
[139.8, 11.4, nan, 149.7]
>>> plan.gpus.tolist()
[[1, 1], [1, 1], [1, 0], [1, 1]]
>>> (plan.duration_s / 3600).round(1).tolist()  # a small training run fits a 4090 in time
[[22.2, 133.4], [1.0, 6.2], [20.9, inf], [0.8, 2.8]]
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

JOB_KINDS: tuple[str, ...] = ("training", "fine_tuning", "batch_inference", "online_inference")

# Kinds that run a backward pass too: 6·n·p FLOPs instead of 2·n·p.
_BACKWARD_KINDS = frozenset({"training", "fine_tuning"})
# Kinds rented for a chosen duration at a sustained throughput, rather than run to completion.
_RENTED_KINDS = frozenset({"online_inference"})
# Kinds that may be memory-bandwidth bound (decode); the others are compute-bound.
_INFERENCE_KINDS = frozenset({"batch_inference", "online_inference"})
_SECONDS_PER_HOUR = 3600.0


def _is_range(value: object) -> bool:
    """True for a (low, high) pair of finite reals with 0 < low <= high."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        return False
    try:
        low, high = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return False
    return math.isfinite(high) and 0.0 < low <= high


@dataclass(frozen=True, slots=True)
class JobKind:
    """One kind of job and the distribution its sizes are drawn from.

    ``name`` must be one of :data:`JOB_KINDS`; it fixes the FLOPs rule (6·n·p for training and
    fine-tuning, 2·n·p otherwise) and whether the job is rented for a duration
    (``online_inference``: give ``duration_h`` and ``tokens_per_s``) or run to completion over
    ``tokens_b`` billion tokens by a deadline drawn from ``deadline_h`` (every other kind).
    Ranges are (low, high), sampled log-uniformly. ``share`` is the kind's weight in the order
    mix (normalized when sampling). ``min_tflops`` excludes slower GPU models;
    ``needs_interconnect`` confines jobs that need more than one GPU to models with a fast
    interconnect. The tenant adds GPUs, up to ``max_gpus``, to finish by its deadline.
    ``utilization`` is the fraction of peak TFLOPS reached when compute-bound (model FLOPs
    utilization). ``decode_batch_tokens`` (inference kinds only) is the tokens served per read
    of the weights: the memory bound of the module docstring; None leaves the kind
    compute-bound only.
    """

    name: str
    share: float
    params_b: tuple[float, float]
    tokens_b: tuple[float, float] | None = None  # None for online_inference
    duration_h: tuple[float, float] | None = None  # online_inference only
    tokens_per_s: tuple[float, float] | None = None  # online_inference only
    bytes_per_param: float = 2.0
    memory_overhead: float = 1.0
    utilization: float = 0.4
    min_tflops: float = 0.0
    needs_interconnect: bool = False
    max_gpus: int = 8
    deadline_h: tuple[float, float] | None = None  # every kind but online_inference
    decode_batch_tokens: float | None = None  # inference kinds only; None: compute-bound

    def __post_init__(self) -> None:
        def invalid(field: str, valid: str) -> ValueError:
            got = getattr(self, field)
            return ValueError(f"job kind {self.name!r}: {field} must be {valid}, got {got!r}")

        if self.name not in JOB_KINDS:
            raise invalid("name", f"one of {', '.join(JOB_KINDS)}")
        rented = self.name in _RENTED_KINDS
        for field, wanted in (
            ("tokens_b", not rented),
            ("deadline_h", not rented),
            ("duration_h", rented),
            ("tokens_per_s", rented),
        ):
            value = getattr(self, field)
            if wanted and not _is_range(value):
                raise invalid(field, "a (low, high) pair with 0 < low <= high")
            if not wanted and value is not None:
                raise invalid(field, "None for this kind")
        if not _is_range(self.params_b):
            raise invalid("params_b", "a (low, high) pair with 0 < low <= high")
        if not (math.isfinite(self.share) and self.share >= 0):
            raise invalid("share", ">= 0")
        if not (math.isfinite(self.bytes_per_param) and self.bytes_per_param > 0):
            raise invalid("bytes_per_param", "> 0")
        if not (math.isfinite(self.memory_overhead) and self.memory_overhead >= 1):
            raise invalid("memory_overhead", ">= 1")
        if not 0 < self.utilization <= 1:
            raise invalid("utilization", "in (0, 1]")
        if not (math.isfinite(self.min_tflops) and self.min_tflops >= 0):
            raise invalid("min_tflops", ">= 0")
        batch = self.decode_batch_tokens
        if self.name not in _INFERENCE_KINDS and batch is not None:
            raise invalid("decode_batch_tokens", "None for this kind (it is compute-bound)")
        if batch is not None and not (
            isinstance(batch, int | float) and not isinstance(batch, bool)
            and math.isfinite(batch) and batch > 0
        ):
            raise invalid("decode_batch_tokens", "a number > 0, or None")
        whole = isinstance(self.max_gpus, int) and not isinstance(self.max_gpus, bool)
        if not (whole and self.max_gpus >= 1):
            raise invalid("max_gpus", "an integer >= 1")


# Sizes are set so that on one H100 (989 TFLOPS, 80 GiB, 3.35 TB/s) median durations are: training
# ~2 days, fine-tuning ~3 h, batch inference ~3 h, online inference ~10 h (tests/agents check the
# bands).
DEFAULT_JOB_KINDS: tuple[JobKind, ...] = (
    JobKind(
        "training",
        share=0.10,  # few teams pretrain; most demand is adapting and serving existing models
        params_b=(0.1, 7.0),  # small models a node pretrains in days; 7B x 10 bytes fits 80 GB
        tokens_b=(2.0, 100.0),  # ~20 tokens/param (Chinchilla) at the median 0.8B model
        bytes_per_param=10.0,  # bf16 weights (2) + gradients and Adam state (~8)
        utilization=0.40,  # typical model FLOPs utilization (MFU) of well-tuned training
        needs_interconnect=True,  # data/tensor parallelism all-reduces gradients every step
        max_gpus=8,  # one NVLink/Infinity Fabric node: the unit a provider rents as one place
        # assumption: a pretraining run is planned around three days to two weeks of a node;
        # to finish sooner, add GPUs
        deadline_h=(72.0, 336.0),
    ),
    JobKind(
        "fine_tuning",
        share=0.25,
        params_b=(1.0, 70.0),  # adapting open models, Llama-class 1B-70B
        tokens_b=(0.03, 0.3),  # instruction/domain sets: tens to hundreds of millions of tokens
        # LoRA: frozen bf16 weights (2) + adapters with their gradients and fp32 Adam state
        # (~1-2% of params x 16 bytes) + activations at small batch: ~3 bytes/param, not the 10
        # of full fine-tuning. So a 7B fine-tune fits one 24 GB card, as it does in practice.
        bytes_per_param=3.0,
        utilization=0.40,  # same kernels as training; typical MFU
        needs_interconnect=True,  # sharded weights across GPUs still talk every step
        deadline_h=(4.0, 24.0),  # assumption: wanted back the same working day, or by tomorrow
    ),
    JobKind(
        "batch_inference",
        share=0.40,  # offline scoring, embedding, synthetic data: the bulk of jobs by count
        params_b=(1.0, 70.0),
        tokens_b=(0.05, 0.5),
        bytes_per_param=2.0,  # bf16 weights
        memory_overhead=1.2,  # activations and KV cache on top of the weights
        # Compute-bound phases (prefill, large-batch matmuls) reach 30-60% of peak in serving
        # engines; forward-only with no gradient all-reduce, so a little above training's 0.4.
        # Memory limits are the decode bound below, not folded in here any more.
        utilization=0.50,
        # latency-insensitive: overnight to a week is fine (assumption), so slow consumer GPUs
        # can take it when they are cheaper per job
        deadline_h=(12.0, 168.0),
        # Assumption: offline engines batch as many sequences as the KV cache holds; a 7-8B
        # model on a 24 GB card has ~8 GB left, about 64 sequences of ~1k tokens. Prompt tokens
        # are counted as decode: conservative for prompt-heavy work (scoring, embedding).
        decode_batch_tokens=64.0,
    ),
    JobKind(
        "online_inference",
        share=0.25,
        params_b=(1.0, 70.0),
        duration_h=(2.0, 48.0),  # an endpoint rented for a shift to a couple of days
        tokens_per_s=(50.0, 2000.0),  # sustained generated+prompt tokens for the endpoint
        bytes_per_param=2.0,  # bf16 weights
        memory_overhead=1.2,  # KV cache for concurrent requests
        utilization=0.50,  # as batch inference when compute-bound (prefill)
        min_tflops=300.0,  # user-facing latency needs high-end cards (H100/A100/L40S/MI300X)
        # Assumption: an interactive endpoint keeps per-token latency low with ~16 concurrent
        # streams per weight read, so it is memory-bound on every card
        decode_batch_tokens=16.0,
    ),
)


def training_flops(params: float, tokens: float) -> float:
    """FLOPs to train ``params`` parameters on ``tokens`` tokens: 6·n·p.

    >>> f"{training_flops(175e9, 300e9):.3g}"
    '3.15e+23'
    """
    return 6.0 * params * tokens


def inference_flops(params: float, tokens: float) -> float:
    """FLOPs to run ``params`` parameters forward over ``tokens`` tokens: 2·n·p.

    >>> f"{inference_flops(175e9, 1024):.3g}"
    '3.58e+14'
    """
    return 2.0 * params * tokens


def gpu_hours(flops: float, tflops: float, utilization: float = 1.0) -> float:
    """GPU-hours to do ``flops`` on a GPU of peak ``tflops`` (10^12 FLOP/s) at ``utilization``.

    >>> round(gpu_hours(training_flops(175e9, 300e9), 312.0) * 2.0)  # USD at $2/GPU-hour
    560897
    """
    return flops / (tflops * 1e12 * utilization) / _SECONDS_PER_HOUR


@dataclass(slots=True)
class JobBatch:
    """``n`` jobs as a struct of arrays, all of length ``n``.

    ``kind`` indexes the kinds sequence the batch was sampled with; ``tokens`` is the tokens
    processed (online inference: duration x tokens_per_s); ``fixed_duration_s`` and
    ``tokens_per_s`` are nan except for rented (online inference) jobs, ``deadline_s`` is nan
    for them (a rented job has no deadline: it runs for its duration).
    """

    kind: np.ndarray  # int8
    params: np.ndarray  # float64, parameters
    tokens: np.ndarray  # float64, tokens processed
    flops: np.ndarray  # float64
    memory_bytes: np.ndarray  # float64
    fixed_duration_s: np.ndarray  # float64; nan except online inference
    tokens_per_s: np.ndarray  # float64; nan except online inference
    deadline_s: np.ndarray  # float64 wall time from the lease's start; nan for online inference

    def __len__(self) -> int:
        return len(self.kind)


def _check_kinds(kinds: tuple[JobKind, ...]) -> None:
    if not kinds:
        raise ValueError("kinds: must hold at least one JobKind")
    if len(kinds) > np.iinfo(np.int8).max + 1:
        raise ValueError(f"kinds: at most 128 kinds fit the int8 kind code, got {len(kinds)}")
    for i, kind in enumerate(kinds):
        if not isinstance(kind, JobKind):
            raise ValueError(f"kinds[{i}]: must be a JobKind, got {type(kind).__name__}")


def _per_kind(kinds: tuple[JobKind, ...], attr: str) -> np.ndarray:
    """One value per kind, as an array to index by kind code."""
    return np.array([getattr(k, attr) for k in kinds])


def _log_bounds(kinds: tuple[JobKind, ...], attr: str) -> np.ndarray:
    """[n_kinds, 2] natural logs of each kind's (low, high) range; nan where it has none."""
    nan = (math.nan, math.nan)
    return np.log(np.array([getattr(k, attr) or nan for k in kinds], dtype=np.float64))


def sample_jobs(
    rng: np.random.Generator, n: int, kinds: Sequence[JobKind] = DEFAULT_JOB_KINDS
) -> JobBatch:
    """Draw ``n`` jobs: kind by share (normalized), then sizes, each log-uniform in its range.

    Vectorized: the number of numpy calls does not grow with ``n``. Deterministic for a given
    ``rng`` state: the kinds take one draw, the sizes one [4, n] block of uniforms (a job's
    deadline and a rented job's duration share a row: a kind has one or the other).
    """
    kinds = tuple(kinds)
    _check_kinds(kinds)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n: must be an integer >= 0, got {n!r}")
    shares = _per_kind(kinds, "share").astype(np.float64)
    if not shares.sum() > 0:
        raise ValueError("kinds: shares must not all be 0")
    kind = rng.choice(len(kinds), size=n, p=shares / shares.sum()).astype(np.int8)
    u = rng.random((4, n))

    def draw(attr: str, row: int) -> np.ndarray:
        low, high = _log_bounds(kinds, attr)[kind].T
        return np.exp(low + u[row] * (high - low))  # nan for kinds without this range

    params = draw("params_b", 0) * 1e9
    rented = np.array([k.name in _RENTED_KINDS for k in kinds])[kind]
    fixed_duration_s = draw("duration_h", 2) * _SECONDS_PER_HOUR
    deadline_s = draw("deadline_h", 2) * _SECONDS_PER_HOUR
    tokens_per_s = draw("tokens_per_s", 3)
    tokens = np.where(rented, fixed_duration_s * tokens_per_s, draw("tokens_b", 1) * 1e9)
    flops_per_param_token = np.array([6.0 if k.name in _BACKWARD_KINDS else 2.0 for k in kinds])
    return JobBatch(
        kind=kind,
        params=params,
        tokens=tokens,
        flops=flops_per_param_token[kind] * params * tokens,
        memory_bytes=params
        * (_per_kind(kinds, "bytes_per_param") * _per_kind(kinds, "memory_overhead"))[kind],
        fixed_duration_s=fixed_duration_s,
        tokens_per_s=tokens_per_s,
        deadline_s=deadline_s,
    )


@dataclass(slots=True)
class JobPlan:
    """How every job would run on every GPU model: arrays of shape [n_jobs, n_models], and
    each job's deadline (shape [n_jobs])."""

    gpus: np.ndarray  # int32; 0 where the model cannot run the job by its deadline
    duration_s: np.ndarray  # float64 wall time in simulated seconds; inf where it cannot
    # float64 wall time from the lease's start by which the job must be done: the sampled one,
    # or the fastest any model can do when none meets it; nan for rented (online) jobs
    deadline_s: np.ndarray

    @property
    def eligible(self) -> np.ndarray:
        """bool [n_jobs, n_models]: the model can run the job by its deadline."""
        return self.gpus > 0


# Relative slack on GPU counts: a job that needs exactly k GPUs by float round-off (a deadline
# set to a model's own run time) must not be given k + 1.
_ROUND_OFF = 1e-9


def decode_flop_rate(
    memory_bandwidth_tb_s: float | np.ndarray,
    decode_batch_tokens: float | np.ndarray,
    bytes_per_param: float | np.ndarray,
) -> float | np.ndarray:
    """Memory bound on inference FLOP/s per GPU: 2 · B · bandwidth / bytes_per_param.

    Each decode step reads the weights once and serves ``decode_batch_tokens`` (B) tokens of
    2·p FLOPs each. An RTX 3090 (0.936 TB/s) decoding bf16 weights 16 tokens at a time:

    >>> f"{decode_flop_rate(0.936, 16, 2.0) / 1e12:.2f} TFLOP/s"
    '14.98 TFLOP/s'
    """
    return 2.0 * decode_batch_tokens * np.asarray(memory_bandwidth_tb_s) * 1e12 / bytes_per_param


def plan_jobs(
    batch: JobBatch,
    kinds: Sequence[JobKind],
    tflops: np.ndarray,
    memory_bytes: np.ndarray,
    interconnect: np.ndarray,
    usable_fraction: float = 0.9,
    *,
    memory_bandwidth_tb_s: np.ndarray,
) -> JobPlan:
    """GPUs needed and wall time for every job on every GPU model (broadcast [n_jobs, n_models]).

    ``kinds`` is the sequence ``batch`` was sampled with; ``tflops``, ``memory_bytes`` (per GPU),
    ``interconnect`` (fast GPU-to-GPU links, e.g. SXM/OAM parts) and ``memory_bandwidth_tb_s``
    (per GPU, TB/s) describe the models. Effective FLOP/s per GPU is the roofline of the module
    docstring: TFLOPS x utilization, capped for inference kinds with a ``decode_batch_tokens``
    by :func:`decode_flop_rate`. GPUs = max(copies of the memory in ``usable_fraction`` of each
    GPU, GPUs to finish by the job's deadline); wall time = FLOPs / (GPUs x effective FLOP/s).
    A rented (online
    inference) job instead needs enough GPUs to sustain its FLOP rate, 2·p·tokens_per_s, and
    runs for its fixed duration. A model cannot run a job (0 GPUs, inf duration) when it is
    below ``min_tflops``, or when it would need more than ``max_gpus`` (for the memory, the
    deadline or a rented job's rate), or more than one GPU for a ``needs_interconnect`` job on
    a model without interconnect. A job that no model can finish by its deadline keeps the
    fastest run a model can give it instead (its deadline becomes that run time): the tenant
    takes the best hardware there is.
    """
    kinds = tuple(kinds)
    _check_kinds(kinds)
    tflops = np.asarray(tflops, dtype=np.float64)
    gpu_memory_bytes = np.asarray(memory_bytes, dtype=np.float64)
    interconnect = np.asarray(interconnect, dtype=bool)
    bandwidth_tb_s = np.asarray(memory_bandwidth_tb_s, dtype=np.float64)
    shapes = (gpu_memory_bytes.shape, interconnect.shape, bandwidth_tb_s.shape)
    if not (tflops.ndim == 1 and all(shape == tflops.shape for shape in shapes)):
        raise ValueError(
            "tflops, memory_bytes, interconnect, memory_bandwidth_tb_s: must be 1-D arrays of "
            f"one length, got shapes {tflops.shape}, {', '.join(map(str, shapes))}"
        )
    if not (np.all(tflops > 0) and np.all(gpu_memory_bytes > 0) and np.all(bandwidth_tb_s > 0)):
        raise ValueError("tflops, memory_bytes, memory_bandwidth_tb_s: must all be > 0")
    if not 0 < usable_fraction <= 1:
        raise ValueError(f"usable_fraction: must be in (0, 1], got {usable_fraction!r}")
    k = batch.kind.astype(np.intp)
    if len(batch) and not 0 <= k.min() <= k.max() < len(kinds):
        raise ValueError(f"batch.kind: codes must index the {len(kinds)} kinds given")

    def column(attr: str) -> np.ndarray:
        return _per_kind(kinds, attr)[k][:, None]

    # Effective FLOP/s per GPU: the lower of the compute and the memory (decode) bound; a kind
    # without a decode batch has no memory bound (inf tokens per weight read).
    decode_batch = np.array([np.inf if kind.decode_batch_tokens is None
                             else kind.decode_batch_tokens for kind in kinds])[k][:, None]
    flop_rate = np.minimum(
        tflops * 1e12 * column("utilization"),
        decode_flop_rate(bandwidth_tb_s, decode_batch, column("bytes_per_param")),
    )
    flops = batch.flops[:, None]
    rented = ~np.isnan(batch.fixed_duration_s)[:, None]
    # The most GPUs a model can give the job: max_gpus, or one where the job needs a fast
    # interconnect that the model lacks.
    most = np.where(column("needs_interconnect") & ~interconnect, 1.0, column("max_gpus"))
    memory_gpus = np.maximum(
        np.ceil(batch.memory_bytes[:, None] / (gpu_memory_bytes * usable_fraction)), 1.0
    )
    able = (tflops >= column("min_tflops")) & (memory_gpus <= most)
    # A deadline no model meets becomes the fastest run any model can give.
    fastest_s = np.where(able & ~rented, flops / (most * flop_rate), np.inf).min(axis=1)
    deadline_s = np.where(
        np.isfinite(fastest_s), np.fmax(batch.deadline_s, fastest_s), batch.deadline_s
    )
    # Rented jobs must keep up with their throughput over the rental; others must be done by
    # their deadline. Either way: GPUs to do `flops` within `window_s`.
    window_s = np.where(rented, batch.fixed_duration_s[:, None], deadline_s[:, None])
    load = flops / (flop_rate * window_s)
    load_gpus = np.ceil(load * (1.0 - _ROUND_OFF))
    gpus = np.maximum(memory_gpus, load_gpus)
    runs = able & (gpus <= most)
    duration_s = np.where(rented, batch.fixed_duration_s[:, None], flops / (gpus * flop_rate))
    return JobPlan(
        gpus=np.where(runs, gpus, 0).astype(np.int32),
        duration_s=np.where(runs, duration_s, np.inf),
        deadline_s=deadline_s,
    )
