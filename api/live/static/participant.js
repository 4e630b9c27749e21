// "Take part": join a market as a tenant or a provider, then act as one. A tenant posts jobs,
// watches bids arrive on its orders and accepts one, and closes its leases; a provider bids on
// the orders its GPUs can serve and watches its leases and wallet.

import {
  bmeFacts, formatAkt, formatAktPrice, isBme, renderMyBme,
} from "./akt.js";
import { api } from "./api.js";
import { byTestId, h, setNotice, setText, syncChildren, whileBusy } from "./dom.js";
import {
  CLOSE_REASONS, formatClock, formatDuration, formatPrice, formatUsd,
} from "./format.js";
import { participant as savedParticipant, saveParticipant } from "./tokens.js";

const ME_REFRESH_MS = 4000;
const ME_SOON_MS = 200;
// A tenant's first max price, as a share of the hyperscaler list price of the first GPU model
// chosen: under that outside option, above what the market's providers usually ask.
const DEFAULT_MAX_PRICE_OF_LIST = 0.4;
// A provider's first bid: its cost plus a margin, so a bid taken as it stands earns money.
const DEFAULT_BID_MARKUP = 1.3;
const SHOWN_MATCHING = 30;
const ENDED_STATES = new Set(["stopped", "finished", "failed", "damaged"]);

const roundTo = (value, decimals) => Number(value.toFixed(decimals));

// Why providers did not bid on an order, in the market's words (market/core/no_bids.py).
const NO_BID_REASONS = {
  no_model: "another GPU model",
  offline: "offline",
  audit: "not audited",
  storage_class: "no such storage class",
  capacity: "not enough free",
  fragmented: "GPUs split across machines",
  node_headroom: "no CPU or memory beside the GPUs",
  by_hand: "bid only by hand",
  price: "asked above your max price",
  late: "too slow for the bidding window",
  bid_cap: "crowded out by the bid cap",
  deposit: "could not pay the bid deposit",
};

/** One line for an order of mine that closed without a lease: its bids and why not more. */
function expiredLine(order) {
  const bids = `${order.bids} bid${order.bids === 1 ? "" : "s"}`;
  const head = `Order #${order.order_id} closed without a lease at ` +
    `${formatClock(order.time_s)} (${bids}).`;
  if (!order.no_bids) return head;
  const ranked = Object.entries(order.no_bids).sort((a, b) => b[1] - a[1]);
  const why = ranked.map(([reason, count]) =>
    `${count} ${NO_BID_REASONS[reason] ?? reason}`).join(", ");
  return `${head} Providers that did not bid: ${why}.`;
}

/** A lease of mine, in the shape of /me's active_leases, from a lease_created event. */
function leaseFromEvent(event) {
  return {
    lease_id: event.lease_id,
    order_id: event.order_id,
    tenant: event.tenant,
    provider: event.provider,
    gpu_model: event.gpu_model,
    gpus: event.gpus,
    price_usd_per_gpu_hour: event.price_micro_per_hour / event.gpus / 1e6,
    started_s: event.time_s,
    running: true,
    interruptible: Boolean(event.interruptible),
  };
}

export class ParticipantPanel {
  /** session: {marketId, book, requestRender()} */
  constructor(root, session) {
    this.root = root;
    this.session = session;
    this.identity = savedParticipant(session.marketId);
    this.me = null;
    this.myLeases = new Map();
    this.myBids = new Map(); // order id -> price I bid, until the stream shows the bid
    this.changesInFlight = null; // lease changes seen while a /me request is on its way
    this.refreshAgain = false;
    this.timers = { refresh: null, soon: null };
    this.maxPriceEdited = false;
    this.postedOrderId = null;
    this.wire();
  }

  el(id) {
    return byTestId(id, this.root);
  }

  get book() {
    return this.session.book;
  }

  get marketId() {
    return this.session.marketId;
  }

  start() {
    this.buildGpuChoices();
    if (this.identity) this.becomeMe(this.identity);
    this.render();
  }

  stop() {
    clearInterval(this.timers.refresh);
    clearTimeout(this.timers.soon);
  }

  // ---- wiring -------------------------------------------------------------------------------

  wire() {
    this.wireTabs();
    this.el("join-tenant-form").addEventListener("submit", (e) => this.joinSubmitted(e, "tenant"));
    this.el("join-provider-form").addEventListener("submit",
      (e) => this.joinSubmitted(e, "provider"));
    this.el("participant-token-form").addEventListener("submit", (e) => this.tokenPasted(e));
    this.el("token-dismiss").addEventListener("click", () => {
      setText(this.el("participant-token"), "");
      this.el("participant-token-box").hidden = true;
    });
    this.wireLeave();
    this.el("order-form").addEventListener("submit", (e) => this.orderSubmitted(e));
    this.el("order-max-price").addEventListener("input", () => { this.maxPriceEdited = true; });
    for (const id of ["order-gpus", "order-hours", "order-max-price"]) {
      this.el(id).addEventListener("input", () => this.explainMaxPrice());
    }
  }

  /** Tenant/Provider tabs, with arrow keys between them (the ARIA tabs pattern). */
  wireTabs() {
    const tabs = [this.el("tab-tenant"), this.el("tab-provider")];
    const panels = [this.el("join-tenant-form"), this.el("join-provider-form")];
    const select = (index) => {
      tabs.forEach((tab, i) => {
        tab.setAttribute("aria-selected", String(i === index));
        tab.tabIndex = i === index ? 0 : -1;
        panels[i].hidden = i !== index;
      });
    };
    tabs.forEach((tab, i) => {
      tab.addEventListener("click", () => select(i));
      tab.addEventListener("keydown", (e) => {
        if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
        const next = (i + 1) % tabs.length;
        select(next);
        tabs[next].focus();
      });
    });
  }

  /** Forgetting the token cannot be undone from this page, so it takes a second click. */
  wireLeave() {
    const button = this.el("leave-button");
    const label = button.textContent;
    let armedTimer = null;
    button.addEventListener("click", () => {
      if (!button.dataset.armed) {
        button.dataset.armed = "yes";
        button.textContent = `Click again to forget ${this.identity?.name ?? "you"} in this tab`;
        armedTimer = setTimeout(() => {
          delete button.dataset.armed;
          button.textContent = label;
        }, 5000);
        return;
      }
      clearTimeout(armedTimer);
      delete button.dataset.armed;
      button.textContent = label;
      this.forget("");
    });
  }

  // ---- joining ------------------------------------------------------------------------------

  joinBody(form, role) {
    const data = new FormData(form);
    const name = String(data.get("name") || "").trim();
    if (!name) throw new Error("name: 1 to 40 characters");
    const body = { role, name };
    if (this.book.market.invite_required) {
      const invite = this.el("join-invite").value.trim();
      if (!invite) throw new Error("invite code: this market needs the code its presenter gave");
      body.invite_code = invite;
    }
    const wallet = String(data.get("wallet_usd") || "").trim();
    if (wallet) body.wallet_usd = Number(wallet);
    if (role === "provider") {
      body.gpu_model = data.get("gpu_model");
      body.gpus = Number(data.get("gpus"));
      body.archetype = data.get("archetype");
      if (!Number.isInteger(body.gpus) || body.gpus < 1) {
        throw new Error("GPUs: a whole number, 1 or more");
      }
    }
    return body;
  }

  async joinSubmitted(event, role) {
    event.preventDefault();
    const form = event.currentTarget;
    const errorBox = this.el(`join-${role}-error`);
    setNotice(errorBox, "");
    let body;
    try {
      body = this.joinBody(form, role);
    } catch (error) {
      setNotice(errorBox, error.message);
      return;
    }
    await whileBusy(this.el(`join-${role}-submit`), async () => {
      try {
        const joined = await api.join(this.marketId, body);
        const identity = {
          token: joined.token, participant_id: joined.participant_id, role: joined.role,
          name: joined.name, tenant: joined.tenant, provider: joined.provider,
        };
        saveParticipant(this.marketId, identity);
        setText(this.el("participant-token"), joined.token);
        this.el("participant-token-box").hidden = false;
        this.becomeMe(identity);
      } catch (error) {
        setNotice(errorBox, error.message);
      }
    });
  }

  async tokenPasted(event) {
    event.preventDefault();
    const token = this.el("participant-token-input").value.trim();
    const errorBox = this.el("participant-token-error");
    setNotice(errorBox, "");
    if (!token) {
      setNotice(errorBox, "Paste the token you got when you joined (it starts with gmp_).");
      return;
    }
    try {
      const me = await api.me(this.marketId, token);
      const identity = {
        token, participant_id: me.participant_id, role: me.role, name: me.name,
        tenant: me.tenant, provider: me.provider,
      };
      saveParticipant(this.marketId, identity);
      this.el("participant-token-input").value = "";
      this.becomeMe(identity);
      this.takeMe(me, []);
    } catch (error) {
      setNotice(errorBox, `That token did not work here: ${error.message}`);
    }
  }

  becomeMe(identity) {
    this.identity = identity;
    this.me = null;
    this.myLeases.clear();
    this.myBids.clear();
    clearInterval(this.timers.refresh);
    this.timers.refresh = setInterval(() => this.refreshMe(), ME_REFRESH_MS);
    this.refreshMe();
    this.session.requestRender();
  }

  forget(why) {
    saveParticipant(this.marketId, null);
    this.identity = null;
    this.me = null;
    this.myLeases.clear();
    clearInterval(this.timers.refresh);
    setText(this.el("participant-token"), "");
    this.el("participant-token-box").hidden = true;
    setNotice(this.el("join-notice"), why);
    this.session.requestRender();
  }

  // ---- keeping "mine" current ---------------------------------------------------------------

  /** Ask /me again shortly: several events of one tick make one request. */
  refreshSoon() {
    clearTimeout(this.timers.soon);
    this.timers.soon = setTimeout(() => this.refreshMe(), ME_SOON_MS);
  }

  async refreshMe() {
    const identity = this.identity;
    if (!identity) return;
    if (this.changesInFlight) {
      this.refreshAgain = true; // the answer on its way may predate what prompted this call
      return;
    }
    this.changesInFlight = [];
    try {
      const me = await api.me(this.marketId, identity.token);
      if (identity === this.identity) this.takeMe(me, this.changesInFlight);
      setNotice(this.el("me-error"), "");
    } catch (error) {
      if (identity !== this.identity) return;
      if (error.status === 401 || error.status === 404) {
        this.forget(`Your saved identity (${identity.name}) is not known here any more: ` +
          `${error.message}. Join again to take part.`);
      } else {
        setNotice(this.el("me-error"), `Could not refresh your details: ${error.message}`);
      }
    } finally {
      this.changesInFlight = null;
      if (this.refreshAgain) {
        this.refreshAgain = false;
        this.refreshMe();
      }
    }
  }

  /**
   * Take a /me answer, replaying the lease changes the stream showed while it was on its
   * way: the answer may predate them.
   */
  takeMe(me, changesSince) {
    this.me = me;
    this.myLeases = new Map((me.active_leases || []).map((lease) => [lease.lease_id, lease]));
    for (const change of changesSince) change();
    for (const order of me.open_orders || []) {
      if (!this.book.orders.has(order.order_id) && !this.book.endedOrders.has(order.order_id)) {
        this.book.orders.set(order.order_id, { ...order, bids: [...(order.bids || [])] });
      }
    }
    this.session.requestRender();
  }

  /** Apply a lease change now, and again over any /me answer still on its way. */
  changeLeases(change) {
    change();
    this.changesInFlight?.push(change);
  }

  isMine(event) {
    const me = this.identity;
    if (!me) return false;
    return (me.tenant != null && event.tenant === me.tenant) ||
      (me.provider != null && event.provider === me.provider);
  }

  /** Called for every stream event, after the book took it. */
  onEvent(event) {
    if (!this.isMine(event)) return;
    switch (event.kind) {
      case "lease_created":
        this.changeLeases(() => this.myLeases.set(event.lease_id, leaseFromEvent(event)));
        break;
      case "lease_closed":
        this.changeLeases(() => this.myLeases.delete(event.lease_id));
        break;
      case "lease_paused":
      case "lease_resumed": {
        const running = event.kind === "lease_resumed";
        this.changeLeases(() => {
          const lease = this.myLeases.get(event.lease_id);
          if (lease) lease.running = running;
        });
        break;
      }
      default:
        break;
    }
    // "Order #N posted" is stale once that order has left the book.
    if (event.order_id === this.postedOrderId && event.kind !== "order_opened" &&
        event.kind !== "bids_placed") {
      setNotice(this.el("order-ok"), "");
    }
    const news = this.newsOf(event);
    if (news) setNotice(this.el("my-activity"), `${formatClock(event.time_s)}: ${news}`);
    this.refreshSoon(); // wallet, escrow and free GPUs moved too
  }

  /** One line telling me what just happened to my orders and leases, or null. */
  newsOf(event) {
    const lease = (e) => `${e.gpus} × ${e.gpu_model} at ` +
      `${formatPrice(e.price_micro_per_hour / e.gpus / 1e6)}/GPU-h`;
    const iAmTenant = this.identity.role === "tenant";
    switch (event.kind) {
      case "lease_created":
        return iAmTenant
          ? `order #${event.order_id} is now lease #${event.lease_id}: ${lease(event)} from ` +
            `${this.book.providerName(event.provider)}.`
          : `you won order #${event.order_id}: lease #${event.lease_id}, ${lease(event)}.`;
      case "lease_closed":
        return `lease #${event.lease_id} closed (${CLOSE_REASONS[event.reason] ?? event.reason});` +
          ` paid ${formatUsd(event.paid_micro / 1e6)}.`;
      case "order_expired":
        return `order #${event.order_id} closed without a lease: no acceptable bid. Try a ` +
          "higher max price or more GPU models.";
      case "order_cancelled":
        return `order #${event.order_id} cancelled; its escrow is back in your wallet.`;
      case "lease_paused":
        return `lease #${event.lease_id} paused for higher-paying work.`;
      case "lease_resumed":
        return `lease #${event.lease_id} running again.`;
      case "act_minted":
        return `you topped up: ${formatUsd(event.usd_spent_micro / 1e6)} bought ` +
          `${formatAkt(event.akt_burned_uakt / 1e6)}, burned for ` +
          `${formatUsd(event.act_minted_uact / 1e6)} of ACT.`;
      case "akt_settled":
        return `lease #${event.lease_id} paid you ${formatAkt(event.akt_out_uakt / 1e6)} ` +
          `at ${formatAktPrice(event.price_micro / 1e6)} per AKT.`;
      default:
        return null;
    }
  }

  // ---- tenant: posting a job ----------------------------------------------------------------

  buildGpuChoices() {
    const models = this.book.market.gpu_models || [];
    const box = this.el("order-models");
    box.replaceChildren(...models.map((model, i) => {
      const id = `order-model-${model.id}`;
      const input = h("input", { type: "checkbox", id, name: "gpu_models", value: model.id,
        "data-testid": id, checked: i === 0 });
      input.addEventListener("change", () => this.prefillMaxPrice());
      const memory = model.vram_gib ? `${model.vram_gib} GiB · ` : "";
      return h("div", { class: "check" }, input, h("label", { for: id },
        h("span", {}, model.id),
        h("span", { class: "muted small" },
          ` ${memory}list ${formatPrice(model.list_usd_per_gpu_hour)}`)));
    }));
    this.el("provider-gpu").replaceChildren(...models.map((model) => h("option",
      { value: model.id }, `${model.name} (${model.id})`)));
    this.el("order-interruptible-field").hidden = this.book.market.mechanism !== "interruptible";
    this.prefillMaxPrice();
  }

  chosenModels() {
    return [...this.el("order-models").querySelectorAll("input:checked")].map((i) => i.value);
  }

  prefillMaxPrice() {
    const first = this.book.gpuModel(this.chosenModels()[0]);
    if (first && !this.maxPriceEdited) {
      this.el("order-max-price").value = String(
        roundTo(first.list_usd_per_gpu_hour * DEFAULT_MAX_PRICE_OF_LIST, 2));
    }
    this.explainMaxPrice();
  }

  explainMaxPrice() {
    const first = this.book.gpuModel(this.chosenModels()[0]);
    const maxPrice = Number(this.el("order-max-price").value);
    const gpus = Number(this.el("order-gpus").value) || 1;
    const hours = Number(this.el("order-hours").value) || 24;
    const parts = [];
    if (first) {
      parts.push(`${first.id} lists at ${formatPrice(first.list_usd_per_gpu_hour)}/GPU-h at a ` +
        "hyperscaler; providers here usually bid far less.");
    }
    parts.push("Bids above your max are refused.");
    if (maxPrice > 0) {
      const deposit = `Escrow deposit: ${formatUsd(maxPrice * gpus * hours)} (the job at your ` +
        `max price${this.el("order-hours").value ? "" : ", 24 h"})`;
      // Burn-Mint Equilibrium: the deposit is ACT, bought if short; what is left stays ACT.
      parts.push(isBme(this.book.market)
        ? `${deposit} in ACT: what your ACT balance lacks is bought with your wallet's ` +
          "dollars; unspent ACT goes back to your balance."
        : `${deposit}, refunded unspent.`);
    }
    setText(document.getElementById("order-max-price-help"), parts.join(" "));
  }

  orderBody() {
    const gpus = Number(this.el("order-gpus").value);
    const maxPrice = Number(this.el("order-max-price").value);
    const hoursText = this.el("order-hours").value.trim();
    const models = this.chosenModels();
    if (!Number.isInteger(gpus) || gpus < 1 || gpus > 64) {
      throw new Error("GPUs: a whole number from 1 to 64");
    }
    if (!models.length) throw new Error("GPU models: choose at least one");
    if (!(maxPrice > 0)) throw new Error("Max price: a number of USD per GPU-hour above 0");
    const hours = hoursText ? Number(hoursText) : null;
    if (hours !== null && !(hours > 0)) throw new Error("Hours: a number above 0, or empty");
    return {
      gpus, gpu_models: models, max_price_usd_per_gpu_hour: maxPrice, hours,
      auto_select: this.el("order-auto").checked,
      interruptible: this.el("order-interruptible").checked,
    };
  }

  async orderSubmitted(event) {
    event.preventDefault();
    setNotice(this.el("order-error"), "");
    setNotice(this.el("order-ok"), "");
    let body;
    try {
      body = this.orderBody();
    } catch (error) {
      setNotice(this.el("order-error"), error.message);
      return;
    }
    await whileBusy(this.el("order-submit"), async () => {
      try {
        const reply = await this.command((token) => api.postOrder(this.marketId, body, token));
        this.postedOrderId = reply.result.order_id;
        setNotice(this.el("order-ok"), `Order #${reply.result.order_id} posted at ` +
          `${formatClock(reply.clock_s)}. ${body.auto_select
            ? "The market will pick the cheapest bid when bidding closes."
            : "Bids will appear under My open orders: accept the one you like."}`);
        this.refreshSoon();
      } catch (error) {
        setNotice(this.el("order-error"), error.message);
      }
    });
  }

  /** Run a command with my token; a refused token means this identity is gone. */
  async command(call) {
    try {
      return await call(this.identity.token);
    } catch (error) {
      if (error.status === 401) this.forget(`Your token was refused: ${error.message}`);
      throw error;
    }
  }

  // ---- rendering ----------------------------------------------------------------------------

  render() {
    const identity = this.identity;
    const ended = ENDED_STATES.has(this.book.market.state);
    this.el("join-panel").hidden = Boolean(identity);
    this.el("invite-field").hidden = !this.book.market.invite_required;
    this.el("me-panel").hidden = !identity;
    this.root.querySelector(".you").classList.toggle("ended", ended);
    setText(this.root.querySelector("#you-title"), identity ? "You" : "Take part");
    for (const button of this.root.querySelectorAll(".you button[type=submit]")) {
      button.disabled = ended || button.getAttribute("aria-busy") === "true";
    }
    setNotice(this.el("ended-notice"), ended
      ? `This market has ${this.book.market.state}: you can look around, but not trade.` : "");
    if (!identity) return;
    const isTenant = identity.role === "tenant";
    setText(this.el("me-summary"), `You are ${identity.name}, a ${identity.role} ` +
      `(#${isTenant ? identity.tenant : identity.provider}).`);
    this.el("tenant-panel").hidden = !isTenant;
    this.el("provider-panel").hidden = isTenant;
    this.renderFacts();
    if (isTenant) this.renderMyOrders();
    else this.renderMatchingOrders();
    this.renderMyLeases(isTenant);
    renderMyBme(this.root, this.me);
  }

  renderFacts() {
    const me = this.me;
    const facts = [["Wallet", me ? formatUsd(me.wallet_usd) : "…"]];
    const ratePerHour = [...this.myLeases.values()]
      .reduce((sum, lease) => sum + lease.price_usd_per_gpu_hour * lease.gpus, 0);
    const provider = me?.provider_facts;
    if (provider) {
      facts.push(
        ["GPUs", `${provider.free_gpus} free of ${provider.gpus} × ${provider.gpu_model}`],
        ["Your cost", `${formatPrice(provider.cost_basis_usd_per_gpu_hour)}/GPU-h`],
        ["Earning now", `${formatUsd(ratePerHour)}/h`],
      );
    } else if (this.identity.role === "tenant") {
      facts.push(["Spending now", `${formatUsd(ratePerHour)}/h`]);
    }
    facts.push(...bmeFacts(me)); // Burn-Mint Equilibrium markets: ACT or AKT held
    syncChildren(this.el("me-facts"), facts, ([label]) => label,
      () => h("div", {}, h("dt", {}), h("dd", {})),
      (item, [label, value, hint]) => {
        setText(item.firstChild, label);
        setText(item.lastChild, value);
        if (hint) item.title = hint;
      });
  }

  myOpenOrders() {
    const tenant = this.identity.tenant;
    return [...this.book.orders.values()]
      .filter((order) => order.tenant === tenant)
      .sort((a, b) => b.created_s - a.created_s);
  }

  renderMyOrders() {
    const orders = this.myOpenOrders();
    syncChildren(this.el("my-orders"), orders, (o) => o.order_id,
      (order) => this.orderCard(order), (card, order) => this.updateOrderCard(card, order));
    this.el("my-orders-empty").hidden = Boolean(orders.length);
    const expired = this.me?.expired_orders || [];
    syncChildren(this.el("my-expired"), expired, (o) => o.order_id,
      () => h("li", { "data-testid": "my-expired-order" }),
      (item, order) => setText(item, expiredLine(order)));
    this.el("my-expired-wrap").hidden = !expired.length;
  }

  orderCard(order) {
    const cancel = h("button", { type: "button", class: "small-button",
      "data-testid": "cancel-order" }, "Cancel order");
    cancel.addEventListener("click", () => this.act(cancel, card,
      (token) => api.cancelOrder(this.marketId, order.order_id, token)));
    const card = h("article", { class: "order-card", "data-testid": "my-order",
      "data-order-id": order.order_id },
    h("div", { class: "order-card-head" },
      h("h4", {}, `Order #${order.order_id}`), h("span", { class: "muted small terms" }), cancel),
    h("p", { class: "hint note" }),
    h("div", { class: "bids-wrap" }, h("table", { class: "bids", "data-testid": "my-order-bids" },
      h("caption", { class: "visually-hidden" }, `Bids on order ${order.order_id}, cheapest first`),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Provider"),
        h("th", { scope: "col", class: "num" }, "$/GPU-h"),
        h("th", { scope: "col" }, "Arrived"),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Action")))),
      h("tbody", {}))),
    h("p", { class: "notice notice-error", role: "alert", "data-testid": "my-order-error",
      hidden: true }));
    return card;
  }

  updateOrderCard(card, order) {
    const models = order.gpu_models.join(", ");
    setText(card.querySelector(".terms"), `${order.gpus} GPU${order.gpus > 1 ? "s" : ""} · ` +
      `${models} · max ${formatPrice(order.max_price_usd_per_gpu_hour)}/GPU-h · posted ` +
      `${formatDuration(Math.max(this.book.clockS - order.created_s, 0))} ago`);
    const bids = this.book.liveBids(order)
      .sort((a, b) => a.price_usd_per_gpu_hour - b.price_usd_per_gpu_hour);
    const byHand = order.auto_select !== true;
    card.querySelector(".bids-wrap").hidden = !bids.length;
    setText(card.querySelector(".note"), this.orderNote(order, bids.length, byHand));
    syncChildren(card.querySelector("tbody"), bids, (b) => b.bid_id,
      (bid) => this.bidRow(order, bid, card),
      (row, bid) => {
        const [provider, price, arrived, action] = row.children;
        setText(provider, this.book.providerName(bid.provider));
        setText(price, formatPrice(bid.price_usd_per_gpu_hour));
        setText(arrived, `${formatDuration(Math.max(this.book.clockS - bid.arrival_s, 0))} ago`);
        action.firstChild.hidden = !byHand;
      });
  }

  orderNote(order, liveBids, byHand) {
    const timeoutS = this.book.market.bid_timeout_s;
    if (!byHand) {
      return `The market picks the cheapest bid when bidding closes ` +
        `(${formatDuration(this.book.market.bidding_window_s ?? NaN)} after posting).`;
    }
    if (!liveBids) {
      return "No bids yet. Providers usually answer within seconds of simulated time; if none " +
        "do, cancel and post again with a higher max price or more GPU models.";
    }
    const leftS = this.book.holdLeftS(order.order_id);
    if (leftS !== null) {
      return `${liveBids} bid${liveBids > 1 ? "s" : ""}, cheapest first. The market holds ` +
        `them for you: ${Math.round(leftS)} s (wall clock) left to accept one, whatever the ` +
        "speed.";
    }
    return `${liveBids} bid${liveBids > 1 ? "s" : ""}, cheapest first. Accept one to start ` +
      `the lease; providers drop a bid after ${formatDuration(timeoutS)} without an answer.`;
  }

  bidRow(order, bid, card) {
    const accept = h("button", { type: "button", class: "small-button primary",
      "data-testid": "accept-bid" }, "Accept");
    accept.setAttribute("aria-label",
      `Accept bid of ${formatPrice(bid.price_usd_per_gpu_hour)} per GPU-hour on order ` +
      `${order.order_id}`);
    accept.addEventListener("click", () => this.act(accept, card,
      (token) => api.accept(this.marketId, order.order_id, bid.bid_id, token)));
    return h("tr", { "data-testid": "bid-row" },
      h("td", {}), h("td", { class: "num" }), h("td", {}), h("td", {}, accept));
  }

  /** Run a command from a card's button; its error shows on that card. */
  async act(button, card, call) {
    const errorBox = card.querySelector("[data-testid=my-order-error]");
    setNotice(errorBox, "");
    await whileBusy(button, async () => {
      try {
        await this.command(call);
        this.refreshSoon();
      } catch (error) {
        setNotice(errorBox, error.message);
      }
    });
  }

  // ---- provider: bidding --------------------------------------------------------------------

  matchingOrders() {
    const facts = this.me?.provider_facts;
    if (!facts) return [];
    const provider = this.identity.provider;
    return [...this.book.orders.values()]
      .filter((order) => order.gpu_models.includes(facts.gpu_model))
      .filter((order) => order.gpus <= facts.free_gpus || this.myBidOn(order, provider) !== null)
      .sort((a, b) => b.created_s - a.created_s)
      .slice(0, SHOWN_MATCHING);
  }

  /** My bid's price on `order`, from the stream or from my own recent command. */
  myBidOn(order, provider) {
    const seen = order.bids.find((bid) => bid.provider === provider);
    if (seen) return seen.price_usd_per_gpu_hour;
    return this.myBids.get(order.order_id) ?? null;
  }

  suggestedBid(order) {
    const costUsd = this.me.provider_facts.cost_basis_usd_per_gpu_hour;
    return roundTo(Math.min(costUsd * DEFAULT_BID_MARKUP, order.max_price_usd_per_gpu_hour), 3);
  }

  renderMatchingOrders() {
    const orders = this.matchingOrders();
    syncChildren(this.el("matching-orders").tBodies[0], orders, (o) => o.order_id,
      (order) => this.matchingRow(order), (row, order) => this.updateMatchingRow(row, order));
    this.el("matching-orders").hidden = !orders.length;
    this.el("matching-empty").hidden = Boolean(orders.length);
    setText(this.el("matching-empty"), this.me
      ? "No open order matches your GPUs right now — new orders appear here as tenants post jobs."
      : "Loading your GPUs…");
  }

  matchingRow(order) {
    const inputId = `bid-price-${order.order_id}`;
    const input = h("input", { id: inputId, type: "number", min: "0.001", step: "any",
      class: "price-input", "data-testid": "bid-price",
      value: String(this.suggestedBid(order)) });
    const button = h("button", { type: "submit", class: "small-button primary",
      "data-testid": "bid-button" }, "Bid");
    const form = h("form", { class: "bid-form", novalidate: true },
      h("label", { for: inputId, class: "visually-hidden" },
        `Your bid on order ${order.order_id}, USD per GPU-hour`),
      input, button);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.bidSubmitted(order, Number(input.value), button);
    });
    return h("tr", { "data-testid": "matching-order" },
      h("td", {}, h("span", {}, `#${order.order_id}`), h("div", { class: "muted small" })),
      h("td", { class: "num" }), h("td", { class: "num" }),
      h("td", {}, form, h("span", { class: "my-bid" }), h("div", { class: "hint below-cost" })));
  }

  updateMatchingRow(row, order) {
    const [id, gpus, max, action] = row.children;
    setText(id.lastChild, `${formatDuration(Math.max(this.book.clockS - order.created_s, 0))} ` +
      `ago · ${order.auto_select === true ? "market picks" : "tenant picks"}`);
    setText(gpus, String(order.gpus));
    setText(max, formatPrice(order.max_price_usd_per_gpu_hour));
    const myBid = this.myBidOn(order, this.identity.provider);
    action.querySelector("form").hidden = myBid !== null;
    const picker = order.auto_select ? "market" : "tenant";
    setText(action.querySelector(".my-bid"), myBid === null ? ""
      : `You bid ${formatPrice(myBid)} — waiting for the ${picker}`);
    const cost = this.me.provider_facts.cost_basis_usd_per_gpu_hour;
    setText(action.querySelector(".below-cost"), myBid === null &&
      order.max_price_usd_per_gpu_hour < cost ? "Max price is below your cost." : "");
  }

  async bidSubmitted(order, price, button) {
    const errorBox = this.el("bid-error");
    setNotice(errorBox, "");
    if (!(price > 0)) {
      setNotice(errorBox, `Order #${order.order_id}: a bid is a price above 0 USD per GPU-hour`);
      return;
    }
    await whileBusy(button, async () => {
      try {
        await this.command((token) => api.bid(this.marketId, order.order_id, price, token));
        this.myBids.set(order.order_id, price);
        this.refreshSoon();
      } catch (error) {
        setNotice(errorBox, `Order #${order.order_id}: ${error.message}`);
      }
    });
    this.session.requestRender();
  }

  // ---- leases ---------------------------------------------------------------------------

  renderMyLeases(isTenant) {
    const leases = [...this.myLeases.values()].sort((a, b) => b.started_s - a.started_s);
    setText(this.el("my-leases-party"), isTenant ? "Provider" : "Tenant");
    syncChildren(this.el("my-leases").tBodies[0], leases, (l) => l.lease_id,
      (lease) => this.leaseRow(lease),
      (row, lease) => {
        const [id, party, gpu, price, since, action] = row.children;
        setText(id, `#${lease.lease_id}${lease.running === false ? " (paused)" : ""}`);
        setText(party, isTenant ? this.book.providerName(lease.provider)
          : this.book.tenantName(lease.tenant));
        setText(gpu, `${lease.gpus} × ${lease.gpu_model}`);
        setText(price, formatPrice(lease.price_usd_per_gpu_hour));
        setText(since, formatClock(lease.started_s));
        action.firstChild.hidden = !isTenant;
      });
    this.el("my-leases").hidden = !leases.length;
    this.el("my-leases-empty").hidden = Boolean(leases.length);
  }

  leaseRow(lease) {
    const close = h("button", { type: "button", class: "small-button",
      "data-testid": "close-lease", "aria-label": `Close lease ${lease.lease_id}` }, "Close");
    close.addEventListener("click", async () => {
      setNotice(this.el("my-leases-error"), "");
      await whileBusy(close, async () => {
        try {
          await this.command((token) => api.closeLease(this.marketId, lease.lease_id, token));
          this.refreshSoon();
        } catch (error) {
          setNotice(this.el("my-leases-error"), `Lease #${lease.lease_id}: ${error.message}`);
        }
      });
    });
    return h("tr", { "data-testid": "my-lease" },
      h("td", {}), h("td", {}), h("td", { class: "nowrap" }), h("td", { class: "num" }),
      h("td", { class: "time" }), h("td", {}, close));
  }
}
