"""`harvester backup-catalog`, `restore-catalog` and `catalog-backups`: the commands'
parsers and bodies (harvester/cli.py adds them). The bucket and its key are the settings'
`storage:` (on db-1 /etc/ccmirror/catalog-backup.yaml, the backup key's, salt/db/backup.sls)."""

from __future__ import annotations

import argparse
import sys

from ccmirror_common import cli
from ccmirror_common.cli import CommandError, positive_int
from ccmirror_common.job_textfile import record_if_set
from ccmirror_common.progress import ProgressLine
from harvester.backup.sources import SOURCES
from harvester.backup.store import PREFIX, BackupError
from harvester.config import Settings


def add_parsers(commands) -> None:
    backup = commands.add_parser(
        "backup-catalog", help="dump the catalog (consistent) into the bucket; keep the N newest"
    )
    backup.add_argument("--prefix", default=PREFIX, help=f"the backups' prefix ({PREFIX})")
    backup.add_argument("--keep", type=positive_int, default=7, help="backups kept (7)")
    backup.add_argument(
        "--also-database", action="append", default=[], metavar="NAME", dest="also",
        help="dump this database too, with the same stamp (db-1: the filer store's); repeatable;"
        " with the settings' catalog_backup.also_databases",
    )  # fmt: skip
    cli.add_json_option(backup, "print the result as JSON")
    restore = commands.add_parser(
        "restore-catalog", help="load the newest catalog backup into a fresh (empty) catalog"
    )
    restore.add_argument("--prefix", default=PREFIX, help=f"the backups' prefix ({PREFIX})")
    restore.add_argument("--key", help="this backup's key rather than the newest")
    restore.add_argument(
        "--force", action="store_true", help="replace a catalog that has photos already"
    )
    restore.add_argument(
        "--from", dest="source", choices=SOURCES, default="auto",
        help="read the bucket, or the backup target's copies (auto: the bucket if it lists one)",
    )  # fmt: skip
    cli.add_json_option(restore, "print the result as JSON")
    listing = commands.add_parser("catalog-backups", help="the catalog backups in the bucket")
    listing.add_argument("--prefix", default=PREFIX, help=f"the backups' prefix ({PREFIX})")
    listing.add_argument(
        "--from", dest="source", choices=SOURCES, default="bucket",
        help="list the bucket (default) or the backup target's copies",
    )  # fmt: skip
    cli.add_json_option(listing, "print the list as JSON")


def cmd_backup_catalog(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.backup.catalog import backup_catalog

    storage, prefix, keep = settings.storage, args.prefix, args.keep
    also = tuple(dict.fromkeys([*settings.catalog_backup.also_databases, *args.also]))
    progress = ProgressLine(sys.stderr)
    result = _guarded(
        lambda: backup_catalog(
            settings.db_url, storage, prefix=prefix, keep=keep, also=also, progress=progress
        )
    )
    progress.clear()
    record_if_set("catalog_backup", settings.metrics.textfile_dir)
    cli.print_state(args, result, lambda summary: summary["summary"])
    return 0


def cmd_restore_catalog(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.backup.catalog import restore_catalog

    progress = ProgressLine(sys.stderr)
    result = _guarded(
        lambda: restore_catalog(
            settings.db_url,
            settings.storage,
            prefix=args.prefix,
            key=args.key,
            force=args.force,
            source=args.source,
            backup_target=settings.backup_target,
            progress=progress,
        )
    )
    progress.clear()
    cli.print_state(args, result, lambda summary: summary["summary"])
    return 0


def cmd_catalog_backups(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.backup.catalog import list_catalog_backups

    backups = _guarded(
        lambda: list_catalog_backups(
            settings.storage, args.prefix, args.source, settings.backup_target
        )
    )
    cli.print_state(
        args,
        backups,
        lambda found: (
            "\n".join(f"{b['key']}\t{b['bytes']:,} bytes" for b in found) or "no catalog backup"
        ),
    )
    return 0


def _guarded(work):
    try:
        return work()
    except BackupError as error:
        raise CommandError(str(error)) from None


COMMANDS = {
    "backup-catalog": cmd_backup_catalog,
    "restore-catalog": cmd_restore_catalog,
    "catalog-backups": cmd_catalog_backups,
}
