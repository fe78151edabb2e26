"""`downloader` command line: the droplet side.

    downloader run [--once]        the daemon (foreground; SIGTERM stops it cleanly)
    downloader status [--json]     what the daemon on this machine is doing
    downloader fetch --urls F --out D   the fetch stage alone, for a list of URLs

Every failure ends in one line on stderr and exit 1 (2 for a bad command line)."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="downloader",
        description="Lease image URLs from the queue, fetch, verify and push them to storage.",
    )
    parser.add_argument("--config", help="YAML settings (default /etc/ccmirror/downloader.yaml)")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="lease, fetch, push and report until stopped")
    run.add_argument("--once", action="store_true", help="one lease, then exit (0: queue empty)")
    status = commands.add_parser("status", help="the daemon's lease, phase, counts and errors")
    status.add_argument("--json", action="store_true", help="print JSON")
    fetch = commands.add_parser(
        "fetch", help="fetch, verify, hash and write a list of image URLs (no queue, no push)"
    )
    fetch.add_argument("--urls", type=Path, required=True, help="one URL per line")
    fetch.add_argument("--out", type=Path, required=True, help="root of the storage layout")
    fetch.add_argument("--concurrency", type=int, default=64, help="connections at once")
    args = parser.parse_args(argv)
    if args.command in ("run", "status"):
        from downloader.run_command import run_command, status_command

        command = run_command if args.command == "run" else status_command
        return command(args)
    if args.command == "fetch":
        from downloader.fetch import run_fetch_command

        return run_fetch_command(args.urls, args.out, args.concurrency)
    parser.print_help()
    return 0
