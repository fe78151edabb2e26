"""db-1 lost after the download (#20), in the e2e's lab: a catalog backup is made while the
downloaders still work (`storage.backup_catalog`: the catalog and the main cluster's filer
store, both on db-1), the download ends, bk-1 catches up, then db-1's droplet is destroyed
and made again as Terraform would (same name and, in the lab, the same address), its states
applied, and `storage.restore_catalog` run: the backup comes from bk-1's copies (main cannot
list its bucket without its filer store), the photos main lost since the backup come back
from bk-1 and the audit marks them stored, and a download of one downloader finishes what
the backup had not seen done (photos gone or failed after it). Nothing stored before the loss
is fetched again, and the mirror check finds the final state exact."""

from __future__ import annotations

from lab.fleet import faults
from lab.fleet import lifecycle as fleet
from lab.fleet.systemd_restarts import SystemdRestarts
from lab.mission import stages as mission
from lab.sims.image_host import service as image_service

DB = "db-1"
FINISHING_DOWNLOADERS = 1
# hv-1's daemons: one may meet the catalog mid-restore and exit, as a crash its unit's
# `Restart=` covers (a real systemd starts it again; the lab's init does not).
HARVESTER = "hv-1"
HARVESTER_UNITS = ["ccmirror-harvester", "ccmirror-recheck"]


def stored_ids(m: mission.Mission) -> dict[int, str]:
    """Flickr's photo id (the image host counts requests by it) -> the stored object's key."""
    with m.catalog() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT i.photo_id, s.path FROM stored_images s JOIN images i ON i.id = s.image_id"
        )
        return {int(photo_id): path for photo_id, path in cur.fetchall()}


def not_stored(m: mission.Mission, photos: dict[int, str]) -> dict[int, tuple]:
    """Of `photos`, those the catalog has in another state than stored: (state, lease,
    attempts, last error, whether a stored record names it)."""
    with m.catalog() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT i.photo_id, i.state, i.lease_id, i.attempts, i.last_error,"
            " s.image_id IS NOT NULL FROM images i"
            " LEFT JOIN stored_images s ON s.image_id = i.id WHERE i.state <> 'stored'"
        )
        return {int(row[0]): tuple(row[1:]) for row in cur.fetchall() if int(row[0]) in photos}


def backup_mid_download(m: mission.Mission) -> dict:
    """`storage.backup_catalog` while the downloaders work; the photos stored before it
    (read first: every one is in the dump's snapshot)."""
    before = stored_ids(m)
    made = m.salt_run("storage.backup_catalog")
    return {"stored before": before, "backup": made["backup"]}


def lose_and_rebuild(m: mission.Mission, storage: tuple[str, ...], weed_units: list[str]) -> dict:
    """db-1 destroyed (MariaDB: the catalog and the filer store; the queue), made again and
    restored; then the download finished. SeaweedFS units that crash without their store
    are restarted as systemd would (the lab's init restarts nothing)."""
    stored = stored_ids(m)
    requests_before = image_service.stats(m.config)["requests"]
    address = m.state().droplets[DB].address
    with (
        SystemdRestarts(m.config, list(storage), weed_units) as restarts,
        SystemdRestarts(m.config, [HARVESTER], HARVESTER_UNITS) as harvester_restarts,
    ):
        m.show(f"    fault: {DB}'s droplet destroyed after the download")
        faults.destroy_droplet(m.config, DB, keep_minion_key=False)
        fleet.add(m.config, [DB], progress=lambda line: None)
        new_address = m.state().droplets[DB].address
        if new_address != address:  # the fleet's facts would change: a fleet-wide highstate
            raise AssertionError(f"the new {DB} is at {new_address}, not {address}")
        m.show(f"    {DB} made again at {address}; its highstate, then storage.restore_catalog")
        outcomes = fleet.highstate(m.config, [DB], progress=lambda line: None, prepare_first=False)
        restore = m.salt_run("storage.restore_catalog")
        unsettled = not_stored(m, stored)
    m.show(f"    the download finished by {FINISHING_DOWNLOADERS} downloader")
    download = m.orchestrate("orch.download", mission.download_pillar(FINISHING_DOWNLOADERS))
    requests_after = image_service.stats(m.config)["requests"]
    again = sorted(
        photo for photo in stored
        if requests_after.get(str(photo), 0) > requests_before.get(str(photo), 0)
    )  # fmt: skip
    return {
        "stored at the loss": len(stored),
        "highstate": outcomes[DB],
        "restore": restore,
        "download": download,
        "fetched again": again,
        # Of the photos stored at the loss, those the restore left other than stored.
        "restored rows": {photo: row for photo, row in unsettled.items() if photo in again},
        "stored after": len(stored_ids(m)),
        "crashed and restarted": restarts.restarted + harvester_restarts.restarted,
        "report": m.check(),
    }
