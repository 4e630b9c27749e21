"""Which providers can serve an order: attribute matching and free capacity, fast.

Orders come in a limited number of shapes (GPU count, accepted models, storage, resources per
GPU), so the attribute part of eligibility is computed once per shape and cached; per order
only free capacity and the up flag are checked, as whole-array operations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from market.catalog import GpuCatalog
from market.core import no_bids
from market.core.pool import ProviderPool, storage_mask
from market.core.records import Order
from market.core.resources import ResourceUnit, requirement
from market.errors import MarketError

_MAX_SHAPES = 65_536
_MAX_WHY_SHAPES = 4_096
#: The attribute code of a provider that matches: offline's, which no attribute gives.
_MATCHED = no_bids.OFFLINE


class Matcher:
    """Eligibility of providers for orders, with caches per order shape."""

    def __init__(self, pool: ProviderPool, catalog: GpuCatalog) -> None:
        self.pool = pool
        self.catalog = catalog
        self._shapes: dict[int, tuple[Any, ...]] = {}
        self._masks: dict[tuple[bytes, bool], tuple[np.ndarray, np.ndarray | None]] = {}
        self._proportional: dict[bytes, np.ndarray] = {}
        self._everyone_proportional: dict[bytes, bool] = {}
        # Per order shape: each provider's attribute reason (`market.core.no_bids`;
        # `_MATCHED` where it matches) and how many providers give each.
        self._why_not: dict[tuple[bytes, bool], tuple[np.ndarray, list[int], list[Any]]] = {}
        # Providers that once reserved an order needing more of some resource per GPU than
        # they have per GPU: their free GPUs no longer vouch for their other resources.
        self._lopsided = np.zeros(0, bool)

    def providers_added(self) -> None:
        """Forget what depended on the set of providers."""
        grown = self.pool.n - self._lopsided.size
        self._lopsided = np.concatenate([self._lopsided, np.zeros(grown, bool)])
        self._masks.clear()
        self._proportional.clear()
        self._everyone_proportional.clear()
        self._why_not.clear()

    def shape(self, units: tuple[ResourceUnit, ...]) -> tuple[Any, np.ndarray, int, bytes]:
        """Requirement, GPU model mask, storage mask and shape key of `units`, cached by
        identity: a tenant re-posting work passes the same units object again. Raises
        MarketError for units no order may ask for."""
        cached = self._shapes.get(id(units))
        if cached is not None and cached[0] is units:
            return cached[1:]
        try:
            req = requirement(units)
        except ValueError as error:
            raise MarketError(f"units: {error}") from None
        if req.gpus < 1:
            raise MarketError("units: an order must ask for at least one GPU")
        unknown = [m for m in req.gpu_models if m not in self.catalog]
        if unknown:
            raise MarketError(f"units: unknown GPU model {unknown[0]!r}; known: "
                              f"{', '.join(self.catalog.ids)}")
        model_mask = np.zeros(len(self.catalog), bool)
        model_mask[[self.catalog.index(m) for m in req.gpu_models]] = True
        smask = storage_mask(req.storage_classes)
        if len(self._shapes) >= _MAX_SHAPES:  # bounded: forget the oldest half
            for key in list(self._shapes)[: _MAX_SHAPES // 2]:
                del self._shapes[key]
        key = req.capacity.tobytes() + model_mask.tobytes() + smask.to_bytes(2, "little")
        self._shapes[id(units)] = (units, req, model_mask, smask, key)
        return req, model_mask, smask, key

    def eligible(self, order: Order, headroom: np.ndarray | None = None,
                 why: list[int] | None = None) -> np.ndarray:
        """Ids of providers that match `order`, are up, and have its resources free, counting
        as free also `headroom` (per provider and resource: what interruptible leases hold
        that this order may take). With `why` (a count per `no_bids.REASONS`), add to it the
        providers left out, each under its first reason (offline to node headroom)."""
        free = self.pool.free if headroom is None else self.pool.free + headroom
        safe, unsafe = self._by_attributes(order)
        gpus_free = free[:, 0] >= order.need[0]
        gpus_free &= self.pool.up  # in place: these masks span every provider
        if unsafe is None:
            ids = np.logical_and(gpus_free, safe, out=gpus_free).nonzero()[0]
        else:
            ids = (safe & gpus_free).nonzero()[0]  # the method: np.flatnonzero costs more
            others = (unsafe & gpus_free).nonzero()[0]
            others = others[(free[others, 1:] >= order.need[1:]).all(axis=1)]
            ids = np.union1d(ids, others)
        if why is not None:
            self._count_screened(order, ids.size, why)
        nodes = self.pool.nodes
        return nodes.fitting(order, ids, why) if nodes.any else ids

    def _count_screened(self, order: Order, matched_free: int, why: list[int]) -> None:
        """Add to `why` the providers whose attributes do not match (cached per shape), those
        down, and those matching and up but not among the `matched_free`: short of capacity
        in total."""
        cached = self._attribute_reasons(order)
        codes, counts, seen = cached
        # The down ones, by attribute reason: those of an accepted model count as offline
        # (no_model comes first), the others stay no_model. Providers go down and up far
        # less often than orders come: kept per shape until the up flags change.
        up = self.pool.up.tobytes()
        if seen[0] != up:
            seen[0] = up
            seen[1] = np.bincount(codes[~self.pool.up], minlength=len(counts)).tolist()
        down = seen[1]
        why[no_bids.NO_MODEL] += counts[no_bids.NO_MODEL]
        why[no_bids.OFFLINE] += sum(down) - down[no_bids.NO_MODEL]
        why[no_bids.AUDIT] += counts[no_bids.AUDIT] - down[no_bids.AUDIT]
        why[no_bids.STORAGE_CLASS] += counts[no_bids.STORAGE_CLASS] - down[no_bids.STORAGE_CLASS]
        why[no_bids.CAPACITY] += counts[_MATCHED] - down[_MATCHED] - matched_free

    def _attribute_reasons(self, order: Order) -> tuple[np.ndarray, list[int], list[Any]]:
        """Each provider's first attribute reason not to serve `order` (`_MATCHED`: none),
        the providers per reason, as `_by_attributes` matches them, and room for the down
        ones' count per reason with the up flags it was counted at (cached per shape)."""
        key = (order.shape_key, order.audited_only)
        cached = self._why_not.get(key)
        if cached is None:
            pool = self.pool
            codes = np.full(pool.n, _MATCHED, np.int8)
            left = order.model_mask[pool.model]
            codes[~left] = no_bids.NO_MODEL
            if order.audited_only:
                codes[left & ~pool.audited] = no_bids.AUDIT
                left &= pool.audited
            if order.storage_mask:
                codes[left & ((pool.storage_mask & order.storage_mask)
                              != order.storage_mask)] = no_bids.STORAGE_CLASS
            cached = (codes, np.bincount(codes, minlength=len(no_bids.REASONS)).tolist(),
                      [None, None])
            # (`_MATCHED` is offline's code: no provider is offline by its attributes.)
            if len(self._why_not) >= _MAX_WHY_SHAPES:  # bounded: n bytes per shape
                self._why_not.clear()
            self._why_not[key] = cached
        return cached

    def can_take(self, order: Order, provider: int, headroom: np.ndarray | None = None) -> bool:
        """Whether `provider` matches `order` and has its resources free now (counting
        `headroom`, as `eligible` does): the check for one bid placed by hand."""
        pool = self.pool
        free = pool.free[provider] if headroom is None else \
            pool.free[provider] + headroom[provider]
        return bool(pool.up[provider] and order.model_mask[pool.model[provider]]
                    and (free >= order.need).all()
                    and (pool.storage_mask[provider] & order.storage_mask) == order.storage_mask
                    and (pool.audited[provider] or not order.audited_only)
                    and pool.nodes.fits(order, provider))

    def reserved(self, order: Order, providers: np.ndarray) -> None:
        """Note that `providers` reserved `order`'s resources (see `_by_attributes`)."""
        if self._everyone_proportional.get(order.shape_key):
            return
        lopsided = ~self._proportional_mask(order)[providers]
        if lopsided.any() and not self._lopsided[providers[lopsided]].all():
            self._lopsided[providers[lopsided]] = True
            self._masks.clear()

    def _by_attributes(self, order: Order) -> tuple[np.ndarray, np.ndarray | None]:
        """Providers whose GPU model, storage classes and audit match `order`, split in two
        bool masks: those for which free GPUs imply the other resources are free too, and
        the others (None if none), which need a full capacity check.

        A provider whose capacity per GPU covers this order's needs per GPU, and which has only
        ever held such orders, has at least (free GPUs × its capacity per GPU) of every other
        resource free: enough for this order whenever it has the GPUs. Cached per order shape;
        dropped whenever a provider joins or takes a lopsided order.
        """
        key = (order.shape_key, order.audited_only)
        masks = self._masks.get(key)
        if masks is None:
            pool = self.pool
            match = order.model_mask[pool.model]
            if order.storage_mask:
                match &= (pool.storage_mask & order.storage_mask) == order.storage_mask
            if order.audited_only:
                match &= pool.audited
            proportional = self._proportional_mask(order) & ~self._lopsided
            unsafe = match & ~proportional
            masks = (match & proportional, unsafe if unsafe.any() else None)
            self._masks[key] = masks
        return masks

    def _proportional_mask(self, order: Order) -> np.ndarray:
        """Providers whose capacity per GPU covers `order`'s needs per GPU (bool mask)."""
        mask = self._proportional.get(order.shape_key)
        if mask is None:
            capacity, need = self.pool.capacity, order.need
            mask = (capacity[:, 1:] * need[0] >= need[1:] * capacity[:, :1]).all(axis=1)
            self._proportional[order.shape_key] = mask
            self._everyone_proportional[order.shape_key] = bool(mask.all())
        return mask
