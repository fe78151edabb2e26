"""The HTTP client's PUT (the S3 push's sender) against a loopback server (real sockets): the
body arrives whole after its head, keep-alive connections carry the next PUTs, a connection
the server closed while idle is replaced, a redirect is not followed, and a header that would
split the request is refused before anything is sent."""

from __future__ import annotations

import asyncio

import pytest

from downloader.fetch.http import BadUrl, HttpClient

BODY = bytes(range(256)) * 50  # 12,800 bytes: a small photo


class Store:
    """Reads each PUT's head and body; answers by path. Keeps what it received."""

    def __init__(self) -> None:
        self.connections = 0
        self.received: list[tuple[bytes, bytes]] = []  # (head, body)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = dict(
                    line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
                )
                body = await reader.readexactly(int(fields[b"Content-Length"]))
                self.received.append((head, body))
                path = head.split(b" ", 2)[1]
                if path == b"/moved":
                    writer.write(
                        b"HTTP/1.1 307 Moved\r\nLocation: /b/k\r\nContent-Length: 0\r\n\r\n"
                    )
                elif path == b"/refused":
                    said = b"<Error><Code>AccessDenied</Code></Error>"
                    writer.write(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n" % len(said)
                    )
                    writer.write(said)
                else:
                    writer.write(b'HTTP/1.1 200 OK\r\nETag: "x"\r\nContent-Length: 0\r\n\r\n')
                await writer.drain()
                if path == b"/then-close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def run(test):
    """Run `test(client, base_url, store)` with a client that has no allow-list, as the push's."""

    async def main():
        store = Store()
        server = await asyncio.start_server(store.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with HttpClient(
                user_agent="test",
                connect_timeout=2,
                read_timeout=2,
                total_timeout=5,
                allow_hosts=None,
            ) as client:
                return await test(client, f"http://127.0.0.1:{port}", store)
        finally:
            server.close()

    return asyncio.run(main())


async def answer_of(client: HttpClient, url: str, body: bytes = BODY) -> tuple[int, bytes]:
    response = await client.put(url, {"x-amz-checksum-sha256": "abc=", "Content-Length": "1"}, body)
    parts: list[bytes] = []
    await response.read(parts.append)
    return response.status, b"".join(parts)


def test_the_body_arrives_whole_with_its_length_and_headers():
    async def test(client, base, store):
        assert await answer_of(client, base + "/b/images/00/01/256.jpg") == (200, b"")
        return store.received

    [(head, body)] = run(test)
    assert body == BODY
    assert head.startswith(b"PUT /b/images/00/01/256.jpg HTTP/1.1\r\nHost: 127.0.0.1:")
    # The client's own Content-Length, not the caller's.
    assert b"Content-Length: 12800\r\n" in head and b"Content-Length: 1\r\n" not in head
    assert b"x-amz-checksum-sha256: abc=\r\n" in head


def test_puts_in_a_row_share_one_kept_alive_connection():
    async def test(client, base, store):
        for n in range(20):
            assert (await answer_of(client, f"{base}/b/{n}.jpg", BODY[n:]))[0] == 200
        return store

    store = run(test)
    assert store.connections == 1
    assert [body for _, body in store.received] == [BODY[n:] for n in range(20)]


def test_a_connection_the_store_closed_is_replaced():
    async def test(client, base, store):
        # Whether the close has arrived when the next PUT starts or not (then the write
        # meets a closed socket before any answer), each PUT lands once, on a new connection.
        for _ in range(3):
            assert (await answer_of(client, f"{base}/then-close"))[0] == 200
        return store

    store = run(test)
    assert store.connections == 3 and len(store.received) == 3


def test_a_refusal_comes_back_with_its_body_and_a_redirect_is_not_followed():
    async def test(client, base, store):
        refused = await answer_of(client, base + "/refused")
        moved = await client.put(base + "/moved", {}, BODY)
        moved.discard()
        return refused, moved.status, len(store.received)

    refused, moved, received = run(test)
    assert refused == (403, b"<Error><Code>AccessDenied</Code></Error>")
    assert moved == 307 and received == 2  # the redirect's target was never PUT


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\rb"])
def test_a_header_that_would_split_the_request_is_refused_before_sending(value):
    async def test(client, base, store):
        with pytest.raises(BadUrl, match="line break"):
            await client.put(base + "/b/k", {"x-amz-meta-note": value}, BODY)
        return store

    store = run(test)
    assert store.connections == 0 and store.received == []
