"""What the live-market server answers, as the remote side reads it: a refusal as `ApiError`
(from an HTTP error body or a websocket error frame) and a command's result as
`CommandResult` (with the seq and simulated clock at which it was applied)."""

from __future__ import annotations

import math
from typing import Any

import httpx

from api.wire import ERROR_STATUS

#: The error code of each HTTP status the server uses (an HTTP answer without a code of its own).
CODES = {status: code for code, status in ERROR_STATUS.items()}
#: Where FastAPI says a bad input was; dropped from the field name.
_LOCATIONS = ("body", "query", "path", "header", "cookie")


class ApiError(Exception):
    """The server refused a request, or could not be reached.

    `status` is the HTTP status (0 when there was no HTTP answer: unreachable, timeout, a
    websocket-only condition); `code` names the kind (`invalid`, `unauthorized`, `forbidden`,
    `not_found`, `conflict`, `gone` (410: the market ended and left the server's memory),
    `rate_limited`, ...; `unreachable`, `timeout`, `disconnected`,
    `history_gone` on the client side); `field` is the offending input field if known;
    `retry_after_s` is how long to wait before retrying a rate-limited request, wall seconds.
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 retry_after_s: float | None = None) -> None:
        self.status = status
        self.code = code
        self.message = " ".join(str(message).split())  # one line, whatever the server sent
        self.field = field
        self.retry_after_s = retry_after_s
        super().__init__(self.message)

    def __str__(self) -> str:
        status = f" {self.status}" if self.status else ""
        return f"{self.code}{status}: {self.message}"

    @classmethod
    def from_response(cls, response: httpx.Response, tag: str | None = None) -> ApiError:
        """The error a non-2xx response describes. `tag`: the discriminator value of a union
        body (a join's role), which FastAPI puts in the location of a bad field."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        detail = body.get("detail") if isinstance(body, dict) else None
        code = body.get("code") if isinstance(body, dict) else None
        code = code if isinstance(code, str) else CODES.get(status, f"http_{status}")
        field = body.get("field") if isinstance(body, dict) else None
        if isinstance(detail, list) and detail:  # FastAPI's validation list: name the first
            field, message = _first_invalid(detail, tag)
        elif isinstance(detail, str):
            message = detail
        else:
            message = response.reason_phrase or f"HTTP {status}"
        retry = response.headers.get("retry-after")
        try:
            retry_after_s = float(retry) if retry is not None else None
        except ValueError:
            retry_after_s = None
        return cls(status, code, message, field if isinstance(field, str) else None,
                   retry_after_s)

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> ApiError:
        """The error a websocket error frame describes."""
        code = str(frame.get("code") or "error")
        field = frame.get("field")
        retry = frame.get("retry_after_s")
        return cls(ERROR_STATUS.get(code, 0), code, str(frame.get("message") or code),
                   field if isinstance(field, str) else None,
                   float(retry) if isinstance(retry, int | float) else None)


def _first_invalid(detail: list[Any], tag: str | None) -> tuple[str | None, str]:
    """(field, one-line message) of the first item of FastAPI's 422 list."""
    first = detail[0] if isinstance(detail[0], dict) else {}
    loc = [str(part) for part in first.get("loc", ())]
    while loc and loc[0] in _LOCATIONS:
        loc = loc[1:]
    if tag is not None and loc and loc[0] == tag:
        loc = loc[1:]
    field = ".".join(loc) or None
    more = len(detail) - 1
    tail = f" (and {more} more)" if more else ""
    return field, f"{field or 'body'}: {first.get('msg', 'invalid')}{tail}"


class CommandResult(dict):
    """A command's `result` (e.g. ``{"order_id": 3}``), with the rest of its reply:
    `seq` (the market's last event when it was applied) and `clock_s` (simulated seconds)."""

    seq: int
    clock_s: float

    @classmethod
    def of(cls, reply: dict[str, Any]) -> CommandResult:
        result = cls(reply.get("result") or {})
        result.seq = int(reply.get("seq", 0))
        result.clock_s = float(reply.get("clock_s", math.nan))
        return result

