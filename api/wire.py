"""What both ends of the live-market API agree on besides its routes and bodies: the HTTP
status of each error code (an HTTP refusal carries both, a websocket error frame only the
code) and the market states in which the clock still runs. The server (`api.live`) and the
remote side (`api.remote`) read them here, so that neither imports the other."""

#: HTTP status of each error code the server answers with.
ERROR_STATUS: dict[str, int] = {
    "invalid": 422, "unauthorized": 401, "forbidden": 403, "not_found": 404,
    "conflict": 409, "too_large": 413, "rate_limited": 429, "unavailable": 503}
#: Market states in which the clock still runs (or may run again).
LIVE_STATES = ("running", "paused")
