"""What a server shows the network: which Host names it answers to, which pages may open its
websockets, the security headers on every response, and who a request comes from.

A browser on the operator's machine can be made to send requests to 127.0.0.1 by any web
page, under a name the attacker's DNS points there (DNS rebinding): answering only to known
Host names, and opening websockets only for pages from them, stops that. Every refusal is one
line of JSON naming the header.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The names a server bound to a loopback address answers to by default.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: ... and what `create_app` allows when not told: those, and the name Starlette's TestClient
#: sends (no public DNS resolves a one-label name like it).
DEFAULT_HOSTS = (*LOOPBACK_HOSTS, "testserver")

#: The page loads only its own files and talks only to its own server.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")
#: The API's documentation (api.live.docs) loads Swagger UI and ReDoc from this server too, with no
#: inline script: /docs has the page's policy. ReDoc writes its styles into <style> elements
#: as it renders and runs its search in a worker made from a blob, so /redoc allows both; its
#: scripts are still only the server's own. (ReDoc's sidebar also shows its maker's logo from
#: their CDN: refused, and the image hides itself.)
REDOC_POLICY = PAGE_POLICY.replace(
    "style-src 'self';", "style-src 'self' 'unsafe-inline'; worker-src 'self' blob:;")
#: The paths whose policy is not the page's.
POLICIES = {"/redoc": REDOC_POLICY}

_SAFE_METHODS = (b"GET", b"HEAD", b"OPTIONS")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_hosts(bind_host: str) -> list[str]:
    """The Host names a server bound to `bind_host` answers to unless told more: the bind
    address itself (not a wildcard such as 0.0.0.0, which no client sends), and the loopback
    names when it is a loopback address."""
    hosts = [] if bind_host in ("0.0.0.0", "::", "") else [bind_host.strip("[]").lower()]
    if not hosts or is_loopback(bind_host):
        hosts += [h for h in LOOPBACK_HOSTS if h not in hosts]
    return hosts


def host_name(value: str) -> str:
    """The name in a Host header or an address's authority, without port, lower case:
    `Example.org:8000` -> `example.org`, `[::1]:80` -> `::1`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostAllowList:
    """Host names a server answers to: exact names, `*.example.org` for its subdomains, or
    `*` for any (when a proxy in front checks them already)."""

    def __init__(self, hosts: Iterable[str]) -> None:
        self.hosts = tuple(dict.fromkeys(h.strip().lower().strip("[]") for h in hosts
                                         if h.strip()))
        self.any = "*" in self.hosts
        self.suffixes = tuple(h[1:] for h in self.hosts if h.startswith("*."))

    def allows(self, name: str) -> bool:
        return self.any or name in self.hosts or bool(self.suffixes and name
                                                      and name.endswith(self.suffixes))


class HostGuard:
    """Refuse requests for a Host not allowed (400), websockets opened by a page from another
    origin (refused at the handshake: 403), and state-changing requests a page from another
    origin sends (403)."""

    def __init__(self, app: ASGIApp, allowed: HostAllowList) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.allowed.allows(host_name(host)):
            await self._refuse(scope, receive, send, 400, "invalid_host",
                               f"Host: {host_name(host)[:64]!r} is not a name this server "
                               "answers to (see `gpumarket serve --allowed-host`)", "Host")
            return
        origin = headers.get(b"origin")
        checked = scope["type"] == "websocket" or scope.get("method", "GET").encode() \
            not in _SAFE_METHODS
        if origin is not None and checked and not self._same_site(origin.decode("latin-1")):
            await self._refuse(scope, receive, send, 403, "forbidden",
                               f"Origin: pages from {origin.decode('latin-1')[:80]!r} may not "
                               "act on this server", "Origin")
            return
        await self.app(scope, receive, send)

    def _same_site(self, origin: str) -> bool:
        try:
            name = urlsplit(origin).hostname or ""
        except ValueError:
            return False
        return self.allowed.allows(name.lower())

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str,
                      detail: str, field: str) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with 403.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        await send_json(send, status, {"detail": detail, "code": code, "field": field})


async def send_json(send: Send, status: int, body: dict[str, object],
                    headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})


class SecurityHeaders:
    """Security headers on every HTTP response: a Content-Security-Policy the page satisfies
    (its own scripts and styles, its own server to talk to, no framing), no MIME sniffing, no
    Referer, and `Cache-Control: no-store` on API answers (they carry tokens and live state)."""

    COMMON = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
              (b"x-frame-options", b"DENY"), (b"cross-origin-opener-policy", b"same-origin"),
              (b"cross-origin-resource-policy", b"same-origin"))

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        policy = POLICIES.get(path, PAGE_POLICY)
        extra = [(b"content-security-policy", policy.encode()), *self.COMMON]
        if not path.startswith(("/static/", "/docs-assets/")):
            extra.append((b"cache-control", b"no-store"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", ())}
                message = {**message, "headers": [
                    *message.get("headers", ()),
                    *((name, value) for name, value in extra if name not in names)]}
            await send(message)

        await self.app(scope, receive, with_headers)


def client_address(scope: Scope, trusted_proxies: frozenset[str]) -> str:
    """Who a request comes from, for rate limits: the peer's address, or, when the peer is a
    trusted proxy, the last address in `X-Forwarded-For` that is not one (a client can put
    anything at the start of that header, but not after what its proxy appended)."""
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if peer not in trusted_proxies:
        return peer
    forwarded = [value.decode("latin-1") for name, value in scope.get("headers", ())
                 if name == b"x-forwarded-for"]
    hops = [hop.strip() for line in forwarded for hop in line.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop[:64]
    return peer
