"""`harvester seed increment`: the parser and body of the daily seeding
(harvester/search/seed_cli.py adds it to `seed`; the work is harvester/search/increment.py).
db-1's minion schedule runs it (salt/db/increment.sls, `ccmirror_increment.run`)."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from ccmirror_common import cli
from ccmirror_common.cli import positive_int
from ccmirror_common.job_textfile import record_if_set
from harvester.config import Settings
from harvester.search.increment import HOUR, Increment, seed_increment


def hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 24 * 365:  # also refuses nan; a year is surely a typo
        raise argparse.ArgumentTypeError(f"must be 0 to 8760 hours, not {text!r}")
    return value


def add_kind(kinds) -> None:
    increment = kinds.add_parser(
        "increment",
        help="time slices from the last one seeded up to --lag hours behind now (daily)",
    )
    increment.add_argument(
        "--lag", type=hours, help="hours behind now that slices end (increment.lag_hours, 24)"
    )
    increment.add_argument(
        "--stride", type=positive_int, help="seconds per slice (increment.stride, 86400)"
    )
    increment.add_argument(
        "--start",
        type=positive_int,
        help="unix seconds where slices begin when none is seeded (increment.start, 2004-01-01)",
    )
    increment.add_argument(
        "--now", type=positive_int, help="unix seconds to count the lag from (default: now)"
    )
    cli.add_json_option(increment, "print what was seeded as JSON")


def run(args: argparse.Namespace, conn, settings: Settings) -> int:
    config = settings.increment
    lag = config.lag_hours if args.lag is None else args.lag
    done = seed_increment(
        conn,
        now=int(time.time()) if args.now is None else args.now,
        lag_seconds=round(lag * HOUR),
        stride=args.stride or config.stride,
        default_start=args.start or config.start,
    )
    record_if_set("increment", settings.metrics.textfile_dir)
    cli.print_state(args, done.as_dict(), format_increment)
    return 0


def format_increment(state: dict) -> str:
    done = Increment(**state)
    if done.end <= done.start:
        return (
            f"created 0 search tasks: slices reach {utc(done.start)} already; the next"
            f" {done.stride}s slice ends after now - lag ({utc(done.horizon)})"
        )
    return (
        f"created {done.created:,} search tasks: {done.stride}s slices over"
        f" [{utc(done.start)}, {utc(done.end)})"
    )


def utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
