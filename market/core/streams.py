"""Named random streams: one `numpy.random.Generator` per agent or process, from one seed.

Each stream's seed is derived from the run seed and the stream's *name*, not from the order in
which streams are created, so adding an agent never changes anyone else's draws.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stream_key(name: str) -> tuple[int, ...]:
    """A stable spawn key for `name` (independent of Python's per-process string hashing)."""
    digest = hashlib.blake2b(name.encode(), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))


class Streams:
    """Factory of named generators for one run.

    >>> a = Streams(7).get("tenants.arrivals").random()
    >>> a == Streams(7).get("tenants.arrivals").random()
    True
    """

    __slots__ = ("seed",)

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = seed

    def get(self, name: str) -> np.random.Generator:
        sequence = np.random.SeedSequence(entropy=self.seed, spawn_key=stream_key(name))
        return np.random.Generator(np.random.PCG64(sequence))


class NormalBlocks:
    """Standard normal draws from `rng`, drawn ahead in blocks of at least 65,536: a call
    per order for a handful of draws would cost more than the draws (bid latencies, failure
    detection delays)."""

    __slots__ = ("_at", "_block", "_rng")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._block = np.zeros(0)
        self._at = 0

    def __call__(self, count: int) -> np.ndarray:
        """The next `count` draws."""
        if self._at + count > self._block.size:
            self._block = self._rng.standard_normal(max(65_536, count))
            self._at = 0
        start = self._at
        self._at += count
        return self._block[start:self._at]
