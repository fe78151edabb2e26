"""db-1's catalog backup in the e2e (#20): `storage.backup_catalog` while the downloaders still
work (the catalog and the main cluster's filer store, both on db-1). The loss of db-1 after
the download and its restore from bk-1 (tests/integration/test_db_loss.py runs it with real
parts) is the next step here: a first run found the manifests of the leases pushed after
the backup not brought back (branch dbloss-e2e)."""

from __future__ import annotations

from lab.mission import stages as mission


def stored_ids(m: mission.Mission) -> dict[int, str]:
    """Flickr's photo id (the image host counts requests by it) -> the stored object's key."""
    with m.catalog() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT i.photo_id, s.path FROM stored_images s JOIN images i ON i.id = s.image_id"
        )
        return {int(photo_id): path for photo_id, path in cur.fetchall()}


def backup_mid_download(m: mission.Mission) -> dict:
    """`storage.backup_catalog` while the downloaders work; the photos stored before it
    (read first: every one is in the dump's snapshot)."""
    before = stored_ids(m)
    made = m.salt_run("storage.backup_catalog")
    return {"stored before": before, "backup": made["backup"]}
