"""What the daemon is doing, for `downloader status`: a JSON file in the spool, rewritten
atomically by the daemon every few seconds and at every phase change."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter, deque
from datetime import UTC, datetime
from pathlib import Path

from downloader.spool import LeaseJournal, count_quarantined, write_atomically
from downloader.verify import printable

log = logging.getLogger("downloader.status")
STATUS_FILE = "status.json"
DRAIN_FILE = "drain"  # its presence asks the daemon to take no new lease (`downloader drain`)
RATE_WINDOW = 300.0  # seconds
WRITE_EVERY = 2.0


class DaemonStatus:
    def __init__(self, spool_root: Path, worker: str) -> None:
        self.path = spool_root / STATUS_FILE
        self.worker = worker
        self.started = time.time()
        # Totals since the spool was first used: a restart (or `run --once`) carries them on.
        before = read_status(spool_root)
        self.counts: Counter[str] = Counter(before.get("counts", {}))
        self.errors: Counter[str] = Counter(before.get("errors", {}))
        self.last_error = before.get("last_error", "")
        self.phase = "starting"
        self.note = ""
        self.current: dict | None = None
        self._stored: deque[tuple[float, int]] = deque()
        self._written = 0.0

    def lease(self, journal: LeaseJournal) -> None:
        self.current = {"lease_id": journal.lease_id, "items": len(journal.items)}
        self.write(phase=journal.phase, force=True)

    def fetched(self, journal: LeaseJournal) -> None:
        if self.current is not None:
            self.current["fetched"] = len(journal.results())
        self.write()

    def finished(self, journal: LeaseJournal) -> None:
        self.counts["leases"] += 1
        self.current = None
        self.write(phase="idle", force=True)

    def reported(self, reports: list[dict]) -> None:
        by_result = Counter(r["result"] for r in reports)
        self.counts.update(by_result)
        self._stored.append((time.time(), by_result["stored"]))
        self.write(force=True)

    def error(self, kind: str, message: str) -> None:
        self.errors[kind] += 1
        self.last_error = printable(f"{kind}: {message}", 500)
        self.write()

    def write(self, phase: str | None = None, note: str = "", force: bool = False) -> None:
        if phase is not None:
            force = force or phase != self.phase
            self.phase, self.note = phase, note
        now = time.time()
        if not force and now - self._written < WRITE_EVERY:
            return
        self._written = now
        while self._stored and self._stored[0][0] < now - RATE_WINDOW:
            self._stored.popleft()
        window = min(RATE_WINDOW, max(now - self.started, 1.0))
        state = {
            "worker": self.worker,
            "pid": os.getpid(),
            "phase": self.phase,
            "note": self.note,
            "lease": self.current,
            "counts": dict(self.counts),
            "stored_per_second_5m": round(sum(n for _, n in self._stored) / window, 2),
            "errors": dict(self.errors),
            "last_error": self.last_error,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, json.dumps(state))
        except OSError as exc:  # a full spool disk: the daemon's work matters, not its status
            log.warning("status not written: %s", exc.strerror or exc)


def read_status(spool_root: Path) -> dict:
    """The daemon's last status, whether its process is still there, and whether a drain
    was asked for."""
    path = spool_root / STATUS_FILE
    drain = drain_requested(spool_root)
    quarantined = count_quarantined(spool_root)  # from the disk: true whether it runs or not
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {
            "running": False,
            "phase": "never ran",
            "spool": str(spool_root),
            "drain_requested": drain,
            "quarantined": quarantined,
        }
    state["running"] = _alive(state.get("pid", 0)) and state.get("phase") != "stopped"
    state["drain_requested"] = drain
    state["quarantined"] = quarantined
    return state


def drain_path(spool_root: Path) -> Path:
    return spool_root / DRAIN_FILE


def drain_requested(spool_root: Path) -> bool:
    return drain_path(spool_root).exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError, OverflowError):
        return False
    return pid > 0
