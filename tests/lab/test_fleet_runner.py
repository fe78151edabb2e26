"""`salt-run fleet.*` for real (root only): a lab of this module's own with its salt master,
db-1 and st-1 (the site's core, from `lab up`), the DigitalOcean simulator with the lab
backend on the bridge, and the master's `ccmirror_fleet` settings in its include dir.
`fleet.up` makes a lab droplet whose minion joins with the key the runner made and accepted
(the master never auto-accepts) and handed over SSH (its user_data, which any process on the
droplet can read, holds no key), `fleet.list` shows it, `fleet.down` drains it, destroys it
and deletes its key. Highstate of the workers is left out (`highstate=False`): applying the
roles is tests/e2e's, and takes minutes; db-1 and st-1 get theirs for the one test that
needs the queue and storage's S3 gateway (its token and S3 key refused as soon as
fleet.down returns). Torn down even when a test fails.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import digitalocean
import pytest
import requests
import yaml
from botocore.exceptions import ClientError

from lab.fleet import lifecycle as fleet
from lab.fleet import salt_master
from lab.processes import seaweedfs_s3 as s3
from lab.sims.digitalocean import service as do_fleet
from lab.sims.digitalocean.process import RunningDoSim
from tests.conftest import wait_for
from tests.lab.conftest import TestLab, make_lab, root_only

pytestmark = root_only
UP_SECONDS = 300
HIGHSTATE_SECONDS = 1200
USER_DATA = "/var/lib/cloud/instance/user-data.txt"  # where cloud-init keeps it, as in the lab
CORE = ("db-1", "st-1")  # Terraform's part of the lab (`lab up`), before the simulator


@pytest.fixture(scope="module")
def fleet_lab() -> Iterator[tuple[TestLab, RunningDoSim]]:
    lab = make_lab("f")
    sim = None
    try:
        result = lab.lab("up", "--droplets", ",".join(CORE), timeout=UP_SECONDS)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        salt_master.ensure_salt()
        sim = do_fleet.start_simulator(lab.config)
        do_fleet.write_master_settings(lab.config, sim)
        yield lab, sim
    finally:
        if sim is not None:
            assert sim.stop() == 0, "the simulator did not stop cleanly"
        lab.down()


@pytest.fixture(scope="module")
def served_core(fleet_lab) -> tuple[TestLab, RunningDoSim]:
    """db-1 and st-1 with their roles applied: the queue and SeaweedFS's S3 gateway running."""
    lab, sim = fleet_lab
    result = lab.lab("highstate", "db-1,st-1", timeout=HIGHSTATE_SECONDS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return lab, sim


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
    """The droplets fleet.up made, as the API lists them (with the core Terraform made, which
    the simulator lists from its start: CORE)."""
    manager = digitalocean.Manager(token=sim.token, end_point=sim.end_point)
    listed = sorted(droplet.name for droplet in manager.get_all_droplets())
    assert set(CORE) <= set(listed), listed
    return [name for name in listed if name not in CORE]


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
    assert made["tags"] == ["ccmirror", "ccmirror-downloader", "ccmirror-fleet"]
    assert set(up["steps"]) == {"create", "active", "handover", "minions", "secrets", "sync"}
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
    assert_no_key_in_user_data(lab, [made["name"] for made in up["made"]])
    # The keys came over SSH with the fleet's key: DigitalOcean (the simulator) installed its
    # public half for root; the droplet's host key is its own, not the host's.
    fleet_key = salt_master.master_pki(lab.config) / "ccmirror-fleet-ssh"
    public = subprocess.run(["ssh-keygen", "-y", "-f", str(fleet_key)], capture_output=True)
    authorized = lab.shell("dl-1", "cat", "/root/.ssh/authorized_keys").split()
    assert authorized[:2] == public.stdout.decode().split()[:2]
    host_key = Path("/etc/ssh/ssh_host_ed25519_key.pub").read_text()
    assert lab.shell("dl-1", "cat", "/etc/ssh/ssh_host_ed25519_key.pub") != host_key
    mode = lab.shell("dl-1", "stat", "-c", "%a %U", "/etc/salt/pki/minion/minion.pem")
    assert mode == "600 root\n"
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
    assert listed["minions_without_droplet"] == []  # the core's droplets are listed too

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
    assert refused["error"] == "role must be one of downloader, harvester, storage; not 'database'"
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


def assert_no_key_in_user_data(lab: TestLab, names: list[str]) -> None:
    """What any process on each droplet can read as its user_data: no private key, no key
    at all (neither the minion's public half nor the master's)."""
    assert names
    for name in names:
        user_data = lab.shell(name, "cat", USER_DATA)
        assert user_data.startswith("#!/bin/sh")
        assert "PRIVATE KEY" not in user_data and "-----BEGIN" not in user_data, name
        minion_pub = (salt_master.minion_keys_dir(lab.config) / name).read_text()
        body = "".join(minion_pub.splitlines()[1:-1])
        assert body[:40] not in user_data.replace("\n", ""), name


def worker_secrets(lab: TestLab, name: str) -> dict:
    own = salt_master.private_pillar(lab.config) / "minions" / f"{name}.sls"
    return yaml.safe_load(own.read_text())["downloader"]


def s3_put(writer) -> int:
    """What the S3 gateway answers a downloader's put of a probe object."""
    try:
        writer.put_object(Bucket=s3.IMAGES_BUCKET, Key="probes/fleet-runner-test", Body=b"probe")
    except ClientError as error:
        return int(error.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200


def queue_status(lab: TestLab, token: str) -> int:
    """What the queue on db-1 answers the token (releasing a lease that does not exist: no
    change either way): 401 when it knows no such token."""
    address = lab.state().droplets["db-1"].address
    url = f"http://{address}:{fleet.QUEUE_PORT}/v1/leases/999999999/release"
    headers = {"Authorization": f"Bearer {token}"}
    return requests.post(url, headers=headers, json={}, timeout=10).status_code


def test_down_refuses_the_removed_downloaders_token_and_storage_key_at_once(served_core) -> None:
    lab, sim = served_core
    rc, up = salt_run(lab, "fleet.up", "role=downloader", "count=1", "highstate=False")
    assert rc == 0 and up["result"] is True, up
    # The downloader made now, or the one an earlier test left (its steps all done).
    (name,) = [made["name"] for made in up["made"]] or up["kept"]
    assert_no_key_in_user_data(lab, [name])
    # db-1 and st-1 learn the new downloader's token and S3 key (what fleet.up's highstate of
    # them does; here only what renders them, as the runner's revoke applies it).
    for target, call in (
        ("db-1", ["state.sls_id", "queue-tokens-file-managed", "mods=queue.config"]),
        ("st-1", ["saltutil.sync_modules"]),
        ("st-1", ["ccmirror_storage_access.apply"]),
    ):
        args = ["--out=json", "--static", target, *call]
        applied = subprocess.run(
            salt_master.salt_command(lab.config, "salt", args), capture_output=True, text=True
        )
        assert applied.returncode == 0, applied.stdout + applied.stderr
    own = worker_secrets(lab, name)
    gateway = f"http://{lab.state().droplets['st-1'].address}:8333"
    writer = s3.client(gateway, s3.S3Key(own["s3"]["access_key"], own["s3"]["secret_key"]), 1)
    wait_for(lambda: s3_put(writer) == 200, 30, "st-1's gateway to take its S3 key", 0.5)
    wait_for(lambda: queue_status(lab, own["queue_token"]) != 401, 30, "the queue to know it", 0.5)

    rc, down = salt_run(lab, "fleet.down", "role=downloader", "keep=0", "wait=30")
    assert rc == 0 and down["removed"][name]["removed"] is True, down
    assert down["revoked"] == {"db-1": "ok", "st-1": "ok"}, down
    # No highstate after the runner: refused now. The gateway re-reads s3.json on the SIGHUP
    # the runner sent (in a goroutine of its own: within a moment, not before the signal
    # returns); the queue looks at its tokens file at most once a second. Both are polled.
    wait_for(lambda: s3_put(writer) == 403, 10, "st-1's gateway to refuse its S3 key", 0.5)
    wait_for(
        lambda: queue_status(lab, own["queue_token"]) == 401, 10, "the queue to refuse it", 0.5
    )
