"""`harvester recheck` and `harvester flags export` (harvester/cli.py adds them)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading

from ccmirror_common.cli import positive_int
from ccmirror_common.progress import ProgressLine
from harvester.config import Settings
from harvester.migrate import open_database


def add_parsers(commands) -> None:
    recheck = commands.add_parser(
        "recheck",
        help="ask Flickr again about stored photos (oldest-checked first); flag the ones no"
        " longer CC, gone or private; runs until SIGTERM",
    )
    recheck.add_argument(
        "--calls-per-hour", type=positive_int, default=None,
        help="the API budget this command may use (default: the key's flickr.rate_limit_per_hour)",
    )  # fmt: skip
    recheck.add_argument("--once", action="store_true", help="one round over the stored photos")
    recheck.add_argument("--limit", type=positive_int, default=None, help="at most N photos")
    flags = commands.add_parser("flags", help="stored photos flagged not CC, gone or private")
    actions = flags.add_subparsers(dest="action", required=True)
    actions.add_parser("export", help="every flagged photo as JSON lines on stdout")


def cmd_recheck(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.db import reconnect
    from harvester.recheck.run import recheck
    from harvester.search.flickr_api import FlickrClient
    from harvester.search.licenses import store_licenses

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    flickr = settings.flickr
    if args.calls_per_hour is not None:
        flickr = dataclasses.replace(flickr, rate_limit_per_hour=float(args.calls_per_hour))
    conn = open_database(settings.db_url)
    client = FlickrClient(flickr, stop)
    licenses = client.licenses()
    store_licenses(conn, licenses)
    cc = {lic.id for lic in licenses if lic.is_cc}
    out = ProgressLine(sys.stderr)

    def progress(stats) -> None:
        if out.due():
            out.show(f"{stats.line()} | {stats.checked / out.elapsed:,.1f} photos/s")

    def back(lost: Exception, old):  # MariaDB restarted: wait for it, as the worker does
        return reconnect(settings.db_url, stop, settings.worker.db_reconnect_seconds, lost, old)

    stats = recheck(conn, client, cc, stop=stop, once=args.once, limit=args.limit,
                    on_progress=progress, reconnect=back)  # fmt: skip
    out.show(stats.line(), final=True)
    print(stats.line() + (" (stopped)" if stop.is_set() else ""))
    return 0


def cmd_flags(args: argparse.Namespace, settings: Settings) -> int:
    from harvester.recheck.checks import export_flags

    conn = open_database(settings.db_url)
    for row in export_flags(conn):
        sys.stdout.write(json.dumps(row) + "\n")
    return 0


COMMANDS = {"recheck": cmd_recheck, "flags": cmd_flags}
