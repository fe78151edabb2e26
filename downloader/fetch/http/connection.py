"""One keep-alive HTTP/1.1 connection as an asyncio Protocol, and the `Response` it reads.

It sends one request at a time (a GET, or a PUT with its body) and parses the answer as it
arrives: the head, then a `Content-Length`, chunked or read-until-close body handed to the
reader's sink from `data_received` itself. An exchange ends complete (the connection goes
back to its pool), or broken with one error (the connection is closed, never reused). The
pool, the connect and the redirects are the client's (downloader/fetch/http/client.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from downloader.fetch.http.target import ConnectFailed, Malformed, RequestTimeout, Target, Truncated

MAX_HEAD_BYTES = 64 * 1024

_IDLE, _HEAD, _BODY, _DONE, _BROKEN = range(5)
_LENGTH, _CHUNKED, _UNTIL_CLOSE = range(3)
_SIZE, _DATA, _DATA_END, _TRAILER = range(4)

Sink = Callable[[bytes], None]


class Response:
    """A status line and headers; the body is read with `read(sink)` or given up with
    `discard()` (exactly one of them, once)."""

    __slots__ = ("status", "headers", "url", "content_length", "location", "_conn")

    def __init__(self, status: int, headers: dict[str, str], content_length: int | None) -> None:
        self.status = status
        self.headers = headers  # lower-case names; repeated fields joined with ", "
        self.content_length = content_length
        self.url = ""
        self.location: str | None = None  # a redirect's absolute target, when not followed
        self._conn: Connection | None = None

    @property
    def content_type(self) -> str:
        """The media type alone, lower case ("" when absent)."""
        value = self.headers.get("content-type", "")
        return value.split(";", 1)[0].strip().lower()

    async def read(self, sink: Sink) -> None:
        conn = self._conn
        if conn is None:
            raise RuntimeError("the body was already read or discarded")
        self._conn = None
        await conn.read_body(sink)

    def discard(self) -> None:
        """Give the body up: the connection goes back to the pool if the body is already in,
        else it is closed (cheaper than reading an unwanted body of unknown size)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.discard_body()


class Pool(Protocol):
    """What a connection needs of the client that owns it (an HttpClient)."""

    loop: asyncio.AbstractEventLoop
    read_timeout: float
    busy: set[Connection]  # connections in an exchange: the client's timeout sweep checks them

    def put_idle(self, conn: Connection) -> None: ...

    def forget(self, conn: Connection) -> None: ...


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time (no pipelining)."""

    def __init__(self, client: Pool, key: tuple) -> None:
        self.client = client
        self.key = key
        self.loop = client.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.last_activity = 0.0
        self.deadline = 0.0
        self.received = 0  # bytes of the current answer, head included
        self.keep_alive = False
        self._state = _IDLE
        self._head = bytearray()
        self._head_waiter: asyncio.Future | None = None
        self._body_waiter: asyncio.Future | None = None
        self._response: Response | None = None
        self._sink: Sink | None = None
        self._pending: list[bytes] = []  # body bytes in before the reader gave a sink
        self._error: BaseException | None = None
        self._mode = _LENGTH
        self._remaining = 0
        self._chunk_phase = _SIZE
        self._chunk_line = bytearray()

    # ------------------------------------------------------------------ transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        self.received += len(data)
        state = self._state
        if state == _BODY:
            self._body_data(data)
        elif state == _HEAD:
            self._head_data(data)
        elif state != _BROKEN:
            # Bytes nobody asked for (past an announced length, after the answer): the
            # connection's framing is lost, so it is never reused.
            self._break(Malformed("bytes after the end of the response"))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client.forget(self)
        state = self._state
        if state == _BODY and self._mode == _UNTIL_CLOSE and exc is None:
            self.keep_alive = False
            self._complete()
        elif state == _HEAD:
            if self.received == 0:
                why = f"{type(exc).__name__}: {exc}" if exc else "closed before any answer"
                self._break(ConnectFailed(why), abort=False)
            else:
                self._break(Truncated("connection closed inside the response head"), abort=False)
        elif state == _BODY:
            if self._mode == _LENGTH:
                got = self._response.content_length - self._remaining  # type: ignore[union-attr]
                why = f"{got:,} of {self._response.content_length:,} bytes"  # type: ignore[union-attr]
            else:
                why = "chunked body cut short"
            if exc is not None:
                why += f" ({type(exc).__name__})"
            self._break(Truncated(why), abort=False)

    # ------------------------------------------------------------------ one exchange
    async def send(self, target: Target, deadline: float, body: bytes = b"") -> Response:
        """Send the request (`body` after its head, a PUT's) and wait for the answer's head."""
        self._state = _HEAD
        self.deadline = deadline
        self.last_activity = self.loop.time()
        self.received = 0
        self._error = None
        waiter = self._head_waiter = self.loop.create_future()
        self.client.busy.add(self)
        try:
            # One write: a small photo's head and body leave in one send call.
            request = target.request + body if body else target.request
            self.transport.write(request)  # type: ignore[union-attr]
        except (OSError, RuntimeError) as e:  # closed under us: a fresh connection is tried
            self._head_waiter = None
            self._break(None)
            raise ConnectFailed(f"{type(e).__name__}: {e}") from None
        try:
            response = await waiter
        except asyncio.CancelledError:
            self._break(None)
            raise
        finally:
            self._head_waiter = None
        response.url = target.url
        return response

    async def read_body(self, sink: Sink) -> None:
        if self._error is not None:
            raise self._error
        pending, self._pending = self._pending, []
        try:
            for data in pending:
                sink(data)
        except BaseException:
            self._break(None)  # the rest of the body is unread: the connection is unusable
            raise
        if self._state == _DONE:
            self._release()
            return
        if self._state != _BODY:
            raise self._error or Malformed("no body to read")
        self._sink = sink
        waiter = self._body_waiter = self.loop.create_future()
        try:
            await waiter
        except asyncio.CancelledError:
            self._break(None)
            raise
        finally:
            self._body_waiter = None
            self._sink = None

    def discard_body(self) -> None:
        self._pending = []
        if self._state == _DONE:
            self._release()
        else:
            self._break(None)

    # ------------------------------------------------------------------ parsing
    def _head_data(self, data: bytes) -> None:
        head = self._head
        if not head and (end := data.find(b"\r\n\r\n")) >= 0:
            raw, rest = data[:end], data[end + 4 :]  # the usual case: one copy of the body
        else:
            start = max(len(head) - 3, 0)
            head += data
            end = head.find(b"\r\n\r\n", start)
            if end < 0:
                if len(head) > MAX_HEAD_BYTES:
                    self._break(Malformed(f"response head over {MAX_HEAD_BYTES:,} bytes"))
                return
            raw, rest = bytes(head[:end]), bytes(head[end + 4 :])
            head.clear()
        try:
            response = self._parse_head(raw)
        except Malformed as e:
            self._break(e)
            return
        if response is None:  # an interim 1xx answer: the real one follows
            if rest:
                self._head_data(rest)
            return
        self._response = response
        response._conn = self
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        if self._state == _BODY:
            if self._mode == _LENGTH and self._remaining == 0:
                self._complete()
            elif rest:
                self._body_data(rest)
        elif rest:
            self._break(Malformed("bytes after a response without a body"))

    def _parse_head(self, raw: bytes) -> Response | None:
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise Malformed(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
        status = int(code)
        if 100 <= status < 200 and status != 101:
            return None
        headers: dict[str, str] = {}
        last = ""
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and last:  # obsolete line folding
                headers[last] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise Malformed(f"bad header line: {line[:60]!r}")
            last = name.lower()
            value = value.strip()
            headers[last] = f"{headers[last]}, {value}" if last in headers else value
        length = _content_length(headers.get("content-length"))
        connection = headers.get("connection", "").lower()
        self.keep_alive = (
            "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        )
        response = Response(status, headers, length)
        if status in (204, 304) or status == 101:
            self._state = _DONE if status != 101 else _BROKEN
            self.keep_alive = self.keep_alive and status != 101
            return response
        coding = headers.get("transfer-encoding")
        self._state = _BODY
        if coding is not None:
            response.content_length = None
            if coding.lower().rstrip().endswith("chunked"):
                self._mode = _CHUNKED
                self._chunk_phase = _SIZE
                self._chunk_line.clear()
            else:
                self._mode = _UNTIL_CLOSE
                self.keep_alive = False
        elif length is not None:
            self._mode = _LENGTH
            self._remaining = length
        else:
            self._mode = _UNTIL_CLOSE
            self.keep_alive = False
        return response

    def _body_data(self, data: bytes) -> None:
        mode = self._mode
        if mode == _LENGTH:
            remaining = self._remaining - len(data)
            if remaining < 0:
                announced = self._response.content_length  # type: ignore[union-attr]
                self._break(Malformed(f"more than the {announced:,} bytes announced"))
                return
            self._remaining = remaining
            if self._deliver(data) and remaining == 0:
                self._complete()
        elif mode == _CHUNKED:
            self._chunked(data)
        else:
            self._deliver(data)

    def _chunked(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._chunk_phase == _DATA:
                take = min(self._remaining, end - pos)
                if not self._deliver(data[pos : pos + take] if take < end - pos or pos else data):
                    return
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._chunk_phase = _DATA_END
                continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                self._chunk_line += data[pos:]
                if len(self._chunk_line) > 4096:
                    self._break(Malformed("chunk header over 4 KB"))
                return
            line = bytes(self._chunk_line + data[pos:newline]).rstrip(b"\r")
            self._chunk_line.clear()
            pos = newline + 1
            if not self._chunk_line_done(line, pos < end):
                return

    def _chunk_line_done(self, line: bytes, more: bool) -> bool:
        phase = self._chunk_phase
        if phase == _DATA_END:
            if line:
                self._break(Malformed("chunk data longer than its size"))
                return False
            self._chunk_phase = _SIZE
        elif phase == _SIZE:
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._break(Malformed(f"bad chunk size {line[:20]!r}"))
                return False
            if size < 0:
                self._break(Malformed(f"bad chunk size {line[:20]!r}"))
                return False
            self._chunk_phase = _DATA if size else _TRAILER
            self._remaining = size
        elif not line:  # the empty line after the trailers: the end
            if more:
                self._break(Malformed("bytes after the end of the chunked body"))
                return False
            self._complete()
            return False
        return True

    def _deliver(self, data: bytes) -> bool:
        """Hand body bytes on; False when the sink refused them (the exchange is over)."""
        sink = self._sink
        if sink is None:
            self._pending.append(data)
            return True
        try:
            sink(data)
        except Exception as e:  # the reader's verdict (too large, not an image) or its I/O
            self._break(e)
            return False
        return True

    # ------------------------------------------------------------------ endings
    def _complete(self) -> None:
        self._state = _DONE
        self.client.busy.discard(self)
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
            self._release()

    def _release(self) -> None:
        self._response = None
        if self.keep_alive and not self.closed and self._state == _DONE:
            self._state = _IDLE
            self.client.put_idle(self)
        else:
            self._break(None)

    def _break(self, error: BaseException | None, abort: bool = True) -> None:
        """End the exchange with `error` (None: quietly) and close the connection."""
        self._state = _BROKEN
        self._error = error
        self._response = None
        self.client.busy.discard(self)
        if abort and not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
        if error is not None:
            for waiter in (self._head_waiter, self._body_waiter):
                if waiter is not None and not waiter.done():
                    waiter.set_exception(error)

    def abandon(self) -> None:
        """Close the connection with nothing to report: an idle one not to be reused, or the
        client closing."""
        self._break(None)

    def check_time(self, now: float) -> None:
        """Break the exchange when it has run past its deadline or been silent too long."""
        if self._state not in (_HEAD, _BODY):
            return
        if now > self.deadline:
            self._break(RequestTimeout("total"))
        elif now - self.last_activity > self.client.read_timeout:
            self._break(RequestTimeout("read"))


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1:
        raise Malformed(f"conflicting Content-Length: {value[:60]!r}")
    (text,) = values
    if not text.isdigit():
        raise Malformed(f"bad Content-Length: {text[:60]!r}")
    return int(text)
