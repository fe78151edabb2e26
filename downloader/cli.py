"""`downloader` command line: the droplet side.

    downloader run [--once]        the daemon (foreground; SIGTERM stops it cleanly)
    downloader status [--json]     what the daemon on this machine is doing
    downloader drain [--wait S]    take no new lease; finish or release the one in hand
    downloader resume              lease again after a drain
    downloader check-storage       a real write of a probe file through the storage key
    downloader fetch --urls F --out D   the fetch stage alone, for a list of URLs (on the
                                   hosts of fetch.allow_hosts / CCMIRROR_FETCH_ALLOW_HOSTS)

Every failure ends in one line on stderr and exit 1 (2 for a bad command line)."""

from __future__ import annotations

import argparse
import sys
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
    drain = commands.add_parser(
        "drain", help="take no new lease (kept across restarts) until `downloader resume`"
    )
    drain.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait until the daemon is idle (exit 1 if it is not within SECONDS)",
    )
    commands.add_parser("resume", help="remove the drain request: lease again")
    check = commands.add_parser(
        "check-storage", help="write a probe file to storage with rsync, as a push does"
    )
    check.add_argument("--json", action="store_true", help="print JSON")
    fetch = commands.add_parser(
        "fetch", help="fetch, verify, hash and write a list of image URLs (no queue, no push)"
    )
    fetch.add_argument("--urls", type=Path, required=True, help="one URL per line")
    fetch.add_argument("--out", type=Path, required=True, help="root of the storage layout")
    fetch.add_argument("--concurrency", type=int, default=64, help="connections at once")
    args = parser.parse_args(argv)
    if args.command in ("run", "status", "drain", "resume", "check-storage"):
        from downloader import run_command

        command = {
            "run": run_command.run_command,
            "status": run_command.status_command,
            "drain": run_command.drain_command,
            "resume": run_command.resume_command,
            "check-storage": run_command.check_storage_command,
        }[args.command]
        return command(args)
    if args.command == "fetch":
        from downloader.config import ConfigError, load_settings
        from downloader.fetch import run_fetch_command

        try:  # the same settings as `run` (file, CCMIRROR_*): the hosts it may fetch from
            allow_hosts = load_settings(args.config).fetch.allow_hosts
        except ConfigError as exc:
            print(f"downloader: {exc}", file=sys.stderr)
            return 1
        return run_fetch_command(args.urls, args.out, args.concurrency, allow_hosts)
    parser.print_help()
    return 0
