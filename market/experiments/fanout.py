"""Independent, seeded runs fanned out over processes and gathered in order."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


def map_in_order(work: Callable[[Job], Result], jobs: Sequence[Job], workers: int | None,
                 on_progress: Callable[[int, int], None] | None = None) -> list[Result]:
    """`work` of every job, in the jobs' order, on up to `workers` processes (None: one per
    core; 1: in this process). The jobs are independent and seeded, so the answer does not
    depend on `workers`. `on_progress(done, total)` is called before the first and as each
    finishes (in order)."""
    tell = on_progress or (lambda done, total: None)
    results: list[Result] = []
    tell(0, len(jobs))
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            for result in pool.map(work, jobs):
                results.append(result)
                tell(len(results), len(jobs))
    else:
        for job in jobs:
            results.append(work(job))
            tell(len(results), len(jobs))
    return results
