"""`downloader` command line: the droplet side.

    downloader run [--once]        the daemon (foreground; SIGTERM stops it cleanly)
    downloader status [--json]     what the daemon on this machine is doing
    downloader drain [--wait S]    take no new lease; finish or release the one in hand
    downloader resume              lease again after a drain
    downloader check-storage       a real write of a probe file through the storage key
    downloader fetch --urls F --out D   the fetch stage alone, for a list of URLs (on the
                                   hosts of fetch.allow_hosts / CCMIRROR_FETCH_ALLOW_HOSTS),
                                   into D/<photo_id>.<ext> as into the spool

The skeleton is ccmirror_common/cli.py: a failure is one line on stderr and exit 1 (2 for a
bad command line, 130 for Ctrl-C)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ccmirror_common import cli
from ccmirror_common.settings import ConfigError


def build_parser() -> cli.Parser:
    parser, commands = cli.new_parser(
        "downloader", "Lease image URLs from the queue, fetch, verify and push them to storage."
    )
    parser.add_argument("--config", help="YAML settings (default /etc/ccmirror/downloader.yaml)")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug detail")
    run = commands.add_parser("run", help="lease, fetch, push and report until stopped")
    run.add_argument("--once", action="store_true", help="one lease, then exit (0: queue empty)")
    status = commands.add_parser("status", help="the daemon's lease, phase, counts and errors")
    cli.add_json_option(status)
    drain = commands.add_parser(
        "drain", help="take no new lease (kept across restarts) until `downloader resume`"
    )
    drain.add_argument(
        "--wait",
        type=cli.non_negative_seconds,
        default=0,
        metavar="SECONDS",
        help="wait until the daemon is idle (exit 1 if it is not within SECONDS)",
    )
    commands.add_parser("resume", help="remove the drain request: lease again")
    check = commands.add_parser(
        "check-storage", help="write a probe file to storage with rsync, as a push does"
    )
    cli.add_json_option(check)
    fetch = commands.add_parser(
        "fetch", help="fetch, verify, hash and write a list of image URLs (no queue, no push)"
    )
    fetch.add_argument("--urls", type=Path, required=True, help="one URL per line")
    fetch.add_argument(
        "--out", type=Path, required=True, help="directory for <photo_id>.<ext> files"
    )
    fetch.add_argument(
        "--concurrency", type=cli.positive_int, default=64, help="connections at once"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run("downloader", lambda: dispatch(args), (ConfigError,))


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "fetch":
        return fetch_command(args)
    from downloader import run_command  # the daemon's imports, only for its commands

    return run_command.COMMANDS[args.command](args)


def fetch_command(args: argparse.Namespace) -> int:
    from downloader.config import load_settings
    from downloader.fetch import run_fetch_command

    # The same settings as `run` (file, CCMIRROR_*): the hosts it may fetch from.
    allow_hosts = load_settings(args.config).fetch.allow_hosts
    return run_fetch_command(args.urls, args.out, args.concurrency, allow_hosts)
