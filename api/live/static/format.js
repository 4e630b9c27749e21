// How numbers read on the page: simulated time as "day D hh:mm", money as "$1,234.50".

const SECONDS_PER_DAY = 86400;

const usdFormat = new Intl.NumberFormat("en-US", {
  style: "currency",
  currency: "USD",
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});
const countFormat = new Intl.NumberFormat("en-US");

/** Simulated seconds as "day 2 14:05"; the market opens on day 1 at 00:00. */
export function formatClock(clockS) {
  if (!Number.isFinite(clockS)) return "—";
  const totalMinutes = Math.floor(Math.max(clockS, 0) / 60);
  const day = Math.floor(totalMinutes / 1440) + 1;
  const hh = String(Math.floor((totalMinutes % 1440) / 60)).padStart(2, "0");
  const mm = String(totalMinutes % 60).padStart(2, "0");
  return `day ${day} ${hh}:${mm}`;
}

/** A simulated span as "3 h 20 min", "45 s" or "2.5 days". */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return "open-ended";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 2 * SECONDS_PER_DAY) {
    const hours = Math.floor(seconds / 3600);
    const minutes = Math.round((seconds % 3600) / 60);
    return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
  }
  return `${(seconds / SECONDS_PER_DAY).toFixed(1)} days`;
}

export function formatUsd(usd) {
  return Number.isFinite(usd) ? usdFormat.format(usd) : "—";
}

/** A price per GPU-hour: cheap consumer cards need a third decimal to tell bids apart. */
export function formatPrice(usdPerGpuHour) {
  if (!Number.isFinite(usdPerGpuHour)) return "—";
  return `$${usdPerGpuHour.toFixed(usdPerGpuHour < 10 ? 3 : 2)}`;
}

export function formatCount(count) {
  return Number.isFinite(count) ? countFormat.format(count) : "—";
}

export function formatPercent(fraction) {
  return Number.isFinite(fraction) ? `${(fraction * 100).toFixed(1)}%` : "—";
}

/** "60×" — speed is simulated seconds per wall-clock second. */
export function formatSpeed(speed) {
  if (!Number.isFinite(speed)) return "—";
  return `${Number(speed.toPrecision(4))}×`;
}

/** What a speed means to a person: how long a simulated day lasts on the wall clock. */
export function describeSpeed(speed) {
  if (!(speed > 0)) return "Simulated seconds per wall-clock second; must be above 0.";
  const wallS = SECONDS_PER_DAY / speed;
  let span;
  if (wallS < 90) span = `${Math.round(wallS)} seconds`;
  else if (wallS < 5400) span = `${Math.round(wallS / 60)} minutes`;
  else span = `${(wallS / 3600).toFixed(1)} hours`;
  return `Simulated seconds per wall-clock second: at ${formatSpeed(speed)} a simulated ` +
    `day takes ${span}.`;
}

/** Event money is integer micro-USD; rates are for the whole order, all its GPUs. */
export function microPerHourToUsdPerGpuHour(microPerHour, gpus) {
  return microPerHour / gpus / 1e6;
}

export const STATE_LABELS = {
  running: "running",
  paused: "paused",
  stopped: "stopped",
  finished: "finished",
};

// Akash's lease close reasons, as a visitor would say them.
export const CLOSE_REASONS = {
  owner: "tenant closed",
  unstable: "provider failed",
  insufficient_funds: "escrow ran dry",
  manifest_timeout: "never deployed",
  decommission: "provider left",
};

export const CLOSE_REASON_DETAILS = {
  owner: "owner: the tenant closed the lease, or its job finished",
  unstable: "unstable: the provider's health checks failed",
  insufficient_funds: "insufficient_funds: the order's escrow could not pay on",
  manifest_timeout: "manifest_timeout: the tenant never sent its deployment manifest",
  decommission: "decommission: the provider left the market",
};
