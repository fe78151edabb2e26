"""No SSRF: the fetcher requests only hosts of `fetch.allow_hosts`, on every redirect hop, and
connects to no loopback, private or metadata address the list does not name, whatever name
led there. Real servers that count what they were asked: the image host simulator on
127.0.0.1 and a redirector on 127.0.0.2 (another loopback address, so that one can be
allowed and the other not)."""

from __future__ import annotations

import asyncio
import http.server
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccmirror_common.hosts import HostPolicy
from ccmirror_common.layout import image_path
from downloader.fetch import Fetcher, FetchItem, FetchResult, FetchSettings
from lab.sims.image_host.server import RunningImageHost, jpeg_bytes, spawn
from tests.conftest import VENV_BIN, serving

REDIRECTOR_ADDRESS = "127.0.0.2"


class Redirector(http.server.ThreadingHTTPServer):
    """Answers GET /<name> with a 302 to `targets[name]`; counts the requests it got."""

    def __init__(self) -> None:
        super().__init__((REDIRECTOR_ADDRESS, 0), _RedirectHandler)
        self.targets: dict[str, str] = {}
        self.requests = 0
        self.base_url = f"http://{REDIRECTOR_ADDRESS}:{self.server_address[1]}"


class _RedirectHandler(http.server.BaseHTTPRequestHandler):
    server: Redirector

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests += 1
        self.send_response(302)
        self.send_header("Location", self.server.targets[self.path.lstrip("/")])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_host() -> Iterator[RunningImageHost]:
    host = spawn()
    yield host
    host.stop()


@pytest.fixture
def host(image_host: RunningImageHost) -> RunningImageHost:
    image_host.reset()
    return image_host


@pytest.fixture
def redirector() -> Iterator[Redirector]:
    yield from serving(Redirector())


def fetch_all(out: Path, items: list[FetchItem], allow: HostPolicy | None) -> list[FetchResult]:
    settings = FetchSettings(concurrency=4, total_timeout=10.0)
    if allow is not None:
        settings = FetchSettings(concurrency=4, total_timeout=10.0, allow_hosts=allow)

    async def run() -> list[FetchResult]:
        async with Fetcher(out, settings) as fetcher:
            return [result async for result in fetcher.stream(items)]

    return sorted(asyncio.run(run()), key=lambda r: r.item.photo_id)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_an_image_on_a_host_not_in_the_list_is_bad_and_never_requested(
    host: RunningImageHost, tmp_path: Path
):
    by_name = host.url(2).replace("127.0.0.1", "localhost")
    items = [FetchItem(1, host.url(1)), FetchItem(2, by_name)]

    results = fetch_all(tmp_path, items, allow=None)  # the default list: Flickr's hosts

    assert [(r.outcome, r.error) for r in results] == [
        ("bad", "host not allowed: 127.0.0.1"),
        ("bad", "host not allowed: localhost"),
    ]
    assert host.stats()["requests"] == {}, "a host not in the list was asked"
    assert files_under(tmp_path) == []


def test_a_redirect_off_the_list_is_refused_at_that_hop(
    host: RunningImageHost, redirector: Redirector, tmp_path: Path
):
    port = host.base_url.rsplit(":", 1)[1]
    redirector.targets = {
        "11.jpg": host.url(11),  # loopback by address, not listed
        "12.jpg": "http://169.254.169.254/latest/meta-data/",  # the metadata address
        "13.jpg": "http://images.example.net/13.jpg",  # a name not listed
        "14.jpg": f"http://localhost:{port}/65535/14_0123456789_b.jpg",  # a name not listed
    }
    items = [FetchItem(i, f"{redirector.base_url}/{i}.jpg") for i in (11, 12, 13, 14)]

    results = fetch_all(tmp_path, items, HostPolicy([REDIRECTOR_ADDRESS, "*.staticflickr.com"]))

    refused = {r.item.photo_id: (r.outcome, r.error.split(" (redirected")[0]) for r in results}
    assert refused == {
        11: ("bad", "host not allowed: 127.0.0.1"),
        12: ("bad", "host not allowed: 169.254.169.254"),
        13: ("bad", "host not allowed: images.example.net"),
        14: ("bad", "host not allowed: localhost"),
    }
    assert f"(redirected to {host.url(11)})" in results[0].error
    assert redirector.requests == 4, "the allowed first hop is requested"
    assert host.stats()["requests"] == {}, "the refused hop was requested anyway"
    assert files_under(tmp_path) == []

    # The same redirect, with the image host's address named, is followed and stored.
    allowed = fetch_all(tmp_path, items[:1], HostPolicy([REDIRECTOR_ADDRESS, "127.0.0.1"]))
    assert [(r.outcome, r.path) for r in allowed] == [("stored", image_path(11, "jpg"))]
    assert (tmp_path / "11.jpg").read_bytes() == jpeg_bytes(11)


def test_a_name_resolving_to_loopback_is_refused_unless_the_list_names_the_address(
    host: RunningImageHost, tmp_path: Path
):
    url = host.url(21).replace("127.0.0.1", "localhost")

    [refused] = fetch_all(tmp_path, [FetchItem(21, url)], HostPolicy(["localhost"]))

    assert refused.outcome == "bad"
    assert refused.error.startswith("host not allowed: localhost resolves to")
    assert "(loopback address)" in refused.error
    assert host.stats()["requests"] == {}, "connected to an address the list does not name"

    named = HostPolicy(["localhost", "127.0.0.1", "::1"])  # localhost may be ::1 first
    [stored] = fetch_all(tmp_path, [FetchItem(21, url)], named)
    assert stored.outcome == "stored"
    assert host.stats()["requests"] == {"21": 1}


def run_fetch_cli(urls: Path, out: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CCMIRROR_")}
    return subprocess.run(
        [str(VENV_BIN / "downloader"), "fetch", "--urls", str(urls), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean | {"CCMIRROR_CONFIG": "/dev/null"} | env,
    )


def test_downloader_fetch_takes_the_list_from_the_environment_or_the_file(
    host: RunningImageHost, tmp_path: Path
):
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(host.url(i) + "\n" for i in (31, 32, 33)))

    default = run_fetch_cli(urls, tmp_path / "a")
    assert default.returncode == 0, default.stderr
    assert "3/3 images (stored 0 gone 0 retry 0 bad 3)" in default.stderr
    assert "host not allowed" in default.stderr
    assert host.stats()["requests"] == {}

    allowed = run_fetch_cli(
        urls, tmp_path / "b", CCMIRROR_FETCH_ALLOW_HOSTS="*.staticflickr.com, 127.0.0.1"
    )
    assert "3/3 images (stored 3 gone 0 retry 0 bad 0)" in allowed.stderr, allowed.stderr

    config = tmp_path / "downloader.yaml"
    config.write_text("fetch:\n  allow_hosts: ['127.0.0.1']\n")
    from_file = run_fetch_cli(urls, tmp_path / "c", CCMIRROR_CONFIG=str(config))
    assert "3/3 images (stored 3 gone 0 retry 0 bad 0)" in from_file.stderr, from_file.stderr


@pytest.mark.parametrize(
    "value, message",
    [
        ("127.0.0.1:8080", "'127.0.0.1:8080': no port"),
        ("http://127.0.0.1/", "not a URL"),
        (" , ", "empty"),
    ],
)
def test_a_bad_list_is_one_line_and_fetches_nothing(
    host: RunningImageHost, tmp_path: Path, value: str, message: str
):
    urls = tmp_path / "urls.txt"
    urls.write_text(host.url(41) + "\n")

    result = run_fetch_cli(urls, tmp_path / "out", CCMIRROR_FETCH_ALLOW_HOSTS=value)

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "CCMIRROR_FETCH_ALLOW_HOSTS" in result.stderr and message in result.stderr
    assert not (tmp_path / "out").exists()
    assert host.stats()["requests"] == {}
