"""Providers' nodes: capacity per machine, and the node each replica of an order runs on.

A provider built from a real cluster's node list (`agents.node_lists`) owns several nodes. Each
replica of an order is a pod that runs on one machine, so a provider's free capacity in total
is not enough to serve an order: some node must have each replica's GPUs, CPU and memory free.
Akash's provider checks its inventory the same way before it bids. The placement rule is first
fit: the order's replicas, largest first, each on the first of the provider's nodes (in the
node list's order) that has room.

A provider drawn from a population with `gpus_per_node` owns machines of that many GPUs
(`split_machines`), as a data center owns 8-GPU servers. A drawn provider of one machine has
no rows here (`count` 0): its totals are its machine, and nothing here runs for it. Per node
the table tracks GPUs, CPU millicores and memory bytes (`NODE_CAPACITY`); storage and leased
IPs stay the provider's (Akash's persistent storage is a cluster-wide pool, and leased IPs
belong to the provider).

Where interruptible leases run (`market.mechanisms.interruptible`), an order may count as free
what the leases it outranks hold on each node (`headroom`), as it does in the totals; the
scheduler then ranks each provider's interruptible leases node by node. An order is placed on
free nodes where it can be, and on nodes where it displaces leases only where it cannot. A
paused lease holds no node: it resumes on the first nodes with room for its replicas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

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


def split_machines(gpus: int, gpus_per_node: int, cpu_millicores_per_gpu: int,
                   memory_bytes_per_gpu: int) -> tuple[NodeSpec, ...]:
    """`gpus` GPUs as machines of `gpus_per_node` GPUs each, the last one holding the remainder,
    each with CPU millicores and memory bytes per GPU times its GPUs (so the machines add up
    to the provider's totals): ``split_machines(20, 8, c, m) == ((8, 8c, 8m), (8, 8c, 8m),
    (4, 4c, 4m))``. `gpus_per_node` 0: one machine with all of them."""
    if gpus_per_node <= 0 or gpus <= gpus_per_node:
        sizes = [gpus]
    else:
        full, rest = divmod(gpus, gpus_per_node)
        sizes = [gpus_per_node] * full + ([rest] if rest else [])
    return tuple((size, cpu_millicores_per_gpu * size, memory_bytes_per_gpu * size)
                 for size in sizes)


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
    """The nodes of the providers that have a node list or drawn machines, as a struct of
    arrays.

    A provider's nodes are the rows ``first[p] : first[p] + count[p]`` (``count[p] == 0``: the
    provider is one machine, its totals). `placed` remembers, per (order id, provider), the
    node of each replica, from the bid that reserved them until the bid is released or its
    lease ends.
    """

    def __init__(self) -> None:
        self.provider = np.zeros(0, np.int64)
        self.capacity = np.zeros((0, _DIMENSIONS), np.int64)
        self.free = np.zeros((0, _DIMENSIONS), np.int64)
        self.first = np.zeros(0, np.int64)
        self.count = np.zeros(0, np.int64)
        self.end = np.zeros(0, np.int64)     # first + count
        self.noded = np.zeros(0, bool)       # count > 0
        # The providers with nodes, in id order (their rows are in that order too): the first
        # row of each, and each provider's place among them (-1: no nodes).
        self.noded_first = np.zeros(0, np.int64)
        self.noded_index = np.zeros(0, np.int64)
        self.any = False                     # some provider has a node list
        self.placed = Placements()
        # Set by a scheduler that may displace leases: what each node holds that an order may
        # take (None: nothing).
        self.headroom: Callable[[Order], np.ndarray | None] | None = None
        # Fragmentation: providers with the order's resources free in all but on no one node
        # (counted per order posted), and orders that every such provider turned away.
        self.providers_turned_away = 0
        self.orders_turned_away = 0
        self._replicas: dict[int, tuple[tuple[ResourceUnit, ...], np.ndarray]] = {}
        # `free` changes: a count, so that what `fitting` found for an order's one replica
        # serves `reserve` when nothing changed in between (it places the bids of the same
        # order at once, in the same step).
        self._changes = 0
        self._fitted: tuple[Order, int, np.ndarray] | None = None

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
        self.end = np.concatenate([self.end, first + count])
        self.noded = np.concatenate([self.noded, count > 0])
        index = np.full(len(ids), -1, np.int64)
        index[count > 0] = self.noded_first.size + np.arange(int(np.count_nonzero(count)))
        self.noded_index = np.concatenate([self.noded_index, index])
        self.noded_first = np.concatenate([self.noded_first, first[count > 0]])
        if rows:
            capacity = np.array(rows, np.int64).reshape(-1, _DIMENSIONS)
            self.provider = np.concatenate([self.provider, np.array(owners, np.int64)])
            self.capacity = np.concatenate([self.capacity, capacity])
            # Column-major: a check reads one resource of every node at a time.
            self.free = np.asfortranarray(np.concatenate([self.free, capacity]))
            self.any = True
        self._changes += 1

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
        return self._first_rows_in(fitting_rows(room, replica), providers)

    def _first_rows_in(self, fits: np.ndarray, providers: np.ndarray) -> np.ndarray:
        """The first row of each of `providers` that `fits` (a mask over all rows), or -1."""
        # The row past the last one: each provider finds a row at or after its first.
        roomy = np.append(fits.nonzero()[0], fits.size)
        first = roomy[roomy.searchsorted(self.first[providers])]
        return np.where(first < self.end[providers], first, -1)

    def _any_fit(self, fits: np.ndarray, providers: np.ndarray) -> np.ndarray:
        """Whether some row of each of `providers` (with nodes) `fits` (a mask over all
        rows), for all of them at once."""
        return np.logical_or.reduceat(fits, self.noded_first)[self.noded_index[providers]]

    def fitting(self, order: Order, ids: np.ndarray, why: list[int] | None = None
                ) -> np.ndarray:
        """Those of providers `ids` (ascending) on whose nodes the order's replicas fit now;
        providers without a node list all stay. With `why` (a count per
        `market.core.no_bids.REASONS`), add to it the providers turned away, split by
        `turned_away_why`."""
        noded = self.noded[ids]
        candidates = ids[noded]
        if not candidates.size:
            return ids
        shape = self.shape(order)
        room = self._room(order)
        room = self.free if room is None else room
        if shape.shape[0] == 1:  # one replica: some node of the provider has room for it
            fits = fitting_rows(room, shape[0])
            fit = self._any_fit(fits, candidates)
            if room is self.free:  # what `reserve` will look in, unless `free` changes
                self._fitted = (order, self._changes, fits)
        else:
            fit = np.array([self.first_fit(provider, shape, room) is not None
                            for provider in candidates.tolist()], bool)
        turned_away = candidates.size - int(np.count_nonzero(fit))
        if not turned_away:
            return ids
        self.providers_turned_away += turned_away
        self.orders_turned_away += turned_away == ids.size
        if why is not None:
            headroom = self.turned_away_why(candidates[~fit], shape, room)
            why[FRAGMENTED] += turned_away - headroom
            why[NODE_HEADROOM] += headroom
        keep = ~noded
        keep[noded] = fit
        return ids[keep]

    def turned_away_why(self, providers: np.ndarray, shape: np.ndarray, room: np.ndarray
                        ) -> int:
        """How many of `providers`, which have the order's resources free in total but not
        on their nodes, would fit its replicas' GPUs alone (CPU and memory aside): those lack
        headroom beside the GPUs; the others have their GPUs fragmented across nodes."""
        gpus_only = shape.copy()
        gpus_only[:, 1:] = 0
        if shape.shape[0] == 1:
            return int(np.count_nonzero(
                self._any_fit(fitting_rows(room, gpus_only[0]), providers)))
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
        noded = self.noded[providers]
        if not noded.any():
            return placed
        shape = self.shape(order)
        # Free nodes first; only where none has room, nodes where it displaces leases.
        room = self._room(order)
        if shape.shape[0] == 1:  # the common case, at once: providers' nodes are disjoint
            bidders = providers[noded]
            rows = self._fitted_rows(order, bidders)
            if rows is None:
                rows = self._first_rows(bidders, shape[0], self.free)
            if room is not None and (rows < 0).any():
                rows = np.where(rows >= 0, rows, self._first_rows(bidders, shape[0], room))
            ok = rows >= 0
            placed[noded] = ok
            rows = rows[ok]
            self.free[rows] -= shape[0]  # one row per provider: no row twice
            self._changes += 1
            self.placed.add_batch(order.id, bidders[ok].tolist(), rows.tolist(), shape)
            return placed
        for i in noded.nonzero()[0].tolist():
            provider = int(providers[i])
            where = self.first_fit(provider, shape, self.free)
            if where is None and room is not None:
                where = self.first_fit(provider, shape, room)
            if where is None:
                placed[i] = False
                continue
            self.assign(order, provider, where)
        return placed

    def _fitted_rows(self, order: Order, providers: np.ndarray) -> np.ndarray | None:
        """The first node row with room in `free` for `order`'s one replica on each of
        `providers` (-1: none), from the rows `fitting` found with room for it if `free` has
        not changed since; else None."""
        fitted = self._fitted
        if fitted is None or fitted[0] is not order or fitted[1] != self._changes:
            return None
        return self._first_rows_in(fitted[2], providers)

    def assign(self, order: Order, provider: int, rows: np.ndarray) -> None:
        """`order`'s replicas take node `rows` of `provider` (one per replica)."""
        shape = self.shape(order)
        take(self.free, rows, shape, -1)
        self._changes += 1
        self.placed[(order.id, provider)] = (rows, shape)

    def release(self, order: Order, providers: np.ndarray) -> None:
        """Give back what `order`'s replicas hold on `providers`' nodes."""
        if not self.any or not self.placed.holds(order.id):
            return
        rows, replica, held = self.placed.take_back(order.id, providers.tolist())
        if rows:  # one replica each, on distinct rows
            self.free[rows] += replica
            self._changes += 1
        for rows, shape in held:
            take(self.free, rows, shape, 1)
            self._changes += 1

    def of(self, provider: int) -> slice:
        """`provider`'s node rows."""
        start = int(self.first[provider])
        return slice(start, start + int(self.count[provider]))


class Placements:
    """Where reservations are: (order id, provider) -> (node row of each replica, the replicas
    as `replicas` gives them), as a mapping. The bids of an order placed at once on one
    replica each are kept as one batch, provider -> row, with the replica: an order gets up
    to `order_max_bids` of them, and its auction's close releases all but the winner's at
    once, in plain Python (cheaper than numpy on a score of items)."""

    def __init__(self) -> None:
        self._one: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._one_orders: dict[int, int] = {}  # order id -> its entries in `_one`
        self._batches: dict[int, tuple[dict[int, int], np.ndarray]] = {}

    def add_batch(self, order_id: int, providers: list[int], rows: list[int],
                  shape: np.ndarray) -> None:
        """`providers` (distinct) hold node `rows` (one each) for `order_id`'s one replica."""
        if not providers:
            return
        if order_id in self._batches:  # a later bid of the order (by hand): one by one
            for provider, row in zip(providers, rows, strict=True):
                self[order_id, provider] = (np.array([row], np.int64), shape)
            return
        self._batches[order_id] = (dict(zip(providers, rows, strict=True)), shape)

    def holds(self, order_id: int) -> bool:
        """Whether some provider holds nodes for `order_id`."""
        return order_id in self._batches or order_id in self._one_orders

    def __setitem__(self, key: tuple[int, int], value: tuple[np.ndarray, np.ndarray]) -> None:
        batch = self._batches.get(key[0])
        if batch is not None and batch[0].pop(key[1], None) is not None and not batch[0]:
            del self._batches[key[0]]  # replaced, as a dict entry is
        if key not in self._one:
            self._one_orders[key[0]] = self._one_orders.get(key[0], 0) + 1
        self._one[key] = value

    def get(self, key: tuple[int, int], default: Any = None) -> Any:
        value = self._one.get(key)
        if value is not None:
            return value
        batch = self._batches.get(key[0])
        row = None if batch is None else batch[0].get(key[1])
        return default if row is None else (np.array([row], np.int64), batch[1])

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and self.get(key) is not None

    def __len__(self) -> int:
        return len(self._one) + sum(len(rows) for rows, _ in self._batches.values())

    def take_back(self, order_id: int, providers: list[int]
                  ) -> tuple[list[int], np.ndarray | None, list[tuple[np.ndarray, np.ndarray]]]:
        """Forget what `order_id` holds on `providers`; returns what they held: the rows of
        those in its batch (distinct rows) with its one replica (None without a batch), and
        the others' (rows, replicas) one by one."""
        rows: list[int] = []
        replica = None
        batch = self._batches.get(order_id)
        rest = providers
        if batch is not None:
            held, shape = batch
            replica = shape[0]
            pop = held.pop
            if order_id in self._one_orders:  # some hold theirs one by one
                rest = []
                for provider in providers:
                    row = pop(provider, None)
                    if row is None:
                        rest.append(provider)
                    else:
                        rows.append(row)
            else:
                rows = [row for row in map(pop, providers, repeat(None)) if row is not None]
                rest = []
            if not held:
                del self._batches[order_id]
        others = []
        if rest and order_id in self._one_orders:
            for provider in rest:
                value = self._one.pop((order_id, provider), None)
                if value is not None:
                    others.append(value)
                    left = self._one_orders[order_id] - 1
                    if left:
                        self._one_orders[order_id] = left
                    else:
                        del self._one_orders[order_id]
        return rows, replica, others


def place_first_fit(left: np.ndarray, shape: np.ndarray) -> np.ndarray | None:
    """Each replica of `shape` (largest first) on the first row of `left` (room per node)
    with room for it, taking it from `left`; the rows, or None where one does not fit."""
    placed = np.empty(shape.shape[0], np.int64)
    for i, replica in enumerate(shape):
        fits = fitting_rows(left, replica)
        row = int(fits.argmax())
        if not fits[row]:
            return None
        left[row] -= replica
        placed[i] = row
    return placed


def fitting_rows(room: np.ndarray, replica: np.ndarray, out: np.ndarray | None = None
                 ) -> np.ndarray:
    """Which rows of `room` (per node: GPUs, CPU, memory) have room for `replica`, as a bool
    mask (into `out` if given): ``(room >= replica).all(axis=1)``, column by column, which
    takes a third of the time."""
    gpus, cpu, memory = replica.tolist()
    fits = np.greater_equal(room[:, 0], gpus, out=out)
    fits &= room[:, 1] >= cpu
    fits &= room[:, 2] >= memory
    return fits


def take(table: np.ndarray, rows: np.ndarray, shape: np.ndarray, sign: int) -> None:
    """Add (sign 1) or take (-1) each replica of `shape` to or from its row of `table`."""
    if rows.size == 1:
        table[rows[0]] += sign * shape[0]
    else:  # rows may repeat: two replicas on one node
        np.add.at(table, rows, sign * shape)

