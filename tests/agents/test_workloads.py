"""Tests for agents.workloads: worked numbers (GPT-3), the planning rules, the defaults."""

import doctest
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agents import workloads
from agents.tenants import job_kinds as scenario_job_kinds
from agents.workloads import (
    DEFAULT_JOB_KINDS,
    JOB_KINDS,
    JobKind,
    decode_flop_rate,
    gpu_hours,
    inference_flops,
    plan_jobs,
    sample_jobs,
    training_flops,
)
from market.scenario import JobKindConfig, load_scenario

GIB = 2.0**30
# H100 SXM, A100 80GB SXM, RTX 4090: plain arrays, not market.catalog.
TFLOPS = np.array([989.0, 312.0, 165.0])
MEMORY_BYTES = np.array([80.0, 80.0, 24.0]) * GIB
INTERCONNECT = np.array([True, True, False])
BANDWIDTH_TB_S = np.array([3.35, 2.039, 1.008])
H100, A100, RTX4090 = 0, 1, 2
ROUNDING = 1e-9  # relative slack for exp/log and ceil round-off


def plan_three(batch, kinds, interconnect=INTERCONNECT):
    """Plan on the H100, A100 and RTX 4090 above."""
    return plan_jobs(batch, kinds, TFLOPS, MEMORY_BYTES, interconnect,
                     memory_bandwidth_tb_s=BANDWIDTH_TB_S)


def default(name: str) -> JobKind:
    return DEFAULT_JOB_KINDS[JOB_KINDS.index(name)]


def fixed_jobs(name: str, params_b: float, tokens_b: float, n: int = 1, **changes):
    """Kinds and a batch of ``n`` identical jobs: the default kind with degenerate ranges."""
    kind = replace(
        default(name),
        share=1.0,
        params_b=(params_b, params_b),
        tokens_b=(tokens_b, tokens_b),
        **changes,
    )
    return (kind,), sample_jobs(np.random.default_rng(0), n, (kind,))


# --- worked numbers (GPT-3) -------------------------------------------------------------


def test_gpt3_inference_of_1024_tokens_is_about_350_tflops():
    assert inference_flops(175e9, 1024) == pytest.approx(3.5e14, rel=0.05)


def test_gpt3_training_on_300b_tokens_is_about_3_14e23_flops():
    assert training_flops(175e9, 300e9) == pytest.approx(3.14e23, rel=0.01)


def test_gpt3_training_is_about_560k_usd_of_a100_time():
    usd_per_gpu_hour = 2.0
    usd = gpu_hours(training_flops(175e9, 300e9), tflops=312.0) * usd_per_gpu_hour
    assert usd == pytest.approx(560e3, rel=0.02)


def test_gpu_hours_scales_with_utilization():
    assert gpu_hours(3.6e15, 1.0, utilization=0.5) == pytest.approx(2.0)


def test_24gb_gpu_cannot_train_a_7b_model_on_one_gpu():
    kinds, batch = fixed_jobs("training", params_b=7.0, tokens_b=1.0)
    assert batch.memory_bytes[0] > MEMORY_BYTES[RTX4090]
    plan = plan_three(batch, kinds)
    assert not plan.eligible[0, RTX4090]  # would need several GPUs, and it has no NVLink
    everywhere_linked = plan_three(batch, kinds, interconnect=np.ones(3, bool))
    assert everywhere_linked.gpus[0, RTX4090] > 1
    assert plan.eligible[0, H100]


def test_80gb_gpu_holds_inference_of_a_13b_model():
    kinds, batch = fixed_jobs("batch_inference", params_b=13.0, tokens_b=0.001)
    plan = plan_three(batch, kinds)
    assert plan.gpus[0, H100] == 1
    assert plan.gpus[0, A100] == 1


def test_faster_model_can_take_longer_when_it_needs_fewer_gpus():
    # Why duration is monotone in TFLOPS only at equal GPU count: the tenant adds GPUs to meet
    # its deadline, so a job just over the deadline on a slow model gets two GPUs there and
    # finishes sooner than on a slightly faster model where one GPU just meets the deadline.
    kind = default("batch_inference")
    deadline_s = 24 * 3600
    kinds, batch = fixed_jobs("batch_inference", params_b=1.0, tokens_b=1.0,
                              deadline_h=(24.0, 24.0), decode_batch_tokens=None)  # compute-bound
    one_gpu_rate = batch.flops[0] / deadline_s / kind.utilization / 1e12  # TFLOPS to just fit
    tflops = np.array([one_gpu_rate, one_gpu_rate * 0.99])
    plan = plan_jobs(batch, kinds, tflops, np.full(2, 80 * GIB), np.zeros(2, bool),
                     memory_bandwidth_tb_s=np.full(2, 1.0))
    assert plan.gpus[0].tolist() == [1, 2]
    assert plan.duration_s[0, 0] > plan.duration_s[0, 1]


RTX3090_TFLOPS, RTX3090_MEMORY, RTX3090_TB_S = 71.0, 24.0 * GIB, 0.936


@pytest.mark.parametrize(("deadline_h", "gpus"), [(48.0, 1), (12.0, 2)])
def test_a_slow_gpu_meets_a_long_deadline_alone_and_a_short_one_with_more_gpus(deadline_h,
                                                                               gpus):
    # Batch inference of a 7B model over 0.2B tokens: 2 x 7e9 x 2e8 = 2.8e18 FLOPs. An RTX 3090
    # computes 71 TFLOPS x 0.5 = 35.5e12 FLOP/s and decodes 64 tokens per weight read at
    # 2 x 64 x 0.936e12 / 2 = 59.9e12: compute-bound, one card takes 78,873 s = 21.9 h. Weights
    # 7e9 x 2 bytes x 1.2 = 16.8e9 bytes fit one 24 GiB card (90% usable: 23.2e9).
    kinds, batch = fixed_jobs("batch_inference", params_b=7.0, tokens_b=0.2,
                              deadline_h=(deadline_h, deadline_h))
    plan = plan_jobs(batch, kinds, np.array([RTX3090_TFLOPS]), np.array([RTX3090_MEMORY]),
                     np.array([False]), memory_bandwidth_tb_s=np.array([RTX3090_TB_S]))
    one_card_h = 2.8e18 / 35.5e12 / 3600
    assert one_card_h == pytest.approx(21.9, abs=0.05)
    assert plan.gpus[0, 0] == gpus  # 21.9 h / 12 h: two cards
    assert plan.duration_s[0, 0] / 3600 == pytest.approx(one_card_h / gpus)
    assert plan.deadline_s[0] == pytest.approx(deadline_h * 3600)


# --- the roofline: inference is bound by memory bandwidth, training by compute ------------


def test_decode_flop_rate_is_two_tokens_times_bandwidth_per_byte_of_weight():
    # 16 tokens per read of bf16 weights at 1 TB/s: 16 x 2 FLOPs per param per 2 bytes read.
    assert decode_flop_rate(1.0, 16, 2.0) == pytest.approx(16e12)
    assert decode_flop_rate(3.35, 64, 2.0) == pytest.approx(214.4e12)


def test_batch_inference_is_memory_bound_on_h100_and_compute_bound_on_rtx3090():
    # The 2.8e18-FLOP job above with the default 64 tokens per weight read and utilization 0.5.
    # H100: compute 989e12 x 0.5 = 494.5e12, memory 2 x 64 x 3.35e12 / 2 = 214.4e12 FLOP/s:
    # memory-bound, 13,060 s = 3.63 h. RTX 3090: compute 35.5e12 < memory 59.9e12: 21.9 h.
    kinds, batch = fixed_jobs("batch_inference", params_b=7.0, tokens_b=0.2,
                              deadline_h=(48.0, 48.0))
    assert (kinds[0].utilization, kinds[0].decode_batch_tokens) == (0.5, 64.0)
    plan = plan_jobs(batch, kinds, np.array([989.0, RTX3090_TFLOPS]),
                     np.array([80 * GIB, RTX3090_MEMORY]), np.array([True, False]),
                     memory_bandwidth_tb_s=np.array([3.35, RTX3090_TB_S]))
    assert plan.gpus[0].tolist() == [1, 1]
    h100_h, rtx3090_h = plan.duration_s[0] / 3600
    assert h100_h == pytest.approx(2.8e18 / 214.4e12 / 3600)
    assert h100_h == pytest.approx(3.63, abs=0.005)
    assert rtx3090_h == pytest.approx(2.8e18 / 35.5e12 / 3600)
    # TFLOPS alone would make the H100 take 494.5 / 35.5 = 13.9x less time; the roofline 6.0x.
    assert rtx3090_h / h100_h == pytest.approx(214.4 / 35.5)


def test_decode_bound_wall_time_follows_bandwidth_not_tflops_rtx3090_vs_rtx4090():
    # 16 tokens per weight read: RTX 3090 memory bound 2 x 16 x 0.936e12 / 2 = 14.98e12 FLOP/s
    # (compute 35.5e12), RTX 4090 16.13e12 (compute 82.5e12): both memory-bound, so the 3090
    # takes 1.008 / 0.936 = 1.077x as long, not 165 / 71 = 2.32x.
    kinds, batch = fixed_jobs("batch_inference", params_b=7.0, tokens_b=0.2,
                              deadline_h=(168.0, 168.0), decode_batch_tokens=16.0)
    plan = plan_jobs(batch, kinds, np.array([RTX3090_TFLOPS, 165.0]),
                     np.full(2, 24 * GIB), np.zeros(2, bool),
                     memory_bandwidth_tb_s=np.array([RTX3090_TB_S, 1.008]))
    assert plan.gpus[0].tolist() == [1, 1]
    rtx3090_s, rtx4090_s = plan.duration_s[0]
    assert rtx3090_s == pytest.approx(2.8e18 / 14.976e12)
    assert rtx3090_s / rtx4090_s == pytest.approx(1.008 / 0.936)
    assert rtx3090_s / rtx4090_s < 0.5 * 165.0 / 71.0


def test_an_endpoints_gpu_count_follows_memory_bandwidth():
    # A 70B endpoint at 2,000 tokens/s needs 2 x 70e9 x 2000 = 2.8e14 FLOP/s. At 16 tokens per
    # weight read an H100 gives 2 x 16 x 3.35e12 / 2 = 53.6e12: 5.2, so 6 GPUs (memory alone:
    # 168e9 bytes in 77.3e9 per GPU, 3). An A100 80GB gives 32.6e12: 8.6 GPUs, over max_gpus 8.
    kind = replace(default("online_inference"), share=1.0, params_b=(70.0, 70.0),
                   duration_h=(10.0, 10.0), tokens_per_s=(2000.0, 2000.0))
    batch = sample_jobs(np.random.default_rng(0), 1, (kind,))
    plan = plan_three(batch, (kind,))
    assert kind.decode_batch_tokens == 16.0
    assert plan.gpus[0].tolist() == [6, 0, 0]
    assert plan.duration_s[0, H100] == pytest.approx(10 * 3600)


@pytest.mark.parametrize("name", ["training", "fine_tuning"])
def test_training_and_fine_tuning_stay_compute_bound(name):
    # 1B params over 1B tokens: 6e18 FLOPs at 989e12 x 0.4 FLOP/s on one H100 = 15,167 s,
    # however slow the memory.
    kinds, batch = fixed_jobs(name, params_b=1.0, tokens_b=1.0, deadline_h=(72.0, 72.0))
    assert kinds[0].decode_batch_tokens is None
    plans = [plan_jobs(batch, kinds, TFLOPS, MEMORY_BYTES, INTERCONNECT,
                       memory_bandwidth_tb_s=np.full(3, tb_s)) for tb_s in (1e-6, 1.0, 1e6)]
    for plan in plans[1:]:
        np.testing.assert_array_equal(plan.gpus, plans[0].gpus)
        np.testing.assert_array_equal(plan.duration_s, plans[0].duration_s)
    assert plans[0].gpus[0, H100] == 1
    assert plans[0].duration_s[0, H100] == pytest.approx(6e18 / (989e12 * 0.4))


def test_a_deadline_no_model_can_meet_becomes_the_fastest_run():
    # Training 7e9 x 6 x 1e11 = 4.2e21 FLOPs; 8 H100s do 8 x 989e12 x 0.4 = 3.16e15 FLOP/s:
    # 1.33e6 s, far beyond a 72 h deadline. The job keeps the H100s' fastest run; slower
    # models, which would take longer still, cannot run it.
    kinds, batch = fixed_jobs("training", params_b=7.0, tokens_b=100.0, deadline_h=(72.0, 72.0))
    plan = plan_three(batch, kinds)
    fastest_s = 4.2e21 / (8 * 989e12 * 0.4)
    assert plan.deadline_s[0] == pytest.approx(fastest_s)
    assert plan.gpus[0].tolist() == [8, 0, 0]
    assert plan.duration_s[0, H100] == pytest.approx(fastest_s)


def test_module_examples_hold():
    assert doctest.testmod(workloads).failed == 0


# --- defaults -----------------------------------------------------------------------------

BANDS_H = {  # typical (median) duration on one H100 model, hours
    "training": (10.0, 96.0),  # tens of hours to days
    "fine_tuning": (1.0, 12.0),
    "batch_inference": (0.5, 10.0),
    "online_inference": (2.0, 48.0),
}


def test_defaults_give_typical_durations_on_h100():
    batch = sample_jobs(np.random.default_rng(1), 20_000)
    plan = plan_three(batch, DEFAULT_JOB_KINDS)
    for code, name in enumerate(JOB_KINDS):
        on_h100 = plan.duration_s[batch.kind == code, H100]
        assert np.isfinite(on_h100).all(), name  # every default job runs on H100s
        low, high = BANDS_H[name]
        assert low <= np.median(on_h100) / 3600 <= high, name


def test_default_scenario_job_tables_equal_the_default_kinds():
    # market/scenarios/default.toml repeats DEFAULT_JOB_KINDS: the two must not drift apart.
    assert scenario_job_kinds(load_scenario("default").tenants) == DEFAULT_JOB_KINDS


def test_a_job_table_without_decode_batch_tokens_loads_and_is_compute_bound():
    table = {"share": 1.0, "params_b": [7.0, 7.0], "tokens_b": [0.2, 0.2],
             "bytes_per_param": 2.0, "memory_overhead": 1.2, "utilization": 0.3,
             "min_tflops": 0.0, "needs_interconnect": False, "max_gpus": 8,
             "deadline_h": [48.0, 48.0]}  # a scenario file written before the field existed
    assert JobKindConfig(**table).decode_batch_tokens is None
    with pytest.raises(ValidationError, match="decode_batch_tokens"):
        JobKindConfig(**table, decode_batch_tokens=0.0)


def test_defaults_kinds_order_and_shares():
    assert tuple(k.name for k in DEFAULT_JOB_KINDS) == JOB_KINDS
    assert [k.share for k in DEFAULT_JOB_KINDS] == pytest.approx([0.10, 0.25, 0.40, 0.25])


def test_online_inference_needs_high_end_cards():
    kind = default("online_inference")
    assert 165.0 < kind.min_tflops <= 312.0  # A100 qualifies, RTX 4090 does not
    batch = sample_jobs(np.random.default_rng(2), 2_000)
    plan = plan_three(batch, DEFAULT_JOB_KINDS)
    online = batch.kind == JOB_KINDS.index("online_inference")
    assert not plan.eligible[online, RTX4090].any()
    batch_inference = batch.kind == JOB_KINDS.index("batch_inference")
    assert plan.eligible[batch_inference, RTX4090].mean() > 0.9  # batch work runs anywhere


@pytest.mark.parametrize("seed", range(5))
def test_kind_shares_of_a_large_sample_match_within_4_sigma(seed):
    n = 100_000
    counts = np.bincount(sample_jobs(np.random.default_rng(seed), n).kind, minlength=4)
    for count, kind in zip(counts, DEFAULT_JOB_KINDS, strict=True):
        sigma = math.sqrt(n * kind.share * (1 - kind.share))
        assert abs(count - n * kind.share) <= 4 * sigma, kind.name


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "changes", "field"),
    [
        ("training", {"share": -0.1}, "share"),
        ("training", {"params_b": (7.0, 1.0)}, "params_b"),
        ("training", {"params_b": (0.0, 1.0)}, "params_b"),
        ("training", {"tokens_b": None}, "tokens_b"),
        ("training", {"tokens_b": (1.0,)}, "tokens_b"),
        ("training", {"duration_h": (1.0, 2.0)}, "duration_h"),
        ("online_inference", {"tokens_per_s": (10.0, 1.0)}, "tokens_per_s"),
        ("online_inference", {"duration_h": None}, "duration_h"),
        ("online_inference", {"tokens_b": (1.0, 2.0)}, "tokens_b"),
        ("fine_tuning", {"utilization": 0.0}, "utilization"),
        ("fine_tuning", {"utilization": 1.5}, "utilization"),
        ("fine_tuning", {"max_gpus": 0}, "max_gpus"),
        ("fine_tuning", {"max_gpus": 2.5}, "max_gpus"),
        ("batch_inference", {"bytes_per_param": 0.0}, "bytes_per_param"),
        ("batch_inference", {"memory_overhead": 0.5}, "memory_overhead"),
        ("batch_inference", {"min_tflops": -1.0}, "min_tflops"),
        ("batch_inference", {"deadline_h": None}, "deadline_h"),
        ("batch_inference", {"deadline_h": (0.0, 24.0)}, "deadline_h"),
        ("online_inference", {"deadline_h": (1.0, 2.0)}, "deadline_h"),
        ("batch_inference", {"name": "pretraining"}, "name"),
        ("batch_inference", {"decode_batch_tokens": 0.0}, "decode_batch_tokens"),
        ("online_inference", {"decode_batch_tokens": -16.0}, "decode_batch_tokens"),
        ("online_inference", {"decode_batch_tokens": math.inf}, "decode_batch_tokens"),
        ("online_inference", {"decode_batch_tokens": True}, "decode_batch_tokens"),
        ("training", {"decode_batch_tokens": 64.0}, "decode_batch_tokens"),
        ("fine_tuning", {"decode_batch_tokens": 8.0}, "decode_batch_tokens"),
    ],
)
def test_invalid_job_kind_is_one_line_naming_kind_and_field(name, changes, field):
    with pytest.raises(ValueError) as error:
        replace(default(name), **changes)
    message = str(error.value)
    assert field in message
    assert repr(changes.get("name", name)) in message
    assert "\n" not in message


def test_sample_jobs_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"^n:"):
        sample_jobs(rng, -1)
    with pytest.raises(ValueError, match="shares"):
        sample_jobs(rng, 10, (replace(default("training"), share=0.0),))
    with pytest.raises(ValueError, match=r"^kinds:"):
        sample_jobs(rng, 10, ())


def test_plan_jobs_rejects_bad_arguments():
    batch = sample_jobs(np.random.default_rng(0), 10)
    models = {"memory_bandwidth_tb_s": BANDWIDTH_TB_S}
    with pytest.raises(ValueError, match="shapes"):
        plan_jobs(batch, DEFAULT_JOB_KINDS, TFLOPS, MEMORY_BYTES[:2], INTERCONNECT, **models)
    with pytest.raises(ValueError, match="shapes"):
        plan_jobs(batch, DEFAULT_JOB_KINDS, TFLOPS, MEMORY_BYTES, INTERCONNECT,
                  memory_bandwidth_tb_s=BANDWIDTH_TB_S[:2])
    with pytest.raises(ValueError, match="memory_bandwidth_tb_s"):
        plan_jobs(batch, DEFAULT_JOB_KINDS, TFLOPS, MEMORY_BYTES, INTERCONNECT,
                  memory_bandwidth_tb_s=np.array([3.35, 0.0, 1.0]))
    with pytest.raises(ValueError, match="usable_fraction"):
        plan_jobs(batch, DEFAULT_JOB_KINDS, TFLOPS, MEMORY_BYTES, INTERCONNECT, 0.0, **models)
    with pytest.raises(ValueError, match=r"batch\.kind"):
        plan_jobs(batch, DEFAULT_JOB_KINDS[:1], TFLOPS, MEMORY_BYTES, INTERCONNECT, **models)


def test_empty_batch_plans_to_empty_arrays():
    batch = sample_jobs(np.random.default_rng(0), 0)
    plan = plan_three(batch, DEFAULT_JOB_KINDS)
    assert len(batch) == 0
    assert plan.gpus.shape == plan.duration_s.shape == (0, 3)


# --- properties ---------------------------------------------------------------------------


def ranges(low_min: float, low_max: float, max_ratio: float):
    return st.tuples(st.floats(low_min, low_max), st.floats(1.0, max_ratio)).map(
        lambda pair: (pair[0], pair[0] * pair[1])
    )


@st.composite
def job_kinds(draw) -> JobKind:
    name = draw(st.sampled_from(JOB_KINDS))
    rented = name == "online_inference"
    return JobKind(
        name,
        share=draw(st.floats(0.05, 1.0)),
        params_b=draw(ranges(0.05, 100.0, 100.0)),
        tokens_b=None if rented else draw(ranges(1e-4, 100.0, 1000.0)),
        duration_h=draw(ranges(0.1, 48.0, 10.0)) if rented else None,
        tokens_per_s=draw(ranges(1.0, 5000.0, 100.0)) if rented else None,
        bytes_per_param=draw(st.floats(0.5, 16.0)),
        memory_overhead=draw(st.floats(1.0, 2.0)),
        utilization=draw(st.floats(0.05, 1.0)),
        min_tflops=draw(st.one_of(st.just(0.0), st.floats(0.0, 1000.0))),
        needs_interconnect=draw(st.booleans()),
        max_gpus=draw(st.integers(1, 16)),
        deadline_h=None if rented else draw(ranges(0.5, 200.0, 10.0)),
        decode_batch_tokens=draw(st.one_of(st.none(), st.floats(1.0, 512.0)))
        if name in ("batch_inference", "online_inference") else None,
    )


@st.composite
def gpu_models(draw, n_models: int | None = None):
    """(tflops, memory_bytes, interconnect, memory_bandwidth_tb_s) of 1-6 models."""
    n = n_models or draw(st.integers(1, 6))
    tflops = draw(st.lists(st.floats(10.0, 2000.0), min_size=n, max_size=n))
    memory_gib = draw(st.lists(st.floats(8.0, 256.0), min_size=n, max_size=n))
    interconnect = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    bandwidth_tb_s = draw(st.lists(st.floats(0.1, 10.0), min_size=n, max_size=n))
    return (np.array(tflops), np.array(memory_gib) * GIB, np.array(interconnect),
            np.array(bandwidth_tb_s))


def plan_on(batch, kinds, models):
    tflops, memory_bytes, interconnect, bandwidth_tb_s = models
    return plan_jobs(batch, kinds, tflops, memory_bytes, interconnect,
                     memory_bandwidth_tb_s=bandwidth_tb_s)


@st.composite
def scenarios(draw):
    """(kinds, batch, (tflops, memory_bytes, interconnect, bandwidth_tb_s), plan)."""
    kinds = tuple(draw(st.lists(job_kinds(), min_size=1, max_size=5)))
    batch = sample_jobs(
        np.random.default_rng(draw(st.integers(0, 2**32))), draw(st.integers(0, 40)), kinds
    )
    models = draw(gpu_models())
    return kinds, batch, models, plan_on(batch, kinds, models)


def per_job(kinds, batch, attr: str) -> np.ndarray:
    """[n_jobs, 1] kind attribute, to broadcast against [n_jobs, n_models]."""
    return np.array([getattr(k, attr) for k in kinds])[batch.kind.astype(int)][:, None]


def roofline_flop_rate(kinds, batch, models) -> np.ndarray:
    """[n_jobs, n_models] FLOP/s per GPU: min(TFLOPS x utilization, 2 x B x bandwidth / bytes
    per param), B the kind's decode batch (no memory bound without one)."""
    tflops, _, _, bandwidth_tb_s = models
    compute = tflops * 1e12 * per_job(kinds, batch, "utilization")
    tokens = np.array([np.inf if k.decode_batch_tokens is None else k.decode_batch_tokens
                       for k in kinds])[batch.kind.astype(int)][:, None]
    memory = 2 * tokens * bandwidth_tb_s * 1e12 / per_job(kinds, batch, "bytes_per_param")
    return np.minimum(compute, memory)


@given(scenarios())
def test_zero_gpus_exactly_where_duration_is_inf(scenario):
    _, _, _, plan = scenario
    assert np.array_equal(plan.gpus == 0, np.isinf(plan.duration_s))
    assert np.array_equal(plan.eligible, plan.gpus > 0)
    assert (plan.gpus >= 0).all()
    assert (plan.duration_s > 0).all()
    assert plan.gpus.dtype == np.int32 and plan.duration_s.dtype == np.float64


@given(scenarios())
def test_gpus_never_exceed_max_gpus(scenario):
    kinds, batch, _, plan = scenario
    assert (plan.gpus <= per_job(kinds, batch, "max_gpus")).all()


@given(scenarios())
def test_eligible_plans_hold_the_model_in_memory(scenario):
    _, batch, (_, memory_bytes, _, _), plan = scenario
    capacity = plan.gpus * memory_bytes * 0.9
    need = np.broadcast_to(batch.memory_bytes[:, None], capacity.shape)
    assert (capacity[plan.eligible] >= need[plan.eligible] * (1 - ROUNDING)).all()


@given(scenarios())
def test_online_inference_runs_its_fixed_duration_at_its_throughput(scenario):
    kinds, batch, models, plan = scenario
    rented = ~np.isnan(batch.fixed_duration_s)
    assert np.array_equal(
        rented,
        np.isin(batch.kind, [i for i, k in enumerate(kinds) if k.name == "online_inference"]),
    )
    fixed = np.broadcast_to(batch.fixed_duration_s[:, None], plan.duration_s.shape)
    on = plan.eligible & rented[:, None]
    assert np.array_equal(plan.duration_s[on], fixed[on])
    flop_rate = plan.gpus * roofline_flop_rate(kinds, batch, models)
    need = 2 * batch.params * batch.tokens_per_s
    assert (flop_rate[on] >= np.broadcast_to(need[:, None], on.shape)[on] * (1 - ROUNDING)).all()


@given(scenarios())
def test_finite_jobs_finish_by_their_deadline_extended_only_when_no_model_can(scenario):
    _, batch, _, plan = scenario
    finite = np.isnan(batch.fixed_duration_s)
    deadline = np.broadcast_to(plan.deadline_s[:, None], plan.gpus.shape)
    runs = plan.eligible & finite[:, None]
    assert (plan.duration_s[runs] <= deadline[runs] * (1 + ROUNDING)).all()
    assert np.isnan(plan.deadline_s[~finite]).all()
    sampled = batch.deadline_s[finite]
    assert (plan.deadline_s[finite] >= sampled).all()
    extended = finite & (plan.deadline_s > batch.deadline_s)
    # An extended deadline is some model's own fastest run: that model meets it exactly.
    on_time = np.isclose(plan.duration_s, plan.deadline_s[:, None], rtol=ROUNDING, atol=0)
    assert on_time[extended].any(axis=1).all()


@given(scenarios())
def test_multi_gpu_interconnect_jobs_never_land_on_models_without_it(scenario):
    kinds, batch, (_, _, interconnect, _), plan = scenario
    needs = per_job(kinds, batch, "needs_interconnect")
    assert not (needs & (plan.gpus > 1) & ~interconnect).any()


@given(scenarios())
def test_min_tflops_respected(scenario):
    kinds, batch, (tflops, _, _, _), plan = scenario
    assert not (plan.eligible & (tflops < per_job(kinds, batch, "min_tflops"))).any()


@given(scenarios())
def test_finite_jobs_run_at_the_roofline_rate(scenario):
    # FLOPs / (GPUs x wall time) is the lower of the compute and the memory bound, per GPU.
    kinds, batch, models, plan = scenario
    runs = plan.eligible & np.isnan(batch.fixed_duration_s)[:, None]
    flops = np.broadcast_to(batch.flops[:, None], runs.shape)[runs]
    achieved = flops / (plan.gpus[runs] * plan.duration_s[runs])
    np.testing.assert_allclose(achieved, roofline_flop_rate(kinds, batch, models)[runs],
                               rtol=1e-9)


@given(scenarios(), st.floats(0.01, 100.0))
def test_bandwidth_changes_nothing_for_compute_bound_kinds(scenario, factor):
    kinds, batch, models, plan = scenario
    tflops, memory_bytes, interconnect, bandwidth_tb_s = models
    other = plan_on(batch, kinds, (tflops, memory_bytes, interconnect, bandwidth_tb_s * factor))
    unbound = np.array([k.decode_batch_tokens is None for k in kinds])[batch.kind.astype(int)]
    np.testing.assert_array_equal(other.gpus[unbound], plan.gpus[unbound])
    np.testing.assert_array_equal(other.duration_s[unbound], plan.duration_s[unbound])


@given(
    st.lists(job_kinds(), min_size=1, max_size=5),
    gpu_models(),
    st.integers(0, 2**32),
    st.floats(1.0, 10.0),
    st.floats(1.0, 10.0),
)
def test_more_tflops_or_bandwidth_never_costs_more_gpu_time(kinds, models, seed, speedup,
                                                            bandwidth_gain):
    # Same models, `speedup` times the TFLOPS and `bandwidth_gain` times the memory bandwidth:
    # each job stays eligible, its GPU-hours do not grow and, at an equal GPU count, neither
    # does its wall time.
    kinds = tuple(kinds)
    tflops, memory_bytes, interconnect, bandwidth_tb_s = models
    batch = sample_jobs(np.random.default_rng(seed), 30, kinds)
    both = plan_jobs(
        batch,
        kinds,
        np.concatenate([tflops, tflops * speedup]),
        np.tile(memory_bytes, 2),
        np.tile(interconnect, 2),
        memory_bandwidth_tb_s=np.concatenate([bandwidth_tb_s, bandwidth_tb_s * bandwidth_gain]),
    )
    m = len(tflops)
    slow = both.gpus[:, :m], both.duration_s[:, :m]
    fast = both.gpus[:, m:], both.duration_s[:, m:]
    ok = both.eligible[:, :m]
    assert both.eligible[:, m:][ok].all()
    finite = ok & np.isnan(batch.fixed_duration_s)[:, None]
    gpu_s_slow, gpu_s_fast = (gpus[finite] * secs[finite] for gpus, secs in (slow, fast))
    assert (gpu_s_fast <= gpu_s_slow * (1 + ROUNDING)).all()
    assert (fast[0][ok] <= slow[0][ok]).all()
    same = ok & (fast[0] == slow[0])
    assert (fast[1][same] <= slow[1][same] * (1 + ROUNDING)).all()


@given(st.lists(job_kinds(), min_size=1, max_size=5), st.integers(0, 2**32), st.integers(0, 200))
def test_sampled_values_lie_inside_their_ranges(kinds, seed, n):
    kinds = tuple(kinds)
    batch = sample_jobs(np.random.default_rng(seed), n, kinds)
    assert len(batch) == n and batch.kind.dtype == np.int8
    assert all(
        len(a) == n
        for a in (
            batch.params,
            batch.tokens,
            batch.flops,
            batch.memory_bytes,
            batch.fixed_duration_s,
            batch.tokens_per_s,
            batch.deadline_s,
        )
    )

    def inside(values, bounds, scale):
        low, high = np.array(bounds).T * scale
        return ((values >= low * (1 - ROUNDING)) & (values <= high * (1 + ROUNDING))).all()

    for code, kind in enumerate(kinds):
        jobs = batch.kind == code
        assert inside(batch.params[jobs], [kind.params_b], 1e9)
        rented = kind.name == "online_inference"
        if rented:
            assert inside(batch.fixed_duration_s[jobs], [kind.duration_h], 3600.0)
            assert inside(batch.tokens_per_s[jobs], [kind.tokens_per_s], 1.0)
            expected_tokens = batch.fixed_duration_s[jobs] * batch.tokens_per_s[jobs]
            np.testing.assert_allclose(batch.tokens[jobs], expected_tokens)
            assert np.isnan(batch.deadline_s[jobs]).all()
        else:
            assert inside(batch.tokens[jobs], [kind.tokens_b], 1e9)
            assert inside(batch.deadline_s[jobs], [kind.deadline_h], 3600.0)
            assert np.isnan(batch.fixed_duration_s[jobs]).all()
            assert np.isnan(batch.tokens_per_s[jobs]).all()
        flops = 6.0 if kind.name in ("training", "fine_tuning") else 2.0
        np.testing.assert_allclose(
            batch.flops[jobs], flops * batch.params[jobs] * batch.tokens[jobs]
        )
        np.testing.assert_allclose(
            batch.memory_bytes[jobs],
            batch.params[jobs] * kind.bytes_per_param * kind.memory_overhead,
        )


@given(st.lists(job_kinds(), min_size=1, max_size=5), st.integers(0, 2**32), st.integers(0, 200))
def test_same_seed_gives_identical_batch(kinds, seed, n):
    first = sample_jobs(np.random.default_rng(seed), n, kinds)
    second = sample_jobs(np.random.default_rng(seed), n, kinds)
    for field in first.__slots__:
        assert np.array_equal(getattr(first, field), getattr(second, field), equal_nan=True)


@settings(max_examples=30)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5).filter(lambda s: sum(s) > 0.05),
    st.integers(0, 2**32),
)
def test_kind_shares_match_configured_shares(shares, seed):
    # 5 sigma, not 4: hypothesis draws fresh seeds, and a false alarm should be vanishingly rare.
    kinds = tuple(replace(default("batch_inference"), share=s) for s in shares)
    n = 20_000
    counts = np.bincount(
        sample_jobs(np.random.default_rng(seed), n, kinds).kind, minlength=len(kinds)
    )
    p = np.array(shares) / sum(shares)
    sigma = np.sqrt(n * p * (1 - p))
    # The normal approximation fails for rare kinds (n·p near 0, where a count of 3 against an
    # expected 0.2 is a Poisson tail of ~1e-3): allow a few counts on top of 5 sigma.
    assert (np.abs(counts - n * p) <= 5 * sigma + 5).all()
    assert (counts[p == 0] == 0).all()
