"""Bid strategies that learn from auction outcomes (protocol: `market.strategy`).

- `AdaptiveMargin`: golem-des's margin, growing while busy and shrinking while idle.
- `Undercut`: just below recently published lease prices.
- `Hedge`: a no-regret learner (EXP3 or full-information Hedge) over markups on cost.

Bids are USD per GPU-hour, never below the provider's fee-grossed cost
(`agents.equilibrium.cost_floors`). Strategies with per-provider state keep it in arrays
indexed by provider id, grown when a higher id first shows up, so one instance serves a whole
population.
"""


from __future__ import annotations

import math
from collections import OrderedDict
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from market.strategy import MarketView, OrderView, Outcome


from agents.equilibrium import cost_floors


def _grown(array: np.ndarray, size: int, fill: float) -> np.ndarray:
    """`array` with at least `size` rows, the new ones set to `fill`."""
    if array.shape[0] >= size:
        return array
    out = np.full((size, *array.shape[1:]), fill, dtype=array.dtype)
    out[: array.shape[0]] = array
    return out


MARGIN_FLOOR = 1e-9


class AdaptiveMargin:
    """golem-des's adaptive margin: bid ``(1 + margin) × cost × gross_up`` per GPU-hour
    (`gross_up` = `MarketView.fee_gross_up()`, so the margin is kept after the fee), where each
    provider's margin is multiplied by ``exp(beta × busy_s)`` over time spent busy and by
    ``exp(−alpha × idle_s)`` over time spent idle, then kept in ``[min_margin, max_margin]``.

    Busy and idle time are read from auction outcomes, the only thing a strategy hears: a won
    auction makes the provider busy, a lost or expired one idle, until its next outcome; the
    simulated seconds in between count toward that state. An order the provider prices above
    the tenant's max price (but could serve at cost) counts as a loss at once, since the chain
    would refuse the bid: otherwise a provider priced out of every order would never hear an
    outcome and never come down ("could serve at cost": its fee-grossed cost is within the max
    price). Between outcomes the margin moves continuously, so a bid uses the margin of the
    moment it is made.

    Parameters: `beta` and `alpha`, per simulated second (golem-des uses 1e-5 for both: the
    margin moves about 1% per 1,000 s); `initial_margin` (> 0; golem-des starts at 1.0);
    `min_margin` (>= 0, so no bid is below cost; a margin stays above 1e-9 all the same, as
    one at exactly 0 could never grow back) and `max_margin`.
    """

    def __init__(self, beta: float = 1e-5, alpha: float = 1e-5, min_margin: float = 0.0,
                 max_margin: float = 10.0, initial_margin: float = 1.0) -> None:
        if not (beta >= 0 and alpha >= 0):
            raise ValueError(f"beta and alpha must be >= 0, got beta={beta}, alpha={alpha}")
        if not 0 <= min_margin <= max_margin < math.inf:
            raise ValueError(f"need 0 <= min_margin <= max_margin < inf, got "
                             f"min_margin={min_margin}, max_margin={max_margin}")
        if not (initial_margin > 0 and min_margin <= initial_margin <= max_margin):
            raise ValueError(f"initial_margin must be > 0 and in [min_margin, max_margin], "
                             f"got {initial_margin}")
        self.beta, self.alpha = beta, alpha
        self.min_margin, self.max_margin = min_margin, max_margin
        self.initial_margin = initial_margin
        # A margin of exactly 0 could never grow back (the updates multiply): keep it above
        # a billionth.
        self._log_low = math.log(max(min_margin, MARGIN_FLOOR))
        self._log_high = math.log(max(max_margin, MARGIN_FLOOR))
        # Each provider's margin as of `_since_s`, kept as its log (the form every bid reads),
        # and the log-rate at which it moves: beta while busy, -alpha while idle.
        self._log_margin = np.zeros(0)
        self._rate = np.zeros(0)
        self._since_s = np.zeros(0)          # NaN: not seen yet

    def _grow(self, size: int) -> None:
        self._log_margin = _grown(self._log_margin, size,
                                  np.log(np.full(1, self.initial_margin))[0])
        self._rate = _grown(self._rate, size, -self.alpha)
        self._since_s = _grown(self._since_s, size, math.nan)

    def margins(self, providers: np.ndarray, now_s: float) -> np.ndarray:
        """The providers' margins at simulated time `now_s` (dimensionless)."""
        providers = np.asarray(providers, dtype=np.int64)
        try:
            since = self._since_s[providers]
        except IndexError:  # a provider id not seen before: grow the arrays (once per id)
            self._grow(int(providers.max()) + 1)
            since = self._since_s[providers]
        # This runs per order over every eligible provider: one pass per step, in place.
        # Not seen yet (NaN) counts no time: fmax takes the number over NaN, and 0 over a
        # negative (a -0.0 it may keep adds nothing to the log margin either).
        elapsed = np.subtract(now_s, since, out=since)
        np.fmax(elapsed, 0.0, out=elapsed)
        # In logs, so that a long spell neither overflows nor rounds the margin to zero;
        # minimum(maximum()) is np.clip without its Python wrapper.
        log_margin = np.multiply(self._rate[providers], elapsed, out=elapsed)
        np.add(self._log_margin[providers], log_margin, out=log_margin)
        np.maximum(log_margin, self._log_low, out=log_margin)
        np.minimum(log_margin, self._log_high, out=log_margin)
        return np.exp(log_margin, out=log_margin)

    def _commit(self, providers: np.ndarray, now_s: float, busy: np.ndarray | bool) -> None:
        self._store(providers, self.margins(providers, now_s), now_s, busy)

    def _store(self, providers: np.ndarray, margins: np.ndarray, now_s: float,
               busy: np.ndarray | bool) -> None:
        """The providers' margins are `margins` as of `now_s`, and they are now `busy`."""
        self._log_margin[providers] = np.log(margins)
        self._since_s[providers] = now_s
        self._rate[providers] = np.where(busy, self.beta, -self.alpha)

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        providers = np.asarray(providers, dtype=np.int64)
        costs = cost_floors(providers, view)
        margins = self.margins(providers, view.now_s)
        bids = np.add(margins, 1.0)
        bids *= costs
        cap = order.max_price_usd_per_gpu_hour
        priced_out = (bids > cap) & (costs <= cap)
        if priced_out.any():  # the margins of the moment: just computed
            self._store(providers[priced_out], margins[priced_out], view.now_s, False)
        return bids

    def observe(self, outcome: Outcome) -> None:
        self._commit(np.asarray(outcome.providers, dtype=np.int64), outcome.time_s,
                     np.asarray(outcome.won, bool))


class Undercut:
    """Bid just below the going rate: ``(1 − fraction) × mean`` of the last `window` published
    lease prices of the provider's own GPU model (`MarketView.clearing_prices`; the model is
    one the order accepts, or the provider would not be asked), never below the fee-grossed
    cost ``cost × gross_up`` (`MarketView.fee_gross_up()`). Published prices are what tenants
    paid, fee included, so they are undercut as they are. With no published price yet for
    that model, bid ``cost × (1 + fallback_markup) × gross_up``.

    Only the provider's own model counts: an order open to several models mixes very
    different price levels, and the going rate for this hardware is what a rival with the
    same card would bid. The market keeps the last 256 prices per model, so a larger `window`
    means all of them.
    """

    def __init__(self, fraction: float = 0.05, window: int = 20,
                 fallback_markup: float = 0.3) -> None:
        if not 0 <= fraction < 1:
            raise ValueError(f"fraction must be in [0, 1), got {fraction}")
        if not (isinstance(window, int) and window >= 1):
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        if not fallback_markup >= 0:
            raise ValueError(f"fallback_markup must be >= 0, got {fallback_markup}")
        self.fraction, self.window, self.fallback_markup = fraction, window, fallback_markup

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        costs = cost_floors(providers, view)
        models = view.models(providers)
        bids = costs * (1.0 + self.fallback_markup)
        for model in np.unique(models).tolist():
            recent = view.clearing_prices(view.gpu_models[model])[-self.window:]
            if recent.size:
                mine = models == model
                bids[mine] = np.maximum(costs[mine], (1.0 - self.fraction) * recent.mean())
        return bids


class _Drawn(NamedTuple):
    """What Hedge drew for one order, kept until its outcome comes back."""

    providers: list[int]
    arms: np.ndarray
    chances: np.ndarray   # of the arm drawn, when drawn
    costs: np.ndarray     # fee-grossed: cost × gross_up, USD per GPU-hour
    max_price: float
    gross_up: float       # MarketView.fee_gross_up() when drawn


DEFAULT_MARKUPS = tuple(round(0.1 * i, 1) for i in range(11))

# Clearing prices are rounded to whole micro-USD: bids this close count as equal.
_SLACK_USD = 1e-6


class Hedge:
    """A no-regret learner over a grid of markups on cost, one learner per provider.

    Here `cost` is the fee-grossed cost, cost basis × `MarketView.fee_gross_up()` (1 / (1 − t)
    when bids are priced net of the take rate t, the default): the floor that keeps the cost
    after the fee. Arm `a` bids ``min(cost × (1 + markups[a]), max price)`` (markups sorted
    ascending; in a scenario, where parameters are scalars, a comma-separated string such as
    "0, 0.5, 1"); with ``form="shade"`` it bids ``cost + markups[a] × (max price − cost)``,
    asking a share of the headroom under the tenant's reserve (the shape of the first-price
    equilibrium for uniform costs, whose share is 1/n):
    capped at the tenant's reserve, so the chain never refuses an arm (a provider whose cost
    is above the reserve does not bid). Each order, each provider draws an arm from its
    weights, ``∝ exp(−eta_t × cumulative loss)``, with the strategy's own
    ``numpy.random.Generator(seed)``.

    Payoff of an auction, USD per GPU-hour: what the provider keeps over its cost basis,
    ``(price received − cost) / gross_up`` if it won (= (1 − t) × price − cost basis when
    bids are net of the fee; price − cost basis, the fee ignored, when they are not), else 0;
    not scaled by GPUs or hours. For learning it becomes a loss
    ``1 − (price − cost) / (cost × max(markups))``, clipped to [0, 1] (the gross-up, the same
    for every arm, cancels out).

    What another arm would have earned is read from the outcome, taking the lowest bid to win
    (the *price to beat* is the lowest rival bid):
    - lost at clearing price q: q is the price to beat (the winner's bid, pay as bid); an arm
      bidding below it would have won, paid its bid;
    - won at q above the bid placed (second price): q is the price to beat; an arm bidding at
      most q would have won, paid q;
    - won at the bid placed (pay as bid): an arm bidding at most that would have won, paid its
      bid; for an arm bidding more the winner cannot tell, and its payoff is *imputed*: its
      bid − cost times the chance that the price to beat is above its bid given that it was
      above the bid placed, from the provider's own Kaplan–Meier estimate of the price to
      beat over the grid (relative to cost; losses observe it, pay-as-bid wins censor it;
      a grid step with no data yet is assumed passed);
    - expired (no clearing price): every arm earns 0.
    Bids are public on the chain: when the outcome carries every bid on the order
    (`Outcome.public_bids_usd_per_gpu_hour`), the price to beat is read exactly, as the
    lowest bid of the rivals (every bid but the provider's own), and nothing is imputed; an
    arm alone below it wins, paid its bid, or for a second-price winner paid the price to
    beat (the max price when it has no rival).
    The arm played is credited with what it really earned. The reading is exact for first
    price and tenant pick of the cheapest bid, and for a second-price win; a second-price
    loss is read as pay as bid, and first-arrival selection breaks the lowest-bid premise.

    - ``bandit=True``: EXP3 (loss-based importance weighting, no forced exploration): only
      the played arm's loss is used, as ``loss / P(arm)``. Default rate
      ``eta_t = sqrt(2 ln K / (K t))`` at a provider's t-th outcome (regret O(sqrt(T K ln K))).
    - ``bandit=False``: Hedge on every arm's (read or imputed) loss; default rate
      ``eta_t = sqrt(8 ln K / t)`` (regret O(sqrt(T ln K)) when nothing is imputed).
    A fixed `eta` replaces the schedule.

    The learner hears only auctions its providers bid in (`observe`); a draw whose bid never
    reached the chain is forgotten. Whatever `bandit` is, each provider's realized payoff and
    every arm's counterfactual payoff (read or imputed, as above) are summed, so that
    `regret()` is the best fixed arm in hindsight minus the realized payoff.
    """

    PENDING_ORDERS = 4096  # draws kept for orders whose outcome has not come back yet

    def __init__(self, markups: tuple[float, ...] | list[float] | str = DEFAULT_MARKUPS,
                 eta: float | None = None, bandit: bool = True, seed: int = 0,
                 form: str = "markup") -> None:
        try:  # a scenario's params are scalars: there the grid is a string, "0, 0.25, 0.5"
            markups = tuple(float(m) for m in (markups.split(",") if isinstance(markups, str)
                                               else markups))
        except (TypeError, ValueError):
            markups = ()
        if not markups or not all(0 <= m < math.inf for m in markups):
            raise ValueError(f"markups must be a non-empty list of finite numbers >= 0, "
                             f"got {markups!r}")
        if eta is not None and not 0 < eta < math.inf:
            raise ValueError(f"eta must be a finite number > 0 or None, got {eta}")
        if form not in ("markup", "shade"):
            raise ValueError(f"form: expected 'markup' or 'shade', got {form!r}")
        if form == "shade" and max(markups) > 1:
            raise ValueError("markups: with form 'shade' each is a share of the headroom, "
                             "at most 1")
        self.form = form
        self.markups = np.unique(markups)  # sorted: the price-to-beat grid needs an order
        self.eta = eta
        self.bandit = bool(bandit)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        k = self.markups.size
        self._loss = np.zeros((0, k))           # cumulative (estimated) losses, [0, 1] each
        self._rounds = np.zeros(0, np.int64)    # outcomes heard, per provider
        self._realized = np.zeros(0)            # USD per GPU-hour, summed over auctions
        self._counterfactual = np.zeros((0, k))
        # Kaplan–Meier counts of the price to beat on the grid: auctions known to have it
        # above arm j − 1 (at risk at j), and those of them with it at or below arm j.
        self._at_risk = np.zeros((0, k))
        self._fell = np.zeros((0, k))
        self._drawn: OrderedDict[int, _Drawn] = OrderedDict()

    def _grow(self, size: int) -> None:
        self._loss = _grown(self._loss, size, 0.0)
        self._rounds = _grown(self._rounds, size, 0)
        self._realized = _grown(self._realized, size, 0.0)
        self._counterfactual = _grown(self._counterfactual, size, 0.0)
        self._at_risk = _grown(self._at_risk, size, 0.0)
        self._fell = _grown(self._fell, size, 0.0)

    def _eta(self, rounds: np.ndarray) -> np.ndarray:
        if self.eta is not None:
            return np.full(rounds.shape, self.eta)
        k = self.markups.size
        log_k = math.log(max(k, 2))
        t = rounds + 1.0
        if self.bandit:
            return np.sqrt(2.0 * log_k / (k * t))
        return np.sqrt(8.0 * log_k / t)

    def _probabilities(self, providers: np.ndarray) -> np.ndarray:
        loss = self._loss[providers]
        logits = -self._eta(self._rounds[providers])[:, None] * (
            loss - loss.min(axis=1, keepdims=True))
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def weights(self, provider: int | None = None) -> np.ndarray:
        """Arm probabilities of one provider, shape (K,), or of every provider seen so far
        (rows by provider id), shape (providers, K)."""
        if provider is None:
            return self._probabilities(np.arange(self._loss.shape[0]))
        self._grow(provider + 1)
        return self._probabilities(np.array([provider]))[0]

    def regret(self, provider: int | None = None) -> float:
        """Best fixed arm in hindsight minus realized payoff, USD per GPU-hour summed over the
        auctions heard: of one provider, or summed over all (each with its own best arm)."""
        if provider is not None:
            if provider >= self._loss.shape[0]:
                return 0.0
            return float(self._counterfactual[provider].max() - self._realized[provider])
        if not self._loss.shape[0]:
            return 0.0
        return float((self._counterfactual.max(axis=1) - self._realized).sum())

    def arm_payoffs(self, provider: int) -> np.ndarray:
        """Each arm's payoff in hindsight for `provider` (read or imputed from the outcomes,
        the arm played credited with what it earned), USD per GPU-hour summed over auctions."""
        if provider >= self._counterfactual.shape[0]:
            return np.zeros(self.markups.size)
        return self._counterfactual[provider].copy()

    def payoff(self, provider: int | None = None) -> float:
        """Realized payoff, USD per GPU-hour summed over auctions: one provider's or all."""
        if provider is None:
            return float(self._realized.sum())
        return float(self._realized[provider]) if provider < self._realized.size else 0.0

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        providers = np.asarray(providers, dtype=np.int64)
        if not providers.size:
            return np.zeros(0)
        self._grow(int(providers.max()) + 1)
        gross_up = view.fee_gross_up()
        costs = np.asarray(view.costs(providers), dtype=float) * gross_up
        probabilities = self._probabilities(providers)
        draws = self._rng.random(providers.size)
        arms = np.minimum((probabilities.cumsum(axis=1) < draws[:, None]).sum(axis=1),
                          self.markups.size - 1)
        cap = order.max_price_usd_per_gpu_hour
        bids = np.minimum(self._grid(costs, cap)[np.arange(providers.size), arms], cap)
        bids[~(costs <= cap)] = np.nan
        self._drawn[order.order_id] = _Drawn(
            providers.tolist(), arms, probabilities[np.arange(providers.size), arms], costs, cap,
            gross_up)
        while len(self._drawn) > self.PENDING_ORDERS:
            self._drawn.popitem(last=False)
        return bids

    def observe(self, outcome: Outcome) -> None:
        drawn = self._drawn.pop(outcome.order.order_id, None)
        if drawn is None:
            return
        position = {p: i for i, p in enumerate(drawn.providers)}
        rows = np.array([position.get(p, -1) for p in np.asarray(outcome.providers).tolist()],
                        dtype=np.int64)
        heard = rows >= 0
        if not heard.any():
            return
        rows = rows[heard]
        providers = np.asarray(outcome.providers, dtype=np.int64)[heard]
        won = np.asarray(outcome.won, bool)[heard]
        costs, arms = drawn.costs[rows], drawn.arms[rows]
        index = np.arange(providers.size)
        grid = self._grid(costs, drawn.max_price)              # (m, K), uncapped
        bids = np.minimum(grid, drawn.max_price)
        played = bids[index, arms]
        q = outcome.clearing_usd_per_gpu_hour
        public = np.sort(np.asarray(outcome.public_bids_usd_per_gpu_hour, dtype=float))
        if math.isnan(q):
            realized = np.zeros(providers.size)
            payoffs = np.zeros(bids.shape)
        elif public.size:
            realized = np.where(won, q - costs, 0.0)
            second_price = won & (q > played + _SLACK_USD)
            beat = self._rivals_lowest(public, played)
            wins = np.where(won[:, None], bids <= beat[:, None] + _SLACK_USD,
                            bids < beat[:, None] - _SLACK_USD)
            paid = np.where(second_price[:, None],
                            np.minimum(beat, drawn.max_price)[:, None], bids)
            payoffs = np.where(wins, paid - costs[:, None], 0.0)
            self._count(providers, (grid < beat[:, None] - _SLACK_USD).sum(axis=1),
                        np.zeros(providers.size, bool))
        else:
            realized = np.where(won, q - costs, 0.0)
            second_price = won & (q > played + _SLACK_USD)
            censored = won & ~second_price
            # Arms that beat the price to beat (q, or for a pay-as-bid winner its own bid).
            beat = np.where(censored, played + _SLACK_USD, q - _SLACK_USD)[:, None]
            wins = np.where(won[:, None], bids <= beat, bids < beat)
            paid = np.where(second_price[:, None], q, bids)
            payoffs = np.where(wins, paid - costs[:, None], 0.0)
            # Grid points known to be below the price to beat: for a pay-as-bid winner those at
            # or below its bid (the rest is censored); else those below q.
            below = np.where(censored, (grid <= played[:, None] + _SLACK_USD).sum(axis=1),
                             (grid < q - _SLACK_USD).sum(axis=1))
            self._count(providers, below, censored)
            if censored.any():
                unseen = censored[:, None] & (bids > played[:, None] + _SLACK_USD)
                passed = self._passed(providers[censored], below[censored])
                payoffs[censored] = np.where(unseen[censored],
                                             (bids[censored] - costs[censored, None]) * passed,
                                             payoffs[censored])
        payoffs[index, arms] = realized
        # Kept over cost after the fee: (price − fee-grossed cost) / gross_up.
        self._realized[providers] += realized / drawn.gross_up
        self._counterfactual[providers] += payoffs / drawn.gross_up
        # The largest payoff any arm could earn: losses are scaled by it into [0, 1].
        scale = (self._grid(costs, drawn.max_price)[:, -1] - costs
                 if self.form == "shade" else costs * float(self.markups.max()))
        learn = scale > 0
        if learn.any():
            loss = 1.0 - np.clip(payoffs / np.where(learn, scale, 1.0)[:, None], 0.0, 1.0)
            if self.bandit:
                self._loss[providers[learn], arms[learn]] += (
                    loss[index, arms] / drawn.chances[rows])[learn]
            else:
                self._loss[providers[learn]] += loss[learn]
        self._rounds[providers] += 1

    @staticmethod
    def _rivals_lowest(public: np.ndarray, played: np.ndarray) -> np.ndarray:
        """For each bid played, the lowest of the other bids on the order (`public`, sorted,
        holding the played bids too): the lowest public bid, unless it is the played one, in
        which case the next (inf when there is none)."""
        lowest = np.full(played.shape, public[0])
        own = np.abs(public[0] - played) <= _SLACK_USD
        lowest[own] = public[1] if public.size > 1 else math.inf
        return lowest

    def _grid(self, costs: np.ndarray, cap: float) -> np.ndarray:
        """Every arm's bid for each cost, shape (providers, K): cost × (1 + markup), or with
        form "shade" cost + share × (max price − cost), the share of the headroom asked."""
        if self.form == "shade":
            return costs[:, None] + self.markups * np.maximum(cap - costs, 0.0)[:, None]
        return costs[:, None] * (1.0 + self.markups)

    def _count(self, providers: np.ndarray, below: np.ndarray, censored: np.ndarray) -> None:
        """Add one auction per provider to its Kaplan–Meier counts: the price to beat was
        above the first `below` grid points and, unless censored, not above the next one."""
        k = self.markups.size
        known = np.where(censored, below, np.minimum(below + 1, k))  # grid points decided
        self._at_risk[providers] += np.arange(k)[None, :] < known[:, None]
        fell = ~censored & (below < k)
        self._fell[providers[fell], below[fell]] += 1

    def _passed(self, providers: np.ndarray, below: np.ndarray) -> np.ndarray:
        """Kaplan–Meier chance that the price to beat is above each grid point, given that it
        is above the first `below` of them (1 for those), shape (providers, K)."""
        at_risk = self._at_risk[providers]
        hazard = np.divide(self._fell[providers], at_risk, out=np.zeros(at_risk.shape),
                           where=at_risk > 0)
        hazard[np.arange(self.markups.size)[None, :] < below[:, None]] = 0.0
        return np.cumprod(1.0 - hazard, axis=1)


__all__ = ["AdaptiveMargin", "Hedge", "Undercut"]

