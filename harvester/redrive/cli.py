"""`harvester requeue`: the command's parser and body (harvester/cli.py adds them)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from ccmirror_common import cli
from ccmirror_common.cli import CommandError, positive_int
from ccmirror_common.progress import ProgressLine
from harvester.config import Settings
from harvester.db import connect
from harvester.migrate import unapplied
from harvester.redrive.requeue import STATES, Filters, RequeueResult, requeue


def since_date(text: str) -> datetime:
    """--since: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (UTC unless an offset is given) or unix
    seconds; naive UTC, as `updated_at` holds it."""
    if text.strip().isdigit():  # unix seconds, as the other commands take dates too
        return datetime.fromtimestamp(int(text), UTC).replace(tzinfo=None)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date: {text!r} (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, UTC)"
        ) from None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def add_parsers(commands) -> None:
    requeue_cmd = commands.add_parser(
        "requeue",
        help="put failed (or gone) photos back in the download queue with a fresh attempt count",
        description="Matching photos go back to pending with attempts 0 (last_error is kept"
        " until their next outcome), in batches of the state index; progress on stderr.",
    )
    requeue_cmd.add_argument("--state", required=True, choices=STATES, help="which photos")
    requeue_cmd.add_argument(
        "--error", metavar="LIKE", help="only photos whose last_error is LIKE this ('retry: %%')"
    )
    requeue_cmd.add_argument(
        "--since",
        type=since_date,
        metavar="DATE",
        help="only photos whose updated_at (when they failed or went gone: the catalog row's"
        " last change) is at or after DATE, UTC: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS",
    )
    requeue_cmd.add_argument(
        "--dry-run", action="store_true", help="count the photos that match; change nothing"
    )
    requeue_cmd.add_argument(
        "--batch-size", type=positive_int, default=10_000, help="index entries per batch (10000)"
    )
    cli.add_json_option(requeue_cmd, "print the result as JSON")


def cmd_requeue(args: argparse.Namespace, settings: Settings) -> int:
    conn = connect(settings.db_url)
    if unapplied(conn):
        conn.close()
        raise CommandError("the database schema is not up to date: run `harvester migrate`")
    progress = ProgressLine(sys.stderr)

    def show(result: RequeueResult) -> None:
        if progress.due():
            progress.show(_progress_line(result))

    try:
        result = requeue(
            conn,
            Filters(args.state, args.error, args.since),
            dry_run=args.dry_run,
            batch=args.batch_size,
            progress=show,
        )
    finally:
        conn.close()
    progress.show(_progress_line(result), final=True)
    cli.print_state(args, result.as_dict(), _summary)
    return 0


def _progress_line(result: RequeueResult) -> str:
    verb = "match" if result.dry_run else "requeued"
    rate = result.examined / result.seconds if result.seconds else 0.0
    return (
        f"{result.state}: {result.examined:,} examined, {result.matched:,} {verb},"
        f" {result.batches:,} batches, {rate:,.0f}/s"
    )


def _summary(result: dict) -> str:
    if result["dry_run"]:
        return f"{result['matched']:,} {result['state']} photos match (dry run: nothing changed)"
    return f"{result['requeued']:,} {result['state']} photos back in the queue"


COMMANDS = {"requeue": cmd_requeue}
