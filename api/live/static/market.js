// The live view of one market: a snapshot first, then the event stream from the snapshot's
// seq on. Rendering is batched: however many events arrive, the page redraws at most a few
// times a second.

import { renderAktPanel } from "./akt.js";
import { api } from "./api.js";
import { MarketBook } from "./book.js";
import { PriceChart, SERIES_COLORS } from "./chart.js";
import { MarketControls } from "./controls.js";
import { byTestId, h, setNotice, setText, wireCopyButtons } from "./dom.js";
import { formatClock, formatCount, formatDuration, formatPercent, formatSpeed } from "./format.js";
import {
  renderHeadline, renderLeaderboard, renderMetrics, renderOpenOrders, renderRecentCloses,
  renderRecentLeases,
} from "./market-tables.js";
import { ParticipantPanel } from "./participant.js";
import { MarketStream } from "./stream.js";

const RENDER_EVERY_MS = 200;
const CHART_EVERY_MS = 1000;
const CLOCK_EVERY_MS = 250;
const SNAPSHOT_EVERY_MS = 5000;
const ENDED_STATES = new Set(["stopped", "finished", "failed", "damaged"]);

class MarketSession {
  constructor(root, marketId) {
    this.root = root;
    this.marketId = marketId;
    this.book = null;
    this.stream = null;
    this.timers = {};
    this.renderPending = false;
    this.chartDrawnAtMs = 0;
    this.pricesChanged = true;
    this.clockAnchor = null; // {clockS, atMs, speed, state}: where the interpolated clock starts
    this.shownClockS = 0;
    this.connection = { status: "connecting", text: "connecting…" };
    this.stopped = false;
  }

  el(id) {
    return byTestId(id, this.root);
  }

  async start() {
    setText(this.el("market-name"), this.marketId);
    setText(this.el("connection-status"), "loading…");
    let snapshot;
    try {
      snapshot = await api.snapshot(this.marketId);
    } catch (error) {
      this.showLoadError(error);
      return;
    }
    if (this.stopped) return;
    this.book = new MarketBook(snapshot);
    this.anchorClock(snapshot);
    this.chart = new PriceChart(this.el("price-chart"), this.el("price-legend"));
    this.demandChart = new PriceChart(this.el("demand-chart"), this.el("demand-legend"), {
      yTitle: "GPUs",
      tickLabel: (value) => (value >= 1 ? formatCount(Math.round(value))
        : `${Number(value.toPrecision(1))}`),
      valueLabel: (value) => `${value.toFixed(value < 10 ? 1 : 0)} GPUs`,
      emptyText: "GPUs wanted and GPUs free appear here after 15 simulated minutes.",
      what: "GPUs asked for by open orders against GPUs free, over simulated time",
      logFloor: 0.1, // a bucket that wanted almost nothing sits on the bottom edge
    }, 220);
    this.utilizationChart = new PriceChart(this.el("utilization-chart"),
      this.el("utilization-legend"), {
        yTitle: "GPUs leased",
        tickLabel: (value) => `${Math.round(value * 100)}%`,
        valueLabel: (value) => formatPercent(value),
        emptyText: "The share of GPUs leased appears here after 15 simulated minutes.",
        what: "Share of GPUs leased over simulated time",
        minMax: 0.1,
      }, 220);
    this.controls = new MarketControls(this.root, this.marketId,
      (summary) => this.takeSummary(summary));
    this.participant = new ParticipantPanel(this.root, this);
    this.participant.start();
    this.wireChartOptions();
    wireCopyButtons(this.root);
    this.render();
    this.openStream(snapshot.seq);
    this.timers.clock = setInterval(() => this.renderClock(), CLOCK_EVERY_MS);
    this.timers.snapshot = setInterval(() => this.refreshSnapshot(), SNAPSHOT_EVERY_MS);
  }

  stop() {
    this.stopped = true;
    this.stream?.stop();
    this.participant?.stop();
    this.chart?.destroy();
    this.demandChart?.destroy();
    this.utilizationChart?.destroy();
    for (const timer of Object.values(this.timers)) {
      clearInterval(timer);
      clearTimeout(timer);
    }
  }

  showLoadError(error) {
    const gone = error.status === 404 || error.status === 410;
    const message = error.status === 404
      ? `There is no market ${this.marketId} on this server.`
      : error.status === 410
        ? `Market ${this.marketId} has ended and is no longer shown live.`
        : `Could not load market ${this.marketId}: ${error.message}. Trying again in 5 s.`;
    setNotice(this.el("market-error"), message);
    this.el("market-error").append(" ", h("a", { href: "#/" }, "See all markets"));
    setText(this.el("connection-status"), "");
    for (const part of this.root.querySelectorAll(".market-grid, .market-facts, .controls")) {
      part.hidden = true;
    }
    // A temporary failure is worth a retry; an unknown or ended market is not.
    if (!gone && !this.stopped) {
      this.timers.retry = setTimeout(() => this.restartFromScratch(), 5000);
    }
  }

  restartFromScratch() {
    if (this.stopped) return;
    mountMarketAgain(this.marketId);
  }

  // ---- stream --------------------------------------------------------------------------------

  openStream(sinceSeq) {
    this.stream = new MarketStream(this.marketId, sinceSeq, {
      onEvents: (events) => this.takeEvents(events),
      onClock: (frame) => this.takeClock(frame),
      onStatus: (status, text) => {
        this.connection = { status, text };
        this.renderConnection();
      },
      onHistoryLost: () => this.resync(),
    });
    this.stream.start();
  }

  takeEvents(events) {
    for (const event of events) {
      this.book.apply(event);
      if (event.kind === "lease_created") this.pricesChanged = true;
      this.participant.onEvent(event);
    }
    this.requestRender();
  }

  takeClock(frame) {
    this.book.setClock(frame);
    const buckets = this.book.series.size;
    this.book.takeLiveView(frame);
    if (frame.series?.length || buckets !== this.book.series.size) this.pricesChanged = true;
    this.anchorClock(frame);
    this.requestRender();
  }

  /** The stream lost events for good: start again from a fresh snapshot. */
  async resync() {
    try {
      const snapshot = await api.snapshot(this.marketId);
      if (this.stopped) return;
      this.book.reset(snapshot);
      this.shownClockS = 0;
      this.anchorClock(snapshot);
      this.pricesChanged = true;
      this.stream.restart(snapshot.seq);
      this.requestRender();
    } catch {
      this.timers.resync = setTimeout(() => this.resync(), 3000);
    }
  }

  async refreshSnapshot() {
    try {
      const snapshot = await api.snapshot(this.marketId);
      if (this.stopped) return;
      this.book.refresh(snapshot);
      this.pricesChanged = true;
      // A stream that is down misses state changes (a stop, say); the snapshot has them.
      if (this.connection.status !== "live") this.takeClock(snapshot);
      this.requestRender();
    } catch {
      // The stream's own status already tells the visitor the server is unreachable.
    }
  }

  takeSummary(summary) {
    if (!summary) return;
    this.book.refresh(summary);
    this.takeClock(summary);
  }

  // ---- clock ---------------------------------------------------------------------------------

  anchorClock({ clock_s: clockS, state, speed }) {
    const anchor = this.clockAnchor;
    if (anchor && state && state !== anchor.state) this.shownClockS = 0; // may jump: a new state
    this.clockAnchor = {
      clockS: clockS ?? anchor?.clockS ?? 0,
      atMs: performance.now(),
      speed: speed ?? anchor?.speed ?? 0,
      state: state ?? anchor?.state,
    };
  }

  /**
   * Between frames the clock runs on at the market's speed, so it moves smoothly; it never
   * runs more than two wall seconds ahead of the last frame, nor past the horizon.
   */
  displayClockS() {
    const { clockS, atMs, speed, state } = this.clockAnchor;
    if (state !== "running") return clockS;
    const elapsedS = Math.min((performance.now() - atMs) / 1000, 2);
    const horizonS = this.book?.market.horizon_s ?? Infinity;
    return Math.min(clockS + elapsedS * speed, horizonS);
  }

  // ---- rendering -----------------------------------------------------------------------------

  requestRender() {
    if (this.renderPending || this.stopped) return;
    this.renderPending = true;
    this.timers.render = setTimeout(() => {
      this.renderPending = false;
      this.render();
    }, RENDER_EVERY_MS);
  }

  render() {
    if (this.stopped || !this.book) return;
    const myTenant = this.participant.identity?.tenant ?? null;
    const myProvider = this.participant.identity?.provider ?? null;
    this.renderHeader();
    this.renderClock();
    this.renderConnection();
    this.renderChart();
    this.renderCaption();
    renderHeadline(this.root, this.book);
    renderOpenOrders(this.root, this.book, myTenant);
    renderRecentLeases(this.root, this.book);
    renderRecentCloses(this.root, this.book);
    renderLeaderboard(this.root, this.book, myProvider);
    renderMetrics(this.root, this.book);
    renderAktPanel(this.root, this.book);
    this.participant.render();
  }

  renderHeader() {
    const market = this.book.market;
    const name = market.name || market.market_id;
    setText(this.el("market-name"), name);
    document.title = `${name} — gpumarket`;
    const badge = this.el("market-state");
    setText(badge, market.state);
    badge.dataset.state = market.state;
    setText(this.el("market-speed"), formatSpeed(market.speed));
    this.el("market-speed").title = `${formatSpeed(market.speed)}: one wall-clock second is ` +
      `${formatDuration(market.speed)} of simulated time`;
    setText(this.el("market-mechanism"), market.mechanism ?? "—");
    setText(this.el("market-scenario"), `${market.scenario} · seed ${market.seed}`);
    if (market.error) {
      setNotice(this.el("market-error"), `The market stopped on an error: ${market.error}`);
    }
    this.controls.render(market.state, market.speed);
  }

  renderClock() {
    if (!this.book) return;
    const horizonS = this.book.market.horizon_s;
    const horizon = Number.isFinite(horizonS) ? ` of ${formatDuration(horizonS)}` : "";
    // Shown time never steps back while the state holds, even when a frame arrives a little
    // behind the interpolation; it pauses until the market catches up.
    this.shownClockS = Math.max(this.shownClockS ?? 0, this.displayClockS());
    setText(this.el("market-clock"), formatClock(this.shownClockS));
    this.el("market-clock").title = `simulated time since the market opened${horizon}`;
  }

  renderConnection() {
    const badge = this.el("connection-status");
    let { status, text } = this.connection;
    if (status !== "live" && ENDED_STATES.has(this.book?.market.state)) {
      status = "ended";
      text = `market ${this.book.market.state} — no more updates`;
    }
    badge.dataset.status = status;
    setText(badge, status === "live" ? "● live" : text);
  }

  renderChart() {
    const now = performance.now();
    const due = now - this.chartDrawnAtMs >= CHART_EVERY_MS;
    if (!this.pricesChanged && !due) return;
    if (!due) {
      // Prices changed but the chart drew moments ago: draw when the second is up.
      clearTimeout(this.timers.chart);
      const waitMs = CHART_EVERY_MS - (now - this.chartDrawnAtMs);
      this.timers.chart = setTimeout(() => this.renderChart(), waitMs);
      return;
    }
    this.chartDrawnAtMs = now;
    this.pricesChanged = false;
    const windowS = Number(this.el("chart-window").value);
    const buckets = this.book.seriesBuckets();
    const clockS = this.book.clockS;
    this.chart.render({
      series: this.priceSeries(buckets), clockS, windowS,
      logScale: this.el("chart-log").checked,
    });
    const at = (bucket) => bucket.end_s;
    // A bucket under way for less than a minute says little about a rate: left out.
    const settled = buckets.filter((b) => !b.partial || b.end_s - b.start_s >= 60);
    this.demandChart.render({
      series: [
        { id: "wanted", label: "GPUs wanted (open orders)", color: SERIES_COLORS[1],
          points: settled.map((b) => [at(b), b.gpus_wanted]) },
        { id: "free", label: "GPUs free (providers up, not leased)", color: SERIES_COLORS[2],
          points: settled.map((b) => [at(b), b.gpus_free]) },
      ],
      // Free GPUs run to thousands while open orders want tens: a log axis shows both.
      clockS, windowS, logScale: true,
    });
    this.utilizationChart.render({
      series: [{ id: "leased", label: "GPUs leased", color: SERIES_COLORS[0],
        points: settled.map((b) => [at(b), b.utilization]) }],
      clockS, windowS, logScale: false,
    });
  }

  /**
   * One series per GPU model: the median lease price of each bucket, with the 10th-90th
   * percentile band around it. Buckets without a lease of that model leave a gap in time.
   */
  priceSeries(buckets) {
    const models = this.book.market.gpu_models || [];
    const ids = models.map((model) => model.id);
    for (const bucket of buckets) {
      for (const id of Object.keys(bucket.prices)) if (!ids.includes(id)) ids.push(id);
    }
    return ids.map((id, i) => {
      const rows = buckets.filter((b) => b.prices[id]);
      const time = (b) => (b.start_s + b.end_s) / 2;
      return {
        id,
        label: id,
        color: SERIES_COLORS[i % SERIES_COLORS.length],
        points: rows.map((b) => [time(b), b.prices[id].median]),
        band: rows.map((b) => [time(b), b.prices[id].p10, b.prices[id].p90]),
      };
    });
  }

  /** The newest caption the market's clock has reached. */
  renderCaption() {
    const shown = this.book.captions.filter((c) => c.time_s <= this.book.clockS + 1e-6).at(-1);
    const strip = this.el("caption-strip");
    strip.hidden = !shown;
    if (!shown) return;
    setText(this.el("caption-time"), formatClock(shown.time_s));
    setText(this.el("caption"), shown.text);
    strip.dataset.kind = shown.kind;
  }

  wireChartOptions() {
    const redraw = () => {
      this.chartDrawnAtMs = 0;
      this.renderChart();
    };
    this.el("chart-log").addEventListener("change", redraw);
    this.el("chart-window").addEventListener("change", redraw);
  }
}

let current = null;

function mountMarketAgain(marketId) {
  current?.stop();
  const root = document.getElementById("market-view");
  root.replaceChildren(document.getElementById("market-template").content.cloneNode(true));
  current = new MarketSession(root, marketId);
  current.start();
}

/** Show the live view of `marketId`; returns the function that leaves it. */
export function mountMarket(marketId) {
  const root = document.getElementById("market-view");
  root.hidden = false;
  mountMarketAgain(marketId);
  return () => {
    current?.stop();
    current = null;
    root.hidden = true;
    root.replaceChildren();
  };
}
