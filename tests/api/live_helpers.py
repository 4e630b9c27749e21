"""What tests of a live server share: a JSON POST that must succeed, and a market's whole
event log read page by page over HTTP (bounded by the server's `more` flag)."""

from __future__ import annotations

from typing import Any

import httpx


def post_json(url: str, path: str, body: dict[str, Any], token: str | None = None) -> Any:
    """POST `body` to `url + path` (with `token` as a bearer token); the reply's JSON. The
    request must succeed (200 or 201)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    response = httpx.post(f"{url}{path}", json=body, headers=headers, timeout=30)
    assert response.status_code in (200, 201), response.text
    return response.json()


def all_events(url: str, market_id: str) -> list[dict[str, Any]]:
    """Every event of market `market_id` so far, in order."""
    events: list[dict[str, Any]] = []
    while True:
        page = httpx.get(f"{url}/api/markets/{market_id}/events",
                         params={"since": events[-1]["seq"] if events else 0,
                                 "limit": 10_000}, timeout=30).json()
        events.extend(page["events"])
        if not page["more"]:
            return events
