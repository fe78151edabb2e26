"""The backup cluster (#20) in the e2e: bk-1's `weed filer.backup` catches up with every photo
the faulted download stored, `audit.backup` finds and copies what it left out for good (a
serial run: 3 photos passed over when it resumed after st-1's cut-off), then photos lost on
the main cluster (every version removed with the main admin key, as an operator's mistake)
come back from it with `storage.restore from=backup`, with no image fetched again."""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from pathlib import Path

import yaml

from lab.fleet import salt_master
from lab.mission import stages as mission
from lab.processes import seaweedfs_s3 as s3
from lab.sims.image_host import service as image_service
from tests.conftest import wait_for

S3_PORT = 8333  # salt/storage/defaults.yaml storage:seaweedfs:ports:s3
# The lag the backup is held to once the download has ended: every stored photo on bk-1.
CAUGHT_UP_SECONDS = 300
LOST_PHOTOS = 10


def backup_caught_up(m: mission.Mission) -> dict:
    """`storage.status`'s backup lag polled until its front is at 0, then the exact check
    (`audit.backup dry_run=True`) until the backup holds every stored photo and manifest: a
    two-worker run found the front at 0 while filer.backup still had hundreds of photos to
    copy behind it (its catch-up after st-1's cut-off replays several filers' logs out of
    order). It stops early when two exact checks in a row find as many missing: filer.backup
    is not bringing those (a CI run's 3 were 22 minutes old: its checkpoint had passed them).
    Not caught up: `audited` copies what is left and says so."""
    started = time.monotonic()
    seen: list[dict] = []
    checks: list[dict] = []

    def caught_up() -> bool:
        lag = m.salt_run("storage.status").get("backup_lag")
        seen.append(lag)
        if lag is None or lag["behind"] != 0:
            return False
        checks.append(m.salt_run("audit.backup", "dry_run=True", "margin_minutes=0"))
        lacking = [check["missing"] + check["manifests_missing"] for check in checks[-2:]]
        return lacking[-1] == 0 or (len(lacking) == 2 and lacking[0] == lacking[1])

    with contextlib.suppress(AssertionError):  # left for `audited` to copy and tell
        wait_for(caught_up, CAUGHT_UP_SECONDS, "the backup to hold every stored photo", 5)
    behind = [(c["missing"], c["backup"]["behind_seconds"]) for c in checks]
    return {"first": seen[0], "last": seen[-1], "seconds": time.monotonic() - started,
            "exact checks (missing, oldest's seconds)": behind}  # fmt: skip


# What bk-1's filer.backup logs when it skips or restarts: told when the audit finds a hole.
SKIPS = re.compile(r"ignore it|superseded|offset read failed|starting from|resuming from| E\d{4} ")


def audited(m: mission.Mission) -> dict:
    """`audit.backup` once filer.backup has caught up: a dry run says what it left out for
    good, the audit copies that from main, and a last dry run must find the backup whole.
    What bk-1's filer.backup logged of skips and restarts is kept when there was a hole, for
    the test to tell."""
    found = m.salt_run("audit.backup", "dry_run=True", "margin_minutes=0")
    seen = {"found": found, "filled": m.salt_run("audit.backup", "margin_minutes=0")}
    seen["after"] = m.salt_run("audit.backup", "dry_run=True", "margin_minutes=0")
    if found["missing"] or found["manifests_missing"]:
        pid = m.state().droplets["bk-1"].pid
        log = Path(f"/proc/{pid}/root/var/log/journal/ccmirror-weed-backup.service.log")
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        seen["filer.backup said"] = [line[:300] for line in lines if SKIPS.search(line)][-40:]
    return seen


def assert_whole(audited: dict) -> None:
    """After the audit the backup holds every stored photo and manifest; a hole it filled is
    told (a warning in the run's summary), not failed: copying it is the audit's job."""
    after = audited["after"]
    assert (after["missing"], after["manifests_missing"], after["whole"]) == (0, 0, True), audited
    found = audited["found"]
    if found["missing"] or found["manifests_missing"]:
        warnings.warn(f"filer.backup left out what audit.backup copied: {audited}", stacklevel=2)


def lose_and_restore(m: mission.Mission, stored_paths: list[str]) -> dict:
    """Every version of LOST_PHOTOS stored photos removed from the main bucket with its admin
    key (governance bypassed: what only that key can do), then `storage.restore from=backup`."""
    admin = main_admin(m)
    chosen = stored_paths[:: max(1, len(stored_paths) // LOST_PHOTOS)][:LOST_PHOTOS]
    for path in chosen:
        versions = admin.list_object_versions(Bucket=s3.IMAGES_BUCKET, Prefix=path)
        for kind in ("Versions", "DeleteMarkers"):
            for version in versions.get(kind, []):
                if version["Key"] == path:
                    admin.delete_object(
                        Bucket=s3.IMAGES_BUCKET,
                        Key=path,
                        VersionId=version["VersionId"],
                        BypassGovernanceRetention=True,
                    )
    missing = [path for path in chosen if not exists(admin, path)]
    fetched_before = image_service.stats(m.config)["total"]
    restore = m.salt_run("storage.restore", "from=backup")
    again = m.salt_run("storage.restore", "from=backup")
    return {
        "lost": chosen,
        "missing after the delete": missing,
        "restore": restore,
        "second restore": again,
        "back": [path for path in chosen if exists(admin, path)],
        "fetched during the restore": image_service.stats(m.config)["total"] - fetched_before,
    }


def main_admin(m: mission.Mission):
    """An S3 client of st-1's gateway with the main cluster's admin key (st-1's pillar)."""
    own = salt_master.private_pillar(m.config) / "minions" / "st-1.sls"
    admin = yaml.safe_load(own.read_text())["storage"]["s3_identities"]["admin"]
    gateway = f"http://{m.state().droplets['st-1'].address}:{S3_PORT}"
    return s3.client(gateway, s3.S3Key(admin["access_key"], admin["secret_key"]), 1)


def exists(client, path: str) -> bool:
    try:
        client.head_object(Bucket=s3.IMAGES_BUCKET, Key=path)
    except client.exceptions.ClientError:
        return False
    return True
