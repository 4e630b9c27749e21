// The home view: every market on the server, refreshed every few seconds, and, for the
// presenter who holds the operator token, the form that starts a new one.

import { api } from "./api.js";
import { byTestId, h, setNotice, setText, syncChildren, whileBusy } from "./dom.js";
import { describeSpeed, formatClock, formatDuration, formatSpeed } from "./format.js";
import { operatorToken, saveControlToken, saveOperatorToken } from "./tokens.js";

const REFRESH_MS = 3000;

const view = () => document.getElementById("home-view");
const marketHref = (marketId) => `#/m/${encodeURIComponent(marketId)}`;

function marketRow() {
  const link = h("a", { class: "market-link" });
  return h("tr", {},
    h("td", {}, link, h("div", { class: "muted small" })),
    h("td", {}, h("span", { class: "badge" })),
    h("td", {}),
    h("td", { class: "num" }),
    h("td", { class: "num" }),
    h("td", {}, h("a", { class: "button small-button", "data-testid": "open-market" }, "Open")));
}

function updateMarketRow(row, market) {
  const [nameCell, stateCell, clockCell, speedCell, peopleCell, openCell] = row.children;
  const link = nameCell.firstChild;
  link.href = marketHref(market.market_id);
  setText(link, market.name || market.market_id);
  setText(nameCell.lastChild, `${market.scenario} · seed ${market.seed} · ${market.market_id}`);
  const badge = stateCell.firstChild;
  setText(badge, market.state);
  badge.dataset.state = market.state;
  const live = market.state === "running" || market.state === "paused";
  const horizon = Number.isFinite(market.horizon_s)
    ? ` of ${formatDuration(market.horizon_s)}` : "";
  setText(clockCell, live ? `${formatClock(market.clock_s)}${horizon}`
    : `ended at ${formatClock(market.clock_s)}`);
  setText(speedCell, formatSpeed(market.speed));
  setText(peopleCell, String(market.participants ?? 0));
  const open = openCell.firstChild;
  open.href = marketHref(market.market_id);
  open.setAttribute("aria-label", `Open market ${market.name || market.market_id}`);
}

async function refreshMarkets() {
  const root = view();
  try {
    const markets = await api.markets();
    // Live markets first: the ones a visitor most likely wants.
    const order = { running: 0, paused: 1, finished: 2, stopped: 3, failed: 4, damaged: 5 };
    markets.sort((a, b) => (order[a.state] ?? 5) - (order[b.state] ?? 5));
    syncChildren(byTestId("markets-table", root).tBodies[0], markets, (m) => m.market_id,
      marketRow, updateMarketRow);
    byTestId("markets-table", root).hidden = !markets.length;
    byTestId("markets-empty", root).hidden = Boolean(markets.length);
    setNotice(byTestId("markets-error", root), "");
    setText(byTestId("markets-updated", root),
      `updated ${new Date().toLocaleTimeString([], { hour12: false })}`);
  } catch (error) {
    setNotice(byTestId("markets-error", root), `Could not load markets: ${error.message}`);
  }
}

async function loadScenarios(select) {
  const help = document.getElementById("create-scenario-help");
  try {
    const scenarios = await api.scenarios();
    select.replaceChildren(...scenarios.map((s) => h("option", { value: s.name }, s.name)));
    const describe = () => {
      const chosen = scenarios.find((s) => s.name === select.value);
      help.textContent = chosen?.description || "Who is in the market and how it trades.";
    };
    select.value = scenarios.some((s) => s.name === "default") ? "default" : select.value;
    select.onchange = describe;
    describe();
  } catch (error) {
    // Without the list the form can still send the built-in default.
    select.replaceChildren(h("option", { value: "default" }, "default"));
    help.textContent = `Could not load the scenario list (${error.message}); using default.`;
  }
}

function createBody(form) {
  const data = new FormData(form);
  const seed = Number(data.get("seed"));
  const speed = Number(data.get("speed"));
  if (!Number.isInteger(seed) || seed < 0) throw new Error("seed: a whole number, 0 or more");
  if (!(speed > 0)) throw new Error("speed: a number above 0 (simulated seconds per second)");
  const overrides = String(data.get("overrides") || "")
    .split("\n").map((line) => line.trim()).filter(Boolean);
  const name = String(data.get("name") || "").trim();
  const body = { scenario: data.get("scenario") || "default", seed, speed, overrides,
    name: name || null };
  const invite = String(data.get("invite_code") || "").trim();
  if (invite) {
    if (!/^[\x21-\x7e]{4,128}$/.test(invite)) {
      throw new Error("invite code: 4 to 128 letters, digits or signs, no spaces");
    }
    body.invite_code = invite;
  }
  return body;
}

/** Show the create form to whoever holds the operator token, the token field to others. */
function showOperator(root) {
  const operator = Boolean(operatorToken());
  byTestId("create-form", root).hidden = !operator;
  byTestId("operator-form", root).hidden = operator;
}

function wireOperatorForm(root) {
  byTestId("operator-form", root).addEventListener("submit", (event) => {
    event.preventDefault();
    const input = byTestId("operator-token-input", root);
    const token = input.value.trim();
    if (!token) {
      setNotice(byTestId("operator-error", root), "Paste the operator token the server " +
        "printed when it started.");
      return;
    }
    input.value = "";
    saveOperatorToken(token);
    setNotice(byTestId("operator-error", root), "");
    showOperator(root);
  });
  byTestId("operator-forget", root).addEventListener("click", () => {
    saveOperatorToken(null);
    showOperator(root);
  });
}

function showCreated(root, created) {
  saveControlToken(created.market_id, created.control_token);
  const box = byTestId("created-market", root);
  setText(byTestId("control-token", root), created.control_token);
  byTestId("open-created-market", root).href = marketHref(created.market_id);
  box.hidden = false;
  box.querySelector("h3").textContent =
    `Market “${created.market?.name || created.market_id}” created`;
  byTestId("open-created-market", root).focus();
}

function wireCreateForm(root) {
  const form = byTestId("create-form", root);
  const speedInput = byTestId("create-speed", root);
  const speedHelp = document.getElementById("create-speed-help");
  const explainSpeed = () => { speedHelp.textContent = describeSpeed(Number(speedInput.value)); };
  speedInput.addEventListener("input", explainSpeed);
  explainSpeed();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const errorBox = byTestId("create-error", root);
    setNotice(errorBox, "");
    let body;
    try {
      body = createBody(form);
    } catch (error) {
      setNotice(errorBox, error.message);
      return;
    }
    await whileBusy(byTestId("create-submit", root), async () => {
      try {
        showCreated(root, await api.createMarket(body, operatorToken()));
        refreshMarkets();
      } catch (error) {
        if (error.status === 401 || error.status === 403) {
          // Not (or no longer) the operator's token: forget it and ask again.
          saveOperatorToken(null);
          showOperator(root);
          setNotice(byTestId("operator-error", root),
            `The operator token was refused: ${error.message}`);
        } else {
          setNotice(errorBox, error.message);
        }
      }
    });
  });
}

let wired = false;

/** Show the home view; returns the function that leaves it. */
export function mountHome() {
  const root = view();
  root.hidden = false;
  document.title = "Markets — gpumarket";
  if (!wired) {
    wired = true;
    wireCreateForm(root);
    wireOperatorForm(root);
    loadScenarios(byTestId("create-scenario", root));
  }
  showOperator(root);
  refreshMarkets();
  const timer = setInterval(refreshMarkets, REFRESH_MS);
  return () => {
    clearInterval(timer);
    // The control token is shown once: coming back home does not show it again.
    byTestId("created-market", root).hidden = true;
    setText(byTestId("control-token", root), "");
    root.hidden = true;
  };
}
