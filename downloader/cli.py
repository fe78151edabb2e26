"""`downloader` command line: the droplet side (issue #5 builds it out)."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="downloader",
        description="Lease image URLs from the queue, fetch, verify and push them to storage.",
    )
    commands = parser.add_subparsers(dest="command")
    fetch = commands.add_parser(
        "fetch", help="fetch, verify, hash and write a list of image URLs (no queue, no push)"
    )
    fetch.add_argument("--urls", type=Path, required=True, help="one URL per line")
    fetch.add_argument("--out", type=Path, required=True, help="root of the storage layout")
    fetch.add_argument("--concurrency", type=int, default=64, help="connections at once")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        from downloader.fetch import run_fetch_command

        return run_fetch_command(args.urls, args.out, args.concurrency)
    parser.print_help()
    return 0
