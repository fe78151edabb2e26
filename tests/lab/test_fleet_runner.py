"""`salt-run fleet.*` for real (root only): a lab of this module's own with its salt master,
db-1 and st-1 (the site's core, from `lab up`), the DigitalOcean simulator with the lab
backend on the bridge, and the master's `ccmirror_fleet` settings in its include dir.
`fleet.up` makes a lab droplet whose minion joins with the key the runner pre-seeded (the
master never auto-accepts), `fleet.list` shows it, `fleet.down` drains it, destroys it and
deletes its key. Highstate is left out (`highstate=False`): applying the roles is
tests/e2e's, and takes minutes. Torn down even when a test fails.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import digitalocean
import pytest
import yaml

from lab import do_fleet, salt_master
from lab.do_sim_process import RunningDoSim
from tests.conftest import wait_for
from tests.lab.conftest import TestLab, make_lab, root_only

pytestmark = root_only
UP_SECONDS = 300


@pytest.fixture(scope="module")
def fleet_lab() -> Iterator[tuple[TestLab, RunningDoSim]]:
    lab = make_lab("f")
    sim = None
    try:
        result = lab.lab("up", "--droplets", "db-1,st-1", timeout=UP_SECONDS)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        salt_master.ensure_salt()
        sim = do_fleet.start_simulator(lab.config)
        do_fleet.write_master_settings(lab.config, sim)
        yield lab, sim
    finally:
        if sim is not None:
            assert sim.stop() == 0, "the simulator did not stop cleanly"
        lab.down()


def salt_run(lab: TestLab, *args: str, timeout: float = 400) -> tuple[int, dict]:
    """`salt-run --out=json ARGS`: its exit status and its return (the last JSON document
    printed; the progress events come before it)."""
    rc, documents = salt_run_documents(lab, *args, timeout=timeout)
    return rc, documents[-1]


def salt_run_documents(lab: TestLab, *args: str, timeout: float = 400) -> tuple[int, list]:
    command = salt_master.salt_command(lab.config, "salt-run", ["--out=json", *args])
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    decoder, text, documents = json.JSONDecoder(), result.stdout.strip(), []
    try:
        while text:
            document, end = decoder.raw_decode(text)
            documents.append(document)
            text = text[end:].strip()
    except ValueError:
        raise AssertionError(f"salt-run {args}: {result.stdout}{result.stderr}") from None
    assert documents, f"salt-run {args}: no output: {result.stderr}"
    return result.returncode, documents


def keys(lab: TestLab) -> dict[str, list[str]]:
    command = salt_master.salt_command(lab.config, "salt-key", ["--out=json", "-L"])
    return json.loads(subprocess.run(command, capture_output=True, text=True).stdout)


def accepted_keys(lab: TestLab) -> list[str]:
    return keys(lab)["minions"]


def api_droplets(sim: RunningDoSim) -> list[str]:
    manager = digitalocean.Manager(token=sim.token, end_point=sim.end_point)
    return sorted(droplet.name for droplet in manager.get_all_droplets())


def test_up_list_down_make_and_remove_a_droplet_and_its_key(fleet_lab) -> None:
    lab, sim = fleet_lab
    master = yaml.safe_load((salt_master.config_dir(lab.config) / "master").read_text())
    assert master["auto_accept"] is False

    started = time.monotonic()
    rc, documents = salt_run_documents(
        lab, "fleet.up", "role=downloader", "count=1", "highstate=False"
    )
    up_seconds = time.monotonic() - started
    up = documents[-1]
    progress = [d["event"]["message"] for d in documents[:-1] if d.get("suffix") == "progress"]
    assert "downloader: 0 of 1 exist; making dl-1" in progress, progress
    assert rc == 0, up
    assert up["result"] is True, up
    (made,) = up["made"]
    assert made["name"] == "dl-1"
    assert made["tags"] == ["ccmirror", "ccmirror-downloader"]
    assert set(up["steps"]) == {"create", "active", "minions", "secrets", "sync"}
    print(f"fleet.up of one downloader: {up_seconds:.1f}s, steps {up['steps']}")

    # A lab droplet on the lab's /24 whose minion authenticated with the pre-seeded key.
    droplet = lab.state().droplets["dl-1"]
    assert made["private_ip"] == droplet.address
    # Accepted by the runner itself: no key ever waited for acceptance.
    assert keys(lab)["minions"] == ["db-1", "dl-1", "st-1"]
    assert keys(lab)["minions_pre"] == []
    seeded = (salt_master.minion_keys_dir(lab.config) / "dl-1").read_text()
    assert lab.shell("dl-1", "cat", "/etc/salt/pki/minion/minion.pub") == seeded
    assert lab.shell("dl-1", "cat", "/var/lib/cloud/instance/user-data.exit") == "0\n"
    ping = lab.lab("salt", "--", "--out=json", "dl-1", "test.ping")
    assert json.loads(ping.stdout) == {"dl-1": True}
    # secrets.init gave the new downloader its own secrets in the private pillar.
    own = salt_master.private_pillar(lab.config) / "minions" / "dl-1.sls"
    assert "queue_token" in yaml.safe_load(own.read_text())["downloader"]

    # Safe to run twice: the downloader wanted exists, nothing is made.
    rc, again = salt_run(lab, "fleet.up", "role=downloader", "count=1", "highstate=False")
    assert rc == 0 and again["made"] == [] and again["kept"] == ["dl-1"], again
    assert api_droplets(sim) == ["dl-1"]

    rc, listed = salt_run(lab, "fleet.list")
    assert rc == 0, listed
    entry = listed["droplets"]["dl-1"]
    assert (entry["minion"], entry["status"], entry["private_ip"]) == (
        "up",
        "active",
        droplet.address,
    )
    assert entry["work"] == "ccmirror is not installed"  # no highstate in this test
    assert listed["minions_without_droplet"] == ["db-1", "st-1"]

    # Down to none (as orch.download's end: keep=N of the droplets there are).
    rc, down = salt_run(lab, "fleet.down", "role=downloader", "keep=0", "wait=30")
    assert rc == 0 and down["keep"] == 0, down
    removed = down["removed"]["dl-1"]
    assert removed["removed"] is True and removed["key_deleted"] is True, down
    assert removed["drain"] == "ccmirror is not installed: nothing to drain"
    assert "dl-1" not in accepted_keys(lab)
    assert api_droplets(sim) == []
    wait_for(lambda: "dl-1" not in lab.state().droplets, 60, "the lab droplet to go", 0.5)
    assert not own.exists()  # secrets.forget: its token and storage key are gone too

    # Nothing left to take away, and destroying a gone name is a no-op.
    rc, gone = salt_run(lab, "fleet.destroy", "name=dl-1")
    assert rc == 0 and gone["removed"] == {}, gone


def test_bad_role_is_refused_with_a_non_zero_exit(fleet_lab) -> None:
    lab, sim = fleet_lab
    rc, refused = salt_run(lab, "fleet.up", "role=database", "count=1")
    assert rc == 1
    assert refused["error"] == "role must be one of downloader, harvester; not 'database'"
    assert api_droplets(sim) == []


def test_a_refused_create_leaves_no_key_behind(fleet_lab) -> None:
    lab, sim = fleet_lab
    sim.control(droplet_limit=0)
    try:
        rc, refused = salt_run(lab, "fleet.up", "role=downloader", "count=1", "highstate=False")
    finally:
        sim.control(droplet_limit=25)
    assert rc == 1 and refused["result"] is False, refused
    assert refused["errors"]["dl-1"].startswith("not created:"), refused
    assert "droplet limit" in refused["errors"]["dl-1"]
    assert "dl-1" not in accepted_keys(lab)
    assert api_droplets(sim) == []
