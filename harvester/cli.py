"""`harvester` command line: migrate, seed search tasks, work on them, show status.

`tasks` and `queue-status` are what Salt runs on minions (`ccmirror.status`, `batch.status`):
a minion runs a command of the installed CLI with `--json`, never a program of its own.

The skeleton is ccmirror_common/cli.py: a failure is one line on stderr and exit 1 (2 for a
bad command line, 130 for Ctrl-C), with nothing written.

Over 500 lines, one module: the core commands' parsers and bodies, read as one `--help`;
subsystems with commands of their own add them from their modules (`add_parsers`).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pymysql

from ccmirror_common import cli
from ccmirror_common.cli import CommandError, non_negative_int, positive_int
from ccmirror_common.job_textfile import record_if_set
from harvester.backup import cli as backup_cli
from harvester.backup import photos_cli
from harvester.catalog.status import format_status, harvest_status
from harvester.config import ConfigError, Settings, load_settings
from harvester.db import DatabaseError, connect
from harvester.migrate import current_version, migrate, open_database
from harvester.recheck import cli as recheck_cli
from harvester.redrive import cli as redrive_cli
from harvester.search import auth_cli, seed_cli
from harvester.search.flickr_api import FlickrError
from harvester.search.tasks import SeedError, running_tasks
from harvester.takedown import cli as takedown_cli

# What a command may fail with, each reported as one line (a bug still shows its traceback).
FAILURES = (ConfigError, DatabaseError, FlickrError, SeedError, pymysql.err.MySQLError)
EXTRAS = (
    backup_cli,
    photos_cli,
    auth_cli,
    takedown_cli,
    recheck_cli,
    redrive_cli,
)  # commands of their own modules


def build_parser() -> cli.Parser:
    parser, commands = cli.new_parser("harvester", __doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML settings file (default /etc/ccmirror/...)")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug detail")

    migrations = commands.add_parser(
        "migrate", help="apply the database migrations not applied yet"
    )
    cli.add_json_option(migrations, "print what was applied and the schema version as JSON")

    seed_cli.add_parsers(commands)

    work = commands.add_parser("work", help="harvest search tasks until none is left")
    work.add_argument("--worker", default=socket.gethostname(), help="worker id (hostname)")
    work.add_argument(
        "--follow",
        action="store_true",
        help="when no task is left, wait for new ones until SIGTERM (for a service unit)",
    )

    status = commands.add_parser("status", help="tasks by state, photos per source, calls")
    cli.add_json_option(status)

    tasks = commands.add_parser("tasks", help="the search tasks a worker holds now")
    tasks.add_argument("--worker", default=socket.gethostname(), help="worker id (hostname)")
    cli.add_json_option(tasks, "print the tasks as a JSON list")

    queue_status = commands.add_parser(
        "queue-status", help="the running queue's /v1/status, at the address its config binds"
    )
    cli.add_json_option(queue_status, "print the status as the queue serves it (JSON)")

    yfcc = commands.add_parser("import-yfcc", help="import YFCC100M files into yfcc_photos")
    yfcc.add_argument("files", nargs="+", type=Path, help="dataset files: plain, .gz or .bz2")
    yfcc.add_argument(
        "--chunk-lines", type=positive_int, default=200_000, help="rows per bulk load (200000)"
    )
    cli.add_json_option(yfcc, "print the summary as JSON")

    merge = commands.add_parser("reconcile", help="merge every source into the images catalog")
    merge.add_argument("--batch-size", type=positive_int, default=10_000, help="rows (10000)")
    merge.add_argument("--parallel", type=positive_int, default=2, help="batches at once (2)")
    merge.add_argument("--restart", action="store_true", help="a new pass, not a resumed one")

    serve = commands.add_parser("serve", help="the download queue's HTTP service (foreground)")
    serve.add_argument("--bind", help="address to listen on (queue.bind, 127.0.0.1)")
    serve.add_argument("--port", type=positive_int, help="TCP port (queue.port, 8700)")

    token = commands.add_parser("token", help="the queue's bearer tokens, one per worker")
    token_actions = token.add_subparsers(dest="action", required=True)
    add = token_actions.add_parser("add", help="print a new token for WORKER, once")
    add.add_argument("worker")
    add.add_argument("--replace", action="store_true", help="replace the worker's token")
    revoke = token_actions.add_parser("revoke", help="remove WORKER's token")
    revoke.add_argument("worker")
    listing = token_actions.add_parser("list", help="the workers that have a token")
    cli.add_json_option(listing, "print the workers as a JSON list")

    maintenance = commands.add_parser("maintenance", help="stop or resume leasing fleet-wide")
    maintenance.add_argument("switch", choices=("on", "off", "status"))
    maintenance.add_argument(
        "--retry-after", type=positive_int, default=300, help="seconds workers wait (300)"
    )
    cli.add_json_option(maintenance, "print the maintenance state as JSON")

    audit = commands.add_parser(
        "audit-storage", help="compare a storage inventory with the catalog; requeue bad files"
    )
    source = audit.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--inventory", type=Path, help="from `ccmirror_audit.inventory` (.gz): rsync storage"
    )
    source.add_argument(
        "--s3",
        action="store_true",
        help="list the settings' `storage:` bucket (ListObjectVersions); restore overwritten",
    )
    audit.add_argument("--dry-run", action="store_true", help="count, change nothing")
    cli.add_json_option(audit, "print the result as JSON")
    audit.add_argument(
        "--samples", type=non_negative_int, default=20, help="paths named per kind (20)"
    )
    audit.add_argument(
        "--clock-margin",
        type=non_negative_int,
        default=2,
        help="seconds of clock skew allowed between storage and database (2)",
    )
    audit.add_argument(
        "--progress-seconds",
        type=non_negative_int,
        default=None,
        help="seconds between progress lines off a terminal (30)",
    )
    imports = commands.add_parser(
        "import-tree", help="put the photos of an old layout's directory in the bucket, stored"
    )
    imports.add_argument(
        "directory", type=Path, help="the old system's rsync target, or this project's rsync root"
    )
    imports.add_argument("--report", type=Path, help="a JSON line per file not uploaded")
    imports.add_argument("--dry-run", action="store_true", help="judge every file, change nothing")
    imports.add_argument("--concurrency", type=positive_int, default=16, help="PUTs at once (16)")
    imports.add_argument("--samples", type=non_negative_int, default=20, help="files per kind")
    imports.add_argument(
        "--progress-seconds",
        type=non_negative_int,
        default=None,
        help="seconds between progress lines off a terminal (30)",
    )
    cli.add_json_option(imports, "print the result as JSON")
    for extra in EXTRAS:
        extra.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.configure_logging(args.verbose)
    return cli.run("harvester", lambda: dispatch(args), FAILURES, describe_failure)


def dispatch(args: argparse.Namespace) -> int:
    return COMMANDS[args.command](args, load_settings(args.config))


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, pymysql.err.MySQLError):  # its args: (code, message)
        return f"database error: {exc.args[-1]}"
    return str(exc)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    conn = open_database(settings.db_url, migrated=False)
    applied = migrate(conn)
    state = {
        "applied": [{"version": m.version, "name": m.name} for m in applied],
        "version": current_version(conn),
    }
    cli.print_state(args, state, format_migrated)
    return 0


def format_migrated(state: dict) -> str:
    lines = [f"applied {m['version']:04d} {m['name']}" for m in state["applied"]]
    return "\n".join([*lines, f"schema version {state['version']}"])


def cmd_work(args: argparse.Namespace, settings: Settings) -> int:
    from ccmirror_common.metrics_server import serving
    from harvester.search.metrics import HarvesterMetrics
    from harvester.search.worker import Worker  # the worker pulls in requests; other commands don't

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    metrics = HarvesterMetrics(settings.flickr.rate_limit_per_hour)
    with serving(settings.metrics.listen, metrics.registry):  # bound first, or nothing runs
        open_database(settings.db_url).close()
        worker = Worker(settings, args.worker, stop=stop, follow=args.follow, metrics=metrics)
        stats = worker.run()
    refused = ", ".join(f"{reason} {n:,}" for reason, n in sorted(stats.refused.items()))
    print(
        f"worker {args.worker}: {stats.tasks_done:,} tasks done, {stats.tasks_failed:,} failed,"
        f" {stats.photos:,} photos stored"
        + (f", {stats.refused.total():,} refused ({refused})" if refused else "")
        + (" (stopped)" if stop.is_set() else "")
    )
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    conn = open_database(settings.db_url)
    cli.print_state(args, harvest_status(conn, settings.flickr), format_status)
    return 0


def cmd_tasks(args: argparse.Namespace, settings: Settings) -> int:
    # Not `open_database`: reading who holds what needs no up-to-date schema check.
    conn = connect(settings.db_url)
    cli.print_state(args, running_tasks(conn, args.worker), format_tasks(args.worker))
    return 0


def format_tasks(worker: str) -> Callable[[list[dict]], str]:
    def human(tasks: list[dict]) -> str:
        lines = [
            f"task {t['id']} {t['task']}: page {t['page']}, lease until {t['lease_expires']}"
            for t in tasks
        ]
        return "\n".join(lines) or f"{worker} holds no task"

    return human


def cmd_queue_status(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.queue.status_client import QueueUnreachable, fetch_status, format_queue_status

    try:
        status = fetch_status(settings.queue)
    except QueueUnreachable as exc:
        raise CommandError(str(exc)) from None
    cli.print_state(args, status, format_queue_status)
    return 0


def cmd_import_yfcc(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.yfcc.load import (
        YfccImportError,
        check_files,
        format_summary,
        import_files,
    )

    try:
        check_files(args.files)  # a bad path fails before the database is touched
        open_database(settings.db_url).close()
        stats = import_files(
            settings.db_url,
            args.files,
            chunk_lines=args.chunk_lines,
            hosts=settings.fetch.allow_hosts,
        )
    except YfccImportError as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        raise cli.Interrupted(
            "import-yfcc interrupted: the chunks loaded so far are kept;"
            " run the same command again to finish"
        ) from None
    cli.print_state(args, stats.as_dict(), lambda _: format_summary(stats))
    if stats.broken_files:
        raise CommandError(
            f"{len(stats.broken_files)} file(s) ended early: the rows before the break are"
            " imported; fetch the file again and re-run"
        )
    return 0


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.catalog.reconcile import ReconcileProgress, reconcile

    open_database(settings.db_url).close()
    progress = ReconcileProgress(settings.db_url)
    stats = reconcile(
        settings.db_url,
        batch_size=args.batch_size,
        parallel=args.parallel,
        restart=args.restart,
        on_progress=progress.report,
    )
    progress.done(stats)
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.queue.service import QueueStartError, serve

    open_database(settings.db_url).close()
    if args.bind:
        settings.queue.bind = args.bind
    if args.port:
        settings.queue.port = args.port
    try:
        return serve(settings, verbose=args.verbose)
    except QueueStartError as exc:
        raise CommandError(str(exc)) from None


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.queue.tokens import TokenError, add_token, read_tokens, revoke_token

    path = Path(settings.queue.tokens_file)
    try:
        if args.action == "add":
            token = add_token(path, args.worker, replace=args.replace)
            print(token)
            print(f"token for {args.worker} stored as its hash in {path}", file=sys.stderr)
        elif args.action == "revoke":
            revoke_token(path, args.worker)
            print(f"revoked the token of {args.worker}")
        else:
            cli.print_state(args, sorted(read_tokens(path)), "\n".join)
    except TokenError as exc:
        raise CommandError(str(exc)) from None
    return 0


def cmd_maintenance(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.queue.maintenance import get_maintenance, set_maintenance

    conn = open_database(settings.db_url)
    if args.switch == "status":
        state = get_maintenance(conn)
    else:
        state = set_maintenance(conn, args.switch == "on", args.retry_after)
    cli.print_state(args, asdict(state), format_maintenance)
    return 0


def format_maintenance(state: dict) -> str:
    return f"maintenance {'on' if state['on'] else 'off'}" + (
        f": workers are told to come back in {state['retry_after']}s" if state["on"] else ""
    )


def cmd_audit_storage(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.audit.storage import InventoryError, audit_storage, check_readable

    if args.s3:
        return cmd_audit_bucket(args, settings)
    try:
        check_readable(args.inventory)  # a bad path fails before the database is touched
        conn = open_database(settings.db_url, local_infile=True)  # LOAD DATA of its checked rows
        result = audit_storage(
            conn,
            args.inventory,
            dry_run=args.dry_run,
            samples=args.samples,
            clock_margin=args.clock_margin,
            progress_seconds=args.progress_seconds,
        )
    except InventoryError as exc:
        raise CommandError(str(exc)) from None
    return audited(args, settings, result.as_dict())


def cmd_audit_bucket(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.audit.s3 import StorageAuditError, audit_bucket
    from harvester.audit.s3_listing import client_for

    try:
        client = client_for(settings.storage)  # missing settings fail before the database
        conn = open_database(
            settings.db_url, local_infile=True
        )  # LOAD DATA of the listing it wrote
        result = audit_bucket(
            conn,
            client,
            settings.storage,
            dry_run=args.dry_run,
            samples=args.samples,
            clock_margin=args.clock_margin,
            progress_seconds=args.progress_seconds,
        )
    except StorageAuditError as exc:
        raise CommandError(str(exc)) from None
    return audited(args, settings, result.as_dict())


def audited(args: argparse.Namespace, settings: Settings, result: dict) -> int:
    """An audit that ran to its end: its summary, and (unless a dry run) its success for
    the alert on an audit that has not run (metrics.textfile_dir)."""
    if not args.dry_run:
        record_if_set("audit", settings.metrics.textfile_dir)
    cli.print_state(args, result, lambda summary: summary["summary"])
    return 0


def cmd_import_tree(args: argparse.Namespace, settings: Settings) -> int:
    from downloader.s3.target import S3Target, TargetError
    from harvester.adopt.job import Importer, ImportTreeError
    from harvester.adopt.tree import TreeError, checked_root
    from harvester.audit.s3_listing import client_for

    try:  # the tree, then the bucket's settings, then the database: nothing done before all
        root = checked_root(args.directory)
        target = S3Target.from_mapping(asdict(settings.storage))
        head_client = client_for(settings.storage)
        conn = open_database(settings.db_url)
        report = _report_file(args.report)
        with report or contextlib.nullcontext():
            result = Importer(
                conn, head_client, target, root, report=report, dry_run=args.dry_run,
                concurrency=args.concurrency, samples=args.samples,
                progress_seconds=args.progress_seconds,
            ).run()  # fmt: skip
    except TargetError as exc:
        raise CommandError(f"storage settings (harvester.yaml `storage:`): {exc}") from None
    except (TreeError, ImportTreeError) as exc:
        raise CommandError(str(exc)) from None
    result.report = str(args.report) if args.report else None
    cli.print_state(args, result.as_dict(), lambda summary: summary["summary"])
    return 0


def _report_file(path: Path | None):
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write the report {path}: {exc.strerror or exc}") from None


COMMANDS = {
    "migrate": cmd_migrate,
    "serve": cmd_serve,
    "token": cmd_token,
    "maintenance": cmd_maintenance,
    "reconcile": cmd_reconcile,
    **seed_cli.COMMANDS,
    "work": cmd_work,
    "status": cmd_status,
    "tasks": cmd_tasks,
    "queue-status": cmd_queue_status,
    "import-yfcc": cmd_import_yfcc,
    "audit-storage": cmd_audit_storage,
    "import-tree": cmd_import_tree,
    **{name: command for extra in EXTRAS for name, command in extra.COMMANDS.items()},
}
