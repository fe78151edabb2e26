"""The whole mirror in one lab of this module's own (lab/mission.py, as `make lab` runs it),
with faults injected while the downloaders work, then the exact final state checked.

While the download runs, one after the other (each once the last has settled and photos are
being stored again):
- `maintenance.on` then `maintenance.off` (no lease stays out while it is on);
- `kill -9` of dl-1's daemon, restarted after a second as a real droplet's systemd would;
- storage unreachable (st-1's link down) for 30 seconds;
- MariaDB restarted;
- `orch.rotate` of the storage key (no push refused; the old keys refused after);
- `deploy.release` of a new version from the lab's copy of the checkout.
Then: every CC photo of the ground truth stored exactly once with the image host's bytes and
its manifest line, or classified gone/failed as its fault says (lab/mirror_check.py); the
storage audit agrees; testinfra passes against the fleet left.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lab import faults, fleet, image_service, mission, salt_master
from tests.conftest import wait_for
from tests.lab.conftest import make_lab, root_only

pytestmark = root_only
LINK_DOWN_SECONDS = 30
# Seconds per image while the faults run, so the download outlasts them: a downloader
# fetches 64 at once, so two store ~8 photos/s.
LATENCY = 15.0
FETCHED_AGAIN = 50  # image requests after a fault before the next one


@pytest.fixture(scope="module")
def run() -> Iterator[dict]:
    """The mission with its faults; what each fault left, for the tests below."""
    lab = make_lab("e")
    options = mission.Options(downloaders=2, harvesters=1, photos=2500, fault_every=40)
    m = mission.Mission(lab.config, options, show=print, own_checkout=True)
    seen: dict = {"mission": m}
    try:
        m.core()
        m.secrets_and_core_highstate()
        m.harvesters_up()
        m.harvest()
        m.download(during=lambda: faults_during_download(m, seen))
        seen["audit"] = m.audit()
        seen["report"] = m.check()
        yield seen
    finally:
        lab.down()


def stored(m: mission.Mission) -> int:
    with m.catalog() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM stored_images")
        return cur.fetchone()[0]


def fetching_again(m: mission.Mission, timeout: float = 240) -> None:
    """The downloaders fetch again after a fault: FETCHED_AGAIN more image requests. (A
    photo counts as stored only when its whole lease is pushed, minutes at this latency.)"""
    target = image_service.stats(m.config)["total"] + FETCHED_AGAIN
    wait_for(
        lambda: image_service.stats(m.config)["total"] >= target,
        timeout,
        "the downloaders to fetch again",
        1,
    )


def active_leases(m: mission.Mission) -> int:
    with m.catalog() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM leases WHERE state = 'active'")
        return cur.fetchone()[0]


def faults_during_download(m: mission.Mission, seen: dict) -> None:
    wait_for(lambda: stored_or_zero(m) >= 100, 600, "the downloaders to store photos", 1)
    image_service.set_latency(m.config, LATENCY)

    m.show("    fault: maintenance on, then off")
    m.salt_run("maintenance.on", "wait=120")
    seen["leases_in_maintenance"] = active_leases(m)
    seen["maintenance_status"] = m.salt_run("maintenance.status")
    m.salt_run("maintenance.off")
    fetching_again(m)

    m.show("    fault: kill -9 of dl-1's daemon")
    killed = faults.kill_daemon(m.config, "dl-1", "ccmirror-downloader")
    faults.restart_like_systemd(m.config, killed)
    fetching_again(m)

    m.show(f"    fault: st-1 unreachable for {LINK_DOWN_SECONDS}s")
    faults.link_down(m.config, "st-1")
    time.sleep(LINK_DOWN_SECONDS)  # the fault's length, not a wait for an outcome
    faults.link_up(m.config, "st-1")
    # As an operator would before steering it again: its minion answers.
    wait_for(lambda: salt_master.ping(m.config).get("st-1"), 180, "st-1's minion to answer", 2)
    fetching_again(m)

    m.show("    fault: MariaDB restarted")
    faults.restart_mariadb(m.config)
    fetching_again(m)

    m.show("    fault: orch.rotate of the storage key")
    seen["old_storage_keys"] = storage_keys(m)
    m.orchestrate("orch.rotate", {"rotate": {"what": "storage_key"}})
    seen["new_storage_keys"] = storage_keys(m)  # orch.rotate pushed with them (check_storage)
    fetching_again(m)

    m.show("    fault: deploy.release of a new version")
    seen["release"] = release_new_version(m)
    fetching_again(m)
    seen["pending_after_faults"] = pending(m)
    # Every push since the rotation began went through: none refused for its key.
    seen["push_refusals"] = {minion: refusals(m, minion) for minion in seen["old_storage_keys"]}
    image_service.set_latency(m.config, 0)  # the rest at full speed


def stored_or_zero(m: mission.Mission) -> int:
    try:
        return stored(m)
    except Exception:  # noqa: BLE001 - the database restarting: asked again
        return 0


def pending(m: mission.Mission) -> int:
    with m.catalog() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM images WHERE state = 'pending'")
        return cur.fetchone()[0]


def refusals(m: mission.Mission, minion: str) -> int:
    """Pushes storage refused (an unknown key) in the downloader's log so far."""
    droplet = m.state().droplets[minion]
    log = Path(f"/proc/{droplet.pid}/root/var/log/journal/ccmirror-downloader.service.log")
    return log.read_text(errors="replace").count("Permission denied")


def storage_keys(m: mission.Mission) -> dict[str, str]:
    """Each downloader's current storage key (private), from its own pillar file."""
    keys = {}
    for path in sorted((salt_master.private_pillar(m.config) / "minions").glob("dl-*.sls")):
        keys[path.stem] = yaml.safe_load(path.read_text())["downloader"]["ssh_key"]
    return keys


def release_new_version(m: mission.Mission) -> dict:
    """A new patch version in the lab's checkout (pyproject.toml and the pillar's pin move
    together, as in a release commit), rolled out by `deploy.release`."""
    checkout = m.checkout
    pyproject = checkout / "pyproject.toml"
    old = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.MULTILINE)[1]
    major, minor, patch = old.split(".")
    new = f"{major}.{minor}.{int(patch) + 1}"
    for path in (pyproject, checkout / "pillar" / "ccmirror.sls"):
        path.write_text(path.read_text().replace(old, new, 1))
    ret = m.salt_run("deploy.release", "batch=1", "wait=120")
    return {"old": old, "new": new, "ret": ret}


def test_every_photo_is_stored_once_or_classified(run) -> None:
    report = run["report"]
    assert report.ok, report.problem_text() + "\n" + "\n".join(report.summary_lines())
    assert report.states["stored"] > 2000
    assert report.states.get("gone", 0) > 0 and report.states.get("failed", 0) > 0


def test_maintenance_left_no_lease_out(run) -> None:
    assert run["leases_in_maintenance"] == 0
    status = run["maintenance_status"]
    assert status["maintenance"] is True, status
    downloaders = {m: line for m, line in status["minions"].items() if m.startswith("dl-")}
    assert sorted(downloaders) == ["dl-1", "dl-2"], status
    assert all("lease" not in line or "no lease" in line for line in downloaders.values()), status


def test_storage_key_rotation_refused_no_push_and_the_old_keys_after(run) -> None:
    m = run["mission"]
    old, new = run["old_storage_keys"], run["new_storage_keys"]
    assert sorted(old) == sorted(new) == ["dl-1", "dl-2"]
    assert all(old[minion] != new[minion] for minion in old)
    assert run["push_refusals"] == {"dl-1": 0, "dl-2": 0}
    st1 = m.state().droplets["st-1"].address
    for minion, private_key in old.items():
        assert not can_push(m, st1, private_key), f"{minion}'s old key still accepted"


def can_push(m: mission.Mission, host: str, private_key: str) -> bool:
    key = m.config.root / "old-key"
    key.touch(mode=0o600)
    key.write_text(private_key)
    result = subprocess.run(
        ["ssh", "-i", str(key), "-p", "2222", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         f"ccmirror-storage@{host}", "true"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    key.unlink()
    return "Permission denied" not in result.stderr


def test_release_upgraded_the_running_fleet(run) -> None:
    release = run["release"]
    ret = release["ret"]
    assert ret["result"] is True, ret
    assert ret["wheel"]["version"] == release["new"]
    versions = {minion: report.get("to") for minion, report in ret["minions"].items()}
    assert versions and set(versions.values()) == {release["new"]}, versions
    assert run["pending_after_faults"] > 0, "the download ended before the release: no test"


def test_the_audit_finds_storage_as_the_catalog_says(run) -> None:
    audit = run["audit"]["audit"]
    assert audit["missing"] == 0 and audit["corrupt"] == 0, audit
    assert audit["orphans"] == 0, audit


def test_testinfra_passes_against_the_fleet(run) -> None:
    m = run["mission"]
    argv, env = fleet.infra_command(m.config, ["-q", "-p", "no:cacheprovider"])
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
