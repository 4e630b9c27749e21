// Burn-Mint Equilibrium (Akash AEP-76) on the page: the "AKT" panel everyone sees (the AKT
// price, the oracle's TWAP, the mint status, the collateral ratio), and a participant's own
// money in ACT or AKT (a tenant's balance and top-ups, a provider's AKT earnings). Shown only
// on a market whose `settlement` is "bme"; an AEP-23 market's page is unchanged.

import { byTestId, h, setText, syncChildren } from "./dom.js";
import { formatClock, formatCount, formatUsd } from "./format.js";

// The mint status as the protocol names it (market/bme/protocol.py), as a visitor reads it.
const MINT_STATUS = {
  healthy: "Mints running",
  warning: "Mints slowed",
  halt_cr: "Mints halted: collateral",
  halt_oracle: "Mints halted: oracle",
};

const akt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 4 });
const ratio = new Intl.NumberFormat("en-US", { minimumFractionDigits: 3,
  maximumFractionDigits: 3 });

/** An amount of AKT, "1,339.8279 AKT". */
export function formatAkt(amount) {
  return Number.isFinite(amount) ? `${akt.format(amount)} AKT` : "—";
}

/** AKT's price: four decimals, it is worth cents. */
export function formatAktPrice(usdPerAkt) {
  return Number.isFinite(usdPerAkt) ? `$${usdPerAkt.toFixed(4)}` : "—";
}

/** Whether `market` (a snapshot) settles by Burn-Mint Equilibrium. */
export function isBme(market) {
  return market?.settlement === "bme";
}

/** The newest BME figures the page has: a frame's, else the snapshot's. */
function bmeFigures(book) {
  return book.figures?.bme ?? book.metrics?.bme ?? book.market.bme ?? null;
}

function statusText(status, rules) {
  const label = MINT_STATUS[status] ?? status;
  if (status === "warning" && rules) {
    return `${label} (collateral ratio below ${rules.cr_warning})`;
  }
  return label;
}

/** Why mints are where they are, in one line, with the breakers' thresholds. */
function breakersNote(figures, rules) {
  const thresholds = rules
    ? `Mints slow below a collateral ratio of ${rules.cr_warning} and stop below ` +
      `${rules.cr_halt}; while they are stopped, tenants pay new deposits in AKT.`
    : "";
  const oracle = figures.oracle_healthy ? ""
    : " The oracle disagrees with the market or is stale: payouts wait for it.";
  return `${thresholds}${oracle}`;
}

const PANEL = [
  ["akt_spot_usd", "AKT price", formatAktPrice],
  ["akt_twap_usd", "Oracle price (TWAP)", formatAktPrice],
  ["collateral_ratio", "Collateral ratio",
    (value) => (value === null || value === undefined ? "— (no ACT out)" : ratio.format(value))],
  ["outstanding_act_usd", "ACT outstanding", formatUsd],
  ["vault_akt", "AKT in the vault", formatAkt],
  ["akt_minted", "AKT minted", formatAkt],
];

/** The market's AKT panel: hidden on AEP-23 markets. */
export function renderAktPanel(root, book) {
  const panel = byTestId("akt-panel", root);
  const figures = isBme(book.market) ? bmeFigures(book) : null;
  panel.hidden = !figures;
  if (!figures) return;
  const rules = book.market.bme ?? null;
  const status = byTestId("mint-status", panel);
  setText(status, statusText(figures.mint_status, rules));
  status.dataset.status = figures.mint_status;
  const windowS = rules?.twap_window_s;
  const twapLabel = windowS ? `Oracle price (${Math.round(windowS / 60)}-min TWAP)`
    : "Oracle price (TWAP)";
  syncChildren(byTestId("akt-figures", panel), PANEL, ([key]) => key,
    ([key]) => h("div", { "data-testid": `akt-${key}` }, h("dt", {}), h("dd", {})),
    (item, [key, label, format]) => {
      setText(item.firstChild, key === "akt_twap_usd" ? twapLabel : label);
      let text = format(figures[key]);
      if (key === "akt_twap_usd" && !figures.oracle_healthy) text += " · unhealthy";
      setText(item.lastChild, text);
      item.classList.toggle("unhealthy", key === "akt_twap_usd" && !figures.oracle_healthy);
    });
  setText(byTestId("akt-note", panel), breakersNote(figures, rules));
}

/** The facts a participant's own BME money adds to its list (label, value, hint). */
export function bmeFacts(me) {
  const bme = me?.bme;
  if (!bme) return [];
  if (me.role === "tenant") {
    return [["ACT balance", formatUsd(bme.act_balance_usd),
      "ACT you hold outside escrow: one ACT pays one USD of leases"]];
  }
  return [
    ["AKT earned", formatAkt(bme.akt_earned), "what your leases paid you, in AKT"],
    ["Worth when paid", formatUsd(bme.usd_at_settlement),
      "your AKT at the price each payment was made at"],
    ["AKT held", formatAkt(bme.akt_held),
      `worth ${formatUsd(bme.akt_held_value_usd)} at today's price`],
    ["AKT sold for", formatUsd(bme.usd_at_sale),
      "what the AKT you sold fetched (providers sell what they earned once a week)"],
  ];
}

function topupLine(topup) {
  return `${formatClock(topup.time_s)}: ${formatUsd(topup.usd_spent)} bought ` +
    `${formatAkt(topup.akt_burned)}, burned at ${formatAktPrice(topup.price_usd)} for ` +
    `${formatUsd(topup.act_minted_usd)} of ACT`;
}

function payoutLine(payout) {
  const from = payout.direct ? " (from a deposit paid in AKT)" : "";
  return `${formatClock(payout.time_s)}: lease #${payout.lease_id} paid ` +
    `${formatAkt(payout.akt)} at ${formatAktPrice(payout.price_usd)}, ` +
    `${formatUsd(payout.usd_value)} then${from}`;
}

function aktOrderLine(order) {
  const deposit = order.deposit_akt === null ? "deposit paid in AKT"
    : `deposit of ${formatAkt(order.deposit_akt)} bought for ` +
      `${formatUsd(order.deposit_usd_spent)}`;
  const paid = order.payments
    ? `${formatAkt(order.akt_paid)} of it paid to your provider so far ` +
      `(${formatUsd(order.usd_value)} when paid)`
    : "nothing paid out of it yet";
  return `Order #${order.order_id}: ${deposit}; ${paid}.`;
}

/**
 * A participant's own ACT or AKT history under the facts: a tenant's top-ups and orders paid
 * in AKT, a provider's AKT payouts. Hidden on AEP-23 markets.
 */
export function renderMyBme(root, me) {
  const box = byTestId("my-bme", root);
  const bme = me?.bme;
  box.hidden = !bme;
  if (!bme) return;
  const tenant = me.role === "tenant";
  setText(byTestId("my-bme-title", box), tenant ? "My ACT top-ups" : "My AKT payouts");
  const rows = (tenant ? bme.topups : bme.payouts) || [];
  setText(byTestId("my-bme-total", box), tenant
    ? (bme.topups_total
      ? `${formatCount(bme.topups_total)} top-up${bme.topups_total === 1 ? "" : "s"}, ` +
        `${formatUsd(bme.topup_spend_usd)} spent. A job's deposit is bought as ACT when your ` +
        `balance falls short, with ${bme.runway_days} days of your leases' run-rate on top.`
      : "None yet: posting a job buys the ACT its deposit needs.")
    : (rows.length ? "Your leases pay you in AKT at the oracle's price."
      : "None yet: your leases pay you in AKT when they settle (daily, and at their end)."));
  syncChildren(byTestId("my-bme-list", box), rows, (row) => row.seq,
    () => h("li", { "data-testid": tenant ? "my-topup" : "my-payout" }),
    (item, row) => setText(item, tenant ? topupLine(row) : payoutLine(row)));
  const orders = tenant ? bme.orders_paid_in_akt || [] : [];
  syncChildren(byTestId("my-akt-orders", box), orders, (order) => order.order_id,
    () => h("li", { "data-testid": "my-akt-order" }),
    (item, order) => setText(item, aktOrderLine(order)));
  byTestId("my-akt-orders-wrap", box).hidden = !orders.length;
}
