"""`harvester seed`: the search tasks of upload-time slices, of search texts, and the daily
increment (harvester/search/tasks.py and increment.py do the work)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from ccmirror_common.cli import CommandError, positive_int
from harvester.config import Settings
from harvester.migrate import open_database
from harvester.search import increment_cli
from harvester.search.tasks import seed_queries, seed_timeslices

FLICKR_EPOCH = "2004-01-01"


def parse_time(text: str) -> int:
    """UTC unix seconds from YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z] or plain unix seconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date: {text!r} (use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, UTC)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def add_parsers(commands) -> None:
    seed = commands.add_parser("seed", help="create search tasks")
    kinds = seed.add_subparsers(dest="kind", required=True)
    slices = kinds.add_parser("timeslices", help="upload-time slices of [start, end)")
    slices.add_argument("--start", type=parse_time, required=True, help="UTC date, inclusive")
    slices.add_argument("--end", type=parse_time, required=True, help="UTC date, exclusive")
    slices.add_argument("--stride", type=positive_int, default=600, help="seconds (600)")
    queries = kinds.add_parser("queries", help="one task per search text in FILE")
    queries.add_argument("file", type=Path, help="one search text per line; # comments")
    queries.add_argument("--start", type=parse_time, default=parse_time(FLICKR_EPOCH))
    queries.add_argument("--end", type=parse_time, default=None, help="default: tomorrow")
    increment_cli.add_kind(kinds)
    for kind in (slices, queries):
        kind.add_argument(
            "--regenerate", action="store_true",
            help="harvest again: the next generation of tasks (their latest one must be done)",
        )  # fmt: skip


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    if args.kind == "increment":
        return increment_cli.run(args, open_database(settings.db_url), settings)
    if args.kind == "timeslices":
        if args.end <= args.start:
            raise CommandError("--end must be after --start")
        conn = open_database(settings.db_url)
        created = seed_timeslices(
            conn, args.start, args.end, args.stride, regenerate=args.regenerate
        )
    else:
        try:
            texts = [
                line.strip()
                for line in args.file.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {args.file}: {exc}") from None
        end = args.end or (datetime.now(UTC).timestamp() // 86400 + 1) * 86400
        if int(end) <= args.start:
            raise CommandError("--end must be after --start")
        conn = open_database(settings.db_url)
        created = seed_queries(conn, texts, args.start, int(end), regenerate=args.regenerate)
    print(f"created {created:,} search tasks")
    return 0


COMMANDS = {"seed": cmd_seed}
