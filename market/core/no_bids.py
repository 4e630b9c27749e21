"""Why providers did not bid on an order: the first reason of each, counted where it happens.

When an order's auction opens, every provider of the market either bids or drops out at one
step of the way an Akash provider screens, prices and sends a bid. Each step counts the
providers it drops (`Order.no_bids`, one integer per reason of `REASONS`), so a provider is
counted once, under the first reason that applies, in this precedence (the steps' order):

1. `no_model`: its GPU model is not one the order accepts;
2. `offline`: down (failed, or on its offline hours) or gone from the market;
3. `audit`: the order wants audited providers only, and it is not audited;
4. `storage_class`: it lacks a storage class the order asks for;
5. `capacity`: not enough free in total (GPUs, or CPU, memory, storage beside them);
6. `fragmented`: enough free in total, but no node has a replica's GPUs;
7. `node_headroom`: a node has a replica's GPUs, but not the CPU or memory beside them;
8. `by_hand`: it bids only by hand (and did not when the auction opened);
9. `price`: its ask is above the order's max price, or it made none;
10. `late`: its bid would arrive after the bidding window;
11. `bid_cap`: the first `order_max_bids` bids to arrive took every place;
12. `deposit`: it could not pay the bid deposit.

The counts and the bids placed add up to the providers on the market (gone ones included)
when the auction opened. Bids placed by hand later are not counted here. A market that
clears orders in batches has no per-order auction: nothing is counted there.

Counting costs a few whole-array operations per order, on masks the matcher has already
built or caches per order shape; nothing is per provider in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import add
from typing import Any

#: The reasons, in their precedence (the order of the steps that drop providers).
REASONS = ("no_model", "offline", "audit", "storage_class", "capacity", "fragmented",
           "node_headroom", "by_hand", "price", "late", "bid_cap", "deposit")
NO_MODEL, OFFLINE, AUDIT, STORAGE_CLASS, CAPACITY, FRAGMENTED, NODE_HEADROOM, BY_HAND, \
    PRICE, LATE, BID_CAP, DEPOSIT = range(len(REASONS))

#: One line each, for reports and the README.
MEANINGS = {
    "no_model": "no GPU model the order accepts",
    "offline": "down or gone from the market",
    "audit": "the order wants audited providers; not audited",
    "storage_class": "lacks a storage class the order asks for",
    "capacity": "not enough free in total",
    "fragmented": "GPUs free in total, but no node has a replica's GPUs",
    "node_headroom": "a node has the GPUs, but not the CPU or memory beside them",
    "by_hand": "bids only by hand",
    "price": "its ask is above the max price, or it made none",
    "late": "its bid would arrive after the bidding window",
    "bid_cap": "crowded out by the cap on bids per order",
    "deposit": "could not pay the bid deposit",
}

#: The orders table's column of each reason (`market.observe.tables`).
COLUMNS = tuple(f"no_bid_{reason}" for reason in REASONS)


def empty() -> list[int]:
    """A fresh count per reason (a list: the counting adds to single items, which Python
    ints do several times faster than a numpy array's)."""
    return [0] * len(REASONS)


def as_dict(counts: Sequence[int], *, nonzero: bool = True) -> dict[str, int]:
    """Counts in `REASONS` order as reason → providers (only reasons that occurred, by
    default), in precedence order."""
    return {reason: int(count) for reason, count in zip(REASONS, counts, strict=True)
            if count or not nonzero}


def dominant(counts: Sequence[int]) -> str | None:
    """The reason most providers with a GPU model the order accepts gave (ties: the earlier
    in precedence); `no_model` when no other provider is left; None if none. Providers of
    other models say nothing of why the order's own kind of provider did not bid: in a market
    of several models they outnumber the rest on nearly every order."""
    others = counts[NO_MODEL + 1:]
    top = max(others, default=0)
    if top:
        return REASONS[NO_MODEL + 1 + others.index(top)]
    return REASONS[NO_MODEL] if len(counts) and counts[NO_MODEL] else None


class Breakdown:
    """Over expired orders: how many had each reason as the dominant one, and the providers
    counted under each reason (the summary's `no_bids`)."""

    def __init__(self) -> None:
        self.orders = 0
        self.dominant = dict.fromkeys(REASONS, 0)
        self.providers = [0] * len(REASONS)

    def add(self, counts: Sequence[int]) -> None:
        if not counts:  # an order built by hand in a test, or cleared in a batch
            return
        self.orders += 1
        self.providers = list(map(add, self.providers, counts))
        reason = dominant(counts)
        if reason is not None:
            self.dominant[reason] += 1

    def summary(self) -> dict[str, Any]:
        return {"expired_orders": self.orders,
                "dominant_reason_orders": dict(self.dominant),
                "providers": as_dict(self.providers, nonzero=False)}


def describe(counts: Mapping[str, int]) -> str:
    """'price 12, capacity 3' (largest first; ties in precedence order)."""
    ranked = sorted(((n, REASONS.index(r), r) for r, n in counts.items() if n),
                    key=lambda t: (-t[0], t[1]))
    return ", ".join(f"{reason} {count}" for count, _, reason in ranked) or "none"
