"""What the queue service refuses cheaply (issue 17): bodies over the limit and requests
without a token before any body is read, a worker's leases over its cap, and the status
from addresses the settings do not name. A real `harvester serve` on a real MariaDB, over
raw sockets where the test must see what happens before a body is sent."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from downloader.queue_client import QueueClient, QueueUnavailable
from harvester.db import connect
from harvester.search.licenses import License, store_licenses
from lab.mission.catalog_images import fill_images
from lab.processes.queue import RunningQueue, spawn

PHOTOS = 20
CC_BY = License(4, "Attribution License", "https://creativecommons.org/licenses/by/2.0/")
MB = 2**20


@pytest.fixture
def start_queue(db_url: str, tmp_path: Path) -> Iterator[Callable[..., RunningQueue]]:
    conn = connect(db_url)
    store_licenses(conn, [CC_BY])
    fill_images(conn, PHOTOS)
    conn.close()
    started: list[RunningQueue] = []

    def start(**settings: str) -> RunningQueue:
        started.append(spawn(db_url, tmp_path / "queue", ["dl-1", "dl-2"], settings=settings))
        return started[-1]

    yield start
    for queue in started:
        queue.stop()


def port_of(queue: RunningQueue) -> int:
    return int(queue.url.rsplit(":", 1)[1])


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: queue", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer_of(sock: socket.socket) -> tuple[int, http.client.HTTPMessage, str]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.headers, response.read().decode()


def answer_to_head_alone(
    queue: RunningQueue, head: bytes
) -> tuple[int, http.client.HTTPMessage, str]:
    """Send a request's head and none of its body: only a service that answers from the
    head alone answers at all (the socket's timeout fails the test otherwise)."""
    with socket.create_connection(("127.0.0.1", port_of(queue)), timeout=10) as sock:
        sock.sendall(head)
        return answer_of(sock)


def push_body(
    queue: RunningQueue, head: bytes, chunks: Iterator[bytes]
) -> tuple[int, http.client.HTTPMessage, str, int]:
    """Send the head, then the whole body unless the service closes the connection first;
    then read its answer. Returns (status, headers, body, bytes of the body sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port_of(queue)), timeout=30) as sock:
        sock.sendall(head)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # closed after its answer, which is read below
            sent += len(chunk)
        sock.settimeout(300)  # a service that decodes the body first takes its time
        return (*answer_of(sock), sent)


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {
        k: int(v.split()[0])
        for k, v in (line.split(":", 1) for line in lines)
        if k in ("VmRSS", "VmHWM")
    }


def reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux 4.0+, as root)


def big_report(size: int) -> Iterator[bytes]:
    """A JSON report of exactly `size` bytes in 64 KiB chunks: tens of thousands of small
    items, the kind of body that costs most once decoded."""
    item = b'{"id": 123456, "result": "retry", "error": "HTTP 503"},'
    chunk = item * (65536 // len(item))
    head, tail = b'{"items": [', b'{"id": 1, "result": "retry"}]}'
    yield head
    left = size - len(head) - len(tail)
    for _ in range(left // len(chunk)):
        yield chunk
    yield b" " * (left % len(chunk)) + tail  # white space between items is valid JSON


def test_an_unauthenticated_30_mb_report_gets_401_and_costs_no_memory(start_queue, sql):
    queue = start_queue()
    pid = queue.process.pid
    size = 30 * MB
    head = request_head(
        "POST",
        "/v1/leases/1/complete",
        {"Content-Type": "application/json", "Content-Length": str(size)},
    )
    # A first refusal, so that whatever the first request allocates is in the baseline.
    assert answer_to_head_alone(queue, request_head("POST", "/v1/leases", {}))[0] == 401
    before = memory_kb(pid)
    reset_peak_rss(pid)
    status, headers, body, sent = push_body(queue, head, big_report(size))
    after = memory_kb(pid)
    grew_mb = (after["VmHWM"] - before["VmRSS"]) / 1024
    assert grew_mb < 4, f"RSS peaked {grew_mb:.1f} MB above its start ({sent:,} bytes sent)"
    assert status == 401 and "bearer token" in body, body
    # The connection is closed rather than drained: the rest of the 30 MB is never read.
    assert headers["WWW-Authenticate"] == "Bearer" and headers["connection"] == "close"
    assert sql("SELECT COUNT(*) FROM leases") == [(0,)]


def test_a_body_over_the_limit_is_refused_before_it_is_read(start_queue, sql):
    queue = start_queue(max_body_bytes="100000")
    lease = queue.post("/v1/leases", "dl-1", {"max_items": 3}).json()
    path = f"/v1/leases/{lease['lease_id']}/complete"
    auth = queue.headers("dl-1")
    before = sql("SELECT id, state, lease_id FROM images ORDER BY id")

    # Over the limit by its Content-Length: 413 with no byte of the body sent.
    head = request_head("POST", path, {**auth, "Content-Length": "100001"})
    status, headers, body = answer_to_head_alone(queue, head)
    assert status == 413 and "over 100000 bytes" in body and headers["connection"] == "close"
    # Chunked, no length given: read up to the limit, refused there, the rest never read.
    head = request_head("POST", path, {**auth, "Transfer-Encoding": "chunked"})
    chunks = (b"%x\r\n%s\r\n" % (len(c), c) for c in big_report(10 * MB))
    status, headers, body, sent = push_body(queue, head, chunks)
    assert status == 413 and "queue.max_body_bytes" in body, body
    assert sql("SELECT id, state, lease_id FROM images ORDER BY id") == before
    # A report under the limit, chunked or not, is taken as before.
    report = {"items": [{"id": i["id"], "result": "retry"} for i in lease["items"]]}
    encoded = json.dumps(report).encode()
    json_type = {"Content-Type": "application/json"}
    head = request_head("POST", path, {**auth, **json_type, "Transfer-Encoding": "chunked"})
    chunked = [b"%x\r\n%s\r\n" % (len(encoded[:9]), encoded[:9])]
    chunked += [b"%x\r\n%s\r\n" % (len(encoded[9:]), encoded[9:]), b"0\r\n\r\n"]
    status, _, body, _ = push_body(queue, head, iter(chunked))
    assert status == 200 and len(json.loads(body)["requeued"]) == 3, body
    assert sql("SELECT COUNT(*) FROM images WHERE attempts = 1") == [(3,)]


def test_the_default_limit_takes_a_report_of_a_full_lease_with_long_texts(start_queue):
    queue = start_queue()  # max_items 1000, max_body_bytes 0: 1000 x 4 KiB + 64 KiB
    lease = queue.post("/v1/leases", "dl-1", {"max_items": 1}).json()
    long_path, long_error = "p/" * 512, "é" * 1000  # JSON escapes each é in 6 bytes
    items = [
        {
            "id": 10_000 + n,
            "result": "stored",
            "sha256": "ab" * 32,
            "bytes": 2**50,
            "path": long_path,
        }
        if n % 2
        else {"id": 10_000 + n, "result": "retry", "error": long_error}
        for n in range(1000)
    ]
    body = json.dumps({"items": items}).encode()
    assert len(body) > 3 * MB
    answer = queue.post(f"/v1/leases/{lease['lease_id']}/complete", "dl-1", {"items": items})
    # Read and judged: the photos are not of the lease (400), not refused for its size.
    assert answer.status_code == 400 and "not in lease" in answer.text, answer.text[:300]


def test_a_worker_at_its_open_lease_cap_waits_and_nothing_is_leased(start_queue, sql):
    queue = start_queue(max_open_leases="2")
    first = queue.post("/v1/leases", "dl-1", {"max_items": 2}).json()
    queue.post("/v1/leases", "dl-1", {"max_items": 2})
    leased_before = sql("SELECT COUNT(*) FROM images WHERE lease_id <> 0")
    refused = queue.post("/v1/leases", "dl-1", {"max_items": 2})
    assert refused.status_code == 429, refused.text
    assert "holds 2 open leases (queue.max_open_leases is 2)" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    assert sql("SELECT COUNT(*) FROM leases WHERE worker = 'dl-1'") == [(2,)]
    assert sql("SELECT COUNT(*) FROM images WHERE lease_id <> 0") == leased_before == [(4,)]
    # The downloader's client takes it as "wait and ask again", not as a refusal.
    client = QueueClient(queue.url, queue.tokens["dl-1"])
    with pytest.raises(QueueUnavailable) as waiting:
        client.lease(2)
    assert 1 <= waiting.value.retry_after <= 30 and "HTTP 429" in str(waiting.value)
    # Another worker is not held back; once dl-1 reports a lease it may take another.
    assert len(queue.post("/v1/leases", "dl-2", {"max_items": 2}).json()["items"]) == 2
    report = [{"id": item["id"], "result": "retry"} for item in first["items"]]
    done = client.complete(first["lease_id"], report)
    assert len(done["requeued"]) == 2
    assert len(client.lease(2).items) == 2
    client.close()


def get_from(
    queue: RunningQueue, source: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """GET `path` from the source address `source` (all of 127/8 is this machine)."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", port_of(queue), timeout=30, source_address=(source, 0)
    )
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_status_is_readable_without_a_token_only_from_allowed_addresses(start_queue):
    queue = start_queue(status_allow="127.0.0.1/32")
    for path in ("/v1/status", "/metrics", "/"):
        assert get_from(queue, "127.0.0.1", path)[0] == 200, path
        status, body = get_from(queue, "127.0.0.2", path)
        assert status == 403 and "queue.status_allow" in body, (path, body)
        # A forwarded-for header names no client: the socket's peer does.
        spoofed = {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}
        assert get_from(queue, "127.0.0.2", path, spoofed)[0] == 403, path
        assert get_from(queue, "127.0.0.1", path, {"X-Forwarded-For": "192.0.2.9"})[0] == 200
        # A worker's token is enough from anywhere; a made-up one is not.
        assert get_from(queue, "127.0.0.2", path, queue.headers("dl-1"))[0] == 200, path
        bogus = {"Authorization": "Bearer ccmq_made-up"}
        assert get_from(queue, "127.0.0.2", path, bogus)[0] == 403, path
    assert '"images"' in get_from(queue, "127.0.0.2", "/v1/status", queue.headers("dl-2"))[1]
    assert get_from(queue, "127.0.0.2", "/openapi.json")[0] == 200  # describes, holds no data


def test_serve_refuses_a_status_allow_entry_that_is_no_address(start_queue):
    queue = start_queue()
    bad = {**queue.env, "CCMIRROR_QUEUE_STATUS_ALLOW": "127.0.0.1,10.0.0.300/24"}
    result = RunningQueue(queue.process, queue.url, bad, {}).harvester("serve")
    assert result.returncode == 1
    assert "'10.0.0.300/24' is not an IP address or network" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
