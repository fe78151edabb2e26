"""`downloader run` and `downloader status`: settings, signals, logging, one-line errors."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from downloader.config import ConfigError, Settings, load_settings
from downloader.daemon import Daemon
from downloader.push import PushFailed
from downloader.queue_client import QueueClient, QueueRefused
from downloader.spool import Spool
from downloader.stages import build_stages
from downloader.status import DaemonStatus, read_status


def run_command(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        settings = load_settings(args.config)
        settings.require("queue_url", "queue_token", "storage")
        daemon = build_daemon(settings, stop)
        return daemon.run(once=args.once)
    except (ConfigError, QueueRefused, PushFailed, ValueError) as exc:
        print(f"downloader: {exc}", file=sys.stderr)
        return 1


def build_daemon(settings: Settings, stop: threading.Event) -> Daemon:
    spool = Spool(Path(settings.spool))
    status = DaemonStatus(spool.root, settings.worker)
    client = QueueClient(settings.queue_url, settings.queue_token)
    return Daemon(settings, client, spool, build_stages(settings, status), stop, status)


def status_command(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"downloader: {exc}", file=sys.stderr)
        return 1
    state = read_status(Path(settings.spool))
    if args.json:
        print(json.dumps(state, indent=2))
        return 0
    print(format_status(state))
    return 0


def format_status(state: dict) -> str:
    if state.get("phase") == "never ran":
        return f"downloader: never ran (spool {state['spool']})"
    lease = state.get("lease")
    lines = [
        f"downloader {state['worker']}: {'running' if state['running'] else 'not running'},"
        f" {state['phase']}" + (f" ({state['note']})" if state.get("note") else ""),
        "lease: "
        + (
            f"{lease['lease_id']}, {lease.get('fetched', 0):,} of {lease['items']:,} fetched"
            if lease
            else "none"
        ),
        "done: "
        + (", ".join(f"{k} {v:,}" for k, v in sorted(state["counts"].items())) or "nothing yet")
        + f"; {state['stored_per_second_5m']} stored/s (5 min)",
        "errors: "
        + (", ".join(f"{k} {v:,}" for k, v in sorted(state["errors"].items())) or "none")
        + (f"; last: {state['last_error']}" if state.get("last_error") else ""),
        f"updated {state['updated_at']}",
    ]
    return "\n".join(lines)
