"""The DigitalOcean simulator as the runners will meet it: a real HTTP server, driven through
python-digitalocean itself (it reads DIGITALOCEAN_END_POINT), with DigitalOcean's awkward
parts (new -> active, pagination past per_page, 401/404/422/429) and the shapes of the real
responses in ../shared/fixtures/digitalocean/. One test runs the lab backend as root: a
droplet created through the API is a lab droplet that ran its user_data.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import secrets
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import digitalocean
import pytest
import requests
from digitalocean import DataReadError, NotFoundError

from lab.sims.digitalocean.process import RunningDoSim, spawn
from tests.conftest import FIXTURES, ROOT, wait_for

DO_FIXTURES = FIXTURES / "digitalocean"
IMAGE, SIZE, REGION = "debian-12-x64", "s-1vcpu-1gb", "nyc3"


@pytest.fixture
def start_sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., RunningDoSim]]:
    """Starts a simulator (memory backend unless told) with a throw-away token and points
    python-digitalocean at it; every one is stopped after the test, and must stop cleanly."""
    started: list[RunningDoSim] = []

    def start(*args: str) -> RunningDoSim:
        sim = spawn("--boot-seconds", "0.3", "--action-seconds", "0.2", *args, token=new_token())
        started.append(sim)
        for name, value in sim.env().items():
            monkeypatch.setenv(name, value)
        return sim

    yield start
    for sim in started:
        assert sim.stop() == 0, "the simulator did not stop cleanly on SIGTERM"


@pytest.fixture
def sim(start_sim: Callable[..., RunningDoSim]) -> RunningDoSim:
    return start_sim()


def new_token() -> str:
    return "dop_v1_" + secrets.token_hex(32)


def api(sim: RunningDoSim, method: str, path: str, token: str | None = None, **kwargs):
    """A raw call, to see statuses, headers and bodies the library hides."""
    headers = {"Authorization": f"Bearer {token or sim.token}"}
    return requests.request(method, sim.end_point + path, headers=headers, timeout=10, **kwargs)


def ed25519_public_key(comment: str = "test") -> str:
    """A well-formed OpenSSH public key (its blob is what the fingerprint is taken of)."""
    kind = b"ssh-ed25519"
    blob = struct.pack(">I", len(kind)) + kind + struct.pack(">I", 32) + secrets.token_bytes(32)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


def new_droplet(name: str, **extra: object) -> digitalocean.Droplet:
    droplet = digitalocean.Droplet(name=name, region=REGION, image=IMAGE, size_slug=SIZE, **extra)
    droplet.create()
    return droplet


def loaded(droplet_id: int) -> digitalocean.Droplet:
    return digitalocean.Manager().get_droplet(droplet_id)


def test_droplet_goes_from_new_to_active_runs_nothing_twice_and_is_destroyed(
    sim: RunningDoSim,
) -> None:
    sim.control(boot_seconds=1.0)
    manager = digitalocean.Manager()
    vpc = digitalocean.VPC(name="ccmirror", region=REGION, ip_range="10.30.0.0/24").create()
    public_key = ed25519_public_key()
    script = "#!/bin/sh\necho bootstrapped > /root/done\n"
    droplet = new_droplet(
        "dl-1",
        ssh_keys=[public_key],  # a public key: the library uploads it first
        tags=["ccmirror", "role:downloader"],
        vpc_uuid=vpc.id,
        user_data=script,
    )

    fresh = loaded(droplet.id)
    assert fresh.status == "new"
    assert fresh.networks == {"v4": [], "v6": []} and fresh.private_ip_address is None
    action = manager.get_action(droplet.action_ids[0])
    assert (action.type, action.status, action.resource_id) == ("create", "in-progress", droplet.id)

    assert action.wait(update_every_seconds=0.1, repeat=50)
    active = loaded(droplet.id)
    assert active.status == "active"
    assert ipaddress.ip_address(active.private_ip_address) in ipaddress.ip_network(vpc.ip_range)
    assert active.ip_address.startswith("203.0.113.")  # documentation range: never routed
    assert active.vpc_uuid == vpc.id and active.tags == ["ccmirror", "role:downloader"]
    (key,) = manager.get_all_sshkeys()
    assert key.public_key == public_key and key.name == "SSH Key dl-1"

    (machine,) = sim.machines()
    assert machine == {
        "name": "dl-1",
        "address": active.private_ip_address,
        "user_data": script,
        "tags": ["ccmirror", "role:downloader"],
        "destroyed": False,
    }
    # Reading the droplet again and again makes no second machine.
    for _ in range(3):
        loaded(droplet.id)
    assert len(sim.machines()) == 1

    assert droplet.destroy() is True
    with pytest.raises(NotFoundError):
        loaded(droplet.id)
    wait_for(lambda: sim.machines()[0]["destroyed"], 5, "the machine to be destroyed")
    kinds = [(a["type"], a["resource_id"]) for a in api(sim, "GET", "actions").json()["actions"]]
    assert kinds == [("destroy", droplet.id), ("create", droplet.id)]  # newest first


def test_many_droplets_page_past_per_page_and_filter_by_tag(
    start_sim: Callable[..., RunningDoSim],
) -> None:
    sim = start_sim("--max-per-page", "5")
    names = [f"dl-{n}" for n in range(1, 13)]
    for batch in (names[:10], names[10:]):
        made = digitalocean.Droplet.create_multiple(
            names=batch, region=REGION, image=IMAGE, size=SIZE, tags=["dl"], token=sim.token
        )
        assert [d.name for d in made] == batch
    new_droplet("st-1", tags=["storage"])
    new_droplet("db-1")

    manager = digitalocean.Manager()
    # The library asks for 200 a page; the cap gives it 5, so it walks three pages.
    assert sorted(d.name for d in manager.get_all_droplets(tag_name="dl")) == sorted(names)
    assert len(manager.get_all_droplets()) == 14
    assert [d.name for d in manager.get_all_droplets(tag_name="storage")] == ["st-1"]
    assert manager.get_all_droplets(tag_name="no-such-tag") == []

    first = api(sim, "GET", "droplets", params={"tag_name": "dl", "per_page": 200}).json()
    assert len(first["droplets"]) == 5 and first["meta"] == {"total": 12}
    pages = first["links"]["pages"]
    assert set(pages) == {"next", "last"}
    assert pages["next"].startswith(sim.end_point + "droplets?")
    assert "page=2" in pages["next"] and "tag_name=dl" in pages["next"]
    last = requests.get(
        pages["last"], headers={"Authorization": f"Bearer {sim.token}"}, timeout=10
    ).json()
    assert len(last["droplets"]) == 2 and set(last["links"]["pages"]) == {"first", "prev"}

    # Delete by tag: every droplet so tagged goes, the others stay.
    assert api(sim, "DELETE", "droplets", params={"tag_name": "dl"}).status_code == 204
    assert sorted(d.name for d in manager.get_all_droplets()) == ["db-1", "st-1"]
    wait_for(lambda: sum(m["destroyed"] for m in sim.machines()) == 12, 10, "12 machines destroyed")


def test_tags_tag_and_untag_droplets(sim: RunningDoSim) -> None:
    droplet = new_droplet("hv-1")
    tag = digitalocean.Tag(name="role:harvester")
    tag.create()
    assert tag.resources["count"] == 0
    assert tag.add_droplets([droplet.id]) is True
    reloaded = digitalocean.Tag.get_object(api_token=sim.token, tag_name="role:harvester")
    assert reloaded.resources["droplets"]["count"] == 1
    assert reloaded.resources["droplets"]["last_tagged"]["id"] == droplet.id
    assert "role:harvester" in loaded(droplet.id).tags
    assert [d.id for d in digitalocean.Manager().get_all_droplets(tag_name="role:harvester")] == [
        droplet.id
    ]

    assert tag.remove_droplets([droplet.id]) is True
    assert loaded(droplet.id).tags == []
    assert tag.delete() is True
    with pytest.raises(NotFoundError):
        digitalocean.Tag.get_object(api_token=sim.token, tag_name="role:harvester")
    with pytest.raises(NotFoundError):
        tag.add_droplets([droplet.id])  # the tag is gone
    bad = api(sim, "POST", "tags", json={"name": "no spaces"})
    assert bad.status_code == 422 and bad.json()["id"] == "unprocessable_entity"


def test_ssh_keys_list_create_get_delete(sim: RunningDoSim, tmp_path: Path) -> None:
    public_key = ed25519_public_key("operator@master")
    key = digitalocean.SSHKey(name="master", public_key=public_key)
    key.create()
    # The fingerprint is OpenSSH's MD5 one, as DigitalOcean shows it.
    (tmp_path / "key.pub").write_text(public_key + "\n")
    keygen = subprocess.run(
        ["ssh-keygen", "-l", "-E", "md5", "-f", str(tmp_path / "key.pub")],
        capture_output=True,
        text=True,
        check=True,
    )
    by_id = digitalocean.SSHKey.get_object(api_token=sim.token, ssh_key_id=key.id)
    assert keygen.stdout.split()[1] == f"MD5:{by_id.fingerprint}"
    by_fingerprint = digitalocean.SSHKey(fingerprint=by_id.fingerprint)
    by_fingerprint.load()
    assert (by_fingerprint.id, by_fingerprint.name) == (key.id, "master")

    # A droplet may name its key by fingerprint; an unknown one is refused.
    new_droplet("dl-1", ssh_keys=[by_id.fingerprint])
    with pytest.raises(DataReadError, match="no key"):
        new_droplet("dl-2", ssh_keys=[123])

    with pytest.raises(DataReadError, match="already in use"):
        digitalocean.SSHKey(name="again", public_key=public_key).create()
    with pytest.raises(DataReadError, match="Key invalid"):
        digitalocean.SSHKey(name="bad", public_key="ssh-rsa not-base64!").create()
    assert [k.id for k in digitalocean.Manager().get_all_sshkeys()] == [key.id]
    assert key.destroy() is True
    with pytest.raises(NotFoundError):
        digitalocean.SSHKey.get_object(api_token=sim.token, ssh_key_id=key.id)


def test_vpcs_list_get_create_and_refuse_overlaps(sim: RunningDoSim) -> None:
    manager = digitalocean.Manager()
    (default,) = manager.get_all_vpcs()
    assert default.default is True and default.region == REGION
    vpc = digitalocean.VPC(
        name="ccmirror-core", region="fra1", ip_range="10.40.0.0/24", description="core"
    ).create()
    assert vpc.urn == f"do:vpc:{vpc.id}" and vpc.default is False
    got = manager.get_vpc(vpc.id)
    assert (got.name, got.region, got.ip_range) == ("ccmirror-core", "fra1", "10.40.0.0/24")
    assert {v.id for v in manager.get_all_vpcs()} == {default.id, vpc.id}

    for bad in ("10.40.0.128/25", "8.8.8.0/24", "10.0.0.0/8", "nonsense"):
        reply = api(
            sim, "POST", "vpcs", json={"name": f"x{len(bad)}", "region": "fra1", "ip_range": bad}
        )
        assert reply.status_code == 422, bad
    # A droplet must be in its VPC's region.
    with pytest.raises(DataReadError, match="is in fra1"):
        new_droplet("dl-1", vpc_uuid=vpc.id)
    with pytest.raises(NotFoundError):
        manager.get_vpc("00000000-0000-4000-8000-000000000000")


def test_wrong_token_unknown_resource_and_bad_requests_answer_as_digitalocean(
    sim: RunningDoSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    unauthorized = api(sim, "GET", "droplets", token="dop_v1_" + "0" * 64)
    assert unauthorized.status_code == 401
    assert unauthorized.json() == fixture("error_401_unauthorized.json")
    assert api(sim, "GET", "droplets", token=" ").status_code == 401
    assert requests.get(sim.end_point + "droplets", timeout=10).status_code == 401
    monkeypatch.setenv("DIGITALOCEAN_ACCESS_TOKEN", "wrong")
    with pytest.raises(DataReadError, match="Unable to authenticate you"):
        digitalocean.Manager().get_all_droplets()
    monkeypatch.setenv("DIGITALOCEAN_ACCESS_TOKEN", sim.token)

    missing = api(sim, "GET", "droplets/12345")
    assert missing.status_code == 404 and missing.json() == fixture("error_404_not_found.json")
    assert api(sim, "GET", "no/such/thing").status_code == 404
    assert api(sim, "DELETE", "droplets/12345").status_code == 404

    bad_image = api(
        sim, "POST", "droplets", json={"name": "x", "size": SIZE, "image": "windows-95"}
    )
    assert bad_image.status_code == 422
    assert bad_image.json() == fixture("error_422_invalid_image.json")
    refused = {
        "size": {"size": "s-64vcpu-1tb"},
        "region": {"region": "mars1"},
        "hostname": {"name": "under_score"},
        "Size is not available": {"size": "c-2", "region": "blr1"},
        "tags may contain": {"tags": ["a b"]},
        "64 KiB": {"user_data": "#!/bin/sh\n" + "x" * 70_000},
    }
    for words, change in refused.items():
        body = {"name": "x", "size": SIZE, "image": IMAGE, "region": REGION, **change}
        reply = api(sim, "POST", "droplets", json=body)
        assert reply.status_code == 422, words
        assert reply.json()["id"] == "unprocessable_entity" and words in reply.json()["message"]
    broken = api(sim, "POST", "droplets", data="{")
    assert broken.status_code == 400 and broken.json()["id"] == "bad_request"
    # Nothing was made by any refused request.
    assert digitalocean.Manager().get_all_droplets() == []
    assert sim.machines() == []


def test_droplet_limit_refuses_the_whole_request(start_sim: Callable[..., RunningDoSim]) -> None:
    sim = start_sim("--droplet-limit", "3")
    new_droplet("dl-1")
    with pytest.raises(DataReadError, match="droplet limit"):
        digitalocean.Droplet.create_multiple(
            names=["dl-2", "dl-3", "dl-4"], region=REGION, image=IMAGE, size=SIZE, token=sim.token
        )
    assert [d.name for d in digitalocean.Manager().get_all_droplets()] == ["dl-1"]
    assert len(sim.machines()) == 1


def test_rate_limit_headers_count_down_then_429(start_sim: Callable[..., RunningDoSim]) -> None:
    sim = start_sim("--rate-limit", "4")
    remaining = []
    for _ in range(4):
        reply = api(sim, "GET", "account")
        assert reply.status_code == 200
        assert reply.headers["ratelimit-limit"] == "4"
        assert int(reply.headers["ratelimit-reset"]) > time.time()
        remaining.append(int(reply.headers["ratelimit-remaining"]))
    assert remaining == [3, 2, 1, 0]
    limited = api(sim, "GET", "droplets")
    assert limited.status_code == 429
    assert limited.json() == {"id": "too_many_requests", "message": "API Rate limit exceeded."}
    assert limited.headers["ratelimit-remaining"] == "0"
    with pytest.raises(DataReadError, match="Rate limit"):
        digitalocean.Manager().get_all_droplets()
    # Another token has its own budget; a wrong one is refused before it is counted.
    assert api(sim, "GET", "account", token="nope").status_code == 401

    # The per-minute budget bites too, with the hourly one far from spent.
    sim.control(per_hour=5000, per_minute=2)
    assert [api(sim, "GET", "account").status_code for _ in range(3)] == [200, 200, 429]


def test_power_actions_complete_later(sim: RunningDoSim) -> None:
    droplet = new_droplet("dl-1")
    refused = api(sim, "POST", f"droplets/{droplet.id}/actions", json={"type": "power_off"})
    assert refused.status_code == 422  # still being created
    wait_for(lambda: loaded(droplet.id).status == "active", 5, "the droplet to be active")
    action = loaded(droplet.id).power_off(return_dict=False)
    assert action.status == "in-progress"
    action.droplet_id = droplet.id  # load() then reads /droplets/{id}/actions/{id}
    assert action.wait(update_every_seconds=0.1, repeat=50)
    assert loaded(droplet.id).status == "off"
    listed = [a.type for a in loaded(droplet.id).get_actions()]
    assert listed == ["power_off", "create"]


def test_responses_have_the_shapes_of_the_real_api(sim: RunningDoSim) -> None:
    key = digitalocean.SSHKey(name="k", public_key=ed25519_public_key())
    key.create()
    droplet = new_droplet("dl-1", tags=["ccmirror"], ssh_keys=[key.id])
    wait_for(lambda: loaded(droplet.id).status == "active", 5, "the droplet to be active")

    listed = api(sim, "GET", "droplets").json()
    real = fixture("droplets_list_2020.json")
    assert set(listed) == set(real)
    assert_same_shape(listed["droplets"][0], real["droplets"][0], "droplet")
    created = api(
        sim, "POST", "droplets", json={"name": "dl-2", "size": SIZE, "image": IMAGE}
    ).json()
    real_create = fixture("lgpl/droplet_create_with_links.json")
    assert set(created) == set(real_create)
    assert set(created["links"]["actions"][0]) == set(real_create["links"]["actions"][0])
    assert set(created["droplet"]) >= set(real_create["droplet"])
    assert created["droplet"]["status"] == "new"

    action = api(sim, "GET", f"actions/{droplet.action_ids[0]}").json()
    assert_same_shape(action, fixture("action_get.json"), "action")
    actions = api(sim, "GET", f"droplets/{droplet.id}/actions").json()
    assert set(actions) >= set(fixture("droplet_actions_list_dropletkit.json"))
    keys = api(sim, "GET", "account/keys").json()
    assert_same_shape(keys["ssh_keys"][0], fixture("ssh_keys_list_dropletkit.json")["ssh_keys"][0])
    tag = api(sim, "GET", "tags/ccmirror").json()
    real_tag = fixture("tag_get_dropletkit.json")
    assert set(tag["tag"]) == set(real_tag["tag"])
    assert set(tag["tag"]["resources"]) >= set(real_tag["tag"]["resources"])
    assert_same_shape(
        tag["tag"]["resources"]["droplets"]["last_tagged"]["networks"]["v4"][0],
        real["droplets"][0]["networks"]["v4"][0],
    )
    # The shapes the library itself was written against parse with it.
    for name in ("droplets_list_2020.json", "droplets_list_dropletkit_tags.json"):
        for item in fixture(name)["droplets"]:
            assert set(item) - set(listed["droplets"][0]) <= {"action_ids"}, name


def test_no_token_no_start_and_sigterm_stops_cleanly() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CCMIRROR_DO_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "lab.sims.digitalocean.server", "--port", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "no token" in result.stderr
    running = spawn(token=new_token())
    assert api(running, "GET", "account").status_code == 200
    assert running.stop() == 0


def fixture(name: str) -> dict:
    return json.loads((DO_FIXTURES / name).read_text())


def assert_same_shape(ours: object, real: object, where: str = "") -> None:
    """Every key of the real object is in ours with a value of the same JSON type (null
    matches anything: the real API leaves many fields empty), recursively."""
    if real is None or ours is None:
        return
    if isinstance(real, dict):
        assert isinstance(ours, dict), where
        missing = set(real) - set(ours)
        assert not missing, f"{where}: missing {sorted(missing)}"
        for key, value in real.items():
            assert_same_shape(ours[key], value, f"{where}.{key}")
    elif isinstance(real, list):
        assert isinstance(ours, list), where
        if real and ours:
            assert_same_shape(ours[0], real[0], f"{where}[0]")
    elif isinstance(real, bool) or isinstance(ours, bool):
        assert type(real) is type(ours), where
    elif isinstance(real, int | float):
        assert isinstance(ours, int | float), where
    else:
        assert type(ours) is type(real), f"{where}: {ours!r} vs {real!r}"


# ---------------------------------------------------------------------------- lab backend
root_only = pytest.mark.skipif(
    os.geteuid() != 0, reason="lab droplets need root (namespaces, a bridge, overlayfs)"
)


@root_only
def test_lab_backend_droplet_runs_its_user_data_and_is_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.lab.test_droplets import make_lab

    lab = make_lab("d")
    try:
        lab.up("do-base", "st-9")  # st-9: a storage droplet of the core, as Terraform makes
        sim = spawn("--backend", "lab", "--boot-seconds", "0", token=new_token(), env=lab.env)
        try:
            for name, value in sim.env().items():
                monkeypatch.setenv(name, value)
            run_lab_droplet(lab, sim)
        finally:
            assert sim.stop() == 0
    finally:
        lab.down()
    assert not lab.config.root.exists()


def run_lab_droplet(lab, sim: RunningDoSim) -> None:
    # The core made before the simulator started is listed, with Terraform's tags, and can
    # be destroyed from the console like any droplet (the fleet runner counts st-* by tag).
    (core,) = digitalocean.Manager().get_all_droplets(tag_name="ccmirror-storage")
    assert (core.name, core.status, sorted(core.tags)) == (
        "st-9",
        "active",
        ["ccmirror", "ccmirror-storage"],
    )
    assert core.private_ip_address == lab.state().droplets["st-9"].address
    assert core.destroy() is True
    wait_for(lambda: "st-9" not in lab.state().droplets, 30, "st-9 to be removed from the lab")
    started = time.monotonic()
    script = "#!/bin/sh\nset -e\nhostname > /root/user-data-ran\necho from $(id -un)\n"
    made = digitalocean.Droplet.create_multiple(
        names=["do-1", "do-2"],
        region=REGION,
        image=IMAGE,
        size=SIZE,
        tags=["ccmirror"],
        user_data=script,
        token=sim.token,
    )
    # A name being made is taken, and one the lab cannot take is refused up front.
    with pytest.raises(DataReadError, match="already in use"):
        new_droplet("do-1")
    with pytest.raises(DataReadError, match="lowercase"):
        new_droplet("Bad.Name")
    for droplet in made:
        wait_for(lambda d=droplet: loaded(d.id).status == "active", 60, f"{droplet.name}")
    print(f"2 lab droplets active in {time.monotonic() - started:.1f}s")
    state = lab.state()
    for droplet in made:
        name, active = droplet.name, loaded(droplet.id)
        assert active.private_ip_address == state.droplets[name].address
        assert ipaddress.ip_address(active.private_ip_address) in lab.config.network
        finished = ("shell", name, "--", "test", "-e", "/var/lib/cloud/instance/boot-finished")
        wait_for(lambda f=finished: lab.lab(*f).returncode == 0, 30, f"{name}'s user_data")
        assert lab.shell(name, "cat", "/root/user-data-ran") == f"{name}\n"
        assert lab.shell(name, "cat", "/var/lib/cloud/instance/user-data.exit") == "0\n"
        assert "from root" in lab.shell(name, "cat", "/var/log/cloud-init-output.log")
    assert not Path("/root/user-data-ran").exists()  # written in the droplet, not the host

    assert made[0].destroy() is True
    wait_for(lambda: "do-1" not in lab.state().droplets, 30, "the lab droplet to be removed")
    assert lab.lab("shell", "do-1", "--", "true").returncode == 1
    assert sorted(lab.state().droplets) == ["do-2", "do-base"]
    assert [d.name for d in digitalocean.Manager().get_all_droplets()] == ["do-2"]
