"""An API page with a photo whose image URL is on a host `fetch.allow_hosts` does not name:
that photo is refused and counted, the rest of the page stored (real `harvester work`, real
MariaDB, a real HTTP server answering as Flickr's REST API with a recorded license table)."""

from __future__ import annotations

import copy
import http.server
import json
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest

from tests.conftest import FIXTURES, harvester_env, run_harvester, send_json, serving

DAY_START = 1577836800  # 2020-01-01
FLICKR = FIXTURES / "flickr"
IMAGE_HOSTS = {
    101: "https://live.staticflickr.com",
    102: "https://images.example.net",  # not Flickr's
    103: "https://farm66.staticflickr.com",
    104: "http://169.254.169.254",  # the metadata address, as an image host
}


def search_page() -> dict:
    """One page of four CC photos of 2020-01-01, from a recorded search answer."""
    recorded = json.loads((FLICKR / "search_user_allextras_2photos.json").read_text())
    template = recorded["photos"]["photo"][0]
    photos = []
    for n, (photo_id, base) in enumerate(IMAGE_HOSTS.items()):
        photo = copy.deepcopy(template)
        photo |= {"id": str(photo_id), "license": "4", "dateupload": str(DAY_START + 60 * n)}
        for size in [key[4:] for key in template if key.startswith("url_")]:
            photo[f"url_{size}"] = f"{base}/65535/{photo_id}_abc_{size}.jpg"
        photos.append(photo)
    envelope = {"page": 1, "pages": 1, "perpage": 500, "total": str(len(photos))}
    return {"photos": envelope | {"photo": photos}, "stat": "ok"}


class FlickrApi(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ApiHandler)
        self.answers = {
            "flickr.photos.licenses.getInfo": (FLICKR / "licenses_getinfo_2015.json").read_bytes(),
            "flickr.photos.search": json.dumps(search_page()).encode(),
        }
        self.api_url = f"http://127.0.0.1:{self.server_address[1]}/services/rest/"


class _ApiHandler(http.server.BaseHTTPRequestHandler):
    server: FlickrApi

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length", "0"))
        method = parse_qs(self.rfile.read(length).decode())["method"][0]
        send_json(self, self.server.answers[method])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[FlickrApi]:
    yield from serving(FlickrApi())


def harvest(db_url: str, api: FlickrApi, **extra: str):
    env = harvester_env(
        db_url, CCMIRROR_FLICKR_API_URL=api.api_url, CCMIRROR_FLICKR_API_KEY="key", **extra
    )
    seed = run_harvester(
        "seed", "timeslices", "--start", "2020-01-01", "--end", "2020-01-02", "--stride", "86400",
        env=env,
    )  # fmt: skip
    assert seed.returncode == 0, seed.stderr
    return run_harvester("work", "--worker", "hv-1", env=env)


def test_a_photo_on_a_host_off_the_list_is_refused_and_counted_the_rest_stored(db_url, api, sql):
    result = harvest(db_url, api)

    assert result.returncode == 0, result.stderr
    assert "2 photos stored, 2 refused (host_not_allowed 2)" in result.stdout
    assert "photo 102: host not allowed: images.example.net" in result.stderr
    stored = sql("SELECT photo_id, image_url FROM flickr_timeslice_photos ORDER BY photo_id")
    assert stored == [
        (101, "https://live.staticflickr.com/65535/101_abc_o.jpg"),
        (103, "https://farm66.staticflickr.com/65535/103_abc_o.jpg"),
    ]
    assert sql("SELECT state, photos_seen FROM search_tasks") == [("done", 2)]


def test_the_list_in_the_settings_lets_a_named_host_through(db_url, api, sql):
    allow = "*.staticflickr.com,images.example.net"
    result = harvest(db_url, api, CCMIRROR_FETCH_ALLOW_HOSTS=allow)

    assert result.returncode == 0, result.stderr
    assert "3 photos stored, 1 refused (host_not_allowed 1)" in result.stdout
    ids = [row[0] for row in sql("SELECT photo_id FROM flickr_timeslice_photos ORDER BY 1")]
    assert ids == [101, 102, 103]


def test_a_bad_list_is_one_line_and_harvests_nothing(db_url, api, sql):
    env = harvester_env(
        db_url, CCMIRROR_FLICKR_API_URL=api.api_url, CCMIRROR_FLICKR_API_KEY="key",
        CCMIRROR_FETCH_ALLOW_HOSTS="images.example.net:443",
    )  # fmt: skip
    result = run_harvester("work", "--worker", "hv-1", env=env)

    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "CCMIRROR_FETCH_ALLOW_HOSTS" in result.stderr and "no port" in result.stderr
