"""The e2e's faults on storage (SeaweedFS on st-1..3): a storage droplet destroyed and
replaced, a stolen downloader key at work, and what the tests read of the storage keys and
the gateway's answers."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml
from botocore.exceptions import ClientError

from lab.fleet import faults, salt_master
from lab.fleet.systemd_restarts import SystemdRestarts
from lab.mission import stages as mission
from lab.processes import seaweedfs_s3 as s3
from lab.sims.digitalocean import service as do_fleet
from tests.conftest import wait_for
from tests.e2e.catalog_queries import stored

STORAGE = ("st-1", "st-2", "st-3")  # SeaweedFS: three masters, a volume server on each
WEED_UNITS = [f"ccmirror-weed-{server}" for server in ("master", "volume", "filer", "s3")]
S3_PORT = 8333  # salt/storage/defaults.yaml storage:seaweedfs:ports:s3
KEY_REFUSALS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")


def replace_storage_droplet(m: mission.Mission, name: str) -> dict:
    """A storage droplet gone from the console while the downloaders push (the others keep
    quorum and a copy of every photo), then what its operator does: forget it, make the
    storage role whole again, and let SeaweedFS copy what lost a copy. The storage droplets'
    SeaweedFS units are restarted as systemd would if one crashes meanwhile (a leader master
    once panicked growing volumes after the loss: the lab's init restarts nothing)."""
    others = [node for node in STORAGE if node != name]  # the new one's units are Salt's to start
    with SystemdRestarts(m.config, others, WEED_UNITS) as restarts:
        faults.destroy_droplet(m.config, name, do_api=do_fleet.service(m.config))
        pushed_before = stored(m)
        # Raft elects a new leader among the two masters left, if it was the lost one.
        wait_for(lambda: stored(m) >= pushed_before + 20, 600, f"pushes to go on without {name}", 1)
        replaced = {
            "fleet.destroy": m.salt_run("fleet.destroy", f"name={name}"),
            "fleet.up": m.salt_run("fleet.up", "role=storage", f"count={len(STORAGE)}"),
            "storage.repair": m.salt_run("storage.repair"),
        }
    return {**replaced, "crashed and restarted": restarts.restarted, "errors": restarts.errors}


def tamper_as_a_downloader(m: mission.Mission, among: Iterable[str], photos: int = 10) -> dict:
    """A stolen downloader key at work: dl-1's own S3 key overwrites half of `photos` stored
    photos (of the keys `among`) with other bytes and deletes the other half; removing the
    versions it made (so that nothing older shows) is refused. The audit is to restore every
    one."""
    gateway = f"http://{m.state().droplets['st-1'].address}:{S3_PORT}"
    writer = s3.client(gateway, storage_keys(m)["dl-1"], 1)
    paths = sorted(among)
    chosen = paths[:: max(1, len(paths) // photos)][:photos]
    overwritten, deleted = chosen[: photos // 2], chosen[photos // 2 :]
    refused = []
    for path in overwritten:
        made = writer.put_object(Bucket=s3.IMAGES_BUCKET, Key=path, Body=b"not the photo")
        refused.append(delete_status(writer, path, made["VersionId"]))
    for path in deleted:
        writer.delete_object(Bucket=s3.IMAGES_BUCKET, Key=path)  # a delete marker, no more
    return {"overwritten": overwritten, "deleted": deleted, "version_deletes": refused}


def delete_status(writer, path: str, version_id: str) -> int:
    """What the gateway answers a delete of one version of `path`."""
    try:
        writer.delete_object(Bucket=s3.IMAGES_BUCKET, Key=path, VersionId=version_id)
    except ClientError as error:
        return int(error.response["ResponseMetadata"]["HTTPStatusCode"])
    return 204


def refusals(m: mission.Mission, minion: str) -> int:
    """Pushes the S3 gateway refused for their key in the downloader's log so far."""
    droplet = m.state().droplets[minion]
    log = Path(f"/proc/{droplet.pid}/root/var/log/journal/ccmirror-downloader.service.log")
    text = log.read_text(errors="replace")
    return sum(text.count(code) for code in KEY_REFUSALS)


def storage_keys(m: mission.Mission) -> dict[str, s3.S3Key]:
    """Each downloader's current S3 key, from its own pillar file."""
    keys = {}
    for path in sorted((salt_master.private_pillar(m.config) / "minions").glob("dl-*.sls")):
        own = yaml.safe_load(path.read_text())["downloader"]["s3"]
        keys[path.stem] = s3.S3Key(own["access_key"], own["secret_key"])
    return keys


def put_status(gateway: str, key: s3.S3Key) -> int:
    """What the S3 gateway answers a put of a probe object with `key`."""
    writer = s3.client(gateway, key, 1)
    try:
        writer.put_object(Bucket=s3.IMAGES_BUCKET, Key="probes/e2e-key-check", Body=b"probe")
    except ClientError as error:
        return int(error.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200
