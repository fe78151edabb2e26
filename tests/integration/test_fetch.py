"""The fetch stage against the image host simulator: a real server, real HTTP, real files.

Every fault the host can play is classified as the queue expects and never lands as an image;
good images land at their layout path with the right sha256; the global and per-host limits
hold; a rerun fetches nothing twice; `downloader fetch` refuses bad input in one line.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccmirror_common.hosts import HostPolicy
from ccmirror_common.layout import image_path
from downloader.fetch import (
    Fetcher,
    FetchItem,
    FetchResult,
    FetchSettings,
    HostLimit,
)
from downloader.spool import SpoolError
from lab.sims.image_host.server import RunningImageHost, jpeg_bytes, spawn
from tests.conftest import VENV_BIN

IMAGE_SIZE = 3000
SLOW_DELAY = 0.3
# The image host listens on loopback: the list names it (the default names only Flickr's).
LOOPBACK = HostPolicy(["127.0.0.1", "localhost", "::1"])
# Short timeouts keep the drip and the pauses quick; a 1 MB cap makes `endless` cheap.
SETTINGS = FetchSettings(
    concurrency=16, read_timeout=1.0, total_timeout=2.0, max_bytes=2**20, allow_hosts=LOOPBACK
)

EXPECTED = {
    "html": ("bad", "not an image: Content-Type text/html"),
    "html_as_jpeg": ("bad", "not an image: starts with"),
    "wrong_type": ("bad", "not an image: Content-Type application/json"),
    "not_image": ("bad", "not an image: starts with"),
    "wrong_length": ("bad", "malformed response (length not as announced?)"),
    "huge": ("bad", "too large: announces 3,221,225,472 bytes"),
    "endless": ("bad", "too large: over the 1,048,576-byte cap while reading"),
    "404": ("gone", "HTTP 404"),
    "410": ("gone", "HTTP 410"),
    "placeholder": ("gone", "photo unavailable (redirected to"),
    "placeholder_bytes": ("gone", "photo unavailable (placeholder image)"),
    "truncated": ("retry", "truncated body"),
    "500": ("retry", "HTTP 500"),
    "503": ("retry", "HTTP 503"),
    "429": ("retry", "HTTP 429"),
    "403": ("gone", "HTTP 403"),
    "403_throttle": ("retry", "HTTP 403 (throttled: Retry-After)"),
    "loop": ("retry", "redirect loop: more than 5 redirects"),
    "drip": ("retry", "timeout"),
    "reset": ("retry", "connection: "),
}


@pytest.fixture(scope="module")
def image_host() -> Iterator[RunningImageHost]:
    host = spawn(
        "--image-size",
        str(IMAGE_SIZE),
        "--retry-after",
        "1",
        "--drip-interval",
        "0.2",
        "--slow-delay",
        str(SLOW_DELAY),
    )
    yield host
    host.stop()


@pytest.fixture
def host(image_host: RunningImageHost) -> RunningImageHost:
    image_host.reset()
    return image_host


def fetch_all(
    out: Path, items: list[FetchItem], settings: FetchSettings = SETTINGS, present=None
) -> list[FetchResult]:
    async def run() -> list[FetchResult]:
        async with Fetcher(out, settings, present) as fetcher:
            return [result async for result in fetcher.stream(items)]

    return asyncio.run(run())


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_every_fault_is_classified_and_none_is_written(host: RunningImageHost, tmp_path: Path):
    ids = {mode: 7000 + n for n, mode in enumerate(EXPECTED)}
    host.faults({photo_id: mode for mode, photo_id in ids.items()})
    items = [FetchItem(photo_id, host.url(photo_id)) for photo_id in ids.values()]

    results = {r.item.photo_id: r for r in fetch_all(tmp_path, items)}

    got = {}
    for mode, photo_id in ids.items():
        result = results[photo_id]
        want_outcome, want_reason = EXPECTED[mode]
        matches = result.error is not None and result.error.startswith(want_reason)
        got[mode] = (result.outcome, want_reason if matches else result.error)
    assert got == EXPECTED
    assert all(r.path is None and r.sha256 is None for r in results.values())
    assert files_under(tmp_path) == [], "a refused body was left on disk"


def test_good_images_land_flat_with_their_storage_key_and_sha256(
    host: RunningImageHost, tmp_path: Path
):
    ids = list(range(100_000, 100_040)) + [2**40 + 5]
    items = [FetchItem(i, host.url(i), catalog_id=i + 1) for i in ids]

    results = fetch_all(tmp_path, items)

    assert {r.outcome for r in results} == {"stored"}
    for r in results:
        body = jpeg_bytes(r.item.photo_id, IMAGE_SIZE)
        assert r.path == image_path(r.item.photo_id, "jpg")  # where it goes on storage
        assert r.file == f"{r.item.photo_id}.jpg"
        assert (tmp_path / r.file).read_bytes() == body
        assert r.sha256 == hashlib.sha256(body).hexdigest()
        assert r.bytes == len(body)
        assert r.report() == {
            "id": r.item.photo_id + 1,
            "result": "stored",
            "sha256": r.sha256,
            "bytes": len(body),
            "path": r.path,
            "md5": hashlib.md5(body).hexdigest(),  # what the S3 audit compares with the ETag
        }
    assert len(files_under(tmp_path)) == len(ids), "temp files left behind"
    assert [p for p in tmp_path.rglob("*") if p.is_dir()] == [], "one directory, however many"


def test_a_photo_already_present_is_reported_with_the_digests_of_its_bytes(
    host: RunningImageHost, tmp_path: Path
):
    ids = [300_001, 300_002 + 2**33]
    items = [FetchItem(i, host.url(i)) for i in ids]
    fetched = fetch_all(tmp_path, items)
    present = {r.file for r in fetched}

    again = fetch_all(tmp_path, items, present=present)

    assert host.stats()["requests"] == {str(i): 1 for i in ids}, "present photos not fetched"
    for r in again:
        body = jpeg_bytes(r.item.photo_id, IMAGE_SIZE)
        assert r.reused and r.bytes == len(body)
        assert (r.sha256, r.md5) == (
            hashlib.sha256(body).hexdigest(),
            hashlib.md5(body).hexdigest(),
        )


def test_the_extension_comes_from_the_bytes_not_the_url(host: RunningImageHost, tmp_path: Path):
    host.faults({1: "png", 2: "gif", 3: "webp"})
    items = [FetchItem(i, host.url(i)) for i in (1, 2, 3)]

    results = {r.item.photo_id: r for r in fetch_all(tmp_path, items)}

    assert {i: (r.outcome, r.ext, r.path) for i, r in results.items()} == {
        1: ("stored", "png", image_path(1, "png")),
        2: ("stored", "gif", image_path(2, "gif")),
        3: ("stored", "webp", image_path(3, "webp")),
    }


def test_a_refused_original_falls_back_to_the_smaller_copy(host: RunningImageHost, tmp_path: Path):
    host.faults({11: "403", 12: "404", 13: "placeholder", 14: "404"})
    fallback_of = {11: 811, 12: 812, 13: 813, 14: 814}
    host.faults({814: "410"})
    items = [
        FetchItem(i, host.url(i, "o"), fallback_url=host.url(f, "b"))
        for i, f in fallback_of.items()
    ]

    results = {r.item.photo_id: r for r in fetch_all(tmp_path, items)}

    for i in (11, 12, 13):
        assert results[i].outcome == "stored"
        assert results[i].url == host.url(fallback_of[i], "b")
        assert (
            results[i].sha256 == hashlib.sha256(jpeg_bytes(fallback_of[i], IMAGE_SIZE)).hexdigest()
        )
    assert results[14].outcome == "gone"
    assert results[14].error == "HTTP 404; fallback: HTTP 410"


def test_a_403_from_the_original_and_its_fallback_is_gone_unless_throttled(
    host: RunningImageHost, tmp_path: Path
):
    """A private photo: 403 from both URLs is final (`gone`); a 403 with Retry-After from
    the fallback is a CDN throttling, so the photo stays `retry`."""
    host.faults({21: "403", 821: "403", 22: "403", 822: "403_throttle"})
    items = [FetchItem(i, host.url(i, "o"), fallback_url=host.url(800 + i, "b")) for i in (21, 22)]

    results = {r.item.photo_id: r for r in fetch_all(tmp_path, items)}

    assert (results[21].outcome, results[21].error) == ("gone", "HTTP 403; fallback: HTTP 403")
    assert results[22].outcome == "retry"
    assert results[22].error == "HTTP 403; fallback: HTTP 403 (throttled: Retry-After)"


def test_retry_after_pauses_the_host_then_the_photo_is_fetched(
    host: RunningImageHost, tmp_path: Path
):
    host.faults({21: {"mode": "429", "times": 1}, 22: {"mode": "503", "times": 1}})
    items = [FetchItem(i, host.url(i)) for i in (21, 22)]

    started = time.monotonic()
    results = fetch_all(tmp_path, items)

    assert [r.outcome for r in results] == ["stored", "stored"]
    assert time.monotonic() - started >= 0.9, "Retry-After: 1 was not waited out"
    assert host.stats()["requests"] == {"21": 2, "22": 2}


def test_global_and_per_host_limits_hold(host: RunningImageHost, tmp_path: Path):
    slow = {i: "slow" for i in range(300, 324)}
    host.faults(slow)
    items = [FetchItem(i, host.url(i)) for i in slow]

    fetch_all(tmp_path / "a", items, FetchSettings(concurrency=3, allow_hosts=LOOPBACK))
    assert host.stats()["max_in_flight"]["*"] == 3

    host.reset()
    host.faults(slow)
    limited = FetchSettings(
        concurrency=32, hosts={"127.0.0.1": HostLimit(connections=2)}, allow_hosts=LOOPBACK
    )
    fetch_all(tmp_path / "b", items, limited)
    assert host.stats()["max_in_flight"]["*"] == 2


def test_a_slow_host_at_its_limit_does_not_hold_up_another(host: RunningImageHost, tmp_path: Path):
    """Two hosts in one list (the image host as 127.0.0.1 and as localhost): the slow one at
    its connection limit keeps its photos queued while workers serve the other host."""
    slow = list(range(600, 612))
    fast = list(range(700, 712))
    host.faults({i: "slow" for i in slow})
    other = host.base_url.replace("127.0.0.1", "localhost")
    items = []
    for s, f in zip(slow, fast, strict=True):  # interleaved, as a lease mixes hosts
        items += [FetchItem(s, host.url(s)), FetchItem(f, f"{other}/65535/{f}_0123456789_b.jpg")]
    settings = FetchSettings(
        concurrency=8, hosts={"127.0.0.1": HostLimit(connections=2)}, allow_hosts=LOOPBACK
    )

    results = fetch_all(tmp_path, items, settings)

    assert {r.outcome for r in results} == {"stored"}
    order = [r.item.photo_id for r in results]
    last_fast = max(order.index(f) for f in fast)
    slow_first = [i for i in order[:last_fast] if i in slow]
    # Slow photos finish two per SLOW_DELAY; the fast host's twelve need a fraction of that.
    assert len(slow_first) <= 4, f"the fast host waited behind {len(slow_first)} slow photos"
    port = host.base_url.rsplit(":", 1)[1]
    assert host.stats()["max_in_flight"][f"127.0.0.1:{port}"] == 2


def test_per_host_rate_spaces_requests(host: RunningImageHost, tmp_path: Path):
    items = [FetchItem(i, host.url(i)) for i in range(400, 411)]
    paced = FetchSettings(
        concurrency=16, default_host=HostLimit(per_second=20), allow_hosts=LOOPBACK
    )

    started = time.monotonic()
    results = fetch_all(tmp_path, items, paced)

    assert {r.outcome for r in results} == {"stored"}
    assert time.monotonic() - started >= 0.45, "11 requests at 20/s take at least 0.5 s"


def test_a_spool_that_cannot_be_written_stops_the_run(host: RunningImageHost, tmp_path: Path):
    """A local fault is not the photo's: no `retry` report that would burn its attempts."""
    blocked = tmp_path / "spool"
    blocked.write_text("a file where a directory must go")
    items = [FetchItem(31, host.url(31))]

    with pytest.raises(SpoolError, match="cannot write"):
        fetch_all(blocked, items)
    assert files_under(tmp_path) == [blocked]


def run_fetch_cli(*args: str, allow: str | None = "127.0.0.1") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCMIRROR_")}
    env["CCMIRROR_CONFIG"] = "/dev/null"  # no settings file of this machine's
    if allow is not None:
        env["CCMIRROR_FETCH_ALLOW_HOSTS"] = allow
    return subprocess.run(
        [str(VENV_BIN / "downloader"), "fetch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_cli_fetches_a_url_list_and_a_rerun_fetches_nothing(host: RunningImageHost, tmp_path: Path):
    urls = tmp_path / "urls.txt"
    host.faults({505: "404"})
    lines = [host.url(i) for i in range(500, 520)] + [host.base_url + "/no/digits/here.jpg"]
    urls.write_text("# twenty Flickr-named URLs and one without an id\n" + "\n".join(lines) + "\n")
    out = tmp_path / "out"

    first = run_fetch_cli("--urls", str(urls), "--out", str(out), "--concurrency", "4")
    assert first.returncode == 0, first.stderr
    assert "21/21 images (stored 20 gone 1 retry 0 bad 0)" in first.stderr
    assert (out / "500.jpg").read_bytes() == jpeg_bytes(500, IMAGE_SIZE)
    assert (out / "22.jpg").is_file(), "no id in the name: the line number"
    before = {p: p.stat().st_mtime_ns for p in files_under(out)}

    host.reset()  # and 505 is served now
    second = run_fetch_cli("--urls", str(urls), "--out", str(out))
    assert second.returncode == 0, second.stderr
    assert "21/21 images (stored 21 gone 0 retry 0 bad 0)" in second.stderr
    assert "20 already present" in second.stderr
    assert host.stats()["requests"] == {"505": 1}, "only the missing photo is asked for again"
    after = {p: p.stat().st_mtime_ns for p in files_under(out)}
    assert {p: t for p, t in after.items() if p in before} == before, "a present file was rewritten"
    assert set(after) - set(before) == {out / "505.jpg"}


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "urls.txt: no such file"),
        ("not_url", "urls.txt:2: not an http(s) URL: 'ftp://example.org/1_a.jpg'"),
        ("empty", "urls.txt: no URLs in it"),
        ("out_is_file", "not a writable directory"),
    ],
)
def test_cli_bad_input_is_one_line_and_changes_nothing(tmp_path: Path, case: str, message: str):
    urls = tmp_path / "urls.txt"
    out = tmp_path / "out"
    if case == "not_url":
        urls.write_text("http://127.0.0.1:9/1_a.jpg\nftp://example.org/1_a.jpg\n")
    elif case == "empty":
        urls.write_text("\n# nothing\n")
    elif case == "out_is_file":
        urls.write_text("http://127.0.0.1:9/1_a.jpg\n")
        out.write_text("a file, not a directory")
        out = out / "sub"

    result = run_fetch_cli("--urls", str(urls), "--out", str(out))

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").is_dir()
