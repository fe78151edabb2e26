"""db-1 lost (#20) with real parts: the main SeaweedFS cluster keeps its names in MariaDB (the
mysql2 filer store, as the fleet's does on db-1), the backup cluster is filled by `weed
filer.backup`, and `harvester backup-catalog --also-database` dumps the catalog and the filer's
database with one stamp.

Then both databases are lost (dropped, then made again empty, as a new db-1's states make
them): the main bucket cannot list anything, so `restore-catalog` reads the backup from the
backup target's copies, and brings back the catalog and storage's names as they were at the
backup: every photo stored before it is readable from main again with its bytes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvester.db import connect, parse_db_url
from harvester.migrate import migrate
from lab.mission.catalog_images import fill_images
from lab.processes import seaweedfs_s3 as s3
from lab.processes.mariadb import LocalMariaDB
from lab.processes.seaweedfs_process import MySQLFilerStore
from tests.conftest import run_harvester, wait_for
from tests.integration.test_catalog_backup import root_url, rows
from tests.integration.test_photo_backup import (
    CATCH_UP,
    Site,
    caught_up,
    ok_json,
    put,
    start_site,
)

MANIFEST_BEFORE = "manifests/2026/12/01/1.jsonl"  # a fixed day: the key's form, not today
# A lease made after the backup: the restored queue's leases must start past its id, or a
# new lease would write its manifest over this one.
LEASE_AFTER = 1000
MANIFEST_AFTER = f"manifests/2026/12/01/{LEASE_AFTER}.jsonl"


@pytest.fixture
def filer_database(mariadb: LocalMariaDB) -> Iterator[str]:
    name = f"ccm_filer_{secrets.token_hex(3)}"
    mariadb.fresh_database(name)
    yield name
    for suffix in ("", "_restore", "_before_restore"):
        mariadb.drop_database(name + suffix)


@pytest.fixture
def site(seaweedfs_factory, mariadb, database, filer_database, sql, tmp_path: Path):
    """Main on MariaDB (the filer store), the backup cluster, filer.backup between them; the
    catalog's login is root over the socket, as the backup and restore run on db-1."""
    password = mariadb.password_file.read_text().strip()
    store = MySQLFilerStore("127.0.0.1", mariadb.port, "ccmirror", password, filer_database)
    main = seaweedfs_factory(volume_servers=1, replication="000", filer_store=store)
    catalog = connect(database)
    migrate(catalog)
    catalog.close()
    url = root_url(mariadb, parse_db_url(database).database)
    made = start_site(main, seaweedfs_factory, url, sql, tmp_path)
    yield made
    made.process.stop(10)


def next_lease_id(db_url: str) -> int:
    """The id the queue's next lease gets."""
    conn = connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO leases (worker, items, item_ids, created_at, expires_at)"
                " VALUES ('test', 0, '', NOW(6), NOW(6))"
            )
            made = cur.lastrowid
        conn.rollback()
        return made
    finally:
        conn.close()


def lose_db_1(mariadb: LocalMariaDB, catalog: str, filer: str) -> None:
    """Both databases gone, then made again empty as a new db-1's states make them: the
    catalog migrated, the filer's database with no table."""
    for name in (catalog, filer):
        mariadb.fresh_database(name)
    conn = connect(mariadb.url(catalog))
    migrate(conn)
    conn.close()


def test_a_lost_db_1_comes_back_from_the_backup_target_with_storages_names(
    site: Site, mariadb: LocalMariaDB, filer_database: str
) -> None:
    conn = connect(site.db_url)
    fill_images(conn, 10)  # harvested: in the catalog before the backup, 6 stored before it
    conn.close()
    before = site.store(6, new=False)
    writer = s3.client(site.main.s3_url, site.writer)
    put(writer, MANIFEST_BEFORE, b'{"photo_id": 1}\n')  # a lease's attribution, as pushed
    made = ok_json(site.harvester("backup-catalog", "--also-database", filer_database, "--json"))
    keys = {dump["database"]: dump["key"] for dump in made["databases"]}
    assert keys[filer_database].startswith("catalog/also/" + filer_database + "-")
    assert (
        keys[filer_database].removeprefix("catalog/also/").split("-", 1)[1]
        == made["key"].removeprefix("catalog/").split("-", 1)[1]
    ), "one stamp for both"
    at_backup = rows(site.db_url)
    after = site.store(4, new=False)  # stored after the backup: pending in the restored catalog
    put(writer, MANIFEST_AFTER, b'{"photo_id": 7}\n')
    wait_for(lambda: caught_up(site), CATCH_UP, "the backup to hold every copy", interval=0.5)
    listed = ok_json(site.harvester("catalog-backups", "--from", "backup", "--json"))
    assert [entry["key"] for entry in listed] == [made["key"]]

    catalog = parse_db_url(site.db_url).database
    lose_db_1(mariadb, catalog, filer_database)
    assert site.latest(next(iter(before))) is None, "main has no names without its database"
    bucket_only = site.harvester("restore-catalog", "--from", "bucket")
    assert bucket_only.returncode != 0 and "nothing restored" not in bucket_only.stderr

    restored = ok_json(site.harvester("restore-catalog", "--json"))
    assert restored["source"] == "backup" and restored["key"] == made["key"]
    assert sorted(restored["databases"]) == sorted([catalog, filer_database])
    assert rows(site.db_url) == at_backup, "the catalog is the backup's, row for row"
    assert restored["lease_ids_from"] > LEASE_AFTER, restored
    assert next_lease_id(site.db_url) == restored["lease_ids_from"]
    for key, data in before.items():
        assert site.latest(key) == data, f"{key}: main reads it again"
    assert all(site.latest(key) is None for key in after), "named after the backup: lost"

    # Then what `storage.restore_catalog` runs next: the photos main lost come back from the
    # backup, and the audit marks them stored (nothing to fetch from Flickr again).
    photos = ok_json(site.harvester("restore-photos", "--from", "backup", "--json"))
    assert photos["unstored_restored"] == len(after), json.dumps(photos)
    # and the manifest of the lease pushed after the backup; the one main kept, left alone
    assert photos["unstored_manifests_restored"] == 1, json.dumps(photos)
    assert site.latest(MANIFEST_AFTER) == b'{"photo_id": 7}\n'
    assert photos["unstored_manifests_skipped"]["on_main"] == 1, json.dumps(photos)
    audit = ok_json(run_harvester("audit-storage", "--s3", "--json", "--clock-margin", "0",
                                  env=site.env(), timeout=120))  # fmt: skip
    assert audit["adopted"] == len(after) and audit["missing"] == 0, audit
    for key, data in after.items():
        assert site.latest(key) == data, f"{key}: back on main"
    stored = dict(site.sql("SELECT path, HEX(sha256) FROM stored_images"))
    assert sorted(stored) == sorted([*before, *after]), "every photo stored once"


def test_no_backup_anywhere_is_one_error_naming_both_places(site: Site) -> None:
    result = site.harvester("restore-catalog", ENDPOINT=None)
    assert result.returncode != 0
    said = result.stderr.strip().splitlines()
    assert len(said) == 1 and "no catalog backup in s3://images/catalog/" in said[0], said
    assert "no backup_target is set" in said[0]
    result = site.harvester("restore-catalog")
    assert result.returncode != 0 and "the backup target" in result.stderr, result.stderr


def test_a_forced_restore_over_a_live_catalog_keeps_the_newer_filer_store(
    site: Site, filer_database: str
) -> None:
    """The catalog damaged on a db-1 that was not lost: `--force` brings the catalog back to
    the backup, and leaves storage's names (newer than the backup) as they are."""
    site.store(3)
    site.harvester("backup-catalog", "--also-database", filer_database)
    at_backup = rows(site.db_url)
    after = site.store(2)
    restored = ok_json(site.harvester("restore-catalog", "--force", "--json"))
    assert restored["source"] == "bucket" and restored["kept"] == [filer_database], restored
    assert rows(site.db_url) == at_backup
    for key, data in after.items():
        assert site.latest(key) == data, f"{key}: stored after the backup, still named on main"
