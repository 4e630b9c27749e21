// A hand-written SVG time chart: one line per series against simulated time, with an
// optional shaded band around each line (the price chart's p10-p90 of lease prices around
// the median). No library, so the page loads nothing from anywhere else.

import { h, syncChildren } from "./dom.js";
import { formatClock, formatPrice } from "./format.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const HEIGHT_PX = 300;
const PRICE_AXIS = {
  yTitle: "USD per GPU-hour",
  tickLabel: (usd) => priceLabel(usd),
  valueLabel: (usd) => `${formatPrice(usd)}/GPU-h`,
  emptyText: "No leases yet — prices appear here as tenants accept bids.",
  what: "Lease prices in USD per GPU-hour over simulated time",
};
const MARGIN = { top: 14, right: 16, bottom: 40, left: 64 };
// Distinct on white and for the common colour-vision deficiencies (after Okabe & Ito).
export const SERIES_COLORS = [
  "#0060a8", "#c2410c", "#0f7a55", "#a0307a", "#8a6100",
  "#2f8fc6", "#6b3fa0", "#b91c1c", "#3f6212", "#4b5563",
];
const TIME_STEPS_S = [900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

function svg(tag, attrs = {}, text = null) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  if (text !== null) element.textContent = text;
  return element;
}

/** Round tick values for a linear axis from 0 to `max`: about five of them. */
function linearTicks(max) {
  const rough = max / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rough);
  const ticks = [];
  for (let value = 0; value <= max + step * 1e-9; value += step) ticks.push(value);
  return ticks;
}

/** 1-2-5 ticks within [min, max] for a log axis. */
function logTicks(min, max) {
  const ticks = [];
  // Past three decades, 2 and 5 would crowd the axis: powers of ten only.
  const mantissas = Math.log10(max / min) > 3 ? [1] : [1, 2, 5];
  for (let power = Math.floor(Math.log10(min)); power <= Math.ceil(Math.log10(max)); power++) {
    for (const mantissa of mantissas) {
      const value = mantissa * 10 ** power;
      if (value >= min * 0.999 && value <= max * 1.001) ticks.push(value);
    }
  }
  return ticks;
}

function timeTicks(startS, endS, widthPx) {
  const wanted = Math.max(2, Math.floor(widthPx / 110));
  const step = TIME_STEPS_S.find((s) => (endS - startS) / s <= wanted) ?? TIME_STEPS_S.at(-1);
  const ticks = [];
  for (let t = Math.ceil(startS / step) * step; t <= endS; t += step) ticks.push(t);
  return { ticks, step };
}

function timeLabel(timeS, stepS) {
  const clock = formatClock(timeS); // "day 2 14:05"
  if (stepS >= 86400 || timeS % 86400 === 0) return clock.replace(/ \d\d:\d\d$/, "");
  return clock.replace(/^day \d+ /, "");
}

function priceLabel(usd) {
  return usd >= 1 ? `$${Number(usd.toPrecision(3))}` : `$${usd.toPrecision(2)}`;
}

export class PriceChart {
  /**
   * `container` gets the SVG, `legend` a list with one toggle button per series. `axis`
   * names the y axis and formats its values (default: USD per GPU-hour), and may set
   * `minMax` (the least top of a linear axis) and `logFloor` (the least bottom of a log
   * axis); `heightPx` is the chart's height.
   */
  constructor(container, legend, axis = {}, heightPx = HEIGHT_PX) {
    this.container = container;
    this.legend = legend;
    this.axis = { ...PRICE_AXIS, ...axis };
    this.heightPx = heightPx;
    this.hidden = new Set(); // GPU models the visitor switched off
    this.last = null;
    this.pointer = null;
    this.resizeObserver = new ResizeObserver(() => this.last && this.render(this.last));
    this.resizeObserver.observe(container);
  }

  destroy() {
    this.resizeObserver.disconnect();
  }

  /**
   * series: [{id, label, color, points: [[time_s, value], ...], band?: [[time_s, low,
   * high], ...], dashed?}]; clockS: the market's clock;
   * windowS: how much simulated time to show (Infinity for all kept); logScale: bool.
   */
  render(options) {
    this.last = options;
    this.renderLegend(options.series);
    const widthPx = Math.max(this.container.clientWidth, 280);
    const root = svg("svg", {
      viewBox: `0 0 ${widthPx} ${this.heightPx}`,
      width: widthPx,
      height: this.heightPx,
      role: "img",
      "aria-label": this.describe(options.series),
    });
    const shown = options.series.filter((s) => !this.hidden.has(s.id) && s.points.length);
    const frame = this.frame(shown, options, widthPx);
    if (!frame) {
      root.append(svg("text", {
        x: widthPx / 2, y: this.heightPx / 2, "text-anchor": "middle", class: "chart-empty",
      }, options.series.some((s) => s.points.length)
        ? "Every series is hidden — pick one in the legend below."
        : this.axis.emptyText));
      this.container.replaceChildren(root);
      return;
    }
    this.drawAxes(root, frame, options.logScale);
    for (const series of shown) this.drawSeries(root, frame, series);
    this.container.replaceChildren(root);
    this.frameNow = { frame, shown, root };
    this.wirePointer(root);
  }

  /** Scales for the visible window, or null when it holds no point. */
  frame(shown, { clockS, windowS, logScale }, widthPx) {
    const latest = Math.max(clockS, ...shown.map((s) => s.points.at(-1)[0]));
    let startS = Number.isFinite(windowS) ? Math.max(0, latest - windowS) : Infinity;
    if (!Number.isFinite(startS)) startS = Math.min(...shown.map((s) => s.points[0][0]));
    const endS = Math.max(latest, startS + 3600);
    const visible = shown.flatMap((s) => [
      ...s.points.filter(([t]) => t >= startS).map(([, p]) => p),
      ...(s.band || []).filter(([t]) => t >= startS).flatMap(([, low, high]) => [low, high]),
    ]).filter((value) => Number.isFinite(value) && (!logScale || value > 0));
    if (!visible.length) return null;
    let minUsd = Math.min(...visible);
    let maxUsd = Math.max(...visible);
    if (logScale) {
      minUsd = Math.max(minUsd / 1.3, this.axis.logFloor ?? 1e-4);
      maxUsd = Math.max(maxUsd * 1.3, minUsd * 10);
    } else {
      minUsd = 0;
      maxUsd = Math.max(maxUsd * 1.1, this.axis.minMax ?? 0) || 1;
    }
    const plotW = widthPx - MARGIN.left - MARGIN.right;
    const plotH = this.heightPx - MARGIN.top - MARGIN.bottom;
    const x = (t) => MARGIN.left + ((t - startS) / (endS - startS)) * plotW;
    const y = logScale
      // A zero (no GPU wanted this bucket) sits on the bottom edge rather than off the chart.
      ? (usd) => MARGIN.top + plotH *
        (1 - Math.log(Math.max(usd, minUsd) / minUsd) / Math.log(maxUsd / minUsd))
      : (usd) => MARGIN.top + plotH * (1 - usd / maxUsd);
    return { startS, endS, minUsd, maxUsd, x, y, plotW, plotH, widthPx };
  }

  drawAxes(root, frame, logScale) {
    const { x, y, startS, endS, minUsd, maxUsd, plotW, plotH } = frame;
    const axes = svg("g", { class: "chart-axes" });
    const yTicks = logScale ? logTicks(minUsd, maxUsd) : linearTicks(maxUsd);
    for (const value of yTicks) {
      const py = y(value);
      axes.append(
        svg("line", { x1: MARGIN.left, x2: MARGIN.left + plotW, y1: py, y2: py, class: "grid" }),
        svg("text", { x: MARGIN.left - 6, y: py + 4, "text-anchor": "end" },
          this.axis.tickLabel(value)),
      );
    }
    const { ticks, step } = timeTicks(startS, endS, plotW);
    for (const t of ticks) {
      const px = x(t);
      axes.append(
        svg("line", { x1: px, x2: px, y1: MARGIN.top, y2: MARGIN.top + plotH, class: "grid" }),
        svg("text", { x: px, y: MARGIN.top + plotH + 16, "text-anchor": "middle" },
          timeLabel(t, step)),
      );
    }
    axes.append(
      svg("rect", { x: MARGIN.left, y: MARGIN.top, width: plotW, height: plotH, class: "plot" }),
      svg("text", {
        class: "axis-title", "text-anchor": "middle",
        transform: `translate(14 ${MARGIN.top + plotH / 2}) rotate(-90)`,
      }, `${this.axis.yTitle}${logScale ? " (log scale)" : ""}`),
      svg("text", {
        class: "axis-title", "text-anchor": "middle",
        x: MARGIN.left + plotW / 2, y: this.heightPx - 4,
      }, "Simulated time"),
    );
    root.append(axes);
  }

  drawSeries(root, frame, series) {
    // One point before the window too, so a line enters from the left edge.
    const firstIn = series.points.findIndex(([t]) => t >= frame.startS);
    if (firstIn < 0) return;
    const points = series.points.slice(Math.max(firstIn - 1, 0));
    const left = MARGIN.left;
    const coords = points
      .map(([t, usd]) => `${Math.max(frame.x(t), left).toFixed(1)},${frame.y(usd).toFixed(1)}`)
      .join(" ");
    const [lastT, lastUsd] = points.at(-1);
    if (series.band?.length) this.drawBand(root, frame, series);
    root.append(
      svg("polyline", { points: coords, fill: "none", stroke: series.color, "stroke-width": 1.75,
        "stroke-linejoin": "round", class: "series", "data-series": series.id,
        ...(series.dashed ? { "stroke-dasharray": "5 4" } : {}) }),
      svg("circle", { cx: frame.x(lastT), cy: frame.y(lastUsd), r: 3.5, fill: series.color }),
    );
  }

  /** The shaded band: upper edge left to right, then the lower edge back. */
  drawBand(root, frame, series) {
    const firstIn = series.band.findIndex(([t]) => t >= frame.startS);
    if (firstIn < 0) return;
    const band = series.band.slice(Math.max(firstIn - 1, 0));
    const y = (value) => frame.y(Math.max(value, frame.minUsd)).toFixed(1);
    const x = (t) => Math.max(frame.x(t), MARGIN.left).toFixed(1);
    const upper = band.map(([t, , high]) => `${x(t)},${y(high)}`);
    const lower = band.map(([t, low]) => `${x(t)},${y(low)}`).reverse();
    root.append(svg("polygon", { points: [...upper, ...lower].join(" "), fill: series.color,
      "fill-opacity": 0.16, stroke: "none", class: "band" }));
  }

  /** Hovering shows the nearest point: which series, when, what value. */
  wirePointer(root) {
    const tip = svg("g", { class: "chart-tip", visibility: "hidden" });
    const dot = svg("circle", { r: 4.5 });
    const box = svg("rect", { rx: 4, height: 22 });
    const label = svg("text", {});
    tip.append(dot, box, label);
    root.append(tip);
    const parts = { tip, dot, box, label };
    root.addEventListener("pointermove", (e) => {
      this.pointer = { clientX: e.clientX, clientY: e.clientY };
      this.showNearest(this.pointer, root, parts);
    });
    root.addEventListener("pointerleave", () => {
      this.pointer = null;
      tip.setAttribute("visibility", "hidden");
    });
    // The chart redraws as leases come in; a visitor reading a point keeps reading it.
    if (this.pointer) this.showNearest(this.pointer, root, parts);
  }

  showNearest(pointer, root, { tip, dot, box, label }) {
    const { frame, shown } = this.frameNow;
    const bounds = root.getBoundingClientRect();
    const px = ((pointer.clientX - bounds.left) / bounds.width) * frame.widthPx;
    const py = ((pointer.clientY - bounds.top) / bounds.height) * this.heightPx;
    let best = null;
    for (const series of shown) {
      for (const [t, usd] of series.points) {
        if (t < frame.startS) continue;
        const distance = Math.hypot(frame.x(t) - px, frame.y(usd) - py);
        if (!best || distance < best.distance) best = { distance, series, t, usd };
      }
    }
    if (!best || best.distance > 40) {
      tip.setAttribute("visibility", "hidden");
      return;
    }
    const cx = frame.x(best.t);
    const cy = frame.y(best.usd);
    dot.setAttribute("cx", cx);
    dot.setAttribute("cy", cy);
    dot.setAttribute("fill", best.series.color);
    label.textContent = `${best.series.label} · ${formatClock(best.t)} · ` +
      `${this.axis.valueLabel(best.usd)}`;
    const textW = label.textContent.length * 6.6 + 12;
    const bx = Math.min(Math.max(cx - textW / 2, 2), frame.widthPx - textW - 2);
    const by = cy - 32 < 2 ? cy + 10 : cy - 32;
    box.setAttribute("x", bx);
    box.setAttribute("y", by);
    box.setAttribute("width", textW);
    label.setAttribute("x", bx + 6);
    label.setAttribute("y", by + 15);
    tip.setAttribute("visibility", "visible");
  }

  describe(series) {
    const latest = series
      .filter((s) => s.points.length)
      .map((s) => `${s.label} ${this.axis.valueLabel(s.points.at(-1)[1])}`);
    return latest.length
      ? `${this.axis.what}. Latest: ${latest.join(", ")}.`
      : `${this.axis.what}: no data yet.`;
  }

  renderLegend(series) {
    syncChildren(
      this.legend,
      series,
      (s) => s.id,
      (s) => {
        const button = h("button", { type: "button", class: "legend-item" },
          h("span", { class: "swatch", "aria-hidden": "true" }),
          h("span", { class: "legend-label" }),
          h("span", { class: "legend-price" }));
        button.addEventListener("click", () => {
          if (this.hidden.has(s.id)) this.hidden.delete(s.id);
          else this.hidden.add(s.id);
          this.render(this.last);
        });
        return h("li", {}, button);
      },
      (li, s) => {
        const button = li.firstChild;
        const shown = !this.hidden.has(s.id);
        button.setAttribute("aria-pressed", String(shown));
        button.title = shown ? `Hide ${s.label}` : `Show ${s.label}`;
        button.querySelector(".swatch").style.background = s.color;
        button.querySelector(".legend-label").textContent = s.label;
        const latest = s.points.at(-1);
        button.querySelector(".legend-price").textContent = latest
          ? this.axis.valueLabel(latest[1])
          : "no data";
        li.classList.toggle("off", !shown);
        li.classList.toggle("empty-series", !latest);
      },
    );
  }
}
