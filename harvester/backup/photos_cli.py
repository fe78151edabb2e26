"""`harvester backup-lag`, `backup-check` and `restore-photos`: the parsers and bodies of the
photo backup's commands (harvester/cli.py adds them). Main's bucket and key are the settings'
`storage:` (the audit's: Read, List and Write on it); the backup target's are
`backup_target:` (a reader's key on the backup bucket, and the sink's for backup-check's
copies). On db-1 both are in the audit's settings file."""

from __future__ import annotations

import argparse
import socket
import sys
from datetime import timedelta

from ccmirror_common import cli
from ccmirror_common.cli import CommandError, non_negative_int
from ccmirror_common.job_textfile import record_if_set
from ccmirror_common.progress import ProgressLine
from harvester.config import Settings

SOURCES = ("backup",)  # where restore-photos copies from: the backup target


def add_parsers(commands) -> None:
    lag = commands.add_parser(
        "backup-lag", help="how far the backup target is behind the catalog (photos, seconds)"
    )
    lag.add_argument(
        "--probe-sink", action="store_true", help="also PUT a probe with the sink's key"
    )
    cli.add_json_option(lag, "print the lag as JSON")
    check = commands.add_parser(
        "backup-check",
        help="compare the backup target with every stored photo and manifest, exactly, and"
        " copy from main what it lacks",
    )
    check.add_argument("--dry-run", action="store_true", help="count, copy nothing")
    check.add_argument("--margin-minutes", type=non_negative_int, default=10,
                       help="leave photos stored this recently to filer.backup (10)")  # fmt: skip
    cli.add_json_option(check, "print the result as JSON")
    restore = commands.add_parser(
        "restore-photos",
        help="copy stored photos missing or changed in the bucket back from the backup target,"
        " and photos the catalog has not stored whose names the bucket lost (for the audit)",
    )
    restore.add_argument("--from", dest="source", choices=SOURCES, required=True,
                         help="where the copies are: the backup target")  # fmt: skip
    restore.add_argument("--dry-run", action="store_true", help="count, change nothing")
    cli.add_json_option(restore, "print the result as JSON")


def cmd_backup_lag(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.backup.lag import backup_lag
    from harvester.backup.target import probe_sink

    target = settings.backup_target

    def measure(conn) -> dict:
        state = backup_lag(conn, settings.storage, target).as_dict()
        if args.probe_sink:
            state["sink_probe"] = probe_sink(target, socket.gethostname())
            state["summary"] += f"; the sink's key wrote {state['sink_probe']}"
        return state

    cli.print_state(args, _guarded(measure, settings), lambda state: state["summary"])
    return 0


def cmd_backup_check(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.backup.completeness import check_backup

    progress = ProgressLine(sys.stderr)
    margin = timedelta(minutes=args.margin_minutes)
    result = _guarded(
        lambda conn: check_backup(conn, settings.storage, settings.backup_target,
                                  dry_run=args.dry_run, margin=margin, progress=progress),
        settings,
    )  # fmt: skip
    progress.clear()
    if result.whole and not args.dry_run:  # CcmirrorBackupCheckNotRun watches it
        record_if_set("backup_check", settings.metrics.textfile_dir)
    cli.print_state(args, result.as_dict(), lambda state: state["summary"])
    return 0


def cmd_restore_photos(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.backup.restore import restore_photos

    progress = ProgressLine(sys.stderr)
    result = _guarded(
        lambda conn: restore_photos(conn, settings.storage, settings.backup_target,
                                    dry_run=args.dry_run, progress=progress),
        settings,
    )  # fmt: skip
    progress.clear()
    cli.print_state(args, result.as_dict(), lambda state: state["summary"])
    return 0


def _guarded(work, settings: Settings):
    from harvester.backup.target import BackupTargetError, main_client, target_client
    from harvester.migrate import open_database

    try:
        main_client(settings.storage)  # missing settings fail before the database is opened
        target_client(settings.backup_target)
        conn = open_database(settings.db_url)
        try:
            return work(conn)
        finally:
            conn.close()
    except BackupTargetError as error:
        raise CommandError(str(error)) from None


COMMANDS = {
    "backup-lag": cmd_backup_lag,
    "backup-check": cmd_backup_check,
    "restore-photos": cmd_restore_photos,
}
