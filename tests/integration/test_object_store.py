"""The object store the photos go to: a real SeaweedFS cluster (separate weed processes), a
downloader's own S3 key that can add but never destroy, identities changed on the running
gateway, two copies of everything, and a cluster that survives losing and gaining a server."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import jinja2
import pytest
import requests
import yaml
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from lab.processes import seaweedfs_s3 as s3
from lab.processes.mariadb import LocalMariaDB
from lab.processes.seaweedfs import Cluster, MySQLFilerStore, StorageError
from lab.processes.seaweedfs_process import free_port_pair, get_json, port_is_free
from tests.conftest import seaweedfs_cluster, wait_for

BUCKET = s3.IMAGES_BUCKET
ROOT = Path(__file__).resolve().parent.parent.parent


def photo_key() -> str:
    photo_id = secrets.randbelow(10**11)
    digest = hashlib.md5(str(photo_id).encode()).hexdigest()
    return f"images/{digest[:2]}/{digest[2:4]}/{photo_id}.jpg"


def refusal(call: Callable[[], object]) -> int:
    """The HTTP status the gateway refused `call` with; fails the test if it was allowed."""
    try:
        call()
    except ClientError as error:
        return error.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("the gateway allowed it")


def accepts(writer: BaseClient) -> bool:
    """True once the gateway has loaded the identity (it follows the filer's changes)."""
    try:
        writer.put_object(Bucket=BUCKET, Key="probe/accepts", Body=b"probe")
    except ClientError:
        return False
    return True


def versions(admin: BaseClient, key: str) -> tuple[list[dict], list[dict]]:
    listing = admin.list_object_versions(Bucket=BUCKET, Prefix=key)
    return listing.get("Versions", []), listing.get("DeleteMarkers", [])


def read(admin: BaseClient, key: str, version_id: str | None = None) -> bytes:
    extra = {"VersionId": version_id} if version_id else {}
    return admin.get_object(Bucket=BUCKET, Key=key, **extra)["Body"].read()


def new_writer(cluster: Cluster) -> tuple[str, s3.S3Key, BaseClient]:
    name = f"dl-{secrets.token_hex(3)}"
    key = s3.new_key()
    s3.add_identity(cluster, name, key)
    writer = s3.client(cluster.s3_url, key, retries=1)
    wait_for(lambda: accepts(writer), 30, f"the gateway to accept {name}'s key")
    return name, key, writer


@pytest.fixture
def admin(seaweedfs: Cluster) -> BaseClient:
    return s3.admin_client(seaweedfs)


@pytest.fixture
def writer(seaweedfs: Cluster) -> Iterator[BaseClient]:
    """A downloader's own key: Write:images and nothing else."""
    name, _, client = new_writer(seaweedfs)
    yield client
    s3.remove_identity(seaweedfs, name)


def test_the_writer_key_puts_but_cannot_get_head_or_list(
    writer: BaseClient, admin: BaseClient
) -> None:
    key = photo_key()
    writer.put_object(Bucket=BUCKET, Key=key, Body=b"photo bytes")
    assert read(admin, key) == b"photo bytes"
    assert refusal(lambda: writer.get_object(Bucket=BUCKET, Key=key)) == 403
    assert refusal(lambda: writer.head_object(Bucket=BUCKET, Key=key)) == 403
    assert refusal(lambda: writer.list_objects_v2(Bucket=BUCKET)) == 403
    assert refusal(lambda: writer.list_object_versions(Bucket=BUCKET)) == 403


def test_the_writer_key_cannot_remove_a_version(writer: BaseClient, admin: BaseClient) -> None:
    key = photo_key()
    first = writer.put_object(Bucket=BUCKET, Key=key, Body=b"the original")["VersionId"]
    delete = {"Bucket": BUCKET, "Key": key, "VersionId": first}
    assert refusal(lambda: writer.delete_object(**delete)) == 403
    assert refusal(lambda: writer.delete_object(**delete, BypassGovernanceRetention=True)) == 403
    batch = writer.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": key, "VersionId": first}]}
    )
    assert [error["Code"] for error in batch.get("Errors", [])] == ["AccessDenied"]
    retention = {"Mode": "GOVERNANCE", "RetainUntilDate": "2000-01-01T00:00:00Z"}
    assert refusal(lambda: writer.put_object_retention(**delete, Retention=retention)) == 403
    assert read(admin, key, first) == b"the original"


def test_an_overwrite_adds_a_version_and_the_first_is_still_there(
    writer: BaseClient, admin: BaseClient
) -> None:
    key = photo_key()
    first = writer.put_object(Bucket=BUCKET, Key=key, Body=b"the original")["VersionId"]
    second = writer.put_object(Bucket=BUCKET, Key=key, Body=b"vandalised")["VersionId"]
    stored, _ = versions(admin, key)
    assert {version["VersionId"] for version in stored} == {first, second}
    assert read(admin, key) == b"vandalised"
    assert read(admin, key, first) == b"the original"


def test_a_delete_adds_a_delete_marker_and_the_first_is_still_there(
    writer: BaseClient, admin: BaseClient
) -> None:
    key = photo_key()
    first = writer.put_object(Bucket=BUCKET, Key=key, Body=b"the original")["VersionId"]
    assert writer.delete_object(Bucket=BUCKET, Key=key)["DeleteMarker"] is True
    stored, markers = versions(admin, key)
    assert [version["VersionId"] for version in stored] == [first]
    assert len(markers) == 1
    assert read(admin, key, first) == b"the original"


def test_the_admin_key_can_still_remove_a_version_by_bypassing_governance(
    writer: BaseClient, admin: BaseClient
) -> None:
    """A takedown stays possible, on the master, with the admin key only."""
    key = photo_key()
    first = writer.put_object(Bucket=BUCKET, Key=key, Body=b"taken down")["VersionId"]
    delete = {"Bucket": BUCKET, "Key": key, "VersionId": first}
    assert refusal(lambda: admin.delete_object(**delete)) == 403
    admin.delete_object(**delete, BypassGovernanceRetention=True)
    assert versions(admin, key) == ([], [])


def test_keys_rotate_on_the_running_gateway(seaweedfs: Cluster, admin: BaseClient) -> None:
    """Add a new key, both work, retire the old: refused after, the new one still works, and
    the gateway was never restarted."""
    gateway = seaweedfs.s3.process.pid
    name, old_key, old = new_writer(seaweedfs)
    new_key = s3.new_key()
    s3.add_key(seaweedfs, name, new_key)
    new = s3.client(seaweedfs.s3_url, new_key, retries=1)
    wait_for(lambda: accepts(new), 30, "the gateway to accept the new key")
    assert accepts(old)
    s3.remove_key(seaweedfs, name, old_key.access_key)
    wait_for(lambda: not accepts(old), 30, "the gateway to refuse the old key")
    assert refusal(lambda: old.put_object(Bucket=BUCKET, Key=photo_key(), Body=b"x")) == 403
    key = photo_key()
    new.put_object(Bucket=BUCKET, Key=key, Body=b"after rotation")
    assert read(admin, key) == b"after rotation"
    s3.remove_identity(seaweedfs, name)
    wait_for(lambda: not accepts(new), 30, "the gateway to refuse a removed identity")
    assert seaweedfs.s3.process.pid == gateway and seaweedfs.s3.running
    assert name not in s3.identities(seaweedfs)


def put_photos(client: BaseClient, count: int) -> dict[str, bytes]:
    photos = {photo_key(): os.urandom(10_000) for _ in range(count)}
    for key, body in photos.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    return photos


def test_every_object_has_two_copies_on_two_servers(seaweedfs: Cluster, admin: BaseClient) -> None:
    photos = put_photos(admin, 20)
    locations = seaweedfs.volume_locations()
    for key in photos:
        for volume in seaweedfs.object_volume_ids(BUCKET, key):
            assert len(set(locations[volume])) == 2, (key, volume, locations[volume])


def all_copies(cluster: Cluster, keys: list[str]) -> list[int]:
    return [cluster.object_copies(BUCKET, key) for key in keys]


def test_a_killed_volume_server_loses_nothing_and_its_copies_come_back(
    seaweedfs_factory: Callable[..., Cluster],
) -> None:
    cluster = seaweedfs_factory()
    admin = s3.admin_client(cluster)
    photos = put_photos(admin, 20)
    cluster.kill_volume_server(0)
    assert all_copies(cluster, list(photos)) == [1] * len(photos)
    for key, body in photos.items():
        assert read(admin, key) == body
    cluster.restart_volume_server(0)
    wait_for(lambda: all_copies(cluster, list(photos)) == [2] * len(photos), 60, "two copies")
    for key, body in photos.items():
        assert read(admin, key) == body


def test_a_volume_server_added_after_a_loss_takes_new_writes_at_once(
    seaweedfs_factory: Callable[..., Cluster],
) -> None:
    """A storage droplet destroyed and a new one added (`fleet.up role=storage`): photos
    written next have their two copies on the survivor and the new server, and the earlier
    ones are still readable from their surviving copy. (Re-copying those, volume.fix.replication,
    cannot run on loopback: weed 4.48 refuses to copy a volume from a loopback address.)"""
    cluster = seaweedfs_factory()
    admin = s3.admin_client(cluster)
    before = put_photos(admin, 10)
    lost = cluster.kill_volume_server(0)  # never restarted: its droplet is gone
    added = cluster.add_volume_server()
    assert added.address in cluster.data_nodes()
    after = put_photos(admin, 10)
    locations = cluster.volume_locations()
    for key in after:
        for volume in cluster.object_volume_ids(BUCKET, key):
            assert sorted(locations[volume]) == sorted(
                [added.address, cluster.volume_servers[1].address]
            ), (key, locations[volume])
    assert all(lost.address not in nodes for nodes in locations.values())
    for key, body in (before | after).items():
        assert read(admin, key) == body


def leader_of(cluster: Cluster, master: int) -> str:
    """The raft leader one master names ("" while there is none, or if it does not answer)."""
    try:
        return str(get_json(f"http://{cluster.masters[master].address}/cluster/status")["Leader"])
    except (requests.RequestException, ValueError, KeyError):
        return ""


def test_two_pinned_masters_keep_quorum_and_a_later_volume_server_takes_writes(
    seaweedfs_factory: Callable[..., Cluster],
) -> None:
    """The masters rule (README, SeaweedFS): st-3's droplet (a master and a volume server) is
    lost; the peers stay the three addresses the masters started with, so st-1 and st-2 keep
    quorum (2 of 3) and a leader, and a new node's volume server, told all three pinned
    addresses as the states render them (the dead one included), registers and takes the
    next writes with the survivor; every photo stays readable."""
    cluster = seaweedfs_factory(masters=3, volume_servers=2)
    admin = s3.admin_client(cluster)
    before = put_photos(admin, 10)
    cluster.masters[2].kill()  # its droplet is gone, master and volume server
    lost = cluster.kill_volume_server(1)
    wait_for(lambda: leader_of(cluster, 0) and leader_of(cluster, 0) == leader_of(cluster, 1),
             60, "a leader the two live masters agree on")  # fmt: skip
    assert leader_of(cluster, 0) != cluster.masters[2].address
    added = cluster.add_volume_server()
    assert cluster.masters[2].address in " ".join(added.args)  # -mserver: the pinned three
    after = put_photos(admin, 10)
    locations = cluster.volume_locations()
    survivor = cluster.volume_servers[0].address
    for key in after:
        for volume in cluster.object_volume_ids(BUCKET, key):
            assert sorted(locations[volume]) == sorted([added.address, survivor]), key
    assert all(lost.address not in nodes for nodes in locations.values())
    for key, body in (before | after).items():
        assert read(admin, key) == body


def test_a_filer_on_mariadb_survives_the_loss_of_its_droplet(
    seaweedfs_factory: Callable[..., Cluster], mariadb: LocalMariaDB
) -> None:
    """The filer's metadata in MariaDB: its directory wiped (the droplet lost), a new filer on
    the same database still finds every photo. With leveldb2 the same loss forgets them."""
    database = f"ccm_seaweed_{secrets.token_hex(3)}"
    mariadb.fresh_database(database)
    password = mariadb.password_file.read_text().strip()
    store = MySQLFilerStore("127.0.0.1", mariadb.port, "ccmirror", password, database)
    try:
        cluster = seaweedfs_factory(filer_store=store)
        admin = s3.admin_client(cluster)
        photos = put_photos(admin, 5)
        with mariadb.root_connection(database=database) as conn, conn.cursor() as cur:
            # mysql2 keeps each bucket in a table of its own; a version is a row under
            # `<key>.versions`, its directory relative to the bucket
            cur.execute(f"SELECT directory FROM {BUCKET} WHERE directory LIKE '%%.versions'")
            assert sorted(row[0] for row in cur.fetchall()) == sorted(
                f"/{key}.versions" for key in photos
            )
        cluster.restart_filer(wipe=True)
        for key, body in photos.items():
            assert read(admin, key) == body
    finally:
        mariadb.drop_database(database)


def test_a_leveldb_filer_loses_its_metadata_with_its_directory(
    seaweedfs_factory: Callable[..., Cluster],
) -> None:
    """Why the fleet keeps the filer's store off the storage droplets."""
    cluster = seaweedfs_factory()
    admin = s3.admin_client(cluster)
    key = next(iter(put_photos(admin, 1)))
    cluster.restart_filer(wipe=True)
    assert refusal(lambda: read(admin, key)) == 404


def weed_processes_under(base_dir: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-af", "weed"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if str(base_dir) in line]


def block_is_free(port: int) -> bool:
    return all(port_is_free(p) and port_is_free(p + 10000) for p in range(port, port + 5))


def test_a_port_in_use_is_one_clear_error_and_nothing_runs(tmp_path: Path) -> None:
    # The block: master, two volume servers, filer, gateway; another of `make test`'s workers
    # may hold a port of the first one tried.
    blocks = (free_port_pair(set()) for _ in range(20))
    port = next((first for first in blocks if block_is_free(first)), None)
    if port is None:
        pytest.skip("every port block tried is partly taken by something else")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port + 2))  # the first volume server's
        busy.listen()
        with pytest.raises(StorageError, match=rf"port 127.0.0.1:{port + 2} is in use"):
            seaweedfs_cluster(tmp_path, first_port=port)
    assert weed_processes_under(tmp_path) == []


def test_no_weed_binary_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no weed binary"):
        seaweedfs_cluster(tmp_path, weed=str(tmp_path / "no-such-weed"))
    assert weed_processes_under(tmp_path) == []


S3_TEMPLATE = ROOT / "salt" / "storage" / "seaweedfs" / "files" / "s3.json.jinja"


def rendered_identities(
    pillar: dict[str, s3.S3Key], revoked: list[str], bucket: str = BUCKET
) -> str:
    """The storage states' s3.json (salt/storage/seaweedfs) for pillar storage:s3_identities
    and storage:s3_revoked on a site whose bucket is `bucket` (site:storage_bucket), rendered
    as Salt renders it (jinja2, `do`, a `json` filter)."""
    env = jinja2.Environment(extensions=["jinja2.ext.do"])
    env.filters["json"] = json.dumps
    defaults = yaml.safe_load((ROOT / "salt" / "storage" / "defaults.yaml").read_text())
    weed = {"actions": defaults["storage"]["seaweedfs"]["actions"], "bucket": bucket}
    identities = {
        name: {"access_key": key.access_key, "secret_key": key.secret_key}
        for name, key in pillar.items()
    }
    template = env.from_string(S3_TEMPLATE.read_text())
    return template.render(weed=weed, identities=identities, revoked=revoked)


def gateway_reloading(
    cluster: Cluster, bucket: str = BUCKET
) -> Callable[[dict[str, s3.S3Key], list[str]], None]:
    """Writes the rendered s3.json (a site whose bucket is `bucket`) and sends SIGHUP, as the
    states' reload does."""
    config = cluster.base_dir / "s3" / "s3.json"
    admin = s3.S3Key(cluster.admin_access_key, cluster.admin_secret_key)

    def reload(downloaders: dict[str, s3.S3Key], revoked: list[str] | None = None) -> None:
        identities = {"admin": admin, **downloaders}
        config.write_text(rendered_identities(identities, revoked or [], bucket))
        os.kill(cluster.s3.process.pid, signal.SIGHUP)

    return reload


def test_static_identities_rotate_on_sighup_with_no_failed_upload(seaweedfs_factory) -> None:
    """As the storage states run the gateway (salt/storage/seaweedfs): every identity in its
    static file, re-read on SIGHUP (the unit's reload). A downloader's key added, both keys
    accepted, the old one retired, while that downloader uploads all along: no upload fails,
    and the old key is refused after."""
    cluster = seaweedfs_factory(volume_servers=1, replication="000")
    reload = gateway_reloading(cluster)
    old_key, new_key = s3.new_key(), s3.new_key()
    old = s3.client(cluster.s3_url, old_key, retries=1)
    new = s3.client(cluster.s3_url, new_key, retries=1)
    reload({"dl-1": old_key})
    wait_for(lambda: accepts(old), 30, "the gateway to accept the downloader's key")
    failures: list[str] = []
    uploads = [0]
    stop = threading.Event()
    use_new = threading.Event()

    def upload() -> None:
        while not stop.is_set():
            client = new if use_new.is_set() else old
            try:
                client.put_object(Bucket=BUCKET, Key=photo_key(), Body=b"photo")
                uploads[0] += 1
            except ClientError as error:
                failures.append(str(error))

    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        reload({"dl-1": old_key, "dl-1.next": new_key})  # secrets.rotate step=start
        wait_for(lambda: accepts(new), 30, "the gateway to accept the next key")
        use_new.set()  # step=switch: the downloader takes the next key
        reload({"dl-1": new_key, "dl-1.previous": old_key})
        seen = uploads[0]
        wait_for(lambda: uploads[0] > seen + 5, 30, "uploads with the next key")
        reload({"dl-1": new_key})  # step=retire
        wait_for(lambda: not accepts(old), 30, "the gateway to refuse the old key")
        seen = uploads[0]
        wait_for(lambda: uploads[0] > seen + 5, 30, "uploads after the retirement")
    finally:
        stop.set()
        uploader.join()
    assert failures == [] and uploads[0] > 10


def test_a_forgotten_downloaders_key_is_refused_after_a_reload(seaweedfs_factory) -> None:
    """fleet.down forgets a downloader's secrets: the states name it revoked (no key,
    disabled) and the gateway's reload takes its key away at once. An identity the file
    merely stops naming would keep working until the gateway restarts (SeaweedFS merges a
    reloaded file into what it holds)."""
    cluster = seaweedfs_factory(volume_servers=1, replication="000")
    reload = gateway_reloading(cluster)
    kept, gone, dropped = s3.new_key(), s3.new_key(), s3.new_key()
    clients = {key: s3.client(cluster.s3_url, key, retries=1) for key in (kept, gone, dropped)}
    reload({"dl-1": kept, "dl-2": gone, "dl-3": dropped})
    for client in clients.values():
        wait_for(lambda client=client: accepts(client), 30, "the gateway to accept the keys")
    reload({"dl-1": kept}, revoked=["dl-2"])
    wait_for(lambda: not accepts(clients[gone]), 30, "the gateway to refuse dl-2's key")
    assert accepts(clients[kept])
    # dl-3, only left out of the file, is still let in: why the states name it revoked.
    assert accepts(clients[dropped])


def test_a_sites_own_bucket_name_is_where_its_downloaders_keys_may_write(
    seaweedfs_factory,
) -> None:
    """A site whose bucket is `photos` (pillar site:storage_bucket): the states' s3.json
    scopes a downloader's key to that bucket, so it puts there, and is refused in `images`
    (the default's bucket, made on this cluster too), where it may neither write nor read."""
    cluster = seaweedfs_factory(volume_servers=1, replication="000")
    admin = s3.admin_client(cluster)
    s3.create_images_bucket(admin, "photos")
    key = s3.new_key()
    gateway_reloading(cluster, "photos")({"dl-1": key})
    writer = s3.client(cluster.s3_url, key, retries=1)
    photo = photo_key()

    def put_taken() -> bool:
        try:
            writer.put_object(Bucket="photos", Key=photo, Body=b"photo bytes")
        except ClientError:
            return False
        return True

    wait_for(put_taken, 30, "the gateway to let the downloader's key put into photos")
    assert admin.get_object(Bucket="photos", Key=photo)["Body"].read() == b"photo bytes"
    assert refusal(lambda: writer.put_object(Bucket=BUCKET, Key=photo, Body=b"x")) == 403
    assert refusal(lambda: read(admin, photo)) == 404  # nothing of it reached `images`
    assert refusal(lambda: writer.get_object(Bucket="photos", Key=photo)) == 403
