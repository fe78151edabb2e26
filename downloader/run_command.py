"""`downloader run`, `status`, `drain`, `resume` and `check-storage`: settings, signals,
logging. A failure is a CommandError or ConfigError: downloader/cli.py reports it as one line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ccmirror_common import cli
from ccmirror_common.cli import CommandError
from ccmirror_common.metrics_server import serving
from downloader.config import ConfigError, Settings, load_settings
from downloader.daemon import Daemon
from downloader.metrics import DownloaderMetrics
from downloader.push import PushFailed, PushStopped, StorageTarget, push_tree
from downloader.queue_client import QueueClient, QueueRefused
from downloader.s3.target import S3Target
from downloader.spool import Spool, write_atomically
from downloader.stages import build_stages
from downloader.status import DaemonStatus, drain_path, read_status

DRAIN_POLL = 0.2  # seconds between looks at the daemon's status while `drain --wait` waits
PROBE_DIR = "manifests/probe"  # rrsync -wo lets the key write here; it can delete nothing
S3_PROBE_DIR = "probes"  # probes/<worker>/probe.txt: a new version per check, nothing lost


def run_command(args: argparse.Namespace) -> int:
    cli.configure_logging(args.verbose)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        settings = load_settings(args.config)
        settings.require("queue_url", "queue_token", "storage")
        daemon = build_daemon(settings, stop)
        with serving(settings.metrics.listen, daemon.metrics.registry):
            return daemon.run(once=args.once)
    except (QueueRefused, PushFailed, ValueError) as exc:  # ValueError: a bad URL or target
        raise CommandError(str(exc)) from None


def build_daemon(settings: Settings, stop: threading.Event) -> Daemon:
    spool = Spool(Path(settings.spool))
    status = DaemonStatus(spool.root, settings.worker)
    client = QueueClient(settings.queue_url, settings.queue_token)
    metrics = DownloaderMetrics(spool.root)
    stages = build_stages(settings, status, metrics)
    return Daemon(settings, client, spool, stages, stop, status, metrics)


def status_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    cli.print_state(args, read_status(Path(settings.spool)), format_status)
    return 0


def format_status(state: dict) -> str:
    if state.get("phase") == "never ran":
        drained = "; drain requested" if state.get("drain_requested") else ""
        return f"downloader: never ran (spool {state['spool']}){drained}"
    lease = state.get("lease")
    lines = [
        f"downloader {state['worker']}: {'running' if state['running'] else 'not running'},"
        f" {state['phase']}" + (f" ({state['note']})" if state.get("note") else ""),
        *(
            ["drain requested: no new lease until `downloader resume`"]
            if state["drain_requested"]
            else []
        ),
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
        *(
            [f"quarantined: {state['quarantined']:,} lease(s) given up, in the spool's quarantine/"]
            if state.get("quarantined")
            else []
        ),
        f"updated {state['updated_at']}",
    ]
    return "\n".join(lines)


def drain_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    spool = Path(settings.spool)
    if not spool.is_dir():
        # Not made here: a spool made by root would be one the daemon cannot write.
        raise CommandError(f"the spool {spool} does not exist")
    write_atomically(drain_path(spool), datetime.now(UTC).isoformat(timespec="seconds") + "\n")
    if not args.wait:
        print(f"drain requested: {settings.worker} takes no new lease until `downloader resume`")
        return 0
    deadline = time.monotonic() + args.wait
    while True:
        state = read_status(spool)
        idle = drained_idle(state, spool)
        if idle is not None:
            print(idle)
            return 0
        if time.monotonic() >= deadline:
            raise CommandError(
                f"still draining after {args.wait:g}s ({describe_work(state)});"
                " the drain request stays: wait longer or `downloader resume`"
            )
        time.sleep(DRAIN_POLL)


def drained_idle(state: dict, spool: Path) -> str | None:
    """A line saying the daemon is idle under the drain request, or None while it works."""
    if state.get("running"):
        return "drained: the daemon holds no lease" if state.get("phase") == "drained" else None
    if Spool(spool).current() is not None:
        return (
            "drained: the daemon is not running; the lease in its spool is finished or"
            " released when it starts"
        )
    return "drained: the daemon is not running and holds no lease"


def describe_work(state: dict) -> str:
    lease = state.get("lease")
    work = f"phase {state.get('phase', 'unknown')}"
    if lease:
        work += (
            f", lease {lease['lease_id']}: {lease.get('fetched', 0)} of {lease['items']} fetched"
        )
    return work


def resume_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    path = drain_path(Path(settings.spool))
    if not path.exists():
        print(f"{settings.worker} was not drained")
        return 0
    path.unlink(missing_ok=True)
    print(f"resumed: {settings.worker} leases again")
    return 0


def check_storage_command(args: argparse.Namespace) -> int:
    """Push one small probe file to storage the way a lease's files go: a real write through
    the storage key (rsync: the pinned host key and rrsync; S3: a signed PUT with its
    SHA-256), by the code a push uses."""
    try:
        settings = load_settings(args.config)
        settings.require("storage")
        probe, label, push_probe = _probe_push(settings)
    except (ConfigError, ValueError) as exc:
        return _storage_report(args, {"ok": False, "error": str(exc)})
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ccmirror-probe-") as scratch:
        path = Path(scratch) / probe
        path.parent.mkdir(parents=True)
        path.write_text(f"{settings.worker} {datetime.now(UTC).isoformat()}\n")
        try:
            push_probe(Path(scratch), [probe])
        except (PushFailed, PushStopped) as exc:
            return _storage_report(args, {"ok": False, "target": label, "error": str(exc)})
    seconds = round(time.monotonic() - started, 2)
    return _storage_report(args, {"ok": True, "target": label, "path": probe, "seconds": seconds})


def _probe_push(settings: Settings) -> tuple[str, str, Callable[[Path, list[str]], object]]:
    """The probe's path, the target's label and a one-attempt push to it."""
    storage = settings.storage
    if isinstance(storage, S3Target):
        from downloader.s3.push import push_objects

        def put(root: Path, paths: list[str]) -> object:
            return push_objects(root, paths, storage, timeout=30, retry_seconds=0, attempts=1)

        return f"{S3_PROBE_DIR}/{settings.worker}/probe.txt", storage.label, put
    target = StorageTarget.from_spec(
        storage,
        port=settings.storage_port,
        key_path=settings.ssh_key,
        known_hosts_path=settings.known_hosts,
    )

    def rsync(root: Path, paths: list[str]) -> object:
        return push_tree(root, paths, target, timeout=30, retry_seconds=0, attempts=1)

    return f"{PROBE_DIR}/{settings.worker}.txt", target.label, rsync


def _storage_report(args: argparse.Namespace, result: dict) -> int:
    if args.json:
        print(json.dumps(result))
    elif result["ok"]:
        print(f"storage ok: wrote {result['path']} to {result['target']} in {result['seconds']}s")
    else:
        print(f"downloader: storage check failed: {result['error']}", file=sys.stderr)
    return 0 if result["ok"] else 1


COMMANDS = {
    "run": run_command,
    "status": status_command,
    "drain": drain_command,
    "resume": resume_command,
    "check-storage": check_storage_command,
}
