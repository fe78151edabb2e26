"""Tests of the Flickr simulator (lab.sims.flickr.server) over real HTTP, run as a subprocess."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from lab.sims.flickr.universe import Universe

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("CCMIRROR_FIXTURES", "/work/shared/fixtures")) / "flickr"
KEY = "lab-flickr-key"
OTHER_KEY = "second-test-key"
SEED = 5
END_DATE, END = "2025-01-01", 1735689600
JUNE_2024 = 1717200000
DAY = 86400
CC_IDS = "1,2,3,4,5,6,9,10,11,12,13,14,15,16"
# The extras of the fixture search_user_allextras_2photos.json that the simulator supports
# (everything but geo), plus the sizes Flickr added since.
ALL_EXTRAS = (
    "description,license,date_upload,date_taken,owner_name,icon_server,original_format,"
    "last_update,tags,machine_tags,o_dims,views,media,path_alias,url_sq,url_q,url_t,url_s,"
    "url_n,url_m,url_z,url_c,url_l,url_h,url_k,url_3k,url_4k,url_5k,url_6k,url_o"
)
GEO_KEYS = {
    "latitude",
    "longitude",
    "accuracy",
    "context",
    "place_id",
    "woeid",
    "geo_is_family",
    "geo_is_friend",
    "geo_is_contact",
    "geo_is_public",
}
# Key -> JSON type in the 2013 fixture (landscape photos), for when the fixture is absent.
FIXTURE_TYPES = {
    "id": str,
    "owner": str,
    "secret": str,
    "server": str,
    "farm": int,
    "title": str,
    "ispublic": int,
    "isfriend": int,
    "isfamily": int,
    "description": dict,
    "license": str,
    "dateupload": str,
    "datetaken": str,
    "datetakengranularity": str,
    "ownername": str,
    "iconserver": str,
    "iconfarm": int,
    "originalsecret": str,
    "originalformat": str,
    "lastupdate": str,
    "tags": str,
    "machine_tags": str,
    "views": str,
    "media": str,
    "media_status": str,
    "pathalias": type(None),
    "url_sq": str,
    "height_sq": int,
    "width_sq": int,
    "url_q": str,
    "height_q": str,
    "width_q": str,
    "url_t": str,
    "height_t": str,
    "width_t": str,
    "url_s": str,
    "height_s": str,
    "width_s": str,
    "url_n": str,
    "height_n": int,
    "width_n": str,
    "url_m": str,
    "height_m": str,
    "width_m": str,
    "url_z": str,
    "height_z": str,
    "width_z": str,
    "url_c": str,
    "height_c": int,
    "width_c": str,
    "url_l": str,
    "height_l": str,
    "width_l": str,
    "url_h": str,
    "height_h": int,
    "width_h": str,
    "url_k": str,
    "height_k": int,
    "width_k": str,
    "url_o": str,
    "height_o": str,
    "width_o": str,
}


class Sim:
    """A running simulator subprocess."""

    def __init__(self, *args: str) -> None:
        cmd = [
            sys.executable,
            "-m",
            "lab.sims.flickr.server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--seed",
            str(SEED),
            "--end",
            END_DATE,
            *args,
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.http = requests.Session()
        self.stderr = ""
        line = self._first_line(deadline=time.monotonic() + 10)
        prefix = "flickr_sim listening on "
        assert line.startswith(prefix), line
        self.url = line[len(prefix) :].strip()
        self.base = self.url.removesuffix("/services/rest/")

    def _first_line(self, deadline: float) -> str:
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            line = self.proc.stdout.readline() if ready else ""
            if line:
                return line
            if ready or self.proc.poll() is not None:  # EOF: it died
                break
        self.stop(signal.SIGKILL)
        raise AssertionError(f"simulator did not start: {self.stderr}")

    def call(self, method: str, key: str | None = KEY, **params: object) -> requests.Response:
        data = {"method": method, "format": "json", "nojsoncallback": "1", **params}
        if key is not None:
            data["api_key"] = key
        return self.http.post(self.url, data=data, timeout=10)

    def search(self, **params: object) -> dict:
        r = self.call("flickr.photos.search", **params)
        assert r.status_code == 200, r.text[:200]
        body = r.json()
        assert body["stat"] == "ok", body
        return body["photos"]

    def control(self, **settings: object) -> dict:
        r = self.http.post(self.base + "/_sim/control", data=json.dumps(settings), timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def get(self, path: str, **params: object) -> dict:
        r = self.http.get(self.base + path, params=params, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.http.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    s = Sim("--rate-limit", "0", "--keys", f"{KEY},{OTHER_KEY}", "--fault-seed", "3")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def universe() -> Universe:
    return Universe(seed=SEED, end=END)


@pytest.fixture(scope="module")
def hot_window(sim: Sim) -> dict:
    spots = sim.get(
        "/_sim/hotspots", min_upload_date=JUNE_2024, max_upload_date=JUNE_2024 + 30 * DAY
    )["hotspots"]
    return next(h for h in spots if h["kind"] == "window")


def fixture_json(name: str) -> dict:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"fixture {path} not available")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------- shapes
def test_licenses_getinfo_matches_fixture_and_2025_table(sim: Sim, universe: Universe) -> None:
    r = sim.call("flickr.photos.licenses.getInfo")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert "\\/" in r.text and '"id":"0"' in r.text
    body = r.json()
    assert list(body) == ["licenses", "stat"] and body["stat"] == "ok"
    rows = body["licenses"]["license"]
    assert [int(x["id"]) for x in rows] == [x["id"] for x in universe.licenses()]
    assert {x["id"]: (x["name"], x["url"]) for x in rows} == {
        str(x["id"]): (x["name"], x["url"]) for x in universe.licenses()
    }
    assert all(isinstance(x["id"], str) for x in rows)


def test_licenses_getinfo_like_2015_fixture_plus_9_to_16(sim: Sim) -> None:
    old = fixture_json("licenses_getinfo_2015.json")["licenses"]["license"]
    rows = sim.call("flickr.photos.licenses.getInfo").json()["licenses"]["license"]
    assert {k: type(v) for k, v in old[0].items()} == {k: type(v) for k, v in rows[0].items()}
    assert {x["id"] for x in old} | {str(i) for i in range(9, 17)} == {x["id"] for x in rows}


def test_search_photo_shape_matches_fixture(sim: Sim, hot_window: dict) -> None:
    photos = sim.search(
        min_upload_date=hot_window["start"],
        max_upload_date=hot_window["end"],
        license=CC_IDS,
        extras=ALL_EXTRAS,
        per_page=200,
    )
    assert [type(photos[k]) for k in ("page", "pages", "perpage", "total")] == [int, int, int, str]
    try:
        ref = fixture_json("search_user_allextras_2photos.json")["photos"]["photo"][0]
        expected = {k: type(v) for k, v in ref.items() if k not in GEO_KEYS}
    except pytest.skip.Exception:
        expected = FIXTURE_TYPES
    assert expected.keys() == FIXTURE_TYPES.keys()
    with_original = [
        p
        for p in photos["photo"]
        if "url_o" in p and int(p["width_o"]) >= int(p["height_o"]) and "url_k" in p
    ]
    assert with_original
    for p in with_original:
        assert {k: type(p[k]) for k in expected} == expected
        newer = {
            f"{field}_{size}"
            for field in ("url", "height", "width")
            for size in ("3k", "4k", "5k", "6k")
        }
        assert set(p) - set(expected) <= {"datetakenunknown", "o_width", "o_height"} | newer
        assert list(p)[:9] == list(expected)[:9]  # base fields first, in Flickr's order
    without = [p for p in photos["photo"] if "originalsecret" not in p]
    assert without and all("url_o" not in p and "o_width" not in p for p in without)


def test_search_only_requested_extras(sim: Sim, hot_window: dict) -> None:
    span = {"min_upload_date": hot_window["start"], "max_upload_date": hot_window["end"]}
    bare = sim.search(**span, per_page=5)["photo"]
    assert all(
        list(p)
        == ["id", "owner", "secret", "server", "farm", "title", "ispublic", "isfriend", "isfamily"]
        for p in bare
    )
    some = sim.search(**span, per_page=5, extras="license,url_z")["photo"]
    assert all(set(p) - set(bare[0]) <= {"license", "url_z", "height_z", "width_z"} for p in some)
    assert all("license" in p for p in some)


def test_json_is_flickr_style(sim: Sim, hot_window: dict) -> None:
    r = sim.call(
        "flickr.photos.search",
        min_upload_date=hot_window["start"],
        max_upload_date=hot_window["end"],
        extras="owner_name,url_o",
        per_page=500,
    )
    assert r.text.isascii() and "\\/" in r.text
    assert "/" not in r.text.replace("\\/", "")
    assert ", " not in r.text[:60]  # compact separators
    wrapped = sim.http.get(
        sim.url,
        params={"method": "flickr.photos.licenses.getInfo", "api_key": KEY, "format": "json"},
        timeout=10,
    )
    assert wrapped.text.startswith("jsonFlickrApi({") and wrapped.text.endswith("})")


def test_get_and_path_without_slash(sim: Sim) -> None:
    r = sim.http.get(
        sim.url.rstrip("/"),
        timeout=10,
        params={
            "method": "flickr.photos.licenses.getInfo",
            "api_key": KEY,
            "format": "json",
            "nojsoncallback": "1",
        },
    )
    assert r.status_code == 200 and r.json()["stat"] == "ok"


def test_without_format_json_answers_xml_like_flickr(sim: Sim) -> None:
    r = sim.http.post(
        sim.url, timeout=10, data={"method": "flickr.photos.licenses.getInfo", "api_key": KEY}
    )
    assert r.headers["Content-Type"].startswith("text/xml")
    assert r.text.startswith('<?xml version="1.0" encoding="utf-8" ?>\n<rsp stat="ok">')
    assert '<license id="9" name="Public Domain Dedication (CC0)"' in r.text
    bad = sim.http.post(sim.url, timeout=10, data={"method": "flickr.photos.search"})
    assert '<err code="100"' in bad.text


def test_parameterless_search_is_refused(sim: Sim) -> None:
    body = sim.call("flickr.photos.search", license="4").json()
    assert body["stat"] == "fail" and body["code"] == 3


# ---------------------------------------------------------------------------- the 4,000 cap
def test_cap_repeats_last_page_and_yields_4000_unique(sim: Sim, hot_window: dict) -> None:
    span = {
        "min_upload_date": hot_window["start"],
        "max_upload_date": hot_window["end"],
        "license": CC_IDS,
        "per_page": 500,
    }
    pages = [sim.search(**span, page=n) for n in range(1, 21)]
    ids = [[p["id"] for p in page["photo"]] for page in pages]
    assert all(len(x) == 500 for x in ids)
    assert ids[8] == ids[7] and ids[19] == ids[7]  # page 9 and 20 repeat page 8
    assert len({i for x in ids for i in x}) == 4000
    totals = {page["total"] for page in pages}
    assert len(totals) == 1  # the same (misreported) total on every page
    true_count = hot_window["cc_photos"]
    assert 0.8 * true_count <= int(totals.pop()) <= 1.2 * true_count
    assert pages[0]["pages"] == -(-int(pages[0]["total"]) // 500)
    assert [p["page"] for p in pages[:3]] == [1, 2, 3]


def test_pages_past_true_count_are_empty(sim: Sim) -> None:
    span = {
        "min_upload_date": JUNE_2024 + 3 * 3600,
        "max_upload_date": JUNE_2024 + 4 * 3600,
        "license": "4",
    }
    first = sim.search(**span, per_page=10)
    n = int(first["total"])
    assert 0 < n < 3000
    assert sim.search(**span, per_page=10, page=first["pages"] + 1)["photo"] == []
    assert sim.search(**span, per_page=1000)["perpage"] == 500  # clamped like Flickr


def test_bounds_are_inclusive_and_dates_may_be_mysql(sim: Sim, universe: Universe) -> None:
    t = JUNE_2024 + 12345
    photos = list(universe.search(t, t + 600, None, None))
    target = photos[len(photos) // 2]
    s = target.dateupload
    got = sim.search(min_upload_date=s, max_upload_date=s, extras="date_upload", per_page=500)
    assert str(target.id) in {p["id"] for p in got["photo"]}
    assert all(p["dateupload"] == str(s) for p in got["photo"])
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s))
    again = sim.search(min_upload_date=stamp, max_upload_date=stamp, per_page=500)
    assert [p["id"] for p in again["photo"]] == [p["id"] for p in got["photo"]]


def test_sort_ascending(sim: Sim) -> None:
    span = {
        "min_upload_date": JUNE_2024,
        "max_upload_date": JUNE_2024 + 1200,
        "extras": "date_upload",
        "per_page": 500,
    }
    first = sim.search(**span)
    assert 0 < int(first["total"]) <= 500
    desc = first["photo"]
    asc = sim.search(**span, sort="date-posted-asc")["photo"]
    assert [p["id"] for p in asc] == [p["id"] for p in desc][::-1]
    assert sim.search(**span, sort="interestingness-desc")["photo"] == desc


def test_text_search(sim: Sim) -> None:
    got = sim.search(
        min_upload_date=JUNE_2024, max_upload_date=JUNE_2024 + DAY, text="Sunset", per_page=100
    )
    assert got["photo"] and all("sunset" in p["title"].lower().split() for p in got["photo"])


def test_truth_endpoint_matches_universe(sim: Sim, universe: Universe) -> None:
    lo, hi = JUNE_2024 + 1000, JUNE_2024 + 8 * 3600
    truth = sim.get("/_sim/truth", min_upload_date=lo, max_upload_date=hi)
    assert truth["ids"] == universe.truth(lo, hi) and truth["count"] == len(truth["ids"])
    harvested = set()
    for page in range(1, 20):
        got = sim.search(
            min_upload_date=lo, max_upload_date=hi, license=CC_IDS, per_page=500, page=page
        )
        harvested |= {int(p["id"]) for p in got["photo"]}
        if page >= got["pages"]:
            break
    assert harvested == set(truth["ids"])


# ---------------------------------------------------------------------------- errors & faults
def test_bad_or_missing_key_is_code_100(sim: Sim) -> None:
    for key in ("not-a-key", None, "0123456789abcdef0123456789abcdef"):
        r = sim.call("flickr.photos.licenses.getInfo", key=key)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        body = r.json()
        assert list(body) == ["stat", "code", "message"]
        assert body["stat"] == "fail" and body["code"] == 100
        assert body["message"].startswith("Invalid API Key (")
    assert "Key not found" in r.json()["message"]


def test_unknown_method_is_code_112(sim: Sim) -> None:
    body = sim.call("flickr.photos.xyz").json()
    assert body == {"stat": "fail", "code": 112, "message": 'Method "flickr.photos.xyz" not found'}


def test_rate_limit_answers_429_with_retry_after(sim: Sim) -> None:
    sim.control(rate_limit=3)
    try:
        codes = [sim.call("flickr.photos.licenses.getInfo", key=OTHER_KEY) for _ in range(4)]
        assert [r.status_code for r in codes] == [200, 200, 200, 429]
        limited = codes[-1]
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.json() == {"stat": "fail", "code": 429, "message": "Too Many Requests"}
        assert sim.get("/_sim/stats")["rate_limited"] >= 1
    finally:
        sim.control(rate_limit=0)
    assert sim.call("flickr.photos.licenses.getInfo", key=OTHER_KEY).status_code == 200


@pytest.mark.parametrize("kind", ["5xx", "105", "201", "malformed", "slow"])
def test_each_fault_kind(sim: Sim, kind: str) -> None:
    before = sim.get("/_sim/stats")["faults"]
    sim.control(fault_rate=1.0, faults=[kind], slow_seconds=0.3)
    try:
        started = time.monotonic()
        r = sim.call("flickr.photos.licenses.getInfo")
        elapsed = time.monotonic() - started
    finally:
        sim.control(fault_rate=0.0, faults=["5xx", "105", "201", "malformed", "slow"])
    if kind == "5xx":
        assert r.status_code in (502, 503) and "<html>" in r.text
    elif kind in ("105", "201"):
        body = r.json()
        assert r.status_code == 200 and body["stat"] == "fail" and body["code"] == int(kind)
    elif kind == "malformed":
        assert r.status_code == 200
        with pytest.raises(ValueError):
            json.loads(r.text)
    else:
        assert r.status_code == 200 and r.json()["stat"] == "ok" and elapsed >= 0.3
    assert sim.get("/_sim/stats")["faults"] == before + 1


def test_stats_count_calls_without_echoing_keys(sim: Sim) -> None:
    sim.call("flickr.photos.licenses.getInfo")
    stats = sim.get("/_sim/stats")
    assert stats["calls"]["flickr.photos.licenses.getInfo"] >= 1
    assert all(len(k) <= 5 for k in stats["calls_by_key"])
    text = json.dumps(stats)
    assert KEY not in text and OTHER_KEY not in text


def test_new_license_switch_at_run_time(sim: Sim) -> None:
    span = {"min_upload_date": JUNE_2024, "max_upload_date": JUNE_2024 + 6 * 3600}
    assert sim.search(**span, license="17")["photo"] == []
    assert sim.control(new_license=True)["new_license"] is True
    try:
        rows = sim.call("flickr.photos.licenses.getInfo").json()["licenses"]["license"]
        assert rows[-1] == {
            "id": "17",
            "name": "CC BY 5.0 (simulated)",
            "url": "https://creativecommons.org/licenses/by/5.0/",
        }
        assert sim.search(**span, license="17", extras="license")["photo"]
    finally:
        sim.control(new_license=False)


def test_concurrent_clients(sim: Sim, hot_window: dict) -> None:
    def one(page: int) -> int:
        with requests.Session() as http:
            r = http.post(
                sim.url,
                timeout=10,
                data={
                    "method": "flickr.photos.search",
                    "api_key": KEY,
                    "format": "json",
                    "nojsoncallback": "1",
                    "min_upload_date": hot_window["start"],
                    "max_upload_date": hot_window["end"],
                    "per_page": 100,
                    "page": page,
                    "extras": "license,url_o",
                },
            )
            return len(r.json()["photos"]["photo"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(one, range(1, 33))) == [100] * 32


def test_sigterm_and_sigint_exit_zero_and_verbose_log_has_no_keys() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        s = Sim("--verbose")
        assert s.call("flickr.photos.licenses.getInfo").status_code == 200
        s.http.get(s.url, params={"method": "flickr.photos.search", "api_key": KEY}, timeout=10)
        assert s.stop(sig) == 0
        assert "flickr.photos.licenses.getInfo 200" in s.stderr
        assert KEY not in s.stderr and "lab-" not in s.stderr


def test_fast_json_writer_equals_json_dumps_of_reference_dicts(hot_window: dict) -> None:
    from lab.sims.flickr.app import FlickrSim
    from lab.sims.flickr.control import Settings
    from lab.sims.flickr.wire import flickr_json

    app = FlickrSim(Universe(seed=SEED, end=END), Settings())
    for extras in (ALL_EXTRAS, "", "license,owner_name,url_o,url_6k,url_sq,description,tags"):
        for page in (1, 7):
            params = {
                "min_upload_date": str(hot_window["start"]),
                "per_page": "500",
                "max_upload_date": str(hot_window["end"]),
                "page": str(page),
                "extras": extras,
            }
            fast = app.search_json(params)
            assert fast == flickr_json({**app.search(params), "stat": "ok"})
