"""A remote provider bot: any bid strategy, trading in a live market over the API.

The bot joins a market as a provider (or acts as one that joined already), follows the
market's events, and prices every open order it could serve with the same strategy protocol
offline simulations use (`market.strategy`): `prices(order, providers, view)` in USD per
GPU-hour (NaN: no bid), or `PerProvider.bid(order, me, view)`, optional `asks` and `min_bids`,
and `observe(outcome)` when an auction it bid in ends. The strategy sees a `RemoteView`
(`api.remote.view`), built from the stream, with exactly the reads `MarketView` allows: the
clock, public rules and prices, and its own provider's facts, never a rival's.

    from api.remote.bot import run_bot

    run_bot("http://127.0.0.1:8000", "m-ab12cd34", "cost_plus", params={"markup": 0.2})

The bot races for a place in each order's cap of `order_max_bids` bids: it bids the moment
an `order_opened` event arrives, over the stream's own websocket, without waiting for the
replies, and passes over orders whose cap will be full when its bid lands. It counts what
became of its bids (accepted into the cap, refused by reason) and says so as it runs.

A strategy given by name is built by `api.remote.strategy_args`; `gpumarket bot`
(`api.cli.online`) is this bot on the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import re
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from api.remote.client import Client
from api.remote.replies import ApiError
from api.remote.strategy_args import make_strategy
from api.remote.stream import Stream
from api.remote.view import RemoteView, order_view
from market.strategy import Outcome, ProviderView
from market.units import SECONDS_PER_HOUR, micro_to_usd, order_rate_micro, per_gpu_hour_usd

#: Open orders tracked at once; beyond it the oldest are forgotten (bounded memory even if
#: an order's end was never seen).
ORDERS_KEPT = 20_000
#: Wall seconds to wait before the one retry of a rate-limited bid (the server refills 20
#: requests per second per token by default).
RATE_LIMIT_BACKOFF_S = 1.0
#: Wall seconds allowed for reading the wallet when the bot stops.
FINAL_READ_S = 3.0
#: Reconnections in a row the bot tries before it gives up on a server that went away: with
#: the stream's backoff (doubling to 2 s) about two minutes, long enough for a restart, which
#: brings the market back where it was.
RECONNECTS = 60
#: Wall seconds between status lines (bids sent, accepted, refused by reason, leases, revenue).
STATUS_EVERY_S = 10.0
#: Bids an order keeps when the server does not say (Akash's `order_max_bids`); a refusal
#: that names the market's own figure corrects it.
ORDER_MAX_BIDS = 20
#: Why the server refused a bid, from its message or code, as the status lines count it.
#: A "conflict" carries the market's own words; the first phrase found names the reason.
REFUSAL_PHRASES = (("already has order_max_bids", "order full"),
                   ("is not open", "order closed"),
                   ("above the order's max price", "above max price"),
                   ("already bid", "already bid"),
                   ("does not match", "no free capacity"),
                   ("bid deposit", "deposit unpaid"))
REFUSAL_CODES = {"not_found": "order closed", "rate_limited": "rate limited",
                 "disconnected": "no reply", "timeout": "no reply"}
_MAX_BIDS_SAID = re.compile(r"order_max_bids \((\d+)\)")


# ---------------------------------------------------------------------------- the bot

@dataclass
class _Order:
    """An open order the bot follows until it is decided."""

    event: dict[str, Any]                    # its order_opened event
    public_bids_usd_per_gpu_hour: list[float] = field(default_factory=list)
    public_bids_micro_per_hour: list[int] = field(default_factory=list)  # the same, exact
    public_arrivals_s: list[float] = field(default_factory=list)  # when each reaches the chain
    priced: bool = False                     # the strategy priced it (this run)
    my_bid_usd_per_gpu_hour: float = math.nan
    my_bid_micro_per_hour: int = -1          # the same, exact (-1: none)

    @property
    def order_id(self) -> int:
        return int(self.event["order_id"])

    @property
    def gpus(self) -> int:
        return int(self.event["gpus"])


class Bot:
    """One remote provider run by `strategy` (see `run_bot` for the arguments)."""

    def __init__(self, url: str, market_id: str, strategy: Any, *, name: str = "bot",
                 gpu_model: str = "h100", gpus: int = 8, archetype: str = "datacenter",
                 wallet_usd: float = 1000.0, token: str | None = None,
                 max_orders: int | None = None, stop_after_s: float | None = None,
                 log: Callable[[str], Any] = print, timeout_s: float = 10.0,
                 invite_code: str | None = None,
                 status_every_s: float | None = STATUS_EVERY_S) -> None:
        self.url = url
        self.invite_code = invite_code
        self.market_id = market_id
        self.strategy = strategy
        self.name = name
        self.gpu_model = gpu_model
        self.gpus = gpus
        self.archetype = archetype
        self.wallet_usd = wallet_usd
        self.token = token
        self.max_orders = max_orders
        self.stop_after_s = stop_after_s
        self.log = log
        self.timeout_s = timeout_s
        self.provider: int | None = None
        self.view: RemoteView | None = None
        self.started = False          # joined, read its facts and streaming
        self.stopped_by = ""
        self.status_every_s = status_every_s
        self.orders_priced = 0
        self.bids_sent = 0
        self.bids_placed = 0          # accepted into the order's cap
        self.bids_refused = 0
        self.refused: Counter[str] = Counter()    # refusals by reason (REFUSAL_PHRASES)
        self.passed_over: Counter[str] = Counter()  # servable orders not bid on, by reason
        self.leases_won = 0
        self.revenue_usd = 0.0        # payouts settled to the bot in this run, net of fee
        # Leases won in this run: lease id -> [start, end (inf: active)] in simulated seconds
        # and the rate the bot keeps after the fee, USD per hour (what `booked_usd` sums).
        self._won: dict[int, list[float]] = {}
        self.max_bids = ORDER_MAX_BIDS
        self._bidding: set[asyncio.Task[None]] = set()
        self._started_at = math.nan   # wall clock (monotonic) when trading began
        self.wallet_start_usd = math.nan
        self.wallet_end_usd = math.nan
        self._orders: OrderedDict[int, _Order] = OrderedDict()
        self._to_price: deque[int] = deque()
        # GPUs held: by my open bids (order id -> (gpus, simulated time the bid lapses)) and
        # by my leases (lease id -> gpus). A bid reserves capacity on the market, as a lease
        # does, so a bot bids only what it could still serve.
        self._bid_holds: dict[int, tuple[int, float]] = {}
        self._lease_holds: dict[int, int] = {}
        self._seeded_lease_id = -1    # leases up to this one came with the snapshot's prices
        self._catch_up_seq = 0        # events up to this one happened before the bot started
        self._bid_timeout_s = math.inf

    # ------------------------------------------------------------------ running

    def run_blocking(self) -> dict[str, Any]:
        """Run until a stop condition (or Ctrl-C) and return the summary."""
        try:
            asyncio.run(self.run())
        except KeyboardInterrupt:
            self.stopped_by = "interrupted"
        return self.summary()

    async def run(self) -> dict[str, Any]:
        """Join (or take over `token`'s provider), then trade until the market ends, the
        wall-clock limit, `max_orders` orders priced, or cancellation."""
        async with Client(self.url, timeout_s=self.timeout_s) as client:
            status = asyncio.create_task(self._report_status())
            try:
                await self._trade(client)
            except asyncio.CancelledError:
                self.stopped_by = self.stopped_by or "interrupted"
                for task in self._bidding:
                    task.cancel()
                raise
            finally:
                status.cancel()
                if self.started:
                    await self._read_final_wallet(client)
                    self.log(self._summary_line())
        return self.summary()

    async def _report_status(self) -> None:
        """A status line every `status_every_s` wall seconds while trading."""
        if not self.status_every_s:
            return
        while True:
            await asyncio.sleep(self.status_every_s)
            if self.started:
                elapsed_s = time.monotonic() - self._started_at
                self.log(f"{self.name}: after {elapsed_s:.0f} s: {self._counts_line()}")

    @property
    def booked_usd(self) -> float:
        """What the leases won in this run have earned so far at their prices, net of the
        platform's fee, USD: revenue as it accrues (payments settle later, at withdrawals)."""
        now_s = self.view.now_s if self.view is not None else 0.0
        return sum(rate * max(min(end_s, now_s) - start_s, 0.0) / SECONDS_PER_HOUR
                   for start_s, end_s, rate in self._won.values())

    @property
    def acceptance_rate(self) -> float:
        """Bids accepted into their order's cap / bids answered (NaN before any answer)."""
        answered = self.bids_placed + self.bids_refused
        return self.bids_placed / answered if answered else math.nan

    def summary(self) -> dict[str, Any]:
        """Counts of this run: bids sent, placed (accepted into the order's cap of
        `order_max_bids`), refused (in all, and by reason: "order full", "order closed",
        "above max price", "rate limited", ...), `acceptance_rate` (placed / answered; NaN
        before any answer), servable orders `passed_over` without a bid (by reason: "order
        full" when the cap had filled before the bid could land), `revenue_usd` (payouts
        settled in this run, net of the platform's fee), `booked_usd` (what the leases won
        have earned so far, net of the fee, settled or not) and `earned_usd`, the wallet's
        change (settled revenue less bid deposits still locked; where leases settle in AKT,
        the AKT it holds counts at its spot price), USD."""
        return {"provider": self.provider, "orders_priced": self.orders_priced,
                "bids_sent": self.bids_sent, "bids_placed": self.bids_placed,
                "bids_refused": self.bids_refused, "acceptance_rate": self.acceptance_rate,
                "refused_by_reason": dict(self.refused.most_common()),
                "passed_over": dict(self.passed_over.most_common()),
                "leases_won": self.leases_won, "booked_usd": self.booked_usd,
                "revenue_usd": self.revenue_usd,
                "earned_usd": self.wallet_end_usd - self.wallet_start_usd,
                "stopped_by": self.stopped_by}

    def _counts_line(self) -> str:
        """Bids sent, accepted, refused by reason, orders passed over, leases and revenue."""
        rate = self.acceptance_rate
        accepted = f"{self.bids_placed} accepted into the cap" + (
            "" if math.isnan(rate) else f" ({rate:.0%})")
        refused = ", ".join(f"{count} {reason}" for reason, count in self.refused.most_common())
        passed = ", ".join(f"{count} {reason}"
                           for reason, count in self.passed_over.most_common())
        return (f"{self.orders_priced} orders priced, {self.bids_sent} bids sent, "
                f"{accepted}, {self.bids_refused} refused" + (f" ({refused})" if refused else "")
                + (f", passed over {passed}" if passed else "")
                + f", {self.leases_won} leases won, booked {self.booked_usd:.2f} USD "
                f"(paid {self.revenue_usd:.2f})")

    def _summary_line(self) -> str:
        earned = self.wallet_end_usd - self.wallet_start_usd
        earned_text = "unknown" if math.isnan(earned) else f"{earned:+.2f} USD"
        return (f"{self.name}: stopped ({self.stopped_by or 'error'}): "
                f"{self._counts_line()}, earned {earned_text}")

    async def _trade(self, client: Client) -> None:
        loop = asyncio.get_running_loop()
        deadline = math.inf if self.stop_after_s is None else loop.time() + self.stop_after_s
        snapshot = await client.snapshot(self.market_id)
        if self.token is None:
            joined = await client.join_provider(self.market_id, self.name, self.gpu_model,
                                                self.gpus, self.archetype,
                                                wallet_usd=self.wallet_usd,
                                                invite_code=self.invite_code)
            self.token = joined["token"]
        me = await client.me(self.market_id, self.token)
        self._take_facts(snapshot, me)
        since = await self._replay_from(client, snapshot)
        stream = client.stream(self.market_id, since=since, token=self.token, allow_gaps=True,
                               max_retries=RECONNECTS)
        async with stream:
            self._catch_up_seq = int((stream.hello or {}).get("seq", 0))
            self.started = True
            self._started_at = time.monotonic()
            self.log(self._start_line())
            try:
                await self._follow(stream, deadline)
            finally:
                await self._settle_bids()

    async def _follow(self, stream: Stream, deadline: float) -> None:
        """Take each frame's events as it comes and bid at once on the orders it opened."""
        loop = asyncio.get_running_loop()
        while True:
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                self.stopped_by = "stop_after_s"
                return
            try:
                events = await asyncio.wait_for(
                    stream.next_batch(), None if math.isinf(remaining_s) else remaining_s)
            except TimeoutError:
                self.stopped_by = "stop_after_s"
                return
            if not events:
                self.stopped_by = f"market {stream.state}"
                return
            for event in events:
                self._on_event(event)
            if self.view is not None and not math.isnan(stream.clock_s):
                self.view.heard_clock(stream.clock_s)
            if (stream.last_seq or 0) >= self._catch_up_seq:
                self._bid_on_open_orders(stream)
                if self.max_orders is not None and self.orders_priced >= self.max_orders:
                    self.stopped_by = "max_orders"
                    return

    def _take_facts(self, snapshot: dict[str, Any], me: dict[str, Any]) -> None:
        """Build the strategy's view from the snapshot (public rules, prices) and `/me`
        (own facts, leases)."""
        facts = me.get("provider_facts")
        if me.get("role") != "provider" or facts is None:
            raise ValueError(f"--token: this token is a {me.get('role')}'s; the bot needs a "
                             "provider's")
        self.provider = int(me["provider"])
        self.gpu_model, self.gpus = facts["gpu_model"], int(facts["gpus"])
        mine = ProviderView(self.provider, facts["gpu_model"], int(facts["gpus"]),
                            int(facts["free_gpus"]),
                            float(facts["cost_full_usd_per_gpu_hour"]),
                            float(facts["cost_marginal_usd_per_gpu_hour"]),
                            float(facts["cost_basis_usd_per_gpu_hour"]))
        models = snapshot["gpu_models"]
        self.view = RemoteView(mine, tuple(m["id"] for m in models), float(snapshot["take_rate"]),
                               {m["id"]: float(m["list_usd_per_gpu_hour"]) for m in models},
                               float(snapshot["clock_s"]),
                               bids_net_of_fee=bool(snapshot["bids_net_of_fee"]))
        for model, series in snapshot.get("prices", {}).items():
            for _time_s, price in series:
                self.view.record_price(model, float(price))
        self._seeded_lease_id = max((int(lease["lease_id"])
                                     for lease in snapshot.get("recent_leases", ())), default=-1)
        self._bid_timeout_s = float(snapshot.get("bid_timeout_s", math.inf))
        self.max_bids = int(snapshot.get("order_max_bids", self.max_bids))
        for lease in me.get("active_leases", ()):
            self._lease_holds[int(lease["lease_id"])] = int(lease["gpus"])
        self.wallet_start_usd = _worth_usd(me)

    async def _replay_from(self, client: Client, snapshot: dict[str, Any]) -> int:
        """The seq to stream from: just before the oldest open order the bot could serve was
        opened, so that its `order_opened` event (which carries the order's resource units)
        comes first. Steps back from the snapshot's seq, doubling, until an older event."""
        seq = int(snapshot["seq"])
        opened = [float(o["created_s"]) for o in snapshot.get("open_orders", ())
                  if self.gpu_model in o["gpu_models"] and int(o["gpus"]) <= self.gpus]
        if not opened:
            return seq
        oldest_s = min(opened)
        step = 256
        since = seq
        while since > 0:
            since = max(since - step, 0)
            page = await client.events(self.market_id, since=since, limit=1)
            if not page["events"] or since < int(page["oldest_seq"]) \
                    or float(page["events"][0]["time_s"]) < oldest_s:
                return since
            step *= 2
        return 0

    async def _read_final_wallet(self, client: Client) -> None:
        try:
            me = await asyncio.wait_for(client.me(self.market_id, self.token or ""),
                                        FINAL_READ_S)
            self.wallet_end_usd = _worth_usd(me)
        except (ApiError, TimeoutError):
            pass  # the summary then says "unknown": stopping matters more than the figure

    def _start_line(self) -> str:
        me = self.view.me if self.view is not None else None
        cost = "" if me is None else f"; cost basis {me.cost_basis_usd_per_gpu_hour:.4f} USD/GPU-h"
        return (f"{self.name}: provider {self.provider} in {self.market_id} ({self.gpus} × "
                f"{self.gpu_model}{cost}), wallet {self.wallet_start_usd:.2f} USD")

    # ------------------------------------------------------------------ events

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if self.view is not None:
            self.view.heard_clock(float(event["time_s"]))
        if kind == "order_opened":
            self._orders[int(event["order_id"])] = _Order(event)
            self._to_price.append(int(event["order_id"]))
            while len(self._orders) > ORDERS_KEPT:
                forgotten, _ = self._orders.popitem(last=False)
                self._bid_holds.pop(forgotten, None)
        elif kind == "bids_placed":
            self._on_bids(event)
        elif kind == "lease_created":
            self._on_lease(event)
        elif kind in ("order_expired", "order_cancelled"):
            order = self._orders.pop(int(event["order_id"]), None)
            self._bid_holds.pop(int(event["order_id"]), None)
            if kind == "order_expired" and order is not None:
                self._tell(order, won=False, clearing_micro=-1, time_s=float(event["time_s"]))
        elif kind == "lease_closed" and event["provider"] == self.provider:
            self._lease_holds.pop(int(event["lease_id"]), None)
            if int(event["lease_id"]) in self._won:
                self._won[int(event["lease_id"])][1] = float(event["time_s"])
        elif kind == "payment_settled" and event["provider"] == self.provider \
                and int(event["seq"]) > self._catch_up_seq:
            self.revenue_usd += micro_to_usd(int(event["amount_micro"]) - int(event["fee_micro"]))

    def _on_bids(self, event: dict[str, Any]) -> None:
        order = self._orders.get(int(event["order_id"]))
        if order is None:
            return
        for provider, price, arrival_s in zip(event["providers"],
                                              event["prices_micro_per_hour"],
                                              event["arrivals_s"], strict=False):
            usd = per_gpu_hour_usd(price, order.gpus)
            order.public_bids_usd_per_gpu_hour.append(usd)
            order.public_bids_micro_per_hour.append(int(price))
            order.public_arrivals_s.append(float(arrival_s))
            if provider == self.provider:
                order.my_bid_usd_per_gpu_hour = usd
                order.my_bid_micro_per_hour = int(price)
                # A bid on an order the tenant picks by hand lapses after bid_timeout_s.
                lapses_s = math.inf if order.event.get("auto_select") \
                    else float(arrival_s) + self._bid_timeout_s
                self._bid_holds[order.order_id] = (order.gpus, lapses_s)

    def _on_lease(self, event: dict[str, Any]) -> None:
        price = per_gpu_hour_usd(event["price_micro_per_hour"], int(event["gpus"]))
        if self.view is not None and not event.get("interruptible") \
                and int(event["lease_id"]) > self._seeded_lease_id:
            self.view.record_price(event["gpu_model"], price)
        order_id = int(event["order_id"])
        order = self._orders.pop(order_id, None)
        self._bid_holds.pop(order_id, None)
        won = event["provider"] == self.provider
        if won:
            self._lease_holds[int(event["lease_id"])] = int(event["gpus"])
            if int(event["seq"]) > self._catch_up_seq:
                self.leases_won += 1
                kept = 1.0 - (self.view.take_rate if self.view is not None else 0.0)
                self._won[int(event["lease_id"])] = [
                    float(event["time_s"]), math.inf,
                    micro_to_usd(int(event["price_micro_per_hour"])) * kept]
                self.log(f"{self.name}: won order {order_id}: lease {event['lease_id']} at "
                         f"{price:.4f} USD/GPU-h for {event['gpus']} GPU")
        if order is not None:
            self._tell(order, won=won, clearing_micro=int(event["price_micro_per_hour"]),
                       time_s=float(event["time_s"]))

    def _tell(self, order: _Order, *, won: bool, clearing_micro: int, time_s: float) -> None:
        """The strategy's `observe`, for an auction it bid in (not an interruptible one: there
        the bid was its floor, not its price), as the offline market tells it."""
        observe = getattr(self.strategy, "observe", None)
        if observe is None or not order.priced or math.isnan(order.my_bid_usd_per_gpu_hour) \
                or order.event.get("interruptible"):
            return
        my_bid = order.my_bid_usd_per_gpu_hour
        # The lease rate, micro-USD per hour of the whole order (-1: the order expired).
        clearing = per_gpu_hour_usd(clearing_micro, order.gpus) if clearing_micro >= 0 \
            else math.nan
        observe(Outcome(order_view(order.event), np.array([self.provider], np.int64),
                        np.array([my_bid]), np.array([won]),
                        clearing, time_s, np.array(order.public_bids_usd_per_gpu_hour),
                        np.array([order.my_bid_micro_per_hour], np.int64),
                        clearing_micro, np.array(order.public_bids_micro_per_hour, np.int64)))

    # ------------------------------------------------------------------ bidding

    def free_gpus(self) -> int:
        """GPUs neither leased nor held by an open bid, as the bot tracks them."""
        now_s = self.view.now_s if self.view is not None else 0.0
        held = sum(gpus for gpus, lapses_s in self._bid_holds.values() if lapses_s > now_s)
        return max(self.gpus - held - sum(self._lease_holds.values()), 0)

    def _can_serve(self, order: _Order) -> bool:
        event = order.event
        if self.gpu_model not in event["gpu_models"] or order.gpus > self.gpus:
            return False
        if event.get("interruptible") and not hasattr(self.strategy, "min_bids"):
            return False
        return order.order_id not in self._bid_holds and order.gpus <= self.free_gpus()

    def _price(self, order: _Order) -> float:
        """The strategy's bid for `order`, USD per GPU-hour (NaN: none), read as the offline
        market reads it: `min_bids` for an interruptible order, else a positive `asks`, else
        `prices`."""
        assert self.view is not None and self.provider is not None
        providers = np.array([self.provider], np.int64)
        view = self.view
        view.me = dataclasses.replace(view.me, free_gpus=self.free_gpus())
        if order.event.get("interruptible"):
            return float(np.asarray(self.strategy.min_bids(providers, view), float)[0])
        asks = getattr(self.strategy, "asks", None)
        if asks is not None:
            ask = float(np.asarray(asks(providers, view), float)[0])
            if ask > 0 and math.isfinite(ask):
                return ask
        return float(np.asarray(self.strategy.prices(order_view(order.event), providers,
                                                     view), float)[0])

    def _bid_on_open_orders(self, stream: Stream) -> None:
        """Price every order opened since the last frame that is still open, servable and
        not already full, and send each bid at once over the stream's socket without waiting
        for the replies (they come at the market's next tick; waiting would make the bot a
        tick late for the orders of the next frame)."""
        while self._to_price:
            if self.max_orders is not None and self.orders_priced >= self.max_orders:
                self._to_price.clear()
                break
            order = self._orders.get(self._to_price.popleft())
            if order is None or not self._can_serve(order):
                continue
            if self._full_on_landing(order):
                # Orders the bot found open when it joined were mostly full already: the
                # race it lost is told apart from the one it never ran.
                late = int(order.event["seq"]) <= self._catch_up_seq
                self.passed_over["full before the bot joined" if late else "order full"] += 1
                continue
            price = self._price(order)
            order.priced = True
            self.orders_priced += 1
            # The engine's own test, on the engine's integers: the bid rounded to whole
            # micro-USD per hour of the order must be at least one and at most the max price.
            if math.isfinite(price) and 0 < order_rate_micro(price, order.gpus) \
                    <= int(order.event["max_price_micro_per_hour"]):
                self._bid_holds[order.order_id] = (order.gpus, math.inf)  # held at once
                self.bids_sent += 1
                task = asyncio.create_task(self._bid(stream, order, price))
                self._bidding.add(task)
                task.add_done_callback(self._bidding.discard)

    def _full_on_landing(self, order: _Order) -> bool:
        """Whether `order_max_bids` public bids will have arrived by the time a bid sent now
        lands. It lands at the market's next tick, at the clock of the frame just read (the
        server applies commands before it advances): a bid the cap has no room for then is
        refused, so it is not worth a request."""
        landing_s = self.view.now_s if self.view is not None else 0.0
        arrived = sum(1 for arrival_s in order.public_arrivals_s if arrival_s <= landing_s)
        return arrived >= self.max_bids

    async def _settle_bids(self) -> None:
        """Wait (a bounded while) for the replies to bids still in flight, so that the
        summary counts them; any left then are cancelled."""
        if not self._bidding:
            return
        _done, pending = await asyncio.wait(set(self._bidding), timeout=self.timeout_s)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)

    async def _bid(self, stream: Stream, order: _Order, price: float) -> None:
        for attempt in range(2):
            try:
                await stream.command("bid", order_id=order.order_id,
                                     price_usd_per_gpu_hour=price)
            except ApiError as error:
                if error.code == "rate_limited" and attempt == 0:
                    await asyncio.sleep(error.retry_after_s or RATE_LIMIT_BACKOFF_S)
                    continue
                if error.code not in ("conflict", "not_found", "rate_limited", "disconnected",
                                      "timeout"):
                    self.bids_refused += 1
                    self.refused[error.code] += 1
                    self.log(f"{self.name}: bid on order {order.order_id} refused: {error}")
                    return
                self._refused(order, error)
                return
            self.bids_placed += 1
            self.log(f"{self.name}: bid {price:.4f} USD/GPU-h on order {order.order_id} "
                     f"({order.gpus} GPU, max "
                     f"{float(order.event['max_price_usd_per_gpu_hour']):.4f})")
            return

    def _refused(self, order: _Order, error: ApiError) -> None:
        """Count a refused bid by its reason, release the GPUs it held, and learn the
        market's cap from a refusal that states it."""
        reason = REFUSAL_CODES.get(error.code, "")
        for phrase, named in REFUSAL_PHRASES:
            if phrase in error.message:
                reason = named
                break
        said = _MAX_BIDS_SAID.search(error.message)
        if said:
            self.max_bids = int(said.group(1))
        self.bids_refused += 1
        self.refused[reason or error.code] += 1
        if math.isnan(order.my_bid_usd_per_gpu_hour):  # no event says it was placed
            self._bid_holds.pop(order.order_id, None)
        self.log(f"{self.name}: bid on order {order.order_id} refused "
                 f"({reason or error.code}): {error.message}")


# ---------------------------------------------------------------------------- entry points

def run_bot(url: str, market_id: str, strategy: Any, *, params: dict[str, Any] | None = None,
            name: str = "bot", gpu_model: str = "h100", gpus: int = 8,
            archetype: str = "datacenter", wallet_usd: float = 1000.0,
            token: str | None = None, max_orders: int | None = None,
            stop_after_s: float | None = None, log: Callable[[str], Any] = print,
            invite_code: str | None = None,
            status_every_s: float | None = STATUS_EVERY_S) -> dict[str, Any]:
    """Run a provider bot in market `market_id` of the server at `url` until the market
    stops or finishes, `stop_after_s` wall seconds pass, `max_orders` orders have been
    priced, or Ctrl-C.

    `strategy` is a strategy instance, or a registered strategy name built with `params`.
    The bot joins as provider `name` with `gpus` × `gpu_model` costed as `archetype` and a
    wallet of `wallet_usd` USD (with the market's `invite_code`, if it has one), unless
    `token` is given: then it acts as that provider. Prints one line per bid, refusal (with
    its reason) and win through `log`, a status line every `status_every_s` wall seconds
    (None: none), and a summary at the end, which it returns (see `Bot.summary`):
    {"provider", "orders_priced", "bids_sent", "bids_placed" (accepted into the cap),
    "bids_refused", "acceptance_rate", "refused_by_reason", "passed_over", "leases_won",
    "booked_usd", "revenue_usd", "earned_usd" (the wallet's change), "stopped_by"}.
    """
    if isinstance(strategy, str):
        strategy = make_strategy(strategy, params)
    return Bot(url, market_id, strategy, name=name, gpu_model=gpu_model, gpus=gpus,
               archetype=archetype, wallet_usd=wallet_usd, token=token, max_orders=max_orders,
               stop_after_s=stop_after_s, log=log, invite_code=invite_code,
               status_every_s=status_every_s).run_blocking()


def _worth_usd(me: dict[str, Any]) -> float:
    """What the bot's provider holds, USD: its wallet and, where leases settle in AKT (BME),
    the AKT it earned and has not sold yet, at the spot price."""
    bme = me.get("bme") or {}
    return float(me["wallet_usd"]) + float(bme.get("akt_held_value_usd", 0.0))
