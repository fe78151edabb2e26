"""Re-checks (#21) end to end: the simulator over HTTP, real MariaDB, the real `harvester`.

A harvested range seeds again as its next generation (refused while one is unfinished) and a
license change it picks up flags a stored photo without touching its state; `harvester
recheck` asks getInfo about every stored photo and flags the deleted, private and no longer
CC ones (and clears the flags when Flickr says otherwise again); `harvester flags export`
lists them; the simulator's getInfo and `/_sim/photos` are as awkward as Flickr."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
import requests

from lab.sims.flickr.process import RunningSim
from tests.conftest import ROOT, VENV_BIN, harvester_env, run_harvester, wait_for

START = 1577836800  # 2020-01-01
END = START + 2 * 3600  # exclusive
UNIVERSE = (
    "--seed", "7", "--start", "2020-01-01", "--end", "2020-01-02",
    "--hot-window-every", "0", "--hot-second-every", "0", "--rate-limit", "0",
)  # fmt: skip
NOT_CC = 0  # All Rights Reserved


@pytest.fixture
def sim(flickr_sim_factory) -> RunningSim:
    return flickr_sim_factory(*UNIVERSE)


@pytest.fixture
def env(db_url: str, sim: RunningSim) -> dict[str, str]:
    return harvester_env(db_url, sim)


def ok(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = run_harvester(*args, env=env)
    assert done.returncode == 0, done.stderr
    return done


def seed(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return run_harvester(
        "seed", "timeslices", "--start", str(START), "--end", str(END), "--stride", "3600",
        *extra, env=env,
    )  # fmt: skip


def harvested(env: dict[str, str]) -> None:
    """The range harvested and reconciled into the catalog."""
    assert seed(env).returncode == 0
    ok("work", "--worker", "hv-1", env=env)
    ok("reconcile", env=env)


def store(sql, photo_ids: list[int]) -> dict[int, int]:
    """Mark photos stored as a downloader's report would: their image ids by photo id."""
    rows = sql(
        "SELECT photo_id, id FROM images WHERE photo_id IN ("
        + ",".join(["%s"] * len(photo_ids)) + ")",
        *photo_ids,
    )  # fmt: skip
    ids = {int(p): int(i) for p, i in rows}
    for n, image_id in enumerate(ids.values()):
        sql("UPDATE images SET state = 'stored' WHERE id = %s", image_id)
        sql(
            "INSERT INTO stored_images (image_id, sha256, bytes, path, worker, lease_id,"
            " stored_at) VALUES (%s, %s, 10, %s, 'dl-1', 1, %s)",
            image_id, bytes(32), f"images/{image_id}.jpg", f"2026-01-01 00:00:{n:02d}",
        )  # fmt: skip
    return ids


def non_original_photos(sql, count: int) -> list[int]:
    """Photos whose stored URL carries the photo's secret (not an original's, nor one of the
    sizes with a secret of their own): getInfo takes it, so a private one is told apart from
    a deleted one."""
    rows = sql(
        "SELECT photo_id FROM images WHERE image_size NOT IN ('o', 'h', 'k', '3k', '4k', '5k',"
        " '6k') ORDER BY photo_id LIMIT %s",
        count,
    )
    return [int(r[0]) for r in rows]


def flags(sql) -> dict[int, str]:
    rows = sql("SELECT i.photo_id, f.flag FROM image_flags f JOIN images i ON i.id = f.image_id")
    return {int(p): flag for p, flag in rows}


# --- generations ---------------------------------------------------------------------------


def test_a_harvested_range_is_harvested_again_as_the_next_generation(env, sim, sql):
    harvested(env)
    first = sql("SELECT COUNT(*) FROM search_tasks")[0][0]
    photo, other = non_original_photos(sql, 2)
    stored = store(sql, [photo, other])
    recheck(env, "--once")  # both checked: CC and public
    assert sim.change_photos({photo: NOT_CC}).status_code == 200

    again = seed(env, "--regenerate")
    assert again.returncode == 0, again.stderr
    assert "created 2 search tasks" in again.stdout
    generations = "SELECT generation, COUNT(*) FROM search_tasks GROUP BY generation"
    assert sql(generations) == [(1, first), (2, 2)]
    # While generation 2 is pending, a third is refused with one line, and nothing changes.
    refused = seed(env, "--regenerate")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "still pending or running" in refused.stderr
    assert sql(generations) == [(1, first), (2, 2)]
    # Re-seeding without --regenerate stays a no-op.
    assert "created 0 search tasks" in seed(env).stdout

    ok("work", "--worker", "hv-1", env=env)
    assert sql("SELECT COUNT(*) FROM search_tasks WHERE state <> 'done'") == [(0,)]
    # A CC search cannot show a photo that left CC: the re-harvest missed it, so its
    # re-check comes first, and that flags it; its object is kept (state `stored`).
    assert sql("SELECT image_id FROM image_checks WHERE checked_at IS NULL") == [(stored[photo],)]
    recheck(env, "--limit", "1")
    assert flags(sql) == {photo: "not_cc"}
    assert sql("SELECT state FROM images WHERE photo_id = %s", photo) == [("stored",)]
    assert seed(env, "--regenerate").returncode == 0  # generation 2 done: 3 may start


def test_queries_are_harvested_again_as_the_next_generation_once_done(env, sql, tmp_path):
    terms = tmp_path / "terms.txt"
    terms.write_text("red bridge\nsunset\n")

    def seed_queries(*extra: str) -> subprocess.CompletedProcess:
        return run_harvester("seed", "queries", str(terms), "--start", str(START), "--end",
                             str(END), *extra, env=env)  # fmt: skip

    assert "created 2 search tasks" in seed_queries().stdout
    assert seed_queries("--regenerate").returncode == 1  # generation 1 is pending
    sql("UPDATE search_tasks SET state = 'done'")
    assert "created 2 search tasks" in seed_queries("--regenerate").stdout
    assert sql("SELECT query_text, generation FROM search_tasks ORDER BY generation, id") == [
        ("red bridge", 1), ("sunset", 1), ("red bridge", 2), ("sunset", 2)
    ]  # fmt: skip


def test_reconcile_flags_a_stored_photo_whose_license_left_cc_and_keeps_it_stored(env, sql):
    harvested(env)
    photo, other = non_original_photos(sql, 2)
    store(sql, [photo, other])
    # A source reports the photo under All Rights Reserved (as a search with that license
    # would), the other one under another CC license.
    sql("UPDATE flickr_timeslice_photos SET license_id = %s WHERE photo_id = %s", NOT_CC, photo)
    sql("UPDATE flickr_timeslice_photos SET license_id = 9 WHERE photo_id = %s", other)

    ok("reconcile", env=env)

    assert sql("SELECT photo_id, state, license_id FROM images WHERE photo_id IN (%s, %s)"
               " ORDER BY photo_id", *sorted((photo, other))) == sorted(
        [(photo, "stored", NOT_CC), (other, "stored", 9)]
    )  # fmt: skip
    assert sql("SELECT photo_id, new_license_id, state_before FROM image_license_changes"
               " ORDER BY photo_id") == sorted(
        [(photo, NOT_CC, "stored"), (other, 9, "stored")]
    )  # fmt: skip
    assert flags(sql) == {photo: "not_cc"}
    # CC again: the flag goes.
    sql("UPDATE flickr_timeslice_photos SET license_id = 4 WHERE photo_id = %s", photo)
    ok("reconcile", env=env)
    assert flags(sql) == {}


# --- the background re-check ---------------------------------------------------------------


def recheck(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return ok("recheck", *args, env=env)


def test_recheck_flags_deleted_private_and_no_longer_cc_photos_and_clears_them(env, sim, sql):
    harvested(env)
    photos = non_original_photos(sql, 6)
    deleted, private, relabelled, *fine = photos
    ids = store(sql, photos)
    answer = sim.change_photos({deleted: "deleted", private: "private", relabelled: NOT_CC})
    assert answer.status_code == 200, answer.text
    searched = sim.search_calls()  # the harvest's

    done = recheck(env, "--once")

    assert flags(sql) == {deleted: "gone", private: "private", relabelled: "not_cc"}
    # The CC search of the batch's span lists the three unchanged photos: only the other
    # three cost a getInfo each. The command reports every call it made.
    calls = sim.get("/_sim/stats")["calls"]
    assert calls["flickr.photos.getInfo"] == 3
    made = calls["flickr.photos.getInfo"] + calls["flickr.photos.search"] - searched
    assert f"recheck: 6 photos, {made} API calls ({6 / made:.2f} photos/call)" in done.stdout
    checks = dict(sql("SELECT image_id, result FROM image_checks"))
    assert checks == {
        ids[deleted]: "gone", ids[private]: "private", ids[relabelled]: "not_cc",
        **{ids[p]: "ok" for p in fine},
    }  # fmt: skip
    flagged = (ids[deleted], ids[private], ids[relabelled])
    assert sql("SELECT DISTINCT state FROM images WHERE id IN (%s, %s, %s)", *flagged) == [
        ("stored",)
    ]

    exported = [json.loads(line) for line in ok("flags", "export", env=env).stdout.splitlines()]
    licenses = dict(sql("SELECT photo_id, license_id FROM images"))
    assert {(r["photo_id"], r["flag"], r["license"]) for r in exported} == {
        (deleted, "gone", licenses[deleted]),
        (private, "private", licenses[private]),
        (relabelled, "not_cc", NOT_CC),
    }
    assert all(r["object"] == f"images/{ids[r['photo_id']]}.jpg" for r in exported)
    # `harvester status` (and batch.status) counts them for the operator.
    status = json.loads(ok("status", "--json", env=env).stdout)["rechecks"]
    assert status["flags"] == {"not_cc": 1, "gone": 1, "private": 1}
    assert status["last_check"] is not None
    shown = ok("status", env=env).stdout
    assert "; flagged: not_cc 1, gone 1, private 1" in shown

    # The owner makes the photo public again and the license CC again: the next round clears
    # those flags; a deleted photo stays gone.
    cc_again = sql("SELECT license_id FROM images WHERE photo_id = %s", relabelled)[0][0]
    assert sim.change_photos({private: "public", relabelled: int(cc_again)}).status_code == 200
    recheck(env, "--once")
    assert flags(sql) == {deleted: "gone"}


def test_recheck_limit_takes_the_oldest_checked_first(env, sim, sql):
    harvested(env)
    photos = non_original_photos(sql, 4)
    ids = store(sql, photos)
    recheck(env, "--limit", "2")
    first = {i for i, at in sql("SELECT image_id, checked_at FROM image_checks") if at is not None}
    assert len(first) == 2
    recheck(env, "--limit", "2")
    checked = sql("SELECT image_id FROM image_checks WHERE checked_at IS NOT NULL")
    assert {i for (i,) in checked} == set(ids.values())
    # A photo no longer stored (a takedown) leaves the re-check's line.
    taken_down = ids[photos[0]]
    sql("UPDATE images SET state = 'withdrawn' WHERE id = %s", taken_down)
    assert "recheck: 3 photos" in recheck(env, "--once").stdout
    assert {i for (i,) in sql("SELECT image_id FROM image_checks")} == set(ids.values()) - {
        taken_down
    }


CHECKED_OK = "SELECT COUNT(*) FROM image_checks WHERE result = 'ok'"


def start_recheck(env: dict[str, str], calls_per_hour: int) -> subprocess.Popen:
    """The background re-check as its unit runs it: rounds until SIGTERM."""
    return subprocess.Popen(
        [str(VENV_BIN / "harvester"), "recheck", "--calls-per-hour", str(calls_per_hour)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_recheck_stops_cleanly_on_sigterm_within_its_call_budget(env, sim, sql):
    harvested(env)
    store(sql, non_original_photos(sql, 5))
    searched = sim.search_calls()  # the harvest's
    # 120 calls an hour: a bucket of two goes out at once (the license table, then one
    # search that finds all five photos CC and public); the next round's first call waits
    # half a minute for the key's rate limiter, and SIGTERM ends that wait.
    process = start_recheck(env, 120)
    try:
        wait_for(lambda: sql(CHECKED_OK) == [(5,)], 30, "the first round")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "recheck: 5 photos, 1 API calls (5.00 photos/call)" in out and "(stopped)" in out
    assert sim.search_calls() - searched == 1
    assert "flickr.photos.getInfo" not in sim.get("/_sim/stats")["calls"]


def test_recheck_goes_on_after_mariadb_restarts(env, sim, sql, mariadb):
    """A MariaDB restart (the e2e's fault) does not end the background re-check: it waits
    for the database and goes on, as the harvester's worker does."""
    harvested(env)
    photos = non_original_photos(sql, 5)
    store(sql, photos)
    process = start_recheck(env, 7200)
    try:
        wait_for(lambda: sql(CHECKED_OK) == [(5,)], 30, "the first round")
        mariadb.stop()
        mariadb.ensure_running()
        assert sim.change_photos({photos[0]: "deleted"}).status_code == 200
        wait_for(lambda: flags(sql) == {photos[0]: "gone"}, 60, "a round after the restart")
        assert process.poll() is None, "still running"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "database connection lost" in err and "(stopped)" in out


# --- the simulator ------------------------------------------------------------------------


def get_info(sim: RunningSim, photo_id: int, **extra: str) -> requests.Response:
    params = {"method": "flickr.photos.getInfo", "api_key": sim.key, "photo_id": photo_id,
              "format": "json", "nojsoncallback": 1, **extra}  # fmt: skip
    return requests.post(sim.api_url, data=params, timeout=10)


def test_the_simulators_getinfo_and_photo_changes_are_as_awkward_as_flickr(sim):
    day = sim.truth(START, END - 1)
    photo, gone, hidden = sorted(day)[:3]

    info = get_info(sim, photo).json()
    assert info["stat"] == "ok" and info["photo"]["visibility"]["ispublic"] == 1
    assert isinstance(info["photo"]["license"], str)  # a string, as Flickr sends it
    hidden_secret = get_info(sim, hidden).json()["photo"]["secret"]

    # Bad input: one clear error, nothing changed.
    for body in ({str(photo): "vanished"}, {"x": "deleted"}, {str(photo): 99}, {"1": "deleted"}):
        refused = requests.post(sim.base_url + "/_sim/photos", json=body, timeout=10)
        assert refused.status_code == 400 and refused.json()["error"]
    assert sim.truth(START, END - 1) == day

    assert sim.change_photos({gone: "deleted", hidden: "private", photo: NOT_CC}).ok
    # HTTP 200 with stat=fail code 1, for deleted and private alike ...
    for missing in (gone, hidden):
        answer = get_info(sim, missing)
        assert answer.status_code == 200
        assert (answer.json()["stat"], answer.json()["code"]) == ("fail", 1)
    # ... unless the secret is passed, which shows the private photo as not public.
    shown = get_info(sim, hidden, secret=hidden_secret).json()
    assert shown["photo"]["visibility"]["ispublic"] == 0
    assert get_info(sim, photo).json()["photo"]["license"] == str(NOT_CC)
    # Searches reflect it: none of the three is a CC photo of the range any more.
    assert sim.truth(START, END - 1) == day - {photo, gone, hidden}
