"""A poison photo costs one photo, never a downloader: `downloader run` as a real process
against the real queue service, real storage (sshd + rrsync) and a real image host that
misbehaves byte by byte (a raw socket server: an HTTP library would not put a latin-1 byte
in a header for us).

Each test is something that used to stop a droplet in a crash loop: a Retry-After the parser
choked on, a redirect to a 5,000-character URL whose error the queue refused, a report the
queue refused for one item, a lease whose finishing crashed every time, a full spool disk.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socketserver
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.sims.image_host.server import jpeg_bytes
from tests.conftest import wait_for
from tests.integration import test_downloader
from tests.integration.test_downloader import (
    HELD_BY_A_WORKER,
    Fleet,
    kill_when,
    make_fleet,
    photo_ids,
)

storage = test_downloader.storage  # a real write-only storage per test
pytestmark = test_downloader.pytestmark  # sshd and useradd need root
# The fetcher requests only allowed hosts once the allow-list exists; this host is loopback.
ALLOW = {"CCMIRROR_FETCH_ALLOW_HOSTS": "127.0.0.1"}
LONG = 5000  # characters in a hostile redirect target
_PHOTO = re.compile(rb"^GET /65535/(\d+)_")


class PoisonHost(socketserver.ThreadingTCPServer):
    """Serves a JPEG for /65535/<photo_id>_..., unless the photo has a fault:

    retry_after_b2   503 with `Retry-After: \\xb2` (one raw latin-1 byte: '²', a digit to
                     str.isdigit(), not to float())
    long_placeholder 302 to Flickr's "photo unavailable" image at a 5,000-character URL
    long_redirect    302 to a 5,000-character URL that answers 404
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.faults: dict[int, str] = {}
        self.size = 3000  # bytes per JPEG
        self.requests: Counter[int] = Counter()
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(socketserver.StreamRequestHandler):
    server: PoisonHost

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            data = self.request.recv(65536)
            if not data:
                return
            head += data
        match = _PHOTO.match(head)
        if match is None:  # the long redirect's target, or anything else: not here
            self._send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n")
            return
        photo_id = int(match.group(1))
        self.server.requests[photo_id] += 1
        fault = self.server.faults.get(photo_id)
        if fault == "retry_after_b2":
            self._send(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: \xb2\r\nContent-Length: 0\r\n"
            )
        elif fault in ("long_placeholder", "long_redirect"):
            name = "photo_unavailable" if fault == "long_placeholder" else "elsewhere"
            target = f"/{name}/{'a' * LONG}.png".encode()
            self._send(b"HTTP/1.1 302 Found\r\nLocation: " + target + b"\r\nContent-Length: 0\r\n")
        else:
            body = jpeg_bytes(photo_id, self.server.size)
            self._send(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                + f"Content-Length: {len(body)}\r\n".encode(),
                body,
            )

    def _send(self, head: bytes, body: bytes = b"") -> None:
        with contextlib.suppress(OSError):  # the client may hang up first: its business
            self.request.sendall(head + b"Connection: close\r\n\r\n" + body)


@pytest.fixture
def host() -> Iterator[PoisonHost]:
    server = PoisonHost()
    yield server
    server.stop()


@pytest.fixture
def fleet(db_url, sql, tmp_path, storage, host) -> Iterator[Fleet]:
    yield from _fleet(db_url, sql, tmp_path, storage, host)


def _fleet(db_url, sql, tmp_path, storage, host) -> Iterator[Fleet]:
    for fleet in make_fleet(db_url, sql, tmp_path, storage, host, 24):
        # No fallback: a poison original must be the photo's outcome, not a detour.
        sql("UPDATE images SET fallback_url = image_url")
        yield fleet


def run(fleet: Fleet, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return fleet.run(*args, **(ALLOW | extra))


def states(fleet: Fleet) -> dict[int, str]:
    return dict(fleet.sql("SELECT photo_id, state FROM images"))


def last_errors(fleet: Fleet) -> dict[int, str]:
    return dict(fleet.sql("SELECT photo_id, last_error FROM images"))


def status(fleet: Fleet) -> dict:
    return json.loads(run(fleet, "status", "--json").stdout)


def test_a_retry_after_of_a_latin1_digit_costs_that_photo_a_retry(fleet):
    ids = photo_ids(fleet.sql)
    fleet.host.faults[ids[0]] = "retry_after_b2"
    result = run(fleet, "run", "--once")
    assert result.returncode == 0, result.stderr
    assert states(fleet)[ids[0]] == "pending"  # a `retry`: leased again later
    assert "HTTP 503" in last_errors(fleet)[ids[0]]
    assert [i for i in ids[:12] if states(fleet)[i] == "stored"] == ids[1:12]
    assert fleet.sql("SELECT COUNT(*) FROM leases WHERE state = 'active'") == [(0,)]


def test_a_redirect_to_a_5000_character_url_is_that_photos_outcome(fleet):
    ids = photo_ids(fleet.sql)
    fleet.host.faults |= {ids[0]: "long_placeholder", ids[1]: "long_redirect"}
    result = run(fleet, "run", "--once")
    assert result.returncode == 0, result.stderr
    assert states(fleet)[ids[0]] == "gone" and states(fleet)[ids[1]] == "gone"
    error = last_errors(fleet)[ids[0]]
    assert error.startswith("gone: photo unavailable (redirected to") and len(error) <= 255
    assert "chars)" in error  # cut, saying how long it was
    assert sum(1 for i in ids[:12] if states(fleet)[i] == "stored") == 10
    assert fleet.sql("SELECT COUNT(*) FROM leases WHERE state = 'active'") == [(0,)]


def write_journal(fleet: Fleet, lease: dict, phase: str, results: list[dict]) -> None:
    """A spool as a daemon left it: the lease in `phase`, with these fetch results."""
    directory = fleet.spool / "lease"
    (directory / "files").mkdir(parents=True)
    state = {"lease_id": lease["lease_id"], "expires_at": lease["expires_at"], "phase": phase}
    state |= {"leased_at": "", "manifest": "", "items": lease["items"]}
    (directory / "lease.json").write_text(json.dumps(state))
    (directory / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))


def test_a_report_refused_for_one_item_sends_the_rest(fleet):
    lease = fleet.queue.post("/v1/leases", "dl-1", {"max_items": 4}).json()
    first, second, third, fourth = (item["id"] for item in lease["items"])
    # Pushed, not yet reported: one result a disk flipped into a wrong digest, and one
    # error an older version wrote unbounded, with control bytes.
    write_journal(
        fleet,
        lease,
        "pushed",
        [
            {
                "id": first,
                "result": "stored",
                "sha256": "not-a-digest",
                "bytes": 10,
                "path": "images/00/00/1.jpg",
            },
            {"id": second, "result": "retry", "error": "HTTP 503"},
            {"id": third, "result": "gone", "error": "HTTP 404"},
            {"id": fourth, "result": "retry", "error": "\x1b[31m" + "x" * 1500},
        ],
    )
    result = run(fleet, "run", "--once")  # resumes the lease, reports it, exits
    assert result.returncode == 0, result.stderr
    assert f"refused the report of photo {first}" in result.stderr
    by_id = dict(fleet.sql("SELECT id, state FROM images"))
    assert by_id[third] == "gone"
    assert by_id[second] == by_id[fourth] == by_id[first] == "pending"
    attempts = dict(fleet.sql("SELECT id, attempts FROM images"))
    assert attempts[second] == attempts[fourth] == 1 and attempts[first] == 0
    errors = dict(fleet.sql("SELECT id, last_error FROM images"))
    assert errors[fourth].startswith("retry: \\x1b[31mxxx")
    # The refused photo went back to the queue at once: no worker's lease holds anything;
    # the two retried wait out their backoff under a parking lease.
    assert fleet.sql(HELD_BY_A_WORKER) == [(0,)]
    parked = fleet.sql(
        "SELECT i.id FROM images i JOIN leases l ON l.id = i.lease_id WHERE l.state = 'backoff'"
    )
    assert sorted(row[0] for row in parked) == sorted([second, fourth])
    assert not (fleet.spool / "lease").exists()


def quarantined(fleet: Fleet) -> list[Path]:
    return sorted((fleet.spool / "quarantine").iterdir())


def test_a_lease_that_fails_to_finish_three_times_is_released_and_quarantined(fleet):
    fleet.storage.stop()  # every start hangs in the push: killed there, as by the OOM killer

    def resumes() -> int:
        try:
            return (fleet.spool / "lease" / "starts").read_text().count("\n")
        except FileNotFoundError:
            return 0

    for killed in range(3):
        proc = fleet.start("--once", **ALLOW)
        if killed == 0:
            kill_when(fleet, proc, lambda: fleet.phase() == "fetched", "fetched, pushing")
            lease_id = json.loads((fleet.spool / "lease" / "lease.json").read_text())["lease_id"]
        else:  # a start that resumed the lease noted it before it crashed
            kill_when(fleet, proc, lambda n=killed: resumes() == n, "a resume noted")
    fleet.storage.start()
    result = run(fleet, "run", "--once")
    assert result.returncode == 0, result.stderr
    assert f"lease {lease_id} failed to finish 3 times in a row" in result.stderr
    [kept] = quarantined(fleet)
    assert (kept / "lease.json").exists() and "3 times" in (kept / "why.txt").read_text()
    assert fleet.sql("SELECT state FROM leases WHERE id = %s", lease_id) == [("released",)]
    # ... and the daemon went on with a new lease, which it finished.
    assert len(photo_ids(fleet.sql, "stored")) == 12
    assert fleet.sql("SELECT COUNT(*) FROM images WHERE lease_id <> 0") == [(0,)]
    assert status(fleet)["quarantined"] == 1
    assert "quarantined: 1 lease(s)" in run(fleet, "status").stdout


def test_an_unreadable_journal_is_quarantined_and_the_daemon_goes_on(fleet):
    (fleet.spool / "lease").mkdir(parents=True)
    (fleet.spool / "lease" / "lease.json").write_text('{"lease_id": 7, "items": [{"id"')
    result = run(fleet, "run", "--once")
    assert result.returncode == 0, result.stderr
    assert "cannot read its journal" in result.stderr
    [kept] = quarantined(fleet)
    assert kept.name.startswith("unknown-") and (kept / "lease.json").exists()
    assert len(photo_ids(fleet.sql, "stored")) == 12


@pytest.fixture
def small_spool(tmp_path: Path) -> Iterator[Path]:
    """The spool on a 6 MB tmpfs: a dozen 700 KB photos do not fit."""
    spool = tmp_path / "spool"
    spool.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(spool)], check=True)
    yield spool
    subprocess.run(["umount", "--lazy", str(spool)], check=True)


@pytest.fixture
def fleet_on_small_disk(small_spool, db_url, sql, tmp_path, storage, host) -> Iterator[Fleet]:
    yield from _fleet(db_url, sql, tmp_path, storage, host)


def test_a_full_spool_disk_pushes_and_reports_what_it_has_and_keeps_running(
    fleet_on_small_disk: Fleet,
):
    fleet = fleet_on_small_disk
    fleet.host.size = 700_000
    proc = fleet.start(**ALLOW)  # the daemon itself, not --once: it must stay up
    try:
        wait_for(lambda: "spool" in status(fleet).get("errors", {}), 60, "a spool error")
        # The first lease ends: what fit is stored, the rest is back in the queue.
        wait_for(lambda: fleet.sql("SELECT COUNT(*) FROM leases")[0][0] >= 2, 60, "a new lease")
        first = fleet.sql("SELECT stored, state FROM leases ORDER BY id LIMIT 1")[0]
        assert 1 <= first[0] < 12 and first[1] != "active", first
        assert proc.poll() is None  # still running
        # The photos are not at fault: no attempt counted, none failed.
        assert fleet.sql("SELECT MAX(attempts) FROM images") == [(0,)]
        assert "failed" not in states(fleet).values()
        stored = photo_ids(fleet.sql, "stored")
        wait_for(lambda: len(photo_ids(fleet.sql, "stored")) > len(stored), 60, "more stored")
        on_storage = fleet.stored_on_storage()
        assert {int(Path(p).stem) for p in on_storage} >= set(stored)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, proc.stderr.read()
    assert "cannot write" in status(fleet)["last_error"] or status(fleet)["errors"]["spool"]
