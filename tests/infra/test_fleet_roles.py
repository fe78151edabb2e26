"""Each role's programs, files and secrets, checked on the minions of that role."""

from __future__ import annotations

import pytest

from tests.infra.checks import (
    assert_secret_file,
    http_get,
    listening_tcp,
    nested_keys,
    running_and_enabled,
)


@pytest.mark.role("db")
def test_mariadb_serves_the_schema_on_the_private_address(host, site: dict) -> None:
    assert host.package("mariadb-server").is_installed
    running_and_enabled(host, "mariadb")
    assert (site["db_host"], site.get("db_port", 3306)) in listening_tcp(host)
    version = host.run("mysql -N -e 'SELECT MAX(version) FROM ccmirror.schema_migrations'")
    assert version.rc == 0 and int(version.stdout) >= 1, version.stderr


@pytest.mark.role("db")
def test_each_harvester_has_its_own_database_user(host, pillar: dict) -> None:
    users = host.run("mysql -N -e 'SELECT DISTINCT user FROM mysql.user'").stdout.split()
    harvesters = [name for name in pillar["db"]["passwords"] if name.startswith("hv-")]
    assert harvesters and set(harvesters) <= set(users)


@pytest.mark.role("queue")
def test_queue_service_runs_with_hashed_tokens(host, site: dict, pillar: dict) -> None:
    running_and_enabled(host, "ccmirror-queue")
    assert (site["db_host"], site["queue_port"]) in listening_tcp(host)
    assert_secret_file(host, "/etc/ccmirror/queue-tokens.yaml", "root", "ccmirror")
    tokens = host.file("/etc/ccmirror/queue-tokens.yaml").content_string
    assert "ccmq_" not in tokens  # hashes only, never a token
    # Every downloader the pillar knows (none between batches), by its hash.
    for worker, hashes in (pillar.get("queue", {}).get("tokens") or {}).items():
        for hashed in [hashes] if isinstance(hashes, str) else hashes:
            assert hashed.startswith("sha256:") and hashed in tokens, worker
    code, body = http_get(host, f"http://{site['db_host']}:{site['queue_port']}/v1/status")
    assert code == 200 and '"images"' in body, body


@pytest.mark.role("harvester")
def test_harvester_runs_with_its_own_key(host, pillar: dict, minion_id: str) -> None:
    running_and_enabled(host, "ccmirror-harvester")
    assert_secret_file(host, "/etc/ccmirror/harvester.yaml", "ccmirror", "ccmirror")
    key = pillar["harvester"]["flickr"]["api_key"]
    assert key and host.file("/etc/ccmirror/harvester.yaml").contains(key)
    flickr = pillar["harvester"]["flickr"]
    if flickr.get("oauth_token"):  # it signs its calls (every safety level): all it signs with
        signing = ("api_secret", "oauth_token", "oauth_token_secret")
        assert all(flickr.get(name) for name in signing), sorted(flickr)
        assert host.file("/etc/ccmirror/harvester.yaml").contains(flickr["oauth_token"])
    else:  # unsigned: only what it uses, so the consumer secret stays on the master
        assert "api_secret" not in flickr, sorted(flickr)
    assert "downloader" not in pillar and "storage" not in pillar
    assert "passwords" not in pillar.get("db", {})  # its own password only, no one else's


def storage_backend(site: dict) -> str:
    """The site's storage backend (salt/storage/init.sls): rsync unless it names another."""
    return site.get("storage_backend", "rsync")


@pytest.mark.role("downloader")
def test_downloader_runs_with_its_own_storage_key(host, site: dict, pillar: dict) -> None:
    """Its settings (its S3 key, or the rsync target with its SSH key and the pinned host)
    readable by ccmirror only; on an S3 site no SSH key is left on the droplet."""
    running_and_enabled(host, "ccmirror-downloader")
    assert_secret_file(host, "/etc/ccmirror/downloader.yaml", "ccmirror", "ccmirror")
    if storage_backend(site) == "rsync":
        assert host.package("rsync").is_installed and host.package("openssh-client").is_installed
        assert_secret_file(host, "/etc/ccmirror/storage_key", "ccmirror", "ccmirror")
        assert host.file("/etc/ccmirror/storage_key").mode == 0o600
        known = host.file("/etc/ccmirror/known_hosts").content_string
        assert known.startswith(f"[{site['storage_host']}]:{site['storage_port']} ssh-ed25519 ")
    else:
        assert not host.file("/etc/ccmirror/storage_key").exists
        settings = host.file("/etc/ccmirror/downloader.yaml").content_string
        assert pillar["downloader"]["s3"]["access_key"] in settings
    spool = host.file("/var/spool/ccmirror")
    assert spool.is_directory and spool.user == "ccmirror"


@pytest.mark.role("downloader")
def test_a_downloader_sees_no_flickr_key_and_no_database_password(pillar: dict) -> None:
    keys = nested_keys(pillar)
    assert not keys & {"api_key", "api_secret", "flickr", "db_password", "passwords"}, keys
    assert not {"harvester", "db", "queue", "storage"} & set(pillar)


@pytest.mark.role("storage")
def test_storage_sshd_takes_only_restricted_rrsync_keys(host, site: dict, pillar: dict) -> None:
    if storage_backend(site) != "rsync":
        assert not host.service("ccmirror-storage-sshd").is_running
        return
    running_and_enabled(host, "ccmirror-storage-sshd")
    assert host.package("rsync").is_installed and host.exists("rrsync")
    assert (site["storage_host"], site["storage_port"]) in listening_tcp(host)
    assert_secret_file(host, "/etc/ccmirror/storage-sshd/ssh_host_ed25519_key", "root", "root")
    assert host.file("/etc/ccmirror/storage-sshd/ssh_host_ed25519_key").mode == 0o600
    keys = host.file("/etc/ccmirror/storage-sshd/authorized_keys").content_string
    lines = [line for line in keys.splitlines() if line and not line.startswith("#")]
    # One key per downloader the pillar knows (none between batches), each restricted.
    assert len(lines) == len(pillar.get("storage", {}).get("authorized_keys") or {}), keys
    for line in lines:
        assert line.startswith('restrict,command="/usr/bin/rrsync -wo '), line
    user = host.user("ccmirror-storage")
    assert user.exists
    for sub in ("images", "manifests"):
        directory = host.file(f"/srv/ccmirror-storage/{sub}")
        assert directory.is_directory and directory.user == "ccmirror-storage"


@pytest.mark.role("storage")
def test_storage_free_space_check_runs(host) -> None:
    running_and_enabled(host, "ccmirror-storage-check")


@pytest.mark.role("storage")
def test_storage_root_is_on_the_volume_the_site_names(host, site: dict, minion_id: str) -> None:
    """On DigitalOcean each st-* has its volume mounted at the root (the lab names none)."""
    device = (site.get("storage_volumes") or {}).get(minion_id)
    if not device:
        pytest.skip(f"site:storage_volumes names no device for {minion_id}")
    root = host.mount_point("/srv/ccmirror-storage")
    assert root.exists, "the storage root is not a mount point: SeaweedFS is on the root disk"
    assert host.file(root.device).linked_to == host.file(device).linked_to
    assert "nofail" in host.file("/etc/fstab").content_string


@pytest.mark.role("storage")
def test_storage_runs_seaweedfs_with_an_object_locked_bucket(
    host, site: dict, pillar: dict, minion_id: str
) -> None:
    """SeaweedFS on the node's private address: a master on the masters' nodes, a volume
    server, the filer (its store on db-1) and the S3 gateway, which refuses an unsigned
    request; the bucket has object lock with its default retention."""
    if storage_backend(site) != "seaweedfs":
        pytest.skip(f"this site's storage is {storage_backend(site)}")
    nodes = site.get("storage_nodes") or {minion_id: site["storage_host"]}
    address = nodes[minion_id]
    first_master = nodes[sorted(nodes)[0]]  # it makes the bucket
    servers = {"volume": 8080, "filer": 8888, "s3": 8333}
    if minion_id in sorted(nodes)[: 3 if len(nodes) >= 3 else 1]:  # raft: 3, or 1
        servers["master"] = 9333
    listening = listening_tcp(host)
    for server, port in servers.items():
        running_and_enabled(host, f"ccmirror-weed-{server}")
        assert (address, port) in listening, (server, port)
    for name in ("s3.json", "filer.toml", "filer.my.cnf"):
        assert_secret_file(host, f"/etc/seaweedfs/{name}", "seaweedfs", "seaweedfs")
    code, body = http_get(host, f"http://{address}:8333/images")
    assert code == 403 and "AccessDenied" in body, (code, body)
    if address == first_master:
        assert_bucket_locked(host, pillar["storage"]["s3_identities"]["admin"], address)


@pytest.mark.role("backup")
def test_the_backup_node_runs_its_own_seaweedfs_and_filer_backup(
    host, site: dict, pillar: dict
) -> None:
    """bk-*: a one-node SeaweedFS of its own on its private address (its filer's names in
    leveldb2 on its disk, no login to db-1), an object-locked bucket made with its own admin
    key, and `weed filer.backup` following the main filer with deletes never sent."""
    address = site["backup_nodes"][host.backend.host]
    listening = listening_tcp(host)
    for server, port in {"master": 9333, "volume": 8080, "filer": 8888, "s3": 8333}.items():
        running_and_enabled(host, f"ccmirror-weed-{server}")
        assert (address, port) in listening, (server, port)
    running_and_enabled(host, "ccmirror-weed-backup")
    for name in ("s3.json", "filer.toml", "replication.toml"):
        assert_secret_file(host, f"/etc/seaweedfs/{name}", "seaweedfs", "seaweedfs")
    assert not host.file("/etc/seaweedfs/filer.my.cnf").exists
    unit = host.file("/etc/systemd/system/ccmirror-weed-backup.service").content_string
    assert "filer.backup" in unit and "-doDeleteFiles=false" in unit
    assert_bucket_locked(host, pillar["storage"]["s3_identities"]["admin"], address)


def assert_bucket_locked(host, admin: dict, address: str) -> None:
    """The images bucket on `address`'s gateway has object lock with its default retention,
    as the bucket script checks it with the cluster's admin key (from the environment)."""
    check = host.run(
        "env CCMIRROR_S3_ACCESS_KEY=%s CCMIRROR_S3_SECRET_KEY=%s"
        " /usr/local/sbin/ccmirror-storage-bucket --check http://%s:8333 images GOVERNANCE 100",
        admin["access_key"],
        admin["secret_key"],
        address,
    )
    assert check.rc == 0, check.stderr


@pytest.mark.role("storage", "db")
def test_servers_hold_no_flickr_key(pillar: dict) -> None:
    assert not nested_keys(pillar) & {"api_key", "api_secret", "flickr"}


@pytest.mark.role("master")
def test_master_has_its_config_and_a_private_pillar_root(host) -> None:
    assert host.file("/etc/salt/master.d/ccmirror.conf").is_file
    private = host.file("/srv/ccmirror-private")
    assert private.is_directory and private.user == "root" and private.mode == 0o700
    assert host.file("/usr/local/sbin/ccmirror-build-wheelhouse").mode == 0o755
    # Minions sync the `ccmirror.*` execution module from salt://_modules/ (the dist root).
    # (readlink, not testinfra's linked_to: realpath fails where the checkout is not cloned yet)
    assert host.file("/srv/ccmirror-dist/_modules").is_symlink
    assert host.check_output("readlink /srv/ccmirror-dist/_modules") == "/srv/ccmirror/_modules"
    assert host.check_output("readlink /srv/ccmirror-dist/_utils") == "/srv/ccmirror/_utils"
