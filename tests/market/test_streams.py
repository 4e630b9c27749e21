"""Tests for market.streams: named random streams derived from one run seed.

Checks that a stream's draws depend only on the seed and its name: same seed and name give the
same draws, a different name or seed gives different draws, the order in which streams are
created changes nothing, the derivation does not depend on Python's string hashing, and a
negative seed is rejected. Normal draws taken in blocks are the generator's own, in order.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from market.core.streams import NormalBlocks, Streams, stream_key

DRAWS = 16


def draws(seed: int, name: str) -> np.ndarray:
    return Streams(seed).get(name).random(DRAWS)


def test_same_seed_and_name_give_the_same_draws():
    assert np.array_equal(draws(7, "tenants.arrivals"), draws(7, "tenants.arrivals"))
    streams = Streams(7)
    # Asking twice from one factory starts the stream afresh: the generator is not shared.
    assert np.array_equal(streams.get("x").random(DRAWS), streams.get("x").random(DRAWS))


def test_different_names_give_different_draws():
    names = ["tenants.arrivals", "tenants.sizes", "provider:0", "provider:1", "", "a", "b"]
    first = {name: tuple(draws(7, name)) for name in names}
    assert len(set(first.values())) == len(names)


def test_different_seeds_give_different_draws():
    assert not np.array_equal(draws(0, "tenants.arrivals"), draws(1, "tenants.arrivals"))


def test_creation_order_does_not_change_a_streams_draws():
    names = [f"provider:{i}" for i in range(20)]
    forward = Streams(42)
    in_order = {name: forward.get(name).random(DRAWS) for name in names}
    backward = Streams(42)
    backward.get("an.extra.agent").random(100)  # a new agent draws first
    reversed_order = {name: backward.get(name).random(DRAWS) for name in reversed(names)}
    for name in names:
        assert np.array_equal(in_order[name], reversed_order[name])


def test_seed_zero_is_valid_and_negative_seeds_are_rejected():
    assert Streams(0).seed == 0
    with pytest.raises(ValueError, match="seed"):
        Streams(-1)


def test_stream_key_is_four_32_bit_words_and_differs_by_name():
    key = stream_key("tenants.arrivals")
    assert len(key) == 4
    assert all(0 <= word < 2**32 for word in key)
    assert key == stream_key("tenants.arrivals")
    assert key != stream_key("tenants.arrival")


def test_draws_do_not_depend_on_python_string_hashing():
    script = ("from market.core.streams import Streams; "
              "print(Streams(7).get('provider:3').random(4).tolist())")
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                                capture_output=True, text=True)
        outputs.add(result.stdout.strip())
    assert outputs == {str(draws(7, "provider:3")[:4].tolist())}


def test_normal_blocks_hand_out_the_generators_draws_in_order_and_start_a_block_when_short():
    rng = np.random.default_rng(3)
    first_block = rng.standard_normal(65_536)
    second_block = rng.standard_normal(70_000)  # a request larger than a block gets its size
    normals = NormalBlocks(np.random.default_rng(3))
    head = normals(5)
    rest = normals(65_530)
    assert np.array_equal(np.concatenate([head, rest]), first_block[:65_535])
    # One draw is left in the block: a request for more starts a fresh block, the remainder
    # is not spliced in (so a request's draws come from one block).
    big = normals(70_000)
    assert np.array_equal(big, second_block)
    assert normals(0).size == 0
