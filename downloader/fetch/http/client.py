"""The HTTP client the fetcher and the S3 push use: `HttpClient.get`, `HttpClient.put` and
their pool of keep-alive connections.

A GET checks each hop's host against the allow-list, takes an idle connection to the host or
connects (the name resolved and every address checked once, the checked address connected
to), follows redirects up to a limit, and enforces the total and read timeouts with one sweep
over busy connections. A PUT sends a body held in memory to a URL the caller chose (the
settings' storage endpoint, not a catalog URL: a client made with `allow_hosts=None` connects
wherever its caller asks) and follows no redirect. One connection's exchange is
downloader/fetch/http/connection.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Mapping
from urllib.parse import urljoin

from ccmirror_common.hosts import HostPolicy, HostRefused
from downloader.fetch.http.connection import Connection, Response
from downloader.fetch.http.target import (
    BadUrl,
    ConnectFailed,
    HostNotAllowed,
    RequestTimeout,
    Target,
    TooManyRedirects,
)

REDIRECTS = frozenset({301, 302, 303, 307, 308})
IDLE_SECONDS = 15.0  # an idle connection older than this is closed rather than reused


class HttpClient:
    """A connection pool and the GET call. Use as an async context manager."""

    def __init__(
        self,
        *,
        user_agent: str,
        connect_timeout: float,
        read_timeout: float,
        total_timeout: float,
        allow_hosts: HostPolicy | None,
        max_idle_per_host: int = 64,
    ) -> None:
        """`allow_hosts=None`: no allow-list, for a client that only ever requests URLs of
        its own settings (the S3 push's endpoint)."""
        self.allow_hosts = allow_hosts
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.max_idle_per_host = max_idle_per_host
        self.loop = asyncio.get_running_loop()
        self._user_agent = f"User-Agent: {user_agent}\r\n"
        self._fixed = (
            f"{self._user_agent}Accept: */*\r\nAccept-Encoding: identity\r\n\r\n"
        ).encode()
        self._idle: dict[tuple, list[Connection]] = {}
        self.busy: set[Connection] = set()
        self._ssl: ssl.SSLContext | None = None
        # One sweep finds timed-out exchanges: cheaper than a timer armed per request.
        self._tick = min(1.0, max(0.02, min(read_timeout, total_timeout) / 10))
        self._sweeper: asyncio.Task | None = None

    async def __aenter__(self) -> HttpClient:
        self._sweeper = asyncio.create_task(self._sweep())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for conns in self._idle.values():
            for conn in conns:
                conn.abandon()
        self._idle.clear()
        for conn in list(self.busy):
            conn.abandon()

    async def get(
        self,
        url: str,
        *,
        max_redirects: int,
        stop_at: Callable[[str], bool] | None = None,
    ) -> Response:
        """The answer to GET `url` after redirects. A redirect whose target `stop_at` accepts
        is returned unfollowed, with `location` set."""
        deadline = self.loop.time() + self.total_timeout
        for hop in range(max_redirects + 1):
            target = Target(url, self._fixed)
            if not self._allowed(target.host):  # a cached answer per host
                why = f" (redirected to {url[:100]})" if hop else ""
                raise HostNotAllowed(f"host not allowed: {target.host[:100]}{why}")
            response = await self._request(target, deadline)
            location = response.headers.get("location") if response.status in REDIRECTS else None
            if not location:
                return response
            response.discard()
            url = urljoin(url, location.strip())
            if stop_at is not None and stop_at(url):
                response.location = url
                return response
        raise TooManyRedirects(f"more than {max_redirects} redirects")

    async def put(self, url: str, headers: Mapping[str, str], body: bytes) -> Response:
        """The answer to PUT `body` at `url` with `headers` (Host and Content-Length are
        the client's own); a redirect is returned as it is, never followed."""
        lines = [self._user_agent]
        for name, value in headers.items():
            if name.lower() not in ("host", "content-length"):
                lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        head = "".join(lines)
        breaks = len(lines) + 1  # one per line and the empty line: no more in a name or value
        if head.count("\n") != breaks or head.count("\r") != breaks:
            raise BadUrl(f"a header name or value holds a line break: {url[:100]}")
        target = Target(url, head.encode("latin-1"), "PUT")
        if not self._allowed(target.host):
            raise HostNotAllowed(f"host not allowed: {target.host[:100]}")
        return await self._request(target, self.loop.time() + self.total_timeout, body)

    def _allowed(self, host: str) -> bool:
        return self.allow_hosts is None or self.allow_hosts.allows_host(host)

    async def _request(self, target: Target, deadline: float, body: bytes = b"") -> Response:
        while True:
            conn = self._take_idle(target.key)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(target, deadline)
            try:
                return await conn.send(target, deadline, body)
            except ConnectFailed:
                if not reused:
                    raise
                # The server closed the idle connection as we wrote to it: a fresh one.

    def _take_idle(self, key: tuple) -> Connection | None:
        conns = self._idle.get(key)
        now = self.loop.time()
        while conns:
            conn = conns.pop()
            if (
                not conn.closed
                and not conn.transport.is_closing()  # type: ignore[union-attr]
                and now - conn.idle_since < IDLE_SECONDS
            ):
                return conn
            conn.abandon()
        return None

    async def _connect(self, target: Target, deadline: float) -> Connection:
        timeout = min(self.connect_timeout, deadline - self.loop.time())
        context = None
        if target.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(max(timeout, 0)):
                # Resolved and checked once; the checked address is what we connect to.
                addresses = await self._resolve(target)
                error = OSError(f"no address for {target.host}")
                for address in addresses:
                    try:
                        _, conn = await self.loop.create_connection(
                            lambda: Connection(self, target.key),
                            address,
                            target.port,
                            ssl=context,
                            server_hostname=target.host if context else None,
                        )
                        return conn
                    except OSError as e:  # the next address, as create_connection would
                        error = e
                raise error
        except TimeoutError:
            raise RequestTimeout("connect") from None
        except HostRefused as e:
            raise HostNotAllowed(str(e)) from None
        except OSError as e:
            raise ConnectFailed(f"{type(e).__name__}: {e}") from None

    async def _resolve(self, target: Target) -> list[str]:
        if self.allow_hosts is not None:
            return await self.allow_hosts.resolve(self.loop, target.host, target.port)
        infos = await self.loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    def put_idle(self, conn: Connection) -> None:
        conns = self._idle.setdefault(conn.key, [])
        if len(conns) >= self.max_idle_per_host:
            conn.abandon()
            return
        conn.idle_since = self.loop.time()
        conns.append(conn)

    def forget(self, conn: Connection) -> None:
        self.busy.discard(conn)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            now = self.loop.time()
            for conn in list(self.busy):
                conn.check_time(now)
