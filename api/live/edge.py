"""The JSON reader at the edge: HTTP bodies and websocket messages, refused whole when they hold
what no command can mean.

Python's `json` reads more than JSON: `NaN`, `Infinity` and `-Infinity`, numbers that overflow
to infinity (`1e309`), integers of any length (and fails past 4,300 digits with a ValueError),
nesting as deep as the stack allows, lone UTF-16 surrogates, and a key given twice (the last
one wins, where another parser keeps the first). None of these is a value a market command
takes, and each one reaching pydantic or the session log is a 500, an error body that cannot be
serialized, or a command read differently on replay. `read_json` refuses them with one line
that names where (a dotted path, as pydantic names fields) and what would be valid.

>>> read_json('{"order_id": 3, "price_usd_per_gpu_hour": 2.5}', "body")
{'order_id': 3, 'price_usd_per_gpu_hour': 2.5}
>>> read_json('{"gpu_models": ["h100", NaN]}', "body")
Traceback (most recent call last):
...
api.live.commands.CommandError: gpu_models.1: expected a finite number, got NaN
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from itertools import accumulate
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from api.live.commands import CommandError

#: The most digits an integer may have: ids are below 2**53 (16 digits), seeds below 2**63
#: (19); 30 leaves room and keeps int() of a hostile number cheap.
MAX_INT_DIGITS = 30
#: The deepest nesting of arrays and objects (a command nests 2: a body and its lists).
MAX_DEPTH = 32
#: How much of a refused number a message quotes, and of each part of a field's name.
_QUOTE_CHARS = 24
_NAME_CHARS = 64
#: The most of FastAPI's field errors a 422 looks at to name the fields after the first (a body
#: of unknown keys has one error for each).
MAX_FIELD_ERRORS = 20

# Only an escape can make a lone surrogate (text that arrived as UTF-8 holds none), and only a
# text with that many brackets outside its strings can nest too deep: a document with neither,
# and nothing refused, skips the walk.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


class _Refused:
    """A value the reader refused, left in place so the walk can say where it was."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def read_json(raw: str | bytes, where: str) -> Any:
    """The JSON document `raw` (UTF-8 if bytes) as Python values, or CommandError "invalid"
    naming the field (`where`, e.g. "body" or "message", for the document as a whole).

    Refused: text that is not JSON or not UTF-8; `NaN`, `Infinity`, `-Infinity`; numbers
    beyond the largest float (about 1.8e308); integers of more than MAX_INT_DIGITS digits;
    arrays and objects nested deeper than MAX_DEPTH; a key twice in one object; strings with
    a lone UTF-16 surrogate escape."""
    if isinstance(raw, bytes | bytearray):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError("invalid", f"{where}: expected JSON text in UTF-8",
                               where) from None
    else:
        text = raw
    refused: list[_Refused] = []

    def refuse(why: str) -> _Refused:
        mark = _Refused(why)
        refused.append(mark)
        return mark

    def number(text: str) -> float | _Refused:
        value = float(text)
        if math.isfinite(value):
            return value
        return refuse(f"expected a finite number, got {_quote(text)} (beyond the largest "
                      f"float)")

    def integer(text: str) -> int | _Refused:
        digits = len(text) - text.startswith("-")
        if digits > MAX_INT_DIGITS:
            return refuse(f"expected an integer of at most {MAX_INT_DIGITS} digits, got "
                          f"{digits} digits")
        return int(text)

    def constant(name: str) -> _Refused:
        return refuse(f"expected a finite number, got {name}")

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _Refused:
        members = dict(pairs)
        if len(members) == len(pairs):
            return members
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                return refuse(f"key {_quote(key, _NAME_CHARS)!r} appears twice; give each "
                              "field once")
            seen.add(key)
        raise AssertionError("unreachable: fewer members than pairs means a key twice")

    try:
        document = json.loads(text, parse_float=number, parse_int=integer,
                              parse_constant=constant, object_pairs_hook=members)
    except json.JSONDecodeError as error:
        raise CommandError("invalid", f"{where}: not JSON: {error.msg} at line "
                           f"{error.lineno} column {error.colno}", where) from None
    except RecursionError:
        raise CommandError("invalid", f"{where}: arrays and objects nested deeper than "
                           f"{MAX_DEPTH} levels", where) from None
    if refused or _SURROGATE_ESCAPE.search(text) or _deeper_than(text, MAX_DEPTH):
        _walk(document, where)  # finds what is wrong, and where
    return document


def _deeper_than(text: str, depth: int) -> bool:
    """Whether JSON `text` nests arrays and objects deeper than `depth` (brackets in strings
    do not count); quicker than walking the document, which only a refusal needs."""
    if text.count("[") + text.count("{") <= depth:
        return False
    brackets = _BRACKETS.findall(_STRINGS.sub("", text))
    return max(accumulate(1 if b in "[{" else -1 for b in brackets), default=0) > depth


def _walk(document: Any, where: str) -> None:
    """Raise CommandError for the first refused value in document order, the first container
    nested too deep, or the first string or key with a lone surrogate."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _Refused):
            _raise(path, where, value.why)
        elif isinstance(value, str):
            _check_text(value, path, where, "string")
        elif isinstance(value, dict | list):
            if len(path) >= MAX_DEPTH:
                _raise(path, where, f"arrays and objects nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for key in value:
                    _check_text(key, (*path, key), where, "key")
                children = list(value.items())
            else:
                children = list(enumerate(value))
            stack.extend(((child, (*path, name)) for name, child in reversed(children)))


def _check_text(text: str, path: tuple[str | int, ...], where: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        _raise(path, where, f"{what} with a lone UTF-16 surrogate escape: not text")


def _raise(path: tuple[str | int, ...], where: str, why: str) -> None:
    field = field_name(path) or where
    raise CommandError("invalid", f"{field}: {why}", field)


def field_name(path: tuple[Any, ...] | list[Any]) -> str:
    """A location as the dotted field name error messages use (`gpu_models.1`), each part
    cut short if long: keys come from the client and may be anything, this name goes in one
    line."""
    parts = [_quote(str(part).encode("utf-8", "backslashreplace").decode("utf-8"), _NAME_CHARS)
             for part in path]
    name = ".".join(parts)
    if len(parts) > 8:  # a deep path: its start and its end say where
        name = ".".join([*parts[:3], "…", *parts[-3:]])
    return name


def _quote(text: str, limit: int = _QUOTE_CHARS) -> str:
    """`text` cut to `limit` characters a one-line message can quote, without line breaks."""
    text = " ".join(text.split()) if any(c in text for c in "\r\n\t\v\f") else text
    return text if len(text) <= limit else text[:limit - 1] + "…"


class EdgeRequest(Request):
    """A request whose JSON body is read by `read_json`: FastAPI calls `json()` for every body
    it validates, and turns what it raises into a 400 whose cause is our CommandError (the
    server's handler answers that cause, a 422 naming the field)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = read_json(await self.body(), "body")
        return self._json


class EdgeRoute(APIRoute):
    """A route that reads its body with `read_json` and, if it declares a 422, reads its path and
    query as strictly: integers in decimal digits only (no `1_000`, `+5`, ` 5` or `1.0`, which
    a lax reader takes), of at most MAX_INT_DIGITS digits, and no query parameter it does not
    declare or gets twice (a misspelt `?snce=5` is an error, not every event again). Install
    with `app.router.route_class = EdgeRoute` before the routes are added."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        # Only routes whose document says they may answer 422 refuse: the page (a link may carry
        # tracking parameters) and the routes without input keep the web's leniency.
        strict = self.include_in_schema and any(str(status) == "422" for status in self.responses)
        parameters = _Parameters(self.dependant) if strict else None

        async def edge_handler(request: Request) -> Response:
            if parameters is not None:
                parameters.check(request)
            return await handle(EdgeRequest(request.scope, request.receive))

        return edge_handler


_DECIMAL = re.compile(r"-?[0-9]+")


class _Parameters:
    """What a route declares in its path and query (its dependencies' too)."""

    def __init__(self, dependant: Any) -> None:
        query: set[str] = set()
        self.integers: list[tuple[str, str]] = []  # (path or query, name)
        stack = [dependant]
        while stack:
            node = stack.pop()
            query.update(field.alias for field in node.query_params)
            for where, fields in (("path", node.path_params), ("query", node.query_params)):
                self.integers += [(where, field.alias) for field in fields
                                  if field.field_info.annotation is int]
            stack.extend(node.dependencies)
        self.query = frozenset(query)

    def check(self, request: Request) -> None:
        """Raise CommandError for the first parameter out of place or not a plain integer."""
        seen: set[str] = set()
        for name, _ in request.query_params.multi_items():
            if name not in self.query:
                expected = ", ".join(sorted(self.query)) or "none"
                field = field_name([name])
                raise CommandError("invalid", f"{field}: not a query parameter of this route "
                                   f"(expected: {expected})", field)
            if name in seen:
                raise CommandError("invalid", f"{name}: given more than once", name)
            seen.add(name)
        for where, name in self.integers:
            text = (request.path_params if where == "path" else request.query_params).get(name)
            if text is None:
                continue
            if not _DECIMAL.fullmatch(text):
                raise CommandError("invalid", f"{name}: expected an integer in decimal digits, "
                                   f"got {_quote(text)!r}", name)
            digits = len(text) - text.startswith("-")
            if digits > MAX_INT_DIGITS:
                raise CommandError("invalid", f"{name}: expected an integer of at most "
                                   f"{MAX_INT_DIGITS} digits, got {digits} digits", name)


#: Where FastAPI says a bad input was: the first part of each location, not a field's name.
_LOCATIONS = ("body", "query", "path", "header", "cookie")
#: What a 4xx answer that no handler of ours made is called (`code`), by status; a status not
#: listed is `http_STATUS`. The codes of CommandError come first.
_HTTP_CODES = {**{status: code for code, status in CommandError.STATUS.items()},
               400: "bad_request", 405: "method_not_allowed", 406: "not_acceptable",
               408: "timeout", 410: "gone", 415: "unsupported_media_type"}
#: Field names listed after the first in a 422's one line.
_MORE_NAMED = 3


def validation_refusal(errors: Any, body: Any = None, *,
                       json_body: bool = True) -> CommandError:
    """FastAPI's request-validation errors (pydantic's list) as one CommandError "invalid": the
    first error as `field: message`, and how many more there are and where. `body` is the body
    as read, to leave a tagged union's tag out of field names (a join's `role` puts "tenant" in
    the location of a tenant's bad `name`: the field is `name`); `json_body` False says the
    request did not declare a JSON body, which is then what the message asks for.

    Nothing of the input is echoed: an input may be a number JSON cannot write, a body again,
    or a 5,000-digit id."""
    errors = list(errors)
    if not errors:
        return CommandError("invalid", "body: invalid", "body")
    fields = []
    for error in errors[:MAX_FIELD_ERRORS]:
        fields.append(_field(error.get("loc", ()), body))
    first = errors[0]
    field = fields[0]
    context = first.get("ctx") or {}
    if first.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        # A tagged union's tag missing or not one of its values: the tag's field is at fault
        # (pydantic's words would quote the refused tag, of any length).
        tag = str(context.get("discriminator", "")).strip("'\"")
        field = ".".join(part for part in (field if field != "body" else "", tag) if part) \
            or field
        expected = context.get("expected_tags")
        message = f"expected one of {expected}" if expected else "required"
    elif field == "body" and first.get("type") in ("model_attributes_type", "dict_type",
                                                   "model_type"):
        message = "expected a JSON object" + (
            "" if json_body else ", sent with 'Content-Type: application/json'")
    else:
        message = _message(first)
    others = list(dict.fromkeys(name for name in fields[1:] if name != field))
    more = len(errors) - 1
    tail = ""
    if more:
        named = ", ".join(others[:_MORE_NAMED]) + (", …" if len(others) > _MORE_NAMED else "")
        tail = f" (and {more} more{': ' + named if named else ''})"
    return CommandError("invalid", f"{field}: {message}{tail}", field)


def _field(loc: Any, body: Any) -> str:
    """The dotted field name of a location: without where it was (`body`, `query`, ...) and
    without the names pydantic gives a union's members (a tagged union's tag: a join's `role`
    puts "tenant" before a tenant's bad `name`; a plain union's type names after a field: the
    field is `name`), each part cut short (`gpu_models.1`, `since`)."""
    parts = list(loc)
    where = parts.pop(0) if parts and parts[0] in _LOCATIONS else None
    value = body if where == "body" and body is not None else _UNKNOWN
    kept: list[Any] = []
    for index, part in enumerate(parts):
        if value is not _UNKNOWN and not isinstance(value, dict | list):
            break  # inside a value that has no fields: the rest names union members
        if (isinstance(value, dict) and isinstance(part, str) and part not in value
                and index < len(parts) - 1 and part in value.values()):
            continue  # a tag: the value of the union's discriminator, not a field
        kept.append(part)
        value = _child(value, part)
    return field_name(kept) or (where if where in ("body", None) else str(where)) or "body"


_UNKNOWN = object()


def _child(value: Any, part: Any) -> Any:
    """The value at `part` of `value`, or _UNKNOWN (not there: a missing field)."""
    if isinstance(value, dict):
        return value.get(part, _UNKNOWN)
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    return _UNKNOWN


def _message(error: Any) -> str:
    """pydantic's message for one error, on one line and not too long."""
    message = " ".join(str(error.get("msg", "invalid")).split()).removeprefix("Value error, ")
    return message if len(message) <= 200 else message[:199] + "…"


def http_problem(status: int, detail: Any) -> tuple[str, str]:
    """(code, one line) for a 4xx that Starlette or FastAPI raised (an unknown route, a method a
    route does not take), rather than one of ours: its own words if it gave any, else what
    the status means here."""
    code = _HTTP_CODES.get(status, f"http_{status}")
    default = _DEFAULT_LINES.get(status)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = f"HTTP {status}"
    if isinstance(detail, str) and detail and detail != phrase:
        return code, _quote(detail, 200)
    return code, default or phrase.lower()


_DEFAULT_LINES = {
    404: "no such route or file: the API is under /api, its documentation at /docs",
    405: "this route does not take that method (the Allow header lists those it takes)",
}
