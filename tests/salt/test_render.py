"""Every role's highstate renders with its pillar, holds the states an operator relies on,
and writes what the programs and lab/processes/storage.py expect."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jinja2
import pytest
import yaml

from lab.fleet.lab_secrets import write_lab_secrets
from lab.processes.storage import authorized_keys_line
from tests.salt.conftest import MINIONS, ROOT, SITE, make_salt_call

ROLE_STATES = {
    "master": [
        "master-config-file-managed",
        "master-private-pillar-file-directory",
        "master-modules-file-symlink",
        "master-utils-file-symlink",
    ],
    "db-1": [
        "db-mariadb-config-file-managed",
        "db-mariadb-service-running",
        "db-database-ccmirror-mysql-database-present",
        "db-user-migrate-ccmirror-mysql-grants-present",
        "db-user-queue-ccmirror-mysql-grants-present",
        "db-user-hv-1-ccmirror-mysql-grants-present",
        "db-user-hv-2-ccmirror-mysql-grants-present",
        "db-database-seaweedfs-ccmirror-mysql-database-present",
        "db-user-seaweedfs-ccmirror-mysql-grants-present",
        "db-migrate-cmd-run",
        "queue-tokens-file-managed",
        "queue-service-running",
        "ccmirror-package-cmd-run",
    ],
    "hv-1": ["harvester-config-file-managed", "harvester-service-running"],
    "dl-1": [
        "downloader-ssh-key-file-managed",
        "downloader-known-hosts-file-managed",
        "downloader-spool-file-directory",
        "downloader-service-running",
        "ccmirror-package-cmd-run",
    ],
    "st-1": [
        "storage-authorized-keys-file-managed",
        "storage-host-key-file-managed",
        "storage-sshd-service-running",
        "storage-check-service-running",
        "storage-images-file-directory",
        "storage-manifests-file-directory",
    ],
}
# A site on SeaweedFS (the lab's, Terraform's): what differs from the rsync site above.
S3_ROLE_STATES = {
    "dl-1": [
        "downloader-config-file-managed",
        "downloader-ssh-key-file-absent",
        "downloader-service-running",
    ],
    "st-1": [
        "storage-check-service-running",
        "storage-weed-master-service-running",
        "storage-weed-volume-service-running",
        "storage-weed-filer-service-running",
        "storage-weed-s3-service-running",
        "storage-weed-bucket-cmd-run",
        "storage-weed-package-cmd-run",
    ],
}
# ... and what a site's backend leaves out: nothing of the other one runs.
S3_ABSENT_STATES = {
    "dl-1": ["downloader-ssh-key-file-managed", "downloader-known-hosts-file-managed"],
    "st-1": ["storage-sshd-service-running", "storage-authorized-keys-file-managed"],
}
RSYNC_ABSENT_STATES = {"st-1": ["storage-weed-s3-service-running", "storage-weed-bucket-cmd-run"]}
S3_NODES = {"st-1": SITE["storage_host"], "st-2": "10.250.0.9"}
PHOTOS_MINIONS = ("st-1", "dl-1", "db-1")  # what names the bucket: gateway, writer, audit
COMMON_STATES = ["common-sshd-config-file-managed", "common-timesyncd-service-running"]


def args(state: dict) -> dict:
    """A rendered state's arguments as one dict (Salt keeps them as a list of one-key dicts)."""
    (function_args,) = [v for k, v in state.items() if not k.startswith("__")]
    merged = {}
    for item in function_args:
        if isinstance(item, dict):
            merged.update(item)
    return merged


@pytest.fixture(scope="module")
def highstates(salt_call) -> dict[str, dict]:
    return {minion: salt_call(minion, "state.show_highstate") for minion in ROLE_STATES}


@pytest.fixture(scope="module")
def s3_site(salt_call_bin, tmp_path_factory) -> tuple[Path, object]:
    """A site on SeaweedFS with two storage nodes: its private root and salt-call."""
    root = tmp_path_factory.mktemp("s3-site") / "private"
    write_lab_secrets(
        root, MINIONS, {**SITE, "storage_backend": "seaweedfs", "storage_nodes": S3_NODES}
    )
    salt_call = make_salt_call(
        salt_call_bin, tmp_path_factory.mktemp("salt-s3"), [ROOT / "pillar", root]
    )
    return root, salt_call


@pytest.fixture(scope="module")
def s3_highstates(s3_site) -> dict[str, dict]:
    _, salt_call = s3_site
    return {minion: salt_call(minion, "state.show_highstate") for minion in ROLE_STATES}


@pytest.mark.parametrize("minion", list(ROLE_STATES))
def test_highstate_renders_with_the_role_states(highstates, minion):
    highstate = highstates[minion]
    assert isinstance(highstate, dict), f"{minion} did not render: {highstate}"
    missing = [s for s in ROLE_STATES[minion] + COMMON_STATES if s not in highstate]
    assert not missing, f"{minion} lacks {missing}"
    present = [s for s in RSYNC_ABSENT_STATES.get(minion, []) if s in highstate]
    assert not present, f"{minion} on an rsync site has {present}"


@pytest.mark.parametrize("minion", list(S3_ROLE_STATES))
def test_a_site_on_seaweedfs_runs_it_and_not_the_rsync_target(s3_highstates, minion):
    highstate = s3_highstates[minion]
    assert isinstance(highstate, dict), f"{minion} did not render: {highstate}"
    missing = [s for s in S3_ROLE_STATES[minion] if s not in highstate]
    assert not missing, f"{minion} lacks {missing}"
    present = [s for s in S3_ABSENT_STATES[minion] if s in highstate]
    assert not present, f"{minion} on a SeaweedFS site has {present}"


def test_state_ids_follow_role_what_module_function(highstates):
    for minion, highstate in highstates.items():
        for state_id, state in highstate.items():
            module = next(k for k in state if not k.startswith("__"))
            function = next(a for a in state[module] if isinstance(a, str))
            expected = f"-{module}-{function}".replace("_", "-")
            assert state_id.endswith(expected), (
                f"{minion}: {state_id} is not <role>-<what>-{module}-{function}"
            )
            assert state_id.split("-")[0] == state["__sls__"].split(".")[0], state_id


def test_secrets_are_files_only_their_service_reads(highstates):
    dl, hv = highstates["dl-1"], highstates["hv-1"]
    for state in ("downloader-ssh-key-file-managed", "downloader-config-file-managed"):
        file_args = args(dl[state])
        assert (file_args["mode"], file_args["user"], file_args["show_changes"]) == (
            "0600",
            "ccmirror",
            False,
        )
    assert args(hv["harvester-config-file-managed"])["mode"] == "0600"
    assert args(highstates["st-1"]["storage-host-key-file-managed"])["mode"] == "0600"
    assert args(highstates["master"]["master-private-pillar-file-directory"])["mode"] == "0700"


def test_downloader_config_is_one_the_downloader_loads(highstates, private_root, tmp_path):
    from downloader.config import load_settings

    contents = args(highstates["dl-1"]["downloader-config-file-managed"])["contents"]
    (tmp_path / "downloader.yaml").write_text(contents)
    settings = load_settings(tmp_path / "downloader.yaml", environ={})
    own = yaml.safe_load((private_root / "minions" / "dl-1.sls").read_text())["downloader"]
    assert settings.queue_token == own["queue_token"]
    assert settings.queue_url == f"http://{SITE['db_host']}:8700"
    assert settings.storage == f"ccmirror-storage@{SITE['storage_host']}"
    assert (settings.storage_port, settings.worker) == (SITE["storage_port"], "dl-1")
    known_hosts = args(highstates["dl-1"]["downloader-known-hosts-file-managed"])["contents"]
    host_key = own["storage_host_key"].split()[1]
    assert known_hosts.startswith(f"[{SITE['storage_host']}]:2222 ssh-ed25519 {host_key}")


def test_harvester_and_queue_configs_load(highstates, private_root, tmp_path):
    from harvester.config import load_settings

    path = tmp_path / "harvester.yaml"
    path.write_text(args(highstates["hv-1"]["harvester-config-file-managed"])["contents"])
    settings = load_settings(path, environ={})
    own = yaml.safe_load((private_root / "minions" / "hv-1.sls").read_text())["harvester"]
    assert settings.flickr.api_key == own["flickr"]["api_key"]
    assert settings.flickr.api_url == SITE["flickr_api_url"]
    assert settings.db_url.startswith(f"mysql://hv-1:{own['db_password']}@{SITE['db_host']}:")

    path.write_text(args(highstates["db-1"]["queue-config-file-managed"])["contents"])
    queue = load_settings(path, environ={})
    assert (queue.queue.bind, queue.queue.port) == (SITE["db_host"], 8700)


def test_queue_tokens_file_holds_every_downloader_hash(highstates, private_root, tmp_path):
    from harvester.queue.tokens import hash_token, read_tokens

    path = tmp_path / "tokens.yaml"
    path.write_text(args(highstates["db-1"]["queue-tokens-file-managed"])["contents"])
    tokens = read_tokens(path)
    for dl in ("dl-1", "dl-2"):
        own = yaml.safe_load((private_root / "minions" / f"{dl}.sls").read_text())
        assert tokens[dl] == hash_token(own["downloader"]["queue_token"])


def test_harvester_db_users_connect_only_from_the_private_network(highstates):
    grants = args(highstates["db-1"]["db-user-hv-1-ccmirror-mysql-grants-present"])
    assert grants["host"] == "10.250.0.0/255.255.255.0"
    assert "DROP" not in grants["grant"] and "ALL" not in grants["grant"]
    assert "ALTER" not in grants["grant"] and "GRANT" not in grants["grant"]


def test_storage_authorized_keys_match_the_lab_storage(highstates, private_root):
    state = args(highstates["st-1"]["storage-authorized-keys-file-managed"])
    template = (ROOT / "salt" / "storage" / "files" / "authorized_keys.jinja").read_text()
    text = jinja2.Template(template).render(**state["context"])
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    root = Path(state["context"]["storage"]["root"])
    for dl, line in zip(("dl-1", "dl-2"), lines, strict=True):
        own = yaml.safe_load((private_root / "minions" / f"{dl}.sls").read_text())
        private = own["downloader"]["ssh_key"]
        public = yaml.safe_load((private_root / "minions" / "st-1.sls").read_text())["storage"][
            "authorized_keys"
        ][dl]
        assert private.startswith("-----BEGIN OPENSSH " + "PRIVATE KEY-----")
        key = " ".join(public.split()[:2])
        assert line == f"{authorized_keys_line(root, key)} {dl}"


def test_pillar_version_is_the_package_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pillar = yaml.safe_load((ROOT / "pillar" / "ccmirror.sls").read_text())
    assert pillar["ccmirror"]["version"] == project["version"]


@pytest.mark.parametrize(
    ("minion", "requirement"),
    [
        ("db-1", "ccmirror[harvester,queue]"),
        ("hv-1", "ccmirror[harvester]"),
        ("dl-1", "ccmirror[downloader]"),
    ],
)
def test_each_role_installs_only_its_own_extras(highstates, minion, requirement):
    """A downloader gets no database driver or web stack; the database server, which runs the
    queue and the harvester's database commands, gets both extras; the check that skips the
    install names the same version and extras."""
    version = yaml.safe_load((ROOT / "pillar" / "ccmirror.sls").read_text())["ccmirror"]["version"]
    install = args(highstates[minion]["ccmirror-package-cmd-run"])
    assert install["name"].endswith(f" '{requirement}=={version}'"), install["name"]
    extras = requirement.split("[")[1].rstrip("]").split(",")
    assert install["unless"].endswith(
        f"/bin/python -m ccmirror_common.installed {version} {' '.join(extras)}"
    )


def render(state: dict, name: str) -> str:
    """A file.managed state's template, rendered with its context as Salt would."""
    template = (ROOT / args(state)["source"].replace("salt://", "salt/")).read_text()
    environment = jinja2.Environment(extensions=["jinja2.ext.do"])
    environment.filters["json"] = json.dumps  # as Salt's
    return environment.from_string(template).render(**args(state)["context"])


def test_the_s3_gateway_gives_downloaders_put_only_and_keeps_the_admin_key_off_the_line(
    s3_highstates, s3_site
):
    """Every identity of st-1's pillar is in the gateway's file, a downloader's with
    `Write:images` alone; the bucket is made with the admin key from the environment."""
    private_root, _ = s3_site
    highstates = s3_highstates
    st = yaml.safe_load((private_root / "minions" / "st-1.sls").read_text())["storage"]
    text = render(highstates["st-1"]["storage-weed-s3-config-file-managed"], "s3.json")
    identities = {i["name"]: i for i in json.loads(text)["identities"]}
    assert set(identities) == {"admin", "audit", "backup", "dl-1", "dl-2"}
    for name in ("dl-1", "dl-2"):
        assert identities[name]["actions"] == ["Write:images"]
        (credential,) = identities[name]["credentials"]
        assert credential["accessKey"] == st["s3_identities"][name]["access_key"]
    assert "Admin" in identities["admin"]["actions"]
    assert "Admin" not in identities["audit"]["actions"]
    # db-1's catalog backup key: its own prefix of the bucket, nothing else.
    assert identities["backup"]["actions"] == [
        "Read:images/catalog/*",
        "List:images/catalog/*",
        "Write:images/catalog/*",
    ]
    (credential,) = identities["backup"]["credentials"]
    assert credential["accessKey"] == st["s3_identities"]["backup"]["access_key"]
    bucket = args(highstates["st-1"]["storage-weed-bucket-cmd-run"])
    admin = st["s3_identities"]["admin"]
    assert admin["secret_key"] not in bucket["name"] + bucket["unless"]
    env = (
        {k: v for item in bucket["env"] for k, v in item.items()}
        if isinstance(bucket["env"], list)
        else bucket["env"]
    )
    assert env["CCMIRROR_S3_SECRET_KEY"] == admin["secret_key"]


@pytest.fixture(scope="module")
def photos_site(salt_call_bin, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """A SeaweedFS site whose bucket is `photos` (pillar site:storage_bucket, as Terraform's
    storage_bucket gives it): its private root and the highstates of st-1, dl-1 and db-1."""
    root = tmp_path_factory.mktemp("photos-site") / "private"
    site = {**SITE, "storage_backend": "seaweedfs", "storage_nodes": S3_NODES}
    write_lab_secrets(root, MINIONS, {**site, "storage_bucket": "photos"})
    salt_call = make_salt_call(
        salt_call_bin, tmp_path_factory.mktemp("salt-photos"), [ROOT / "pillar", root]
    )
    return root, {minion: salt_call(minion, "state.show_highstate") for minion in PHOTOS_MINIONS}


def test_the_sites_bucket_name_is_the_gateways_bucket_and_every_keys_scope(photos_site, tmp_path):
    """One name, pillar site:storage_bucket: the bucket st-1 makes, every action of the
    audit's and the downloaders' identities, and the bucket the downloaders and the audit are
    told to write to and read. (With `images` left anywhere, a downloader's key would be
    refused in the bucket it is told to put into, or told a bucket that is never made.)"""
    from downloader.config import load_settings as downloader_settings
    from harvester.config import load_settings as audit_settings

    _, highstates = photos_site
    text = render(highstates["st-1"]["storage-weed-s3-config-file-managed"], "s3.json")
    identities = {i["name"]: i["actions"] for i in json.loads(text)["identities"]}
    assert identities["audit"] == ["Read:photos", "List:photos", "Write:photos"]
    for downloader in ("dl-1", "dl-2"):
        assert identities[downloader] == ["Write:photos"]
    assert ":" not in " ".join(identities["admin"])  # the admin's: every bucket
    made = args(highstates["st-1"]["storage-weed-bucket-cmd-run"])["name"]
    script, url, bucket, *_ = made.split()
    assert (script, url, bucket) == (
        "/usr/local/sbin/ccmirror-storage-bucket",
        f"http://{SITE['storage_host']}:8333",
        "photos",
    )
    downloader = tmp_path / "downloader.yaml"
    downloader.write_text(args(highstates["dl-1"]["downloader-config-file-managed"])["contents"])
    assert downloader_settings(downloader, environ={}).storage.bucket == "photos"
    audit = tmp_path / "audit.yaml"
    audit.write_text(args(highstates["db-1"]["db-audit-config-file-managed"])["contents"])
    assert audit_settings(audit, environ={}).storage.bucket == "photos"


def test_a_bucket_name_that_is_not_one_is_one_clear_error(salt_call_bin, tmp_path_factory):
    """A site's bucket that S3 (and Terraform) would refuse is refused where it is read,
    before any state names it."""
    root = tmp_path_factory.mktemp("bad-bucket-site") / "private"
    site = {**SITE, "storage_backend": "seaweedfs", "storage_nodes": S3_NODES}
    write_lab_secrets(root, MINIONS, {**site, "storage_bucket": "My Photos"})
    salt_call = make_salt_call(
        salt_call_bin, tmp_path_factory.mktemp("salt-bad-bucket"), [ROOT / "pillar", root]
    )
    rendered = json.dumps(salt_call("dl-1", "state.show_highstate", check=False))
    assert "pillar site:storage_bucket My Photos: not a bucket name" in rendered


def test_the_filer_logs_in_to_its_own_database_on_db_1(s3_highstates, s3_site):
    private_root, _ = s3_site
    highstates = s3_highstates
    db = yaml.safe_load((private_root / "minions" / "db-1.sls").read_text())["db"]
    toml = render(highstates["st-1"]["storage-weed-filer-config-file-managed"], "filer.toml")
    assert f'password = "{db["passwords"]["seaweedfs"]}"' in toml
    assert f'hostname = "{SITE["db_host"]}"' in toml and 'database = "seaweedfs"' in toml
    grants = args(highstates["db-1"]["db-user-seaweedfs-ccmirror-mysql-grants-present"])
    assert grants["database"] == "seaweedfs.*" and grants["host"] == "10.250.0.0/255.255.255.0"
    # Two storage nodes: one master (raft needs three), and two copies on two servers.
    unit = render(highstates["st-1"]["storage-weed-master-unit-file-managed"], "master")
    assert "-defaultReplication=001" in unit and f"-ip={SITE['storage_host']}" in unit


def test_storage_installs_the_weed_the_wheelhouse_pins_and_no_ccmirror(s3_highstates):
    """SeaweedFS in a venv of its own, at the version of pyproject.toml's `storage` extra
    (the wheelhouse holds that one); ccmirror's code is no storage droplet's."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["storage"]
    install = args(s3_highstates["st-1"]["storage-weed-package-cmd-run"])
    for requirement in extra:
        assert f"'{requirement}'" in install["name"], (requirement, install["name"])
    assert "ccmirror-package-cmd-run" not in s3_highstates["st-1"]


def test_a_site_on_s3_gives_each_downloader_the_bucket_and_its_own_put_key(s3_site, tmp_path):
    """`site:storage_backend` other than rsync (Terraform's seaweedfs or spaces): the
    downloader's config names the bucket on the first storage node's gateway (or the site's
    endpoint) with its own S3 key, and the downloader reads it as an S3 target."""
    from downloader.config import load_settings

    root, salt_call = s3_site
    state = args(salt_call("dl-1", "state.show_highstate")["downloader-config-file-managed"])
    (tmp_path / "downloader.yaml").write_text(state["contents"])
    settings = load_settings(tmp_path / "downloader.yaml", environ={})
    own = yaml.safe_load((root / "minions" / "dl-1.sls").read_text())["downloader"]["s3"]
    assert settings.storage.endpoint == f"http://{SITE['storage_host']}:8333"
    assert settings.storage.bucket == "images"
    assert settings.storage.access_key == own["access_key"]
    assert settings.storage.secret_key == own["secret_key"]


def test_db_1_gets_the_s3_audits_settings_on_an_s3_site_only_and_nowhere_else(
    highstates, private_root, salt_call_bin, tmp_path_factory, tmp_path
):
    """`audit.storage` on a bucket runs `harvester audit-storage --s3` on db-1 with a file of
    root's (0600, no diff shown): the migrate login and the bucket with the audit's own key,
    at the downloaders' endpoint. No other state of db-1 or of a downloader carries that
    secret; an rsync site has no such file (one left behind is removed)."""
    from harvester.config import load_settings

    rsync_db = highstates["db-1"]
    assert args(rsync_db["db-audit-config-file-absent"])["name"] == "/etc/ccmirror/audit.yaml"
    assert "db-audit-config-file-managed" not in rsync_db

    root = tmp_path_factory.mktemp("s3-audit-site") / "private"
    nodes = {"st-2": "10.250.0.9", "st-1": SITE["storage_host"]}
    write_lab_secrets(
        root, MINIONS, {**SITE, "storage_backend": "seaweedfs", "storage_nodes": nodes}
    )
    salt_call = make_salt_call(
        salt_call_bin, tmp_path_factory.mktemp("salt-s3-audit"), [ROOT / "pillar", root]
    )
    db = salt_call("db-1", "state.show_highstate")
    state = args(db["db-audit-config-file-managed"])
    assert (state["user"], state["group"], state["mode"]) == ("root", "root", "0600")
    assert state["show_changes"] is False and "db-audit-config-file-absent" not in db
    (tmp_path / "audit.yaml").write_text(state["contents"])
    settings = load_settings(tmp_path / "audit.yaml", environ={})
    key = yaml.safe_load((root / "minions" / "db-1.sls").read_text())["storage_audit"]
    migrate = yaml.safe_load(args(db["db-migrate-config-file-managed"])["contents"])
    assert settings.db_url == migrate["db_url"]
    storage = settings.storage
    assert (storage.endpoint, storage.bucket, storage.region) == (
        f"http://{SITE['storage_host']}:8333",  # st-1's gateway: the first node by id
        "images",
        "us-east-1",
    )
    assert (storage.access_key, storage.secret_key) == (key["access_key"], key["secret_key"])

    others = {name: s for name, s in db.items() if name != "db-audit-config-file-managed"}
    assert key["secret_key"] not in json.dumps(others)
    downloader = salt_call("dl-1", "state.show_highstate")
    assert key["secret_key"] not in json.dumps(downloader)


def test_db_1_backs_the_catalog_up_on_a_schedule_with_its_own_key_on_an_s3_site_only(
    highstates, s3_highstates, s3_site, tmp_path
):
    """On a site whose photos are in a bucket, db-1 has the catalog backup's settings
    (root's, 0600, no diff shown: root over the socket, the bucket with db-1's own backup
    key) and the minion's schedule runs ccmirror_backup.backup with the pillar's retention;
    zstd is installed. No other state of db-1, and no downloader's, carries that key. An rsync
    site has neither (left ones are removed)."""
    from harvester.config import load_settings

    rsync_db = highstates["db-1"]
    assert args(rsync_db["db-backup-schedule-absent"])["name"] == "ccmirror-catalog-backup"
    assert "db-backup-schedule-present" not in rsync_db
    assert "db-backup-config-file-managed" not in rsync_db
    # No backup target on either site: no backup check (tests/salt/test_render_backup.py).
    for site_db in (rsync_db, s3_highstates["db-1"]):
        assert args(site_db["db-backup-check-schedule-absent"])["name"] == "ccmirror-backup-check"

    root, _ = s3_site
    db = s3_highstates["db-1"]
    state = args(db["db-backup-config-file-managed"])
    assert state["name"] == "/etc/ccmirror/catalog-backup.yaml"
    assert (state["user"], state["group"], state["mode"]) == ("root", "root", "0600")
    assert state["show_changes"] is False
    (tmp_path / "backup.yaml").write_text(state["contents"])
    settings = load_settings(tmp_path / "backup.yaml", environ={})
    assert settings.db_url == "mysql://root@localhost/ccmirror?unix_socket=/run/mysqld/mysqld.sock"
    key = yaml.safe_load((root / "minions" / "db-1.sls").read_text())["catalog_backup"]
    assert (settings.storage.access_key, settings.storage.secret_key) == (
        key["access_key"],
        key["secret_key"],
    )
    assert settings.storage.endpoint.endswith(":8333") and settings.storage.bucket == "images"
    # SeaweedFS's names of every object are its filers' store on db-1: dumped with the catalog
    assert settings.catalog_backup.also_databases == ["seaweedfs"]
    schedule = args(db["db-backup-schedule-present"])
    assert schedule["function"] == "ccmirror_backup.backup" and schedule["maxrunning"] == 1
    assert schedule["hours"] == 24 and schedule["job_kwargs"] == {"prefix": "catalog/", "keep": 7}
    assert "zstd" in args(db["db-mariadb-pkg-installed"])["pkgs"]
    others = {name: s for name, s in db.items() if name != "db-backup-config-file-managed"}
    assert key["secret_key"] not in json.dumps(others)
    assert key["secret_key"] not in json.dumps(s3_highstates["dl-1"])


def test_pinned_masters_stay_the_peers_when_a_master_goes_and_a_node_comes(
    salt_call_bin, tmp_path_factory
):
    """Raft's peers are the addresses the masters started with: after st-3 (a master) is
    destroyed and dropped from site:storage_nodes, and st-4 added, every node still names
    st-1, st-2 and st-3's old address as masters; st-4 runs a volume server (no master) that
    reports to them; a new droplet named st-3 at another address is no master either."""
    from lab.fleet.lab_secrets import writer

    root = tmp_path_factory.mktemp("pinned-site") / "private"
    nodes = {"st-1": SITE["storage_host"], "st-2": "10.250.0.9", "st-3": "10.250.0.10"}
    minions = [*MINIONS, "st-2", "st-3", "st-4"]
    write_lab_secrets(
        root, minions, {**SITE, "storage_backend": "seaweedfs", "storage_nodes": nodes}
    )
    writer().change_storage_nodes(root, drop=["st-3"])
    changed = writer().change_storage_nodes(root, add={"st-4": "10.250.0.11"})
    assert changed["storage_nodes"] == {
        "st-1": SITE["storage_host"],
        "st-2": "10.250.0.9",
        "st-4": "10.250.0.11",
    }
    assert changed["storage_masters"] == ["st-1", "st-2", "st-3"]
    salt_call = make_salt_call(
        salt_call_bin, tmp_path_factory.mktemp("salt-pinned"), [ROOT / "pillar", root]
    )
    peers = f"-peers={SITE['storage_host']}:9333,10.250.0.9:9333,10.250.0.10:9333"
    st1 = salt_call("st-1", "state.show_highstate")
    assert peers in render(st1["storage-weed-master-unit-file-managed"], "master")
    st4 = salt_call("st-4", "state.show_highstate")
    assert "storage-weed-master-unit-file-managed" not in st4
    volume = render(st4["storage-weed-volume-unit-file-managed"], "volume")
    assert f"-mserver={peers.removeprefix('-peers=')}" in volume and "-ip=10.250.0.11" in volume
    # The shared filer store: the first master's filer makes it; another waits for it, since
    # a filer finding it empty copies from a peer and exits when that one does not answer.
    first = render(st1["storage-weed-filer-unit-file-managed"], "filer")
    other = render(st4["storage-weed-filer-unit-file-managed"], "filer")
    assert "SELECT 1 FROM filemeta" not in first and "SELECT 1 FROM filemeta" in other
    assert "TimeoutStartSec=660" in first and "TimeoutStartSec=660" in other

    # A replacement st-3 at a new address: a volume server; the peers keep the old one.
    writer().change_storage_nodes(root, add={"st-3": "10.250.0.12"})
    st3 = salt_call("st-3", "state.show_highstate")
    assert "storage-weed-master-unit-file-managed" not in st3
    assert peers.removeprefix("-peers=") in render(
        st3["storage-weed-volume-unit-file-managed"], "volume"
    )
