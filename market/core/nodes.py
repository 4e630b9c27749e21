"""Providers' nodes: capacity per machine, and the node each replica of an order runs on.

A provider built from a real cluster's node list (`agents.node_lists`) owns several nodes. Each
replica of an order is a pod that runs on one machine, so a provider's free capacity in total
is not enough to serve an order: some node must have each replica's GPUs, CPU and memory free.
Akash's provider checks its inventory the same way before it bids. The placement rule is first
fit: the order's replicas, largest first, each on the first of the provider's nodes (in the
node list's order) that has room.

A provider with no node list is one node with its whole capacity; for it the totals say it
all, and nothing here runs. Per node the table tracks GPUs, CPU millicores and memory bytes
(`NODE_CAPACITY`); storage and leased IPs stay the provider's (Akash's persistent storage is a
cluster-wide pool, and leased IPs belong to the provider).

Where interruptible leases run (`market.mechanisms.interruptible`), an order may count as free
what the leases it outranks hold on each node (`headroom`), as it does in the totals; the
scheduler then ranks each provider's interruptible leases node by node. An order is placed on
free nodes where it can be, and on nodes where it displaces leases only where it cannot. A
paused lease holds no node: it resumes on the first nodes with room for its replicas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from market.core.no_bids import FRAGMENTED, NODE_HEADROOM
from market.core.records import Order
from market.core.resources import CAPACITY, ResourceUnit

#: What each node tracks, as the first dimensions of `CAPACITY`.
NODE_CAPACITY = CAPACITY[:3]
_DIMENSIONS = len(NODE_CAPACITY)
_MAX_SHAPES = 65_536

#: One node's capacity: GPUs, CPU millicores, memory bytes.
NodeSpec = tuple[int, int, int]


def replicas(order: Order) -> np.ndarray:
    """The order's replicas as rows of (GPUs, CPU millicores, memory bytes), largest first
    (int64 ``[r, 3]``)."""
    rows = []
    for unit in order.units:
        gpus = unit.gpu.units if unit.gpu is not None else 0
        rows.extend([(gpus, unit.cpu_millicores, unit.memory_bytes)] * unit.count)
    rows.sort(reverse=True)
    return np.array(rows, np.int64).reshape(-1, _DIMENSIONS)


class Nodes:
    """The nodes of the providers that have a node list, as a struct of arrays.

    A provider's nodes are the rows ``first[p] : first[p] + count[p]`` (``count[p] == 0``: the
    provider has no node list). `placed` remembers, per (order id, provider), the node of
    each replica, from the bid that reserved them until the bid is released or its lease
    ends.
    """

    def __init__(self) -> None:
        self.provider = np.zeros(0, np.int64)
        self.capacity = np.zeros((0, _DIMENSIONS), np.int64)
        self.free = np.zeros((0, _DIMENSIONS), np.int64)
        self.first = np.zeros(0, np.int64)
        self.count = np.zeros(0, np.int64)
        self.any = False                     # some provider has a node list
        self.placed: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        # Set by a scheduler that may displace leases: what each node holds that an order may
        # take (None: nothing).
        self.headroom: Callable[[Order], np.ndarray | None] | None = None
        # Fragmentation: providers with the order's resources free in all but on no one node
        # (counted per order posted), and orders that every such provider turned away.
        self.providers_turned_away = 0
        self.orders_turned_away = 0
        self._replicas: dict[int, tuple[tuple[ResourceUnit, ...], np.ndarray]] = {}

    def add(self, ids: np.ndarray, node_lists: Sequence[Sequence[NodeSpec]]) -> None:
        """Providers `ids` joined, each with its node list (empty: no node list)."""
        first = np.full(len(ids), self.provider.size, np.int64)
        count = np.zeros(len(ids), np.int64)
        rows: list[NodeSpec] = []
        owners: list[int] = []
        for i, (provider, nodes) in enumerate(zip(ids.tolist(), node_lists, strict=True)):
            first[i] = self.provider.size + len(rows)
            count[i] = len(nodes)
            rows.extend(nodes)
            owners.extend([provider] * len(nodes))
        self.first = np.concatenate([self.first, first])
        self.count = np.concatenate([self.count, count])
        if rows:
            capacity = np.array(rows, np.int64).reshape(-1, _DIMENSIONS)
            self.provider = np.concatenate([self.provider, np.array(owners, np.int64)])
            self.capacity = np.concatenate([self.capacity, capacity])
            self.free = np.concatenate([self.free, capacity])
            self.any = True

    def shape(self, order: Order) -> np.ndarray:
        """`replicas(order)`, cached by the identity of the order's units (a tenant re-posting
        work passes the same units again; the shape key will not do: it counts totals only,
        and one 8-GPU replica and two 4-GPU ones share it)."""
        units = order.units
        cached = self._replicas.get(id(units))
        if cached is not None and cached[0] is units:
            return cached[1]
        if len(self._replicas) >= _MAX_SHAPES:  # bounded: forget the oldest half
            for key in list(self._replicas)[: _MAX_SHAPES // 2]:
                del self._replicas[key]
        shape = replicas(order)
        self._replicas[id(units)] = (units, shape)  # the units kept: their id stays theirs
        return shape

    def _room(self, order: Order) -> np.ndarray | None:
        """What `order` may take on each node counting what it may displace: free plus
        headroom; None when it may displace nothing."""
        headroom = None if self.headroom is None else self.headroom(order)
        return None if headroom is None else self.free + headroom

    def _first_rows(self, providers: np.ndarray, replica: np.ndarray, room: np.ndarray
                    ) -> np.ndarray:
        """For one replica: the first node row of each of `providers` with room for it, or -1,
        for all of them at once (a provider's nodes are consecutive rows)."""
        roomy = (room >= replica).all(axis=1).nonzero()[0]
        if not roomy.size:
            return np.full(providers.size, -1, np.int64)
        starts = self.first[providers]
        at = np.searchsorted(roomy, starts)
        rows = roomy[np.minimum(at, roomy.size - 1)]
        return np.where((at < roomy.size) & (rows < starts + self.count[providers]), rows, -1)

    def fitting(self, order: Order, ids: np.ndarray, why: list[int] | None = None
                ) -> np.ndarray:
        """Those of providers `ids` (ascending) on whose nodes the order's replicas fit now;
        providers without a node list all stay. With `why` (a count per
        `market.core.no_bids.REASONS`), add to it the providers turned away, split by
        `turned_away_why`."""
        noded = self.count[ids] > 0
        if not noded.any():
            return ids
        shape = self.shape(order)
        room = self._room(order)
        room = self.free if room is None else room
        keep = ~noded
        if shape.shape[0] == 1:  # one replica: some node of the provider has room for it
            keep[noded] = self._first_rows(ids[noded], shape[0], room) >= 0
        else:
            for i in noded.nonzero()[0].tolist():
                keep[i] = self.first_fit(int(ids[i]), shape, room) is not None
        turned_away = ids.size - int(keep.sum())
        if turned_away:
            self.providers_turned_away += turned_away
            self.orders_turned_away += turned_away == ids.size
            if why is not None:
                headroom = self.turned_away_why(ids[~keep], shape, room)
                why[FRAGMENTED] += turned_away - headroom
                why[NODE_HEADROOM] += headroom
        return ids[keep]

    def turned_away_why(self, providers: np.ndarray, shape: np.ndarray, room: np.ndarray
                        ) -> int:
        """How many of `providers`, which have the order's resources free in total but not
        on their nodes, would fit its replicas' GPUs alone (CPU and memory aside): those lack
        headroom beside the GPUs; the others have their GPUs fragmented across nodes."""
        gpus_only = shape.copy()
        gpus_only[:, 1:] = 0
        if shape.shape[0] == 1:
            return int((self._first_rows(providers, gpus_only[0], room) >= 0).sum())
        return sum(self.first_fit(provider, gpus_only, room) is not None
                   for provider in providers.tolist())

    def fragmentation(self) -> dict[str, int]:
        """What whole capacity without room on one node cost so far: providers turned away
        (one per order and provider) and orders no provider could take for that alone."""
        return {"providers_turned_away": self.providers_turned_away,
                "orders_turned_away": self.orders_turned_away}

    def fits(self, order: Order, provider: int) -> bool:
        """Whether `order`'s replicas fit on `provider`'s nodes now (True without nodes)."""
        room = self._room(order)
        return self.count[provider] == 0 or self.first_fit(
            provider, self.shape(order), self.free if room is None else room) is not None

    def first_fit(self, provider: int, shape: np.ndarray, room: np.ndarray) -> np.ndarray | None:
        """The node row of each replica of `shape` on `provider`'s nodes, placed first fit in
        `room` (per node row; not changed), or None where one does not fit."""
        start = int(self.first[provider])
        where = place_first_fit(room[start: start + int(self.count[provider])].copy(), shape)
        return None if where is None else where + start

    def reserve(self, order: Order, providers: np.ndarray) -> np.ndarray:
        """Place `order`'s replicas on each of `providers`' nodes; returns a bool mask of those
        it placed (a provider without a node list always; one whose nodes lack room, not)."""
        placed = np.ones(providers.size, bool)
        if not self.any:
            return placed
        noded = (self.count[providers] > 0).nonzero()[0]
        if not noded.size:
            return placed
        shape = self.shape(order)
        # Free nodes first; only where none has room, nodes where it displaces leases.
        room = self._room(order)
        if shape.shape[0] == 1:  # the common case, at once: providers' nodes are disjoint
            bidders = providers[noded]
            rows = self._first_rows(bidders, shape[0], self.free)
            if room is not None and (rows < 0).any():
                rows = np.where(rows >= 0, rows, self._first_rows(bidders, shape[0], room))
            ok = rows >= 0
            placed[noded] = ok
            rows = rows[ok]
            self.free[rows] -= shape[0]  # one row per provider: no row twice
            key = order.id
            self.placed.update(((key, provider), (rows[i: i + 1], shape))
                               for i, provider in enumerate(bidders[ok].tolist()))
            return placed
        for i in noded.tolist():
            provider = int(providers[i])
            where = self.first_fit(provider, shape, self.free)
            if where is None and room is not None:
                where = self.first_fit(provider, shape, room)
            if where is None:
                placed[i] = False
                continue
            self.assign(order, provider, where)
        return placed

    def assign(self, order: Order, provider: int, rows: np.ndarray) -> None:
        """`order`'s replicas take node `rows` of `provider` (one per replica)."""
        shape = self.shape(order)
        take(self.free, rows, shape, -1)
        self.placed[(order.id, provider)] = (rows, shape)

    def release(self, order: Order, providers: np.ndarray) -> None:
        """Give back what `order`'s replicas hold on `providers`' nodes."""
        if not self.any:
            return
        pop = self.placed.pop
        held = [h for h in (pop((order.id, p), None) for p in providers.tolist())
                if h is not None]
        if len(held) > 1 and held[0][1].shape[0] == 1:  # one replica each, on distinct rows
            self.free[np.concatenate([h[0] for h in held])] += held[0][1][0]
            return
        for rows, shape in held:
            take(self.free, rows, shape, 1)

    def of(self, provider: int) -> slice:
        """`provider`'s node rows."""
        start = int(self.first[provider])
        return slice(start, start + int(self.count[provider]))


def place_first_fit(left: np.ndarray, shape: np.ndarray) -> np.ndarray | None:
    """Each replica of `shape` (largest first) on the first row of `left` (room per node)
    with room for it, taking it from `left`; the rows, or None where one does not fit."""
    placed = np.empty(shape.shape[0], np.int64)
    for i, replica in enumerate(shape):
        fits = (left >= replica).all(axis=1)
        row = int(fits.argmax())
        if not fits[row]:
            return None
        left[row] -= replica
        placed[i] = row
    return placed


def take(table: np.ndarray, rows: np.ndarray, shape: np.ndarray, sign: int) -> None:
    """Add (sign 1) or take (-1) each replica of `shape` to or from its row of `table`."""
    if rows.size == 1:
        table[rows[0]] += sign * shape[0]
    else:  # rows may repeat: two replicas on one node
        np.add.at(table, rows, sign * shape)

