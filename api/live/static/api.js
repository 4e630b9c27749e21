// The REST side of the live API. Every failure becomes an ApiError whose message is the
// server's one-line `detail`, ready to show next to the form that caused it.

export class ApiError extends Error {
  constructor(status, message, retryAfterS = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.retryAfterS = retryAfterS;
  }
}

/** FastAPI's 422 carries a list of {loc, msg}; turn it into one readable line. */
function detailLine(detail, status) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        const field = (item.loc || []).filter((part) => part !== "body").join(".");
        return field ? `${field}: ${item.msg}` : item.msg;
      })
      .join("; ");
  }
  return `the server answered ${status}`;
}

async function errorFrom(response) {
  let detail = null;
  try {
    detail = (await response.json()).detail;
  } catch {
    // Not JSON (a proxy's error page, say): fall back to the status below.
  }
  let message = detailLine(detail, response.status);
  const retryAfterS = Number(response.headers.get("Retry-After")) || null;
  if (response.status === 429 && retryAfterS) message += ` (try again in ${retryAfterS} s)`;
  return new ApiError(response.status, message, retryAfterS);
}

/** Call the API: `request("POST", "/api/markets", {body, token})` resolves to parsed JSON. */
export async function request(method, path, { body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "cannot reach the server — is it still running?");
  }
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  return response.json();
}

const marketPath = (marketId) => `/api/markets/${encodeURIComponent(marketId)}`;

export const api = {
  scenarios: () => request("GET", "/api/scenarios"),
  markets: () => request("GET", "/api/markets"),
  createMarket: (body, operatorToken) =>
    request("POST", "/api/markets", { body, token: operatorToken }),
  snapshot: (marketId) => request("GET", marketPath(marketId)),
  control: (marketId, action, token) =>
    request("POST", `${marketPath(marketId)}/${action}`, { token }),
  setSpeed: (marketId, speed, token) =>
    request("PUT", `${marketPath(marketId)}/speed`, { body: { speed }, token }),
  join: (marketId, body) => request("POST", `${marketPath(marketId)}/participants`, { body }),
  me: (marketId, token) => request("GET", `${marketPath(marketId)}/me`, { token }),
  postOrder: (marketId, body, token) =>
    request("POST", `${marketPath(marketId)}/orders`, { body, token }),
  cancelOrder: (marketId, orderId, token) =>
    request("DELETE", `${marketPath(marketId)}/orders/${orderId}`, { token }),
  bid: (marketId, orderId, priceUsdPerGpuHour, token) =>
    request("POST", `${marketPath(marketId)}/orders/${orderId}/bids`, {
      body: { price_usd_per_gpu_hour: priceUsdPerGpuHour },
      token,
    }),
  accept: (marketId, orderId, bidId, token) =>
    request("POST", `${marketPath(marketId)}/orders/${orderId}/accept`, {
      body: { bid_id: bidId },
      token,
    }),
  closeLease: (marketId, leaseId, token) =>
    request("POST", `${marketPath(marketId)}/leases/${leaseId}/close`, {
      body: { reopen: false },
      token,
    }),
};

/** The WebSocket address of a market's event stream, on the page's own host. */
export function streamUrl(marketId, sinceSeq) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${marketPath(marketId)}/stream?since=${sinceSeq}`;
}
