"""The fetcher's HTTP client against a scripted server on loopback (real sockets): the framings
the image host does not play (complete chunked bodies, interim answers, read-until-close,
HTTP/1.0), connection reuse, and the failures each framing can end in."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from ccmirror_common.hosts import HostPolicy
from downloader.fetch.http import (
    HttpClient,
    Malformed,
    RequestTimeout,
    TooManyRedirects,
    Truncated,
)

BODY = bytes(range(256)) * 40
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"1000;ext=1\r\n"
    + BODY[:4096]
    + b"\r\n"
    + f"{len(BODY) - 4096:x}\r\n".encode()
    + BODY[4096:]
    + b"\r\n0\r\nX-Trailer: yes\r\n\r\n"
)
SIMPLE = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
# path -> (answer bytes, close the connection after it)
ANSWERS = {
    "/chunked": (CHUNKED, False),
    "/simple": (SIMPLE, False),
    "/interim": (b"HTTP/1.1 100 Continue\r\n\r\n" + SIMPLE, False),
    "/http10": (b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\n\r\n" + BODY, True),
    "/then-close": (SIMPLE, True),
    "/too-long": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + BODY[:50], False),
    "/chunk-cut": (CHUNKED[: len(CHUNKED) // 2], True),
    "/redirect": (b"HTTP/1.1 302 Found\r\nLocation: simple\r\nContent-Length: 0\r\n\r\n", False),
    "/loop": (b"HTTP/1.1 301 Moved\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n", False),
    "/silent": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", False),
}


class Script:
    """A loopback server answering each request by its path; counts connections."""

    def __init__(self) -> None:
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                answer, close = ANSWERS[path]
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def run(test):
    """Run `test(client, base_url, script)` against a fresh server and client."""

    async def main():
        script = Script()
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with HttpClient(
                user_agent="test",
                connect_timeout=2,
                read_timeout=0.3,
                total_timeout=5,
                allow_hosts=HostPolicy(["127.0.0.1"]),  # the scripted server's loopback
            ) as client:
                return await test(client, f"http://127.0.0.1:{port}", script)
        finally:
            server.close()

    return asyncio.run(main())


async def body_of(client: HttpClient, url: str, **options) -> tuple[int, bytes]:
    response = await client.get(url, max_redirects=options.pop("max_redirects", 5), **options)
    parts: list[bytes] = []
    await response.read(parts.append)
    return response.status, b"".join(parts)


@pytest.mark.parametrize("path", ["/chunked", "/simple", "/interim", "/http10"])
def test_each_framing_gives_the_whole_body(path):
    async def test(client, base, script):
        return await body_of(client, base + path)

    assert run(test) == (200, BODY)


def test_a_kept_alive_connection_serves_the_next_request():
    async def test(client, base, script):
        for path in ("/chunked", "/simple", "/chunked"):
            assert await body_of(client, base + path) == (200, BODY)
        return script.connections

    assert run(test) == 1


def test_a_connection_the_server_closed_is_replaced():
    async def test(client, base, script):
        for _ in range(3):
            assert await body_of(client, base + "/then-close") == (200, BODY)
            await asyncio.sleep(0.05)  # the close arrives; the idle connection is dropped
        return script.connections

    assert run(test) == 3


def test_relative_redirects_are_followed_and_loops_stop():
    async def test(client, base, script):
        assert await body_of(client, base + "/redirect") == (200, BODY)
        stopped = await client.get(base + "/redirect", max_redirects=5, stop_at=lambda u: True)
        assert (stopped.status, stopped.location) == (302, base + "/simple")
        with pytest.raises(TooManyRedirects, match="more than 3 redirects"):
            await client.get(base + "/loop", max_redirects=3)

    run(test)


@pytest.mark.parametrize(
    "path, error, message",
    [
        ("/too-long", Malformed, "more than the 10 bytes announced"),
        ("/chunk-cut", Truncated, "chunked body cut short"),
        ("/silent", RequestTimeout, "read"),
    ],
)
def test_broken_framings_fail_the_read(path, error, message):
    async def test(client, base, script):
        with pytest.raises(error, match=message):
            await body_of(client, base + path)

    run(test)


def test_a_sink_sees_every_byte_once_and_can_stop_the_read():
    async def test(client, base, script):
        digest = hashlib.sha256()
        response = await client.get(base + "/chunked", max_redirects=0)
        await response.read(digest.update)
        assert digest.hexdigest() == hashlib.sha256(BODY).hexdigest()

        def refuse(data: bytes) -> None:
            raise ValueError("not wanted")

        response = await client.get(base + "/chunked", max_redirects=0)
        with pytest.raises(ValueError, match="not wanted"):
            await response.read(refuse)
        assert await body_of(client, base + "/simple") == (200, BODY)  # the pool recovers

    run(test)
