"""The spool journal: what a restarted downloader finds, and what it reports and pushes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from downloader.spool import Spool

ITEMS = [
    {
        "id": n,
        "photo_id": 5000 + n,
        "image_url": f"https://live.staticflickr.com/65535/{5000 + n}_abc_o.jpg",
        "license_id": 4,
        "license_name": "Attribution License",
        "license_url": "https://creativecommons.org/licenses/by/2.0/",
        "owner": "1@N01",
        "owner_name": "Ann Ö",
        "title": f"photo {n}",
        "page_url": f"https://www.flickr.com/photos/1@N01/{5000 + n}/",
    }
    for n in (1, 2, 3)
]


def stored(n: int) -> dict:
    return {
        "id": n,
        "result": "stored",
        "path": f"images/x/y/{5000 + n}.jpg",
        "sha256": "ab" * 32,
        "bytes": 100 + n,
        "url": ITEMS[n - 1]["image_url"],
        "error": "",
    }


def test_a_restart_finds_the_lease_its_phase_and_the_fetches_that_ended(tmp_path):
    spool = Spool(tmp_path)
    journal = spool.begin(7, "2026-11-23T12:00:00Z", ITEMS)
    journal.record([stored(1), {"id": 2, "result": "gone", "error": "HTTP 410"}])
    # A kill mid-write leaves a torn last line: it is not a result.
    with open(journal.results_path, "a") as out:
        out.write('{"id": 3, "result": "sto')
    resumed = Spool(tmp_path).current()
    assert resumed.lease_id == 7 and resumed.phase == "fetching"
    assert sorted(resumed.results()) == [1, 2]
    assert [item["id"] for item in resumed.unfetched()] == [3]
    resumed.set_phase("fetched")
    assert Spool(tmp_path).current().phase == "fetched"
    with pytest.raises(ValueError):
        resumed.set_phase("fetching")


def test_manifest_carries_attribution_and_reports_have_the_queue_shape(tmp_path):
    journal = Spool(tmp_path).begin(7, "2026-11-23T12:00:00Z", ITEMS)
    journal.record([stored(1), stored(3), {"id": 2, "result": "retry", "error": "HTTP 503"}])
    relative = journal.write_manifest(datetime(2026, 11, 23, tzinfo=UTC))
    assert relative == "manifests/2026/11/23/7.jsonl"
    lines = [json.loads(x) for x in (journal.files / "manifest.jsonl").read_text().splitlines()]
    assert [line["photo_id"] for line in lines] == [5001, 5003]
    assert lines[0] == {
        "photo_id": 5001,
        "path": "images/x/y/5001.jpg",
        **{k: ITEMS[0][k] for k in ("license_id", "license_name", "license_url")},
        "owner": "1@N01",
        "owner_name": "Ann Ö",
        "title": "photo 1",
        "page_url": ITEMS[0]["page_url"],
        "source_url": ITEMS[0]["image_url"],
        "sha256": "ab" * 32,
        "bytes": 101,
    }
    assert journal.pushed_paths() == [
        "images/x/y/5001.jpg",
        "images/x/y/5003.jpg",
        "manifests/2026/11/23/7.jsonl",
    ]
    reports = sorted(journal.reports(), key=lambda r: r["id"])
    assert reports[1] == {"id": 2, "result": "retry", "error": "HTTP 503"}
    assert reports[0] == {
        "id": 1,
        "result": "stored",
        "sha256": "ab" * 32,
        "bytes": 101,
        "path": "images/x/y/5001.jpg",
    }


def test_a_lease_directory_without_its_journal_is_cleared(tmp_path):
    (tmp_path / "lease" / "files").mkdir(parents=True)
    spool = Spool(tmp_path)
    assert spool.current() is None and not (tmp_path / "lease").exists()
    journal = spool.begin(8, "x", ITEMS)
    with pytest.raises(RuntimeError):
        spool.begin(9, "x", ITEMS)
    spool.finish(journal)
    assert spool.current() is None
