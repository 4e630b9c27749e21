"""Incentive checks (`market.experiments.validation.deviation_check`): one textbook bidder shades
the prescribed bid while the others keep it, on the same cost draws; the gain in what it keeps
per auction is a paired difference. Theory's cases show no profitable deviation and agree with
the hand-computed gains; a deliberately wrong prescription shows one, so the check can fail."""

from __future__ import annotations

import numpy as np
import pytest

from market import Market, load_scenario
from market.events import OrderOpened
from market.experiments.validation import (
    GAIN,
    MEASURED,
    NO_GAIN,
    PRESCRIBED,
    Z_AGREE,
    deviation_check,
    deviations,
    run_auctions,
    textbook_overrides,
)

Z = 4.0  # standard errors: comparisons with a known value, a false alarm 1 in 16,000


def test_second_price_with_fee_gives_no_profitable_deviation():
    row = deviation_check("second_price", "truthful", bidders=3, auctions=500,
                          shadings=(0.8, 0.95, 1.05, 1.2), seed=4)
    assert row.verdict == NO_GAIN and row.holds
    for gain in row.shadings:
        # Truthful bidding is dominant: no shading gains, within the noise...
        assert gain.gain <= Z_AGREE * gain.se
        # ...and each loses what theory says it loses.
        assert abs(gain.gain - gain.theory_gain) <= Z * gain.se + 1e-6
    assert row.best.gain == max(g.gain for g in row.shadings)


def test_first_price_deviation_gains_for_two_bidders_at_a_20_percent_fee_by_hand():
    """n = 2, U[0, 1], t = 0.2 (theory module's hand computation): shading the equilibrium
    bid by 1.2 loses 123/4050 per auction, by 0.8 loses 133/2400; the prescribed bidder keeps
    1/6 per auction."""
    row = deviation_check("first_price", "equilibrium", bidders=2, auctions=1000,
                          shadings=(0.8, 1.2), seed=6)
    assert row.verdict == NO_GAIN
    low, high = row.shadings
    assert (low.theory_gain, high.theory_gain) == pytest.approx((-133 / 2400, -123 / 4050),
                                                                 abs=1e-8)
    for gain in row.shadings:
        assert abs(gain.gain - gain.theory_gain) <= Z * gain.se
        assert gain.ci_high < 0  # both deviations lose, significantly
    assert row.theory_profit == pytest.approx(1 / 6)


def test_a_wrong_prescription_shows_a_profitable_deviation():
    """Truthful bidding under first price keeps nothing; bidding 10% or 20% above cost
    wins less often but keeps something: the check reports a significant gain."""
    row = deviation_check("first_price", "truthful", bidders=3, auctions=600,
                          shadings=(0.9, 1.1, 1.2), seed=2, theory=True)
    assert row.verdict == GAIN and not row.holds
    assert row.best.shading > 1 and row.best.ci_low > 0
    assert row.best.gain > Z_AGREE * row.best.se
    # a truthful winner paid its bid keeps nothing (up to the micro-USD rounding of bids)
    assert row.profit == pytest.approx(0.0, abs=1e-6)
    assert row.best.theory_gain is None  # theory covers the equilibrium, not this


def _costs_per_auction(overrides: list[str], seed: int) -> np.ndarray:
    """Every bidder's cost at each auction's opening, one row per auction."""
    market = Market(load_scenario("textbook", overrides), seed=seed, record=False)
    seen: list[np.ndarray] = []
    bidders = market.scenario.textbook.bidders
    market.subscribe(lambda _e: seen.append(
        market.pool.cost_basis_usd_per_gpu_hour[:bidders].copy()), kinds=(OrderOpened,))
    market.run()
    return np.array(seen)


def test_the_deviator_sees_the_same_costs_as_without_the_deviation():
    overrides = textbook_overrides("first_price", "equilibrium", 3, 200)
    plain = _costs_per_auction(overrides, seed=9)
    shaded = _costs_per_auction([*overrides, "textbook.deviator={ shading = 1.3 }"], seed=9)
    assert plain.shape == (200, 3)
    assert np.array_equal(plain, shaded)
    # A deviator that does not deviate changes nothing, auction by auction.
    same = run_auctions([*overrides, "textbook.deviator={ shading = 1.0 }"], seed=9)
    base = run_auctions(overrides, seed=9)
    assert np.array_equal(same.winners, base.winners)
    assert np.array_equal(same.prices, base.prices)
    # Shading 1.3 moves bidder 0's bids only: the auctions it wins change, the costs not.
    moved = run_auctions([*overrides, "textbook.deviator={ shading = 1.3 }"], seed=9)
    assert (moved.winners == 0).sum() < (base.winners == 0).sum()


def test_a_deviator_with_its_own_strategy():
    overrides = textbook_overrides("second_price", "truthful", 3, 100)
    own = run_auctions([*overrides, 'textbook.deviator={ strategy = { name = "cost_plus", '
                                    'params = { markup = 0.5 } } }'], seed=3)
    base = run_auctions(overrides, seed=3)
    # Bidding cost × 1.5 (grossed up) wins only where its cost is below the others' by a third.
    assert 0 < (own.winners == 0).sum() < (base.winners == 0).sum()


def test_every_mechanism_is_checked_on_common_random_numbers():
    rows = deviations(bidders=2, auctions=100, shadings=(1.1,), seed=5, workers=1)
    assert [(r.mechanism, r.strategy) for r in rows] == [(m, s) for m, s, _ in PRESCRIBED]
    by_name = {r.mechanism: r for r in rows}
    assert {by_name[m].verdict for m in ("first_price", "second_price")} <= {NO_GAIN, GAIN}
    assert all(r.verdict == MEASURED for r in rows
               if r.mechanism not in ("first_price", "second_price"))
    # One seed for every mechanism: rules that are the same in the textbook give equal rows
    # (cheapest-bid tenant pick and a one-order batch are pay as bid; scoring with equal
    # qualities is second price).
    def measured(name: str) -> list[tuple[float, float]]:
        return [(by_name[name].profit, 0.0)] + [(g.gain, g.se) for g in by_name[name].shadings]

    for twin, original in (("tenant_pick", "first_price"), ("batch_clearing", "first_price"),
                           ("scoring", "second_price")):
        assert measured(twin) == measured(original)
    # Processes change nothing: the runs are seeded.
    parallel = deviations(bidders=2, auctions=100, shadings=(1.1,), seed=5, workers=2)
    assert [r.to_dict() for r in parallel] == [r.to_dict() for r in rows]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"bidders": 1}, "bidders"), ({"shadings": ()}, "shadings"),
    ({"shadings": (0.9, -1.0)}, "shadings"), ({"auctions": 1}, "auctions")])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        deviation_check("second_price", "truthful", **kwargs)
