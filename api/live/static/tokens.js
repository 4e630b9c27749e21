// Tokens live in sessionStorage, per market: they survive a reload of this tab but not its
// closing, and another tab starts as a spectator unless it is given a token. The operator
// token (the presenter's: it creates and controls every market) is kept the same way.

const operatorKey = "gpumarket:operator";
const controlKey = (marketId) => `gpumarket:control:${marketId}`;
const participantKey = (marketId) => `gpumarket:participant:${marketId}`;

function read(key) {
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null; // storage disabled: the page still works, it just forgets on reload
  }
}

function write(key, value) {
  try {
    if (value === null) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, value);
  } catch {
    // Storage full or disabled: keeping the token in memory for this page is enough.
  }
}

export function operatorToken() {
  return read(operatorKey);
}

export function saveOperatorToken(token) {
  write(operatorKey, token);
}

/**
 * A presenter opens the page at the address the server printed, `/#operator=TOKEN`: keep the
 * token in this tab and take it out of the address and the history at once, so it is neither
 * shown on a projected screen nor bookmarked. True if the address carried one.
 */
export function takeOperatorTokenFromAddress() {
  const found = location.hash.match(/^#operator=([^&]+)/);
  if (!found) return false;
  let token = found[1];
  try {
    token = decodeURIComponent(token);
  } catch {
    // Not percent-encoded: take it as it is.
  }
  saveOperatorToken(token);
  history.replaceState(null, "", `${location.pathname}${location.search}#/`);
  return true;
}

export function controlToken(marketId) {
  return read(controlKey(marketId));
}

export function saveControlToken(marketId, token) {
  write(controlKey(marketId), token);
}

/** The participant this tab acts as: {token, participant_id, role, name, tenant, provider}. */
export function participant(marketId) {
  const raw = read(participantKey(marketId));
  if (!raw) return null;
  try {
    const saved = JSON.parse(raw);
    return typeof saved?.token === "string" ? saved : null;
  } catch {
    return null;
  }
}

export function saveParticipant(marketId, saved) {
  write(participantKey(marketId), saved ? JSON.stringify(saved) : null);
}
