"""What the queue service refuses from a request's head alone, before any body is read.

An ASGI middleware around the whole FastAPI app, so no route can forget it and nothing is
parsed first (FastAPI reads and decodes a body before it runs a route's dependencies: an
unauthenticated 30 MB report used to cost 180 MB of RSS before its 401):

- `/v1/leases...` and every path not named below: a worker's bearer token, else 401.
- `/v1/status`, `/metrics`, `/`: a worker's token, or a client address that
  `queue.status_allow` names, else 403. The address is the socket's peer: uvicorn runs with
  `proxy_headers` off, so no X-Forwarded-For header can choose it.
- `/openapi.json` and the docs pages: open (they describe the API, they hold no data).
- A body over `queue.max_body_bytes` (413): by its Content-Length before a byte of it is
  read; a chunked body is read up to the limit and refused there. A refusal that leaves a
  large or chunked body unread closes the connection, so the rest is never read either.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from harvester.queue.tokens import TokenStore

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

WORKER_KEY = "ccmirror.worker"  # the scope key the worker's name is passed on in
STATUS_PATHS = frozenset({"/v1/status", "/metrics", "/"})
OPEN_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
# The default body limit per leased photo: the largest report item the models accept,
# written as ASCII, is about 1.2 KB (a 1,024-character path, or a 1,000-character error);
# 4 KiB leaves room for escaped non-ASCII error text. Plus 64 KiB for the rest.
BODY_BYTES_PER_ITEM = 4096
BODY_BYTES_BASE = 65536


def body_limit(max_body_bytes: int, max_items: int) -> int:
    """The body limit in force: the setting, or with 0 room for a report of a full lease
    (4,161,536 bytes at the default 1,000 items)."""
    return max_body_bytes or max_items * BODY_BYTES_PER_ITEM + BODY_BYTES_BASE


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """`queue.status_allow` as networks (an address is a /32 or /128); ValueError naming
    the entry that is neither."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"queue.status_allow: {entry!r} is not an IP address or network (CIDR)"
            ) from None
    return tuple(networks)


def peer_allowed(client: tuple[str, int] | None, networks: tuple[Network, ...]) -> bool:
    """Whether the socket's peer lies in one of `networks` (an IPv4 peer reaching an IPv6
    socket, ::ffff:a.b.c.d, counts as a.b.c.d)."""
    if client is None:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class RequestGuard:
    """The middleware; see the module docstring. `tokens` is the service's TokenStore."""

    def __init__(
        self, app: ASGIApp, *, tokens: TokenStore, status_allow: tuple[Network, ...], max_body: int
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.status_allow = status_allow
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        length, chunked = _body_framing(headers)
        unread_is_large = chunked or (length or 0) > self.max_body
        worker = self._worker(headers.get(b"authorization"))
        refusal = self._refusal(scope, worker)
        if refusal is not None:
            await _refuse(send, *refusal, close=unread_is_large)
            return
        if worker is not None:
            scope[WORKER_KEY] = worker
        if length is not None and length > self.max_body:
            await _refuse(send, 413, self._too_large(), close=True)
            return
        if chunked:
            body = await _read_at_most(receive, self.max_body)
            if body is None:
                await _refuse(send, 413, self._too_large(), close=True)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _worker(self, authorization: bytes | None) -> str | None:
        if not authorization:
            return None
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.tokens.worker_for(token.strip())

    def _refusal(self, scope: Scope, worker: str | None) -> tuple[int, str, dict] | None:
        """(status, detail, extra headers) when the head of the request refuses it."""
        path = scope["path"]
        if worker is not None or path in OPEN_PATHS:
            return None
        if path in STATUS_PATHS:
            if peer_allowed(scope.get("client"), self.status_allow):
                return None
            return (
                403,
                "the status is readable only from the addresses queue.status_allow names,"
                " or with a worker's bearer token",
                {},
            )
        return (
            401,
            "a worker's bearer token is required (Authorization: Bearer TOKEN)",
            {"www-authenticate": "Bearer"},
        )

    def _too_large(self) -> str:
        return f"request body over {self.max_body} bytes (queue.max_body_bytes)"


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name (ASGI gives them lower-cased); for a name
    sent twice the first is taken, as the token and framing checks need one value."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        found.setdefault(name, value)
    return found


def _body_framing(headers: dict[bytes, bytes]) -> tuple[int | None, bool]:
    """(Content-Length or None, whether the body is chunked). uvicorn's parser refuses a
    malformed Content-Length first; one that got past it counts as too large."""
    chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
    length = headers.get(b"content-length")
    if length is None or chunked:
        return None, chunked
    return (int(length) if length.strip().isdigit() else 2**63), False


async def _read_at_most(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` bytes (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body read already, then whatever the client sends next
    (a disconnect)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _refuse(
    send: Send, status: int, detail: str, headers: dict | None = None, *, close: bool = False
) -> None:
    body = json.dumps({"detail": detail}).encode()
    head = {"content-type": "application/json", "content-length": str(len(body)), **(headers or {})}
    if close:  # the body stays unread: uvicorn would otherwise read and drop all of it
        head["connection"] = "close"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(name.encode(), value.encode()) for name, value in head.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})
