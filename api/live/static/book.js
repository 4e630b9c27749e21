// The page's copy of one market: seeded from a snapshot, then kept current by applying the
// stream's events in seq order. Every list is bounded so a market left open for a day does
// not grow the tab's memory.

import { microPerHourToUsdPerGpuHour } from "./format.js";

export const LIMITS = {
  openOrders: 500,
  recentLeases: 100,
  recentCloses: 100,
  pricePointsPerModel: 500,
  endedOrders: 2000,
  seriesBuckets: 2000,
  captions: 50,
};

/** Keep at most `limit` entries of a Map, dropping the oldest inserted. */
function trimMap(map, limit) {
  while (map.size > limit) map.delete(map.keys().next().value);
}

function trimSet(set, limit) {
  while (set.size > limit) set.delete(set.values().next().value);
}

function orderFromEvent(event) {
  return {
    order_id: event.order_id,
    tenant: event.tenant,
    job_id: event.job_id,
    gpus: event.gpus,
    gpu_models: [...event.gpu_models],
    max_price_usd_per_gpu_hour:
      event.max_price_usd_per_gpu_hour ??
      microPerHourToUsdPerGpuHour(event.max_price_micro_per_hour, event.gpus),
    created_s: event.time_s,
    interruptible: Boolean(event.interruptible),
    auto_select: event.auto_select ?? null,
    bids: [],
  };
}

export class MarketBook {
  constructor(snapshot) {
    this.orders = new Map();
    this.endedOrders = new Set(); // ids of orders known to have left the book
    this.downUntilS = new Map(); // provider -> simulated time it is expected back
    this.recentLeases = [];
    this.recentCloses = [];
    this.prices = new Map(); // gpu model id -> [[time_s, usd_per_gpu_hour], ...] oldest first
    this.series = new Map(); // bucket start_s -> chart bucket (api/live/series.py), oldest first
    this.captions = []; // narration, oldest first: [{time_s, kind, text}]
    this.holds = new Map(); // held order id -> performance.now() (ms) when its hold ends
    this.seq = 0; // the last event applied: figures are taken only when they match it
    this.reset(snapshot);
  }

  /** Start again from a snapshot (first load, or after the stream lost history). */
  reset(snapshot) {
    this.market = { ...snapshot };
    this.clockS = snapshot.clock_s;
    this.orders.clear();
    for (const order of snapshot.open_orders || []) {
      this.orders.set(order.order_id, { ...order, bids: [...(order.bids || [])] });
    }
    trimMap(this.orders, LIMITS.openOrders);
    this.recentLeases = (snapshot.recent_leases || []).slice(-LIMITS.recentLeases).reverse();
    this.recentCloses = (snapshot.recent_closes || []).slice(-LIMITS.recentCloses).reverse();
    this.prices.clear();
    for (const [model, points] of Object.entries(snapshot.prices || {})) {
      this.prices.set(model, points.slice(-LIMITS.pricePointsPerModel));
    }
    this.series.clear();
    this.captions = [];
    this.seq = snapshot.seq ?? 0;
    this.figures = null;
    this.refresh(snapshot);
  }

  /**
   * What a stream frame carries besides events (api/live/driver.py `live_view`): headline figures
   * as of the frame's last event, the newest chart buckets, the newest caption, and holds.
   * Also a snapshot's, which has every bucket and the latest captions.
   */
  takeLiveView(view) {
    const seq = view.last_seq ?? view.seq;
    // Figures describe the market at one seq: shown only with the tables at that same seq.
    if (view.figures && seq === this.seq) this.figures = view.figures;
    for (const bucket of view.series || []) this.series.set(bucket.start_s, bucket);
    if (this.series.size > LIMITS.seriesBuckets) {
      const keys = [...this.series.keys()].sort((a, b) => a - b);
      for (const key of keys.slice(0, this.series.size - LIMITS.seriesBuckets)) {
        this.series.delete(key);
      }
    }
    for (const caption of view.captions || (view.caption ? [view.caption] : [])) {
      const last = this.captions.at(-1);
      if (last && last.time_s === caption.time_s && last.text === caption.text) continue;
      if (last && caption.time_s < last.time_s) continue;
      this.captions.push(caption);
    }
    this.captions.splice(0, Math.max(this.captions.length - LIMITS.captions, 0));
    if (view.holds) {
      const nowMs = performance.now();
      this.holds.clear();
      for (const [orderId, leftS] of Object.entries(view.holds)) {
        this.holds.set(Number(orderId), nowMs + leftS * 1000);
      }
    }
  }

  /** Wall seconds left on the hold of `orderId`, or null if it is not held. */
  holdLeftS(orderId) {
    const endMs = this.holds.get(orderId);
    return endMs === undefined ? null : Math.max((endMs - performance.now()) / 1000, 0);
  }

  /** Chart buckets in time order. */
  seriesBuckets() {
    return [...this.series.values()].sort((a, b) => a.start_s - b.start_s);
  }

  /**
   * Take the slow-moving parts of a newer snapshot, or of a command's MarketSummary: rankings,
   * totals, who has joined. (A summary's `participants` is a count, a snapshot's the list.)
   */
  refresh(snapshot) {
    if (Array.isArray(snapshot.leaderboard)) this.leaderboard = snapshot.leaderboard;
    if (snapshot.metrics) this.metrics = snapshot.metrics;
    if (snapshot.metrics && "series" in snapshot) {
      this.takeLiveView({ ...snapshot, figures: snapshot.metrics });
    }
    if (Array.isArray(snapshot.participants)) this.participants = snapshot.participants;
    if (Array.isArray(snapshot.provider_names)) this.providerNames = snapshot.provider_names;
    this.leaderboard ??= [];
    this.metrics ??= {};
    this.participants ??= [];
    for (const key of ["name", "connections", "horizon_s", "providers", "error"]) {
      if (key in snapshot) this.market[key] = snapshot[key];
    }
  }

  /** Clock, state and speed ride on every stream frame. */
  setClock({ clock_s: clockS, state, speed }) {
    if (Number.isFinite(clockS)) this.clockS = Math.max(this.clockS, clockS);
    if (state) this.market.state = state;
    if (Number.isFinite(speed)) this.market.speed = speed;
  }

  apply(event) {
    this.seq = Math.max(this.seq, event.seq ?? this.seq);
    this.clockS = Math.max(this.clockS, event.time_s ?? this.clockS);
    const handler = this.handlers[event.kind];
    if (handler) handler.call(this, event);
  }

  endOrder(orderId) {
    this.orders.delete(orderId);
    this.holds.delete(orderId);
    this.endedOrders.add(orderId);
    trimSet(this.endedOrders, LIMITS.endedOrders);
  }

  addPricePoint(model, timeS, usdPerGpuHour) {
    if (!this.prices.has(model)) this.prices.set(model, []);
    const points = this.prices.get(model);
    points.push([timeS, usdPerGpuHour]);
    const excess = points.length - LIMITS.pricePointsPerModel;
    if (excess > 0) points.splice(0, excess);
  }

  /**
   * Bids a tenant could accept now: arrived (the clock passed their arrival), still open, not
   * yet dropped by their provider (held longer than bid_timeout_s), provider up.
   */
  liveBids(order) {
    // A held order's bids do not expire until the hold ends (Market.hold_order).
    const timeoutS = this.holds.has(order.order_id) ? Infinity
      : this.market.bid_timeout_s ?? Infinity;
    return order.bids.filter(
      (bid) =>
        bid.state === "open" &&
        bid.arrival_s <= this.clockS &&
        this.clockS - bid.arrival_s < timeoutS &&
        !this.isProviderDown(bid.provider),
    );
  }

  isProviderDown(provider) {
    const backAtS = this.downUntilS.get(provider);
    return backAtS !== undefined && this.clockS < backAtS;
  }

  participantByTenant(tenant) {
    return this.participants.find((p) => p.tenant === tenant) || null;
  }

  participantByProvider(provider) {
    return this.participants.find((p) => p.provider === provider) || null;
  }

  tenantName(tenant) {
    return this.participantByTenant(tenant)?.name ?? `tenant ${tenant}`;
  }

  providerName(provider) {
    const joined = this.participantByProvider(provider);
    if (joined) return joined.name;
    return this.providerNames?.[provider] ?? `provider ${provider}`;
  }

  gpuModel(id) {
    return (this.market.gpu_models || []).find((model) => model.id === id) || null;
  }
}

// One function per event kind the page shows; other kinds (payments, ticks...) only move the
// clock.
MarketBook.prototype.handlers = {
  order_opened(event) {
    this.orders.set(event.order_id, orderFromEvent(event));
    trimMap(this.orders, LIMITS.openOrders);
  },

  bids_placed(event) {
    const order = this.orders.get(event.order_id);
    if (!order) return;
    const known = new Set(order.bids.map((bid) => bid.bid_id));
    event.bid_ids.forEach((bidId, i) => {
      if (known.has(bidId)) return;
      order.bids.push({
        bid_id: bidId,
        provider: event.providers[i],
        price_usd_per_gpu_hour: microPerHourToUsdPerGpuHour(
          event.prices_micro_per_hour[i],
          order.gpus,
        ),
        arrival_s: event.arrivals_s[i],
        state: "open",
      });
    });
  },

  lease_created(event) {
    const price = microPerHourToUsdPerGpuHour(event.price_micro_per_hour, event.gpus);
    this.endOrder(event.order_id);
    this.recentLeases.unshift({
      time_s: event.time_s,
      lease_id: event.lease_id,
      order_id: event.order_id,
      gpu_model: event.gpu_model,
      gpus: event.gpus,
      price_usd_per_gpu_hour: price,
      provider: event.provider,
      tenant: event.tenant,
    });
    this.recentLeases.length = Math.min(this.recentLeases.length, LIMITS.recentLeases);
    // Interruptible leases pay a different kind of price; like the snapshot's series, the
    // chart leaves them out.
    if (!event.interruptible) this.addPricePoint(event.gpu_model, event.time_s, price);
  },

  lease_closed(event) {
    this.recentCloses.unshift({
      time_s: event.time_s,
      lease_id: event.lease_id,
      reason: event.reason,
      provider: event.provider,
      tenant: event.tenant,
      paid_usd: event.paid_micro / 1e6,
    });
    this.recentCloses.length = Math.min(this.recentCloses.length, LIMITS.recentCloses);
  },

  order_expired(event) {
    this.endOrder(event.order_id);
  },

  order_cancelled(event) {
    this.endOrder(event.order_id);
  },

  provider_failed(event) {
    this.downUntilS.set(event.provider, event.back_at_s ?? Infinity);
  },

  provider_left(event) {
    this.downUntilS.set(event.provider, event.back_at_s ?? Infinity);
  },

  provider_recovered(event) {
    this.downUntilS.delete(event.provider);
  },

  provider_exited(event) {  // left the market for good (entry and exit): never back
    this.downUntilS.set(event.provider, Infinity);
  },
};
