"""Block storage volumes in the DigitalOcean simulator, through python-digitalocean and raw
calls as in test_do_sim.py: asynchronous attach and detach (by id and by name), the rules
DigitalOcean documents (names, the 16 TiB limit, one region, one droplet, no delete while
attached), a destroyed droplet's volume kept; then what fleet.up role=storage does with them
(_utils/fleet_volumes.py): a volume made and attached per new st-N, named as Terraform names
it, and the one a destroyed st-N left attached again instead of a second one."""

from __future__ import annotations

from collections.abc import Iterator

import digitalocean
import pytest

from lab.fleet.salt_utils import plain_util
from lab.sims.digitalocean.process import RunningDoSim, spawn
from tests.conftest import wait_for
from tests.integration.test_do_sim import IMAGE, SIZE, api, new_token

REGION = "nyc3"


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningDoSim]:
    """A simulator (memory backend) python-digitalocean points at; stopped cleanly after."""
    running = spawn("--boot-seconds", "0.3", "--action-seconds", "0.2", token=new_token())
    for name, value in running.env().items():
        monkeypatch.setenv(name, value)
    yield running
    assert running.stop() == 0, "the simulator did not stop cleanly on SIGTERM"


def active_droplet(name: str, region: str = REGION) -> digitalocean.Droplet:
    droplet = digitalocean.Droplet(name=name, region=region, image=IMAGE, size_slug=SIZE)
    droplet.create()
    wait_for(lambda: droplet.load().status == "active", 10, f"{name} to be active")
    return droplet


def new_volume(name: str, size: int = 10, region: str = REGION) -> digitalocean.Volume:
    return digitalocean.Volume(name=name, region=region, size_gigabytes=size).create()


def volume_json(sim: RunningDoSim, volume_id: str) -> dict:
    return api(sim, "GET", f"volumes/{volume_id}").json()["volume"]


def completed(sim: RunningDoSim, action: dict) -> bool:
    return api(sim, "GET", f"actions/{action['action']['id']}").json()["action"]["status"] == (
        "completed"
    )


def test_attach_and_detach_are_asynchronous_and_show_on_both_sides(sim: RunningDoSim) -> None:
    sim.control(action_seconds=0.5)
    droplet = active_droplet("st-4")
    volume = new_volume("ccmirror-st-4", size=100)
    assert volume_json(sim, volume.id)["droplet_ids"] == []

    action = volume.attach(droplet.id, REGION)
    assert action["action"]["status"] == "in-progress" and action["action"]["type"] == (
        "attach_volume"
    )
    assert volume_json(sim, volume.id)["droplet_ids"] == []  # not before it completes
    wait_for(lambda: completed(sim, action), 10, "the attach to complete")
    assert volume_json(sim, volume.id)["droplet_ids"] == [droplet.id]
    assert droplet.load().volume_ids == [volume.id]
    listed = api(sim, "GET", "volumes", params={"name": "ccmirror-st-4", "region": REGION})
    assert [v["id"] for v in listed.json()["volumes"]] == [volume.id]

    by_name = {"type": "detach", "volume_name": "ccmirror-st-4", "region": REGION}
    detach = api(sim, "POST", "volumes/actions", json={**by_name, "droplet_id": droplet.id})
    assert detach.status_code == 202, detach.text
    wait_for(lambda: completed(sim, detach.json()), 10, "the detach to complete")
    assert volume_json(sim, volume.id)["droplet_ids"] == [] and droplet.load().volume_ids == []
    actions = api(sim, "GET", f"volumes/{volume.id}/actions").json()["actions"]
    assert [a["type"] for a in actions] == ["detach_volume", "attach_volume"]


def test_what_digitalocean_refuses_is_refused_and_changes_nothing(sim: RunningDoSim) -> None:
    sim.control(action_seconds=0.2)
    for body, status in [
        ({"name": "Data", "size_gigabytes": 10, "region": REGION}, 422),
        ({"name": "1data", "size_gigabytes": 10, "region": REGION}, 422),
        ({"name": "d" * 65, "size_gigabytes": 10, "region": REGION}, 422),
        ({"name": "data", "size_gigabytes": 16385, "region": REGION}, 422),
        ({"name": "data", "size_gigabytes": 0, "region": REGION}, 422),
        ({"name": "data", "size_gigabytes": 10, "region": "atlantis1"}, 422),
    ]:
        answer = api(sim, "POST", "volumes", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert set(answer.json()) == {"id", "message"}
    assert api(sim, "GET", "volumes").json()["volumes"] == []

    largest = new_volume("data", size=16384)
    twin = api(sim, "POST", "volumes", json={"name": "data", "size_gigabytes": 1, "region": REGION})
    assert twin.status_code == 409  # a name is unique in a region...
    elsewhere_volume = new_volume("data", region="ams3")  # ...not across them
    assert volume_json(sim, elsewhere_volume.id)["region"]["slug"] == "ams3"

    here, elsewhere = active_droplet("st-1"), active_droplet("st-9", region="ams3")
    with pytest.raises(digitalocean.DataReadError, match="a volume attaches only to a droplet"):
        largest.attach(elsewhere.id, REGION)
    action = largest.attach(here.id, REGION)
    with pytest.raises(digitalocean.DataReadError, match="action in progress"):
        largest.attach(here.id, REGION)
    wait_for(lambda: completed(sim, action), 10, "the attach to complete")
    other = active_droplet("st-2")
    with pytest.raises(digitalocean.DataReadError, match="already attached to droplet"):
        largest.attach(other.id, REGION)
    deleted = api(sim, "DELETE", f"volumes/{largest.id}")
    assert deleted.status_code == 409, deleted.text
    assert volume_json(sim, largest.id)["droplet_ids"] == [here.id]


def test_a_destroyed_droplets_volume_is_detached_and_kept(sim: RunningDoSim) -> None:
    sim.control(action_seconds=0.2)
    droplet = active_droplet("st-3")
    volume = new_volume("ccmirror-st-3")
    action = volume.attach(droplet.id, REGION)
    wait_for(lambda: completed(sim, action), 10, "the attach to complete")
    droplet.destroy()
    assert volume_json(sim, volume.id)["droplet_ids"] == []
    gone = api(sim, "DELETE", "volumes", params={"name": "ccmirror-st-3", "region": REGION})
    assert gone.status_code == 204  # detached: the owner may delete it now
    assert api(sim, "GET", f"volumes/{volume.id}").status_code == 404


@pytest.fixture
def fleet_conf(sim: RunningDoSim) -> dict:
    """The fleet settings fleet_volumes reads (fleet_droplets.settings' shape)."""
    return {
        "token": sim.token,
        "end_point": sim.end_point,
        "project_tag": "ccmirror",
        "storage_volume_gb": 50,
    }


def test_fleet_up_gives_each_new_storage_droplet_its_volume_and_reattaches_a_left_one(
    sim: RunningDoSim, fleet_conf: dict
) -> None:
    sim.control(action_seconds=0.3)
    volumes, said = plain_util("fleet_volumes"), []
    manager = digitalocean.Manager()
    st4 = active_droplet("st-4")
    device = volumes.ensure_attached(fleet_conf, manager, st4, said.append, seconds=10)
    assert device == "/dev/disk/by-id/scsi-0DO_Volume_ccmirror-st-4"  # Terraform's rule
    (made,) = manager.get_all_volumes()
    assert (made.name, made.size_gigabytes, made.droplet_ids) == ("ccmirror-st-4", 50, [st4.id])
    assert made.region["slug"] == REGION and made.filesystem_type == ""  # Salt makes it
    # A re-run (fleet.up resuming st-4) changes nothing.
    assert volumes.ensure_attached(fleet_conf, manager, st4, said.append, seconds=10) == device
    assert len(manager.get_all_volumes()) == 1
    # Where droplets have no block device (the lab's settings): no volume, no device.
    lab = {**fleet_conf, "storage_volumes": False}
    assert volumes.ensure_attached(lab, manager, active_droplet("st-8"), said.append) is None
    assert len(manager.get_all_volumes()) == 1

    # st-4 destroyed (fleet.destroy) and made again: the same volume, its data with it.
    st4.destroy()
    again = active_droplet("st-4")
    assert volumes.ensure_attached(fleet_conf, manager, again, said.append, seconds=10) == device
    (kept,) = manager.get_all_volumes()
    assert kept.id == made.id and kept.droplet_ids == [again.id]
    assert said[-2] == "st-4: volume ccmirror-st-4 is left from an earlier st-4"


def test_a_volume_that_cannot_be_made_or_attached_is_one_clear_error(
    sim: RunningDoSim, fleet_conf: dict
) -> None:
    sim.control(action_seconds=0.2)
    volumes, manager = plain_util("fleet_volumes"), digitalocean.Manager()
    st5 = active_droplet("st-5")
    too_big = {**fleet_conf, "storage_volume_gb": 20000}  # past the settings' own check
    with pytest.raises(volumes.VolumeError, match="^volume ccmirror-st-5: size_gigabytes"):
        volumes.ensure_attached(too_big, manager, st5, lambda _: None, seconds=10)
    assert manager.get_all_volumes() == []
    odd_tag = {**fleet_conf, "project_tag": "Site_A"}  # a DigitalOcean tag, no volume name
    with pytest.raises(volumes.VolumeError, match="no volume can be named 'Site_A-st-5'"):
        volumes.ensure_attached(odd_tag, manager, st5, lambda _: None, seconds=10)
    assert manager.get_all_volumes() == []

    # Its volume held by another droplet (attached by hand, say): refused, left as it is.
    volume = new_volume("ccmirror-st-5")
    holder = active_droplet("st-6")
    action = volume.attach(holder.id, REGION)
    wait_for(lambda: completed(sim, action), 10, "the attach to complete")
    with pytest.raises(volumes.VolumeError, match=f"attached to droplet {holder.id}, not to st-5"):
        volumes.ensure_attached(fleet_conf, manager, st5, lambda _: None, seconds=10)
    assert volume_json(sim, volume.id)["droplet_ids"] == [holder.id]
