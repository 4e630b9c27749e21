// The market's public tables: open orders, recent leases and closes, top providers, totals.
// Each function draws one table from the book and nothing else.

import { byTestId, h, setText, syncChildren } from "./dom.js";
import {
  CLOSE_REASON_DETAILS, CLOSE_REASONS, formatClock, formatCount, formatDuration, formatPercent,
  formatPrice, formatUsd,
} from "./format.js";

const SHOWN_ORDERS = 50;
const SHOWN_LEASES = 30;

/** One <td> per class name ("" for none): "num" aligns figures, "time" keeps a time whole. */
function cells(...classes) {
  return classes.map((name) => h("td", name ? { class: name } : {}));
}

function showTable(root, tableId, emptyId, rows) {
  byTestId(tableId, root).hidden = !rows;
  byTestId(emptyId, root).hidden = Boolean(rows);
}

/** "3 bids · best $1.620", or why there is none yet. */
function bidSummary(book, order) {
  const live = book.liveBids(order);
  if (!live.length) return order.bids.length ? "none open" : "waiting for bids";
  const best = Math.min(...live.map((bid) => bid.price_usd_per_gpu_hour));
  return `${live.length} bid${live.length > 1 ? "s" : ""}, best ${formatPrice(best)}`;
}

function pickerLabel(order) {
  if (order.auto_select === true) return "market picks";
  if (order.auto_select === false) return "tenant picks";
  return "";
}

/** Wall seconds until `simS` of simulated time from now, at the market's speed. */
function wallSecondsUntil(book, simS) {
  const speed = book.market.speed;
  if (book.market.state !== "running" || !(speed > 0)) return null;
  return Math.max(simS - book.clockS, 0) / speed;
}

function wallLabel(seconds) {
  if (seconds === null) return "paused";
  return seconds < 10 ? `${seconds.toFixed(1)} s` : `${Math.round(seconds)} s`;
}

/** "held: 42 s left to pick" for a held order, "" otherwise. */
export function holdLabel(book, order) {
  const leftS = book.holdLeftS(order.order_id);
  return leftS === null ? "" : `held for the tenant: ${wallLabel(leftS)} left to pick`;
}

/** The bids under an open order: who, at what price, how fast they came, how long they last. */
function renderBidList(details, book, order) {
  const body = details.querySelector("tbody");
  const timeoutS = book.market.bid_timeout_s ?? Infinity;
  const held = book.holdLeftS(order.order_id) !== null;
  const bids = book.liveBids(order)
    .sort((a, b) => a.price_usd_per_gpu_hour - b.price_usd_per_gpu_hour);
  syncChildren(body, bids, (b) => b.bid_id,
    () => h("tr", { "data-testid": "order-bid" }, cells("", "num", "num", "num")),
    (row, bid) => {
      const [provider, price, latency, left] = row.children;
      setText(provider, book.providerName(bid.provider));
      setText(price, formatPrice(bid.price_usd_per_gpu_hour));
      setText(latency, formatDuration(Math.max(bid.arrival_s - order.created_s, 0)));
      setText(left, held ? "held" : wallLabel(wallSecondsUntil(book, bid.arrival_s + timeoutS)));
    });
  details.querySelector("table").hidden = !bids.length;
  const coming = order.bids.filter((b) => b.state === "open" && b.arrival_s > book.clockS);
  setText(details.querySelector(".bids-note"), [
    bids.length ? "" : "No bid open right now.",
    coming.length ? `${coming.length} more on the way.` : "",
    holdLabel(book, order),
  ].filter(Boolean).join(" "));
}

function bidDetails() {
  const details = h("details", { class: "order-bids", "data-testid": "order-bids" },
    h("summary", { "data-testid": "order-bids-toggle" }),
    h("table", { hidden: true },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Provider"),
        h("th", { scope: "col", class: "num" }, "$/GPU-h"),
        h("th", { scope: "col", class: "num", title: "simulated time from the order to the bid" },
          "Came after"),
        h("th", { scope: "col", class: "num",
          title: "wall-clock seconds, at the current speed, before the provider drops it" },
        "Wall time left"))),
      h("tbody", {})),
    h("div", { class: "muted small bids-note" }));
  // Opened: list the bids now, not at the next frame (a paused market sends one a second).
  details.addEventListener("toggle", () => details.open && details.renderBids?.());
  return details;
}

export function renderOpenOrders(root, book, myTenant) {
  const orders = [...book.orders.values()].sort((a, b) => b.created_s - a.created_s);
  const shown = orders.slice(0, SHOWN_ORDERS);
  syncChildren(byTestId("orders-table", root).tBodies[0], shown, (o) => o.order_id,
    () => {
      const row = h("tr", { "data-testid": "order-row" }, cells("", "", "num", "", "num", "", ""));
      row.children[5].append(bidDetails());
      return row;
    },
    (row, order) => {
      const [id, tenant, gpus, models, max, bids, posted] = row.children;
      setText(id, `#${order.order_id}`);
      const mine = order.tenant === myTenant;
      setText(tenant, `${book.tenantName(order.tenant)}${mine ? " (you)" : ""}`);
      row.classList.toggle("mine", mine);
      setText(gpus, String(order.gpus));
      setText(models, order.gpu_models.join(", "));
      setText(max, formatPrice(order.max_price_usd_per_gpu_hour));
      const picker = pickerLabel(order);
      const details = bids.firstChild;
      const held = book.holdLeftS(order.order_id);
      setText(details.firstChild, `${bidSummary(book, order)}${picker ? ` · ${picker}` : ""}` +
        `${held === null ? "" : ` · held ${Math.round(held)} s`}`);
      details.renderBids = () => renderBidList(details, book, order);
      if (details.open) details.renderBids();
      setText(posted, `${formatDuration(Math.max(book.clockS - order.created_s, 0))} ago`);
    });
  showTable(root, "orders-table", "orders-empty", shown.length);
  setText(byTestId("orders-count", root), orders.length > SHOWN_ORDERS
    ? `newest ${SHOWN_ORDERS} of ${formatCount(orders.length)}`
    : `${formatCount(orders.length)} open`);
}

export function renderRecentLeases(root, book) {
  const shown = book.recentLeases.slice(0, SHOWN_LEASES);
  syncChildren(byTestId("leases-table", root).tBodies[0], shown, (l) => l.lease_id,
    () => h("tr", {}, cells("time", "nowrap", "num", "")),
    (row, lease) => {
      const [time, gpus, price, provider] = row.children;
      setText(time, formatClock(lease.time_s));
      setText(gpus, `${lease.gpus} × ${lease.gpu_model}`);
      setText(price, formatPrice(lease.price_usd_per_gpu_hour));
      setText(provider, book.providerName(lease.provider));
    });
  showTable(root, "leases-table", "leases-empty", shown.length);
}

export function renderRecentCloses(root, book) {
  const shown = book.recentCloses.slice(0, SHOWN_LEASES);
  syncChildren(byTestId("closes-table", root).tBodies[0], shown, (c) => `${c.lease_id}@${c.time_s}`,
    () => h("tr", {}, cells("time", "", "", "num")),
    (row, close) => {
      const [time, lease, reason, paid] = row.children;
      setText(time, formatClock(close.time_s));
      setText(lease, `#${close.lease_id}`);
      setText(reason, CLOSE_REASONS[close.reason] ?? close.reason);
      reason.title = CLOSE_REASON_DETAILS[close.reason] ?? close.reason;
      setText(paid, formatUsd(close.paid_usd));
    });
  showTable(root, "closes-table", "closes-empty", shown.length);
}

export function renderLeaderboard(root, book, myProvider) {
  const rows = book.leaderboard.filter((row) => row.earned_usd > 0 || row.leases > 0);
  syncChildren(byTestId("leaderboard", root).tBodies[0], rows, (r) => r.provider,
    () => h("tr", {}, cells("num", "", "", "num", "num")),
    (row, entry) => {
      const [rank, name, gpus, leases, earned] = row.children;
      setText(rank, String(rows.indexOf(entry) + 1));
      const mine = entry.provider === myProvider;
      setText(name, `${entry.name}${mine ? " (you)" : ""}`);
      name.title = entry.population ?? "";
      row.classList.toggle("mine", mine);
      setText(gpus, `${entry.gpus} × ${entry.gpu_model}`);
      setText(leases, formatCount(entry.leases));
      setText(earned, formatUsd(entry.earned_usd));
    });
  showTable(root, "leaderboard", "leaderboard-empty", rows.length);
}

// The headline: every figure from one frame, at the same seq as the tables below it.
const HEADLINE = [
  ["orders_posted", "Orders posted", formatCount],
  ["orders_open", "Open orders", formatCount],
  ["orders_filled", "Filled", formatCount],
  ["fill_rate", "Fill rate", formatPercent],
  ["leases_active", "Leases running", formatCount],
  ["tenant_accrued_usd", "Accrued, not yet settled", formatUsd, "accrued"],
  ["tenant_spend_usd", "Tenants paid (settled)", formatUsd],
  ["platform_revenue_usd", "Platform fees (settled)", formatUsd],
];

export function renderHeadline(root, book) {
  const figures = book.figures;
  const list = byTestId("headline", root);
  // Burn-Mint Equilibrium has no take rate: no platform fees to show.
  const bme = book.market.settlement === "bme";
  const shown = figures ? HEADLINE.filter(([key]) => key in figures &&
    !(bme && key === "platform_revenue_usd")) : [];
  syncChildren(list, shown, ([key]) => key,
    ([key, label, , kind]) => h("div", { class: kind || "", "data-testid": `figure-${key}` },
      h("dt", {}, label), h("dd", {})),
    (item, [key, , format]) => setText(item.lastChild, format(figures[key])));
}

const METRICS = [
  // Welfare, counted once per job: value to tenants less price, providers' take less their
  // avoidable cost, and what was lost against the best possible allocation.
  ["consumer_surplus_usd", "Tenants' surplus", formatUsd],
  ["producer_surplus_usd", "Providers' surplus", formatUsd],
  ["deadweight_loss_usd", "Welfare lost", formatUsd],
  ["allocative_efficiency", "Efficiency", formatPercent],
];

export function renderMetrics(root, book) {
  const list = byTestId("metrics", root);
  const shown = METRICS.filter(([key]) => key in book.metrics);
  syncChildren(list, shown, ([key]) => key,
    ([, label]) => h("div", {}, h("dt", {}, label), h("dd", {})),
    (item, [key, , format]) => setText(item.lastChild, format(book.metrics[key])));
}
