"""salt/storage/volume.sls on a real block device: a loop device on a sparse file made here,
the state applied with `salt-call --local` as st-1 (the pillar naming that device in
site:storage_volumes, the storage root and fstab in a temporary directory). It makes a
filesystem only where there is none, mounts the root with an fstab entry, and a second apply
changes nothing and formats nothing. Rendered through the whole highstate of a SeaweedFS
site, SeaweedFS's data directory and units require the mount; with no device named (the lab)
nothing is mounted. And the site facts record a node's device with its address
(secrets.storage_nodes, as fleet.up calls it), checked, and drop it with the node."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.fleet.lab_secrets import write_lab_secrets, writer
from tests.salt.conftest import MINIONS, ROOT, SITE, make_salt_call

MOUNT_ID = "storage-volume-root-mount-mounted"
MKFS_ID = "storage-volume-filesystem-cmd-run"
DEVICE = "/dev/disk/by-id/scsi-0DO_Volume_ccmirror-st-1"


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def mounted_source(path: Path) -> str | None:
    """What is mounted at `path` (findmnt), or None."""
    found = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE", "--mountpoint", str(path)], capture_output=True, text=True
    )
    return found.stdout.strip() or None


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loop device on a 64 MiB sparse file, and a storage root to mount it at; unmounted
    and detached at teardown."""
    if os.geteuid() != 0:
        pytest.skip("a loop device and a mount need root")
    image = tmp_path / "volume.img"
    with open(image, "wb") as sparse:
        sparse.truncate(64 * 1024 * 1024)
    device = run("losetup", "--find", "--show", str(image))
    root = tmp_path / "srv" / "ccmirror-storage"
    root.parent.mkdir()
    (root.parent / "fstab").write_text("# the test's /etc/fstab\n")
    try:
        yield device, root
    finally:
        if mounted_source(root):
            subprocess.run(["umount", str(root)], check=False)
        subprocess.run(["losetup", "-d", device], check=False)


def apply_volume(salt_call, device: str, root: Path) -> dict:
    """state.sls storage.volume as st-1 with `device` named for it; the states' returns by id."""
    pillar = {
        "site": {"storage_volumes": {"st-1": device}},
        "storage": {"root": str(root), "fstab": str(root.parent / "fstab")},
    }
    returns = salt_call("st-1", "state.sls", "storage.volume", f"pillar={json.dumps(pillar)}")
    assert isinstance(returns, dict), returns
    by_id = {key.split("_|-")[1]: value for key, value in returns.items()}
    failed = {key: value["comment"] for key, value in by_id.items() if not value["result"]}
    assert not failed, failed
    return by_id


def test_a_blank_volume_gets_a_filesystem_and_the_root_is_mounted_once(salt_call, loop_device):
    """Named by a symlink, as DigitalOcean names a volume (/dev/disk/by-id/...)."""
    device, root = loop_device
    by_id = root.parent / "by-id" / "scsi-0DO_Volume_ccmirror-st-1"
    by_id.parent.mkdir()
    by_id.symlink_to(device)
    first = apply_volume(salt_call, str(by_id), root)
    assert first[MKFS_ID]["changes"], "no filesystem was made on a blank device"
    assert mounted_source(root) == device
    assert run("blkid", "-p", "-o", "value", "-s", "TYPE", device) == "ext4"
    fstab = (root.parent / "fstab").read_text().splitlines()[-1].split()
    assert fstab[:3] == [str(by_id), str(root), "ext4"] and "nofail" in fstab[3].split(",")

    uuid = run("blkid", "-p", "-o", "value", "-s", "UUID", device)
    (root / "kept.txt").write_text("a photo's worth of bytes")
    second = apply_volume(salt_call, str(by_id), root)
    assert {key: value["changes"] for key, value in second.items() if value["changes"]} == {}
    assert (root / "kept.txt").read_text() == "a photo's worth of bytes"
    assert run("blkid", "-p", "-o", "value", "-s", "UUID", device) == uuid  # not reformatted


def test_a_volume_left_by_a_destroyed_droplet_is_mounted_as_it_is(salt_call, loop_device):
    """A reattached volume (or Terraform's, formatted by DigitalOcean) keeps its files."""
    device, root = loop_device
    run("mkfs.ext4", "-q", "-L", "earlier-st-1", device)
    uuid = run("blkid", "-p", "-o", "value", "-s", "UUID", device)
    earlier = root.parent / "earlier"
    earlier.mkdir()
    run("mount", device, str(earlier))
    (earlier / "photo.jpg").write_bytes(b"\xff\xd8 stored before")
    run("umount", str(earlier))

    first = apply_volume(salt_call, device, root)
    assert not first[MKFS_ID]["changes"]
    assert mounted_source(root) == device
    assert (root / "photo.jpg").read_bytes() == b"\xff\xd8 stored before"
    assert run("blkid", "-p", "-o", "value", "-s", "UUID", device) == uuid


@pytest.fixture(scope="module")
def seaweedfs_site(salt_call_bin, tmp_path_factory) -> Path:
    """A private root for a SeaweedFS site of two nodes, st-1 with a volume, st-2 without."""
    root = tmp_path_factory.mktemp("volume-site") / "private"
    nodes = {"st-1": SITE["storage_host"], "st-2": "10.250.0.9"}
    site = {**SITE, "storage_backend": "seaweedfs", "storage_nodes": nodes}
    write_lab_secrets(root, [*MINIONS, "st-2"], {**site, "storage_volumes": {"st-1": DEVICE}})
    return root


def requisites(state: dict, kind: str) -> list:
    (arguments,) = [v for k, v in state.items() if not k.startswith("__")]
    return [r for item in arguments if isinstance(item, dict) for r in item.get(kind, [])]


def test_seaweedfs_waits_for_the_mount_and_a_node_without_a_volume_mounts_nothing(
    salt_call_bin, tmp_path_factory, seaweedfs_site
):
    salt_call = make_salt_call(
        salt_call_bin, tmp_path_factory.mktemp("salt-volume"), [ROOT / "pillar", seaweedfs_site]
    )
    st1 = salt_call("st-1", "state.show_highstate")
    assert isinstance(st1, dict), st1
    assert {"mount": MOUNT_ID} in requisites(st1["storage-weed-data-dir-file-directory"], "require")
    for server in ("master", "volume", "filer", "s3"):
        state = st1[f"storage-weed-{server}-service-running"]
        assert {"mount": MOUNT_ID} in requisites(state, "require"), server
    mount = dict(
        item for arg in st1[MOUNT_ID]["mount"] if isinstance(arg, dict) for item in arg.items()
    )
    assert mount["device"] == DEVICE and mount["name"] == "/srv/ccmirror-storage"
    assert "nofail" in mount["opts"] and mount["persist"] is True

    st2 = salt_call("st-2", "state.show_highstate")
    assert isinstance(st2, dict), st2
    assert not [state_id for state_id in st2 if state_id.startswith("storage-volume-")]
    assert "storage-weed-volume-service-running" in st2


def test_the_site_facts_record_a_nodes_volume_with_it_and_refuse_what_is_no_device(
    seaweedfs_site,
):
    """What fleet.up role=storage records through secrets.storage_nodes, and fleet.destroy
    drops: the device goes with the node; the volume itself stays at DigitalOcean."""
    added = writer().change_storage_nodes(
        seaweedfs_site, add={"st-3": "10.250.0.10"}, volumes={"st-3": DEVICE.replace("1", "3")}
    )
    assert added["storage_volumes"] == {"st-1": DEVICE, "st-3": DEVICE.replace("1", "3")}
    assert "storage_volumes" in (seaweedfs_site / "site.sls").read_text()
    dropped = writer().change_storage_nodes(seaweedfs_site, drop=["st-3"])
    assert dropped["storage_volumes"] == {"st-1": DEVICE}
    before = (seaweedfs_site / "site.sls").read_text()
    for bad in ("sda", "/dev/../etc/passwd", "/dev/sd a"):
        with pytest.raises(ValueError, match="is not a device path"):
            writer().change_storage_nodes(seaweedfs_site, volumes={"st-1": bad})
    with pytest.raises(ValueError, match="is not a storage node"):
        writer().change_storage_nodes(seaweedfs_site, volumes={"dl-1": DEVICE})
    assert (seaweedfs_site / "site.sls").read_text() == before  # refused: nothing written
