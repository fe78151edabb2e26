"""`salt-run audit.storage` through a real salt-master with two real minions on loopback:
`st-1` walks a storage tree with `_modules/ccmirror_audit.py`, the inventory travels through
the master in pieces, and `db-1` compares it with a real MariaDB catalog through `harvester
audit-storage`. Keys are pre-seeded on both ends, as the lab does (never `auto_accept`).
Also: the runner and module load through Salt's loaders with a `CLI Example::` each, and
their refusals are one clear error. On a site whose storage is an S3 bucket (pillar
`site:storage_backend`), the same runner has `db-1` audit a real SeaweedFS bucket instead."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lab.processes import seaweedfs_s3 as s3
from tests.integration.test_storage_audit import PHOTOS, Mirror, fill_images, image_path_of
from tests.integration.test_storage_audit_s3 import Mirror as BucketMirror
from tests.integration.test_storage_audit_s3 import Store, content, remove_only_version
from tests.salt.conftest import runner_master_config
from tests.salt.loopback import Master, salt_on_loopback

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = Path(sys.executable).parent.parent
MINIONS = ("st-1", "db-1")


@dataclass
class SaltOnLoopback(Master):
    storage_root: Path
    migrate_config: Path
    transfer: str  # what the master's config makes the runner's transfer=auto choose


@pytest.fixture(params=["relay", "push"])
def salt(request, salt_call_bin) -> Iterator[SaltOnLoopback]:
    """A master with st-1 and db-1. `relay`: Salt's default master config; `push`: one that
    takes pushed files and serves them through minionfs, so the runner's `auto` pushes."""
    # Short: Salt's unix sockets live below root_dir, and a pytest tmp_path is too long.
    base = Path(tempfile.mkdtemp(prefix="ccm-audit-"))
    setup = SaltOnLoopback(base / "master", base / "storage", base / "migrate.yaml", request.param)
    master: dict = {"ccmirror_migrate_config": str(setup.migrate_config)}
    if request.param == "push":
        (base / "roots").mkdir()
        master |= {
            "file_recv": True,
            "fileserver_backend": ["roots", "minionfs"],
            "file_roots": {"base": [str(base / "roots")]},
        }
    ccmirror = {
        "venv": str(VENV),
        "migrate_config": str(setup.migrate_config),
        "storage_root": str(setup.storage_root),
    }
    with salt_on_loopback(base, {minion: ccmirror for minion in MINIONS}, master):
        yield setup


def test_audit_storage_through_a_master_requeues_bad_files_and_reports_orphans(
    salt, db_url, sql, tmp_path
):
    conn_setup(db_url)
    salt.migrate_config.write_text(yaml.safe_dump({"db_url": db_url}))
    mirror = Mirror(db_url, sql, salt.storage_root, tmp_path)
    stored = mirror.store()
    gone, corrupt = stored[0], stored[3]
    mirror.path_of(gone).unlink()
    mirror.path_of(corrupt).write_bytes(b"not the photo")
    (salt.storage_root / "images" / "stray.txt").write_text("left by hand")

    answer, code, progress = salt.run_json("audit.storage", "clock_margin=0", "progress_seconds=0")
    assert code == 0, answer
    # The walk's own progress (an event per file here), shown by the runner as it comes.
    assert f"st-1: walked {PHOTOS:,} files" in " | ".join(progress), progress
    assert (answer["storage"], answer["db_minion"]) == ("st-1", "db-1")
    assert answer["transfer"] == salt.transfer
    audit = answer["audit"]
    assert {k: audit[k] for k in ("files", "ok", "missing", "corrupt", "orphans", "requeued")} == {
        "files": PHOTOS,
        "ok": PHOTOS - 2,
        "missing": 1,
        "corrupt": 1,
        "orphans": 1,
        "requeued": 2,
    }
    assert audit["samples"]["missing"] == [image_path_of(sql, gone)]
    assert audit["samples"]["orphans"] == ["images/stray.txt"]
    assert answer["inventory"]["files"] == PHOTOS and answer["comment"] == audit["summary"]
    states = dict(sql("SELECT id, state FROM images"))
    assert [i for i, state in states.items() if state == "pending"] == [gone, corrupt]
    assert (salt.storage_root / "images" / "stray.txt").exists()

    # Run again: the requeued photos are no longer stored, so nothing more to requeue.
    again, code, _ = salt.run_json("audit.storage", "full=False")
    assert code == 0, again
    assert (again["audit"]["missing"], again["audit"]["requeued"]) == (0, 0), again
    assert (again["inventory"]["reused"], again["inventory"]["hashed"]) == (PHOTOS, 0)
    assert sql("SELECT COUNT(*) FROM storage_audits") == [(2,)]

    if salt.transfer == "push":
        return
    # Refusals: one clear error each, retcode 1.
    bad, code, _ = salt.run_json("audit.storage", "timeout=-5")
    assert code == 1 and "timeout must be a positive" in bad["error"], bad
    answer, code = salt.call("st-1", "ccmirror_audit.inventory", "root=/nonexistent")
    assert code == 1 and "no images/ under the storage root /nonexistent" in answer["comment"]
    answer, code = salt.call("st-1", "ccmirror_audit.read_chunk", "/etc/passwd", "0")
    assert code == 1 and "not an inventory of this minion" in answer["comment"]
    answer, code = salt.call("db-1", "ccmirror_audit.compare", "st-1.tsv.gz", "sha256=deadbeef")
    assert code == 1 and "the copy is damaged" in answer["comment"]
    answer, code = salt.call("db-1", "ccmirror_audit.write_chunk", "st-1.tsv.gz", "5", "AAAA")
    assert code == 1 and "start again at 0" in answer["comment"]
    assert sql("SELECT COUNT(*) FROM storage_audits") == [(2,)]


@dataclass
class S3Site(Master):
    base: Path  # every file the master and db-1 keep: job cache, logs
    audit_config: Path  # what salt/db/audit.sls renders on db-1


@pytest.fixture
def s3_site(salt_call_bin, s3_bucket, db_url) -> Iterator[tuple[S3Site, Store]]:
    """A master whose pillar makes the site's storage SeaweedFS, with db-1 holding the audit's
    settings for a bucket of the test's own (its own identity: Read, List, Write on it)."""
    cluster, auditor = s3_bucket.cluster, s3.new_key()
    s3.add_identity(cluster, f"auditor-{s3_bucket.name}", auditor, s3_bucket.name,
                    s3.AUDITOR_ACTIONS)  # fmt: skip
    s3.wait_known(cluster, auditor, s3_bucket.name)
    store = Store(s3_bucket, {"admin": s3.admin_key(cluster), "writer": s3_bucket.writer,
                              "auditor": auditor})  # fmt: skip
    base = Path(tempfile.mkdtemp(prefix="ccm-s3a-"))
    setup = S3Site(base / "master", base, base / "audit.yaml")
    pillar = base / "pillar"
    pillar.mkdir()
    (pillar / "top.sls").write_text("base:\n  'db-1':\n    - site\n")
    (pillar / "site.sls").write_text("site:\n  storage_backend: seaweedfs\n")
    migrate = base / "migrate.yaml"
    migrate.write_text(yaml.safe_dump({"db_url": db_url}))
    settings = {"db_url": db_url, "storage": s3_bucket.storage_setting(auditor)}
    setup.audit_config.write_text(yaml.safe_dump(settings))
    setup.audit_config.chmod(0o600)
    master = {"ccmirror_migrate_config": str(migrate), "pillar_roots": {"base": [str(pillar)]}}
    ccmirror = {"venv": str(VENV), "audit_config": str(setup.audit_config)}
    with salt_on_loopback(base, {"db-1": ccmirror}, master):
        yield setup, store


def test_on_an_s3_site_the_audit_restores_requeues_and_counts_from_db_1(s3_site, db_url, sql):
    salt, store = s3_site
    conn_setup(db_url)
    mirror = BucketMirror(db_url, sql, store)
    keys = mirror.store()
    missing, overwritten, deleted = sorted(keys)[1:4]
    photo_of = {i: int(keys[i].rsplit("/", 1)[1].split(".")[0]) for i in keys}
    remove_only_version(mirror, keys[missing], missing)  # gone: only the admin can do this
    # What a stolen downloader key can do: overwrite with other bytes, delete.
    mirror.writer.put_object(Bucket=mirror.bucket, Key=keys[overwritten], Body=b"other bytes")
    mirror.writer.delete_object(Bucket=mirror.bucket, Key=keys[deleted])
    orphan = "images/99/99/7000000001.jpg"
    mirror.writer.put_object(Bucket=mirror.bucket, Key=orphan, Body=b"nobody reported it")

    # A dry run names what it would do and changes nothing.
    before, versions = mirror.snapshot(), mirror.versions()
    dry, code, _ = salt.run_json("audit.storage", "dry_run=True", "clock_margin=0")
    assert code == 0, dry
    assert (dry["overwritten"], dry["restored"], dry["audit"]["missing"]) == (2, 0, 1), dry
    assert "2 overwritten would be restored" in dry["comment"]
    assert (mirror.snapshot(), mirror.versions()) == (before, versions)

    answer, code, progress = salt.run_json("audit.storage", "clock_margin=0", "progress_seconds=0")

    assert code == 0, answer
    assert (answer["backend"], answer["db_minion"]) == ("seaweedfs", "db-1")
    assert answer["storage"] == f"s3://{store.name}" and answer["endpoint"] == store.endpoint
    audit = answer["audit"]
    verdicts = ("files", "ok", "missing", "corrupt", "orphans", "requeued", "restored")
    assert {k: audit[k] for k in verdicts} == {
        "files": PHOTOS - 1,  # keys whose latest is an object: two photos gone, an orphan
        "ok": PHOTOS - 3,
        "missing": 1,
        "corrupt": 0,
        "orphans": 1,
        "requeued": 1,
        "restored": 2,
    }, audit
    assert (answer["overwritten"], answer["restored"], answer["requeued"]) == (2, 2, 1)
    assert answer["comment"] == audit["summary"] and "2 overwritten restored" in answer["comment"]
    # The harvester's own lines, relayed by db-1 as they came; a listing line on every page
    # only because progress_seconds=0 reached it.
    shown = " | ".join(progress)
    assert "auditing the seaweedfs bucket from db-1" in shown, progress
    assert f"listing s3://{store.name}/images/" in shown and "listed " in shown, progress
    for restored in (overwritten, deleted):
        assert mirror.latest(keys[restored]) == content(photo_of[restored])
    assert audit["samples"]["missing"] == [keys[missing]]
    assert dict(sql("SELECT id, state FROM images WHERE id = %s", missing)) == {missing: "pending"}
    assert mirror.latest(orphan) == b"nobody reported it", "an orphan is never deleted"
    assert sql("SELECT restored, requeued FROM storage_audits") == [(2, 1)]

    # Run again: nothing left to restore or requeue, and a clean audit adds no version.
    versions = mirror.versions()
    again, code, _ = salt.run_json("audit.storage", "clock_margin=0")
    assert code == 0, again
    assert (again["overwritten"], again["audit"]["missing"], again["requeued"]) == (0, 0, 0)
    assert mirror.versions() == versions

    # The walk's options are refused on a bucket, and no settings is one clear error.
    refused, code, _ = salt.run_json("audit.storage", "full=False", "transfer=relay")
    assert code == 1 and refused["error"].startswith("full, transfer: only for rsync"), refused
    salt.audit_config.rename(salt.audit_config.with_suffix(".moved"))
    refused, code, _ = salt.run_json("audit.storage")
    assert code == 1 and f"no S3 audit settings at {salt.audit_config}" in refused["error"]
    assert sql("SELECT COUNT(*) FROM storage_audits") == [(2,)]

    # The audit's secret is in its settings file only: on no command line the job cache
    # keeps, in no return, in no log of the master or db-1.
    secret = store.keys["auditor"].secret_key.encode()
    holders = [
        path.relative_to(salt.base)
        for path in salt.base.rglob("*")
        if path.is_file() and not path.is_symlink() and secret in path.read_bytes()
    ]
    assert holders == [Path("audit.moved")], holders


def test_a_bucket_audit_that_outlives_its_timeout_is_stopped_and_said_so():
    """db-1's side kills a harvester past `timeout` (its return says so, not a hang); a
    failed one's last stderr line is what the runner shows."""
    path = ROOT / "_modules" / "ccmirror_audit_s3.py"
    spec = importlib.util.spec_from_file_location("ccmirror_audit_s3", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code, _, _ = module.run_relayed([sys.executable, "-c", "import time; time.sleep(600)"], 0.5)
    assert code is None
    fails = "import sys; print('listing', file=sys.stderr); sys.exit('harvester: error: no')"
    assert module.run_relayed([sys.executable, "-c", fails], 60) == (
        1,
        "",
        ["listing", "harvester: error: no"],
    )


def conn_setup(db_url: str) -> None:
    from harvester.db import connect

    conn = connect(db_url)
    fill_images(conn, PHOTOS)
    conn.close()


LOAD_AND_CHECK = r"""
import json, sys
import salt.config, salt.loader
opts = salt.config.master_config(sys.argv[1])
runners = salt.loader.runner(opts, utils=salt.loader.utils(opts))  # as salt-run loads them
minion_opts = salt.config.minion_config(None)
minion_opts.update(module_dirs=[sys.argv[2]], file_client="local")
modules = salt.loader.minion_mods(minion_opts)
names = sorted(n for n in runners if n.startswith("audit.")) + sorted(
    n for n in modules if n.split(".")[0] in ("ccmirror_audit", "ccmirror_audit_s3"))
docs = {n: (runners.get(n) or modules.get(n)).__doc__ for n in names}
print(json.dumps({"names": names, "docs": docs}))
"""


def test_runner_and_module_load_through_salt_with_a_cli_example_each(salt_call_bin, tmp_path):
    config = runner_master_config(tmp_path)
    result = subprocess.run(
        [str(salt_call_bin.parent / "python"), "-c", LOAD_AND_CHECK, str(config),
         str(ROOT / "_modules")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["names"] == [
        "audit.backup",
        "audit.storage",
        "ccmirror_audit.compare",
        "ccmirror_audit.inventory",
        "ccmirror_audit.read_chunk",
        "ccmirror_audit.write_chunk",
        "ccmirror_audit_s3.audit",
        "ccmirror_audit_s3.backup_check",
        "ccmirror_audit_s3.backup_lag",
        "ccmirror_audit_s3.import_tree",
        "ccmirror_audit_s3.restore_photos",
    ]
    for name, doc in seen["docs"].items():
        command = "salt-run" if name.startswith("audit.") else name.split(".")[0] + "."
        assert "CLI Example::" in doc and command in doc, name
