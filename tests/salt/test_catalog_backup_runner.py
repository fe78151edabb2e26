"""`salt-run storage.backup_catalog` and `storage.restore_catalog` through a real salt-master
and a real db-1 minion on loopback (`_modules/ccmirror_backup.py`, the installed `harvester`),
a real SeaweedFS gateway running the states' s3.json (tests/integration/test_catalog_backup.py
`site`) and two MariaDB servers: the catalog's, and the fresh one a new db-1 has.

A backup of the catalog, photos pushed after it, then db-1 "replaced": its settings name the
fresh server. The restore loads the backup there and the audit marks stored what was pushed
after it; a second restore is refused (the catalog is no longer empty) and changes nothing.
The backup key is in db-1's settings file only: in no job, return or log."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harvester.db import connect
from tests.integration import test_catalog_backup as backup_tests
from tests.integration.test_catalog_backup import PHOTOS, Site, push, rows
from tests.salt.loopback import Master, salt_on_loopback

VENV = Path(sys.executable).parent.parent
# The integration tests' cluster (the states' s3.json), catalog and fresh second server.
site, catalog = backup_tests.site, backup_tests.catalog
fresh_mariadb, fresh_db = backup_tests.fresh_mariadb, backup_tests.fresh_db


def settings(db_url: str, site: Site, who: str) -> str:
    key = site.keys[who]
    storage = {
        "endpoint": site.cluster.s3_url,
        "bucket": "images",
        "access_key": key.access_key,
        "secret_key": key.secret_key,
    }
    return yaml.safe_dump({"db_url": db_url, "storage": storage})


@pytest.fixture
def db_1(site: Site, catalog: str) -> Iterator[tuple[Master, Path]]:
    """A master of an S3 site and its db-1, whose backup and audit settings name the catalog."""
    base = Path(tempfile.mkdtemp(prefix="ccm-bk-"))
    setup = Master(base / "master")
    pillar = base / "pillar"
    pillar.mkdir()
    (pillar / "top.sls").write_text("base:\n  'db-1':\n    - site\n")
    (pillar / "site.sls").write_text("site:\n  storage_backend: seaweedfs\n")
    migrate = base / "migrate.yaml"
    migrate.write_text(yaml.safe_dump({"db_url": catalog}))
    for name, who in (("backup.yaml", "backup"), ("audit.yaml", "audit")):
        (base / name).write_text(settings(catalog, site, who))
        (base / name).chmod(0o600)
    master = {
        "ccmirror_migrate_config": str(migrate),
        "ccmirror_venv": str(VENV),  # the takedown runner's (replay)
        "ccmirror_audit_config": str(base / "audit.yaml"),
        "pillar_roots": {"base": [str(pillar)]},
    }
    ccmirror = {
        "venv": str(VENV),
        "backup_config": str(base / "backup.yaml"),
        "audit_config": str(base / "audit.yaml"),
    }
    with salt_on_loopback(base, {"db-1": ccmirror}, master):
        yield setup, base


def test_db_1_is_rebuilt_from_the_newest_backup_and_the_audit_adopts_the_rest(
    db_1, site: Site, catalog: str, fresh_db: str
) -> None:
    salt, base = db_1
    writer = site.client("dl-1")
    before = push(catalog, writer, 10)
    made, code, progress = salt.run_json("storage.backup_catalog", "keep=3")
    assert code == 0 and made["db_minion"] == "db-1", made
    assert made["backup"]["key"].startswith("catalog/") and "backing the catalog up" in progress[0]
    at_backup = rows(catalog)
    after = push(catalog, writer, 10)
    # A takedown after the backup: the restored catalog must take it again (#21).
    down = photo_of(catalog, before[0])
    taken, code, _ = salt.run_json("takedown.add", f"photo={down}", "reason=DMCA 7")
    assert code == 0 and taken["storage"]["moved"] == 1, taken

    # A new db-1: MariaDB, users and the empty schema from its states, on another server.
    for name in ("backup.yaml", "audit.yaml"):
        who = name.split(".")[0]
        (base / name).write_text(settings(fresh_db, site, who))

    restored, code, progress = salt.run_json("storage.restore_catalog", "timeout=600")
    assert code == 0, restored
    assert restored["restore"]["key"] == made["backup"]["key"]
    assert restored["takedowns"]["storage"]["replay"]["replayed"] == 1, restored["takedowns"]
    audit = restored["audit"]["audit"]
    assert (audit["adopted"], audit["ok"], audit["requeued"]) == (len(after), len(before) - 1, 0)
    assert (audit["restored"], audit["missing"]) == (0, 0), "nothing put back in images/"
    assert "found on storage adopted" in restored["comment"], restored["comment"]
    assert any("auditing storage against the restored catalog" in line for line in progress)
    now = rows(fresh_db)
    assert now["leases"] == at_backup["leases"] and len(now["images"]) == PHOTOS
    conn = connect(fresh_db)
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM images WHERE state = 'stored' ORDER BY id")
        stored = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT state FROM images WHERE id = %s", (before[0],))
        state = cur.fetchone()[0]
    conn.close()
    assert stored == sorted(before[1:] + after), "pushed after the backup: stored, not pending"
    assert state == "taken_down", "the takedown made after the backup holds"

    again, code, _ = salt.run_json("storage.restore_catalog")
    assert code == 1 and "is not empty" in again["error"], again
    assert rows(fresh_db) == now

    secret = site.keys["backup"].secret_key.encode()
    holders = [
        path.relative_to(base)
        for path in base.rglob("*")
        if path.is_file() and not path.is_symlink() and secret in path.read_bytes()
    ]
    assert holders == [Path("backup.yaml")], holders


def photo_of(db_url: str, image_id: int) -> int:
    conn = connect(db_url)
    with conn.cursor() as cur:
        cur.execute("SELECT photo_id FROM images WHERE id = %s", (image_id,))
        photo = int(cur.fetchone()[0])
    conn.close()
    return photo
