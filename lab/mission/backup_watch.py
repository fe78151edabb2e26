"""The backup's lag while the lab downloads at full speed (#20's figure): `harvester
backup-lag` on db-1, the command `salt-run storage.status` runs there, every few seconds
while the download stage runs and after it until bk-1 holds every stored photo.

Each sample also counts the photos stored so far, so the summary can say how fast the
download went while the backup was that far behind.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from lab.fleet import faults
from lab.fleet.core import LabConfig, LabError, load_state, wait_for

# salt/ccmirror/defaults.yaml ccmirror:venv and salt/db/defaults.yaml db:audit_config
LAG_COMMAND = [
    "/opt/ccmirror/venv/bin/harvester",
    "--config",
    "/etc/ccmirror/audit.yaml",
    "backup-lag",
    "--json",
]
# The exact check once the front is at 0: every stored photo and manifest looked up on the
# backup (a walk of its keys; seconds in the lab). The lag's front search cannot see photos
# behind its front, which filer.backup's catch-up after a reconnect leaves (README).
EXACT_COMMAND = [*LAG_COMMAND[:3], "backup-check", "--dry-run", "--margin-minutes", "0", "--json"]
EVERY_SECONDS = 5.0
CATCH_UP_SECONDS = 300.0  # the e2e's bound for the backup to hold every stored photo


@dataclass
class Sample:
    at: float  # seconds since the watch started
    behind: int  # stored photos not on the backup yet
    seconds: float  # how long the oldest of them has waited
    stored: int  # photos stored in the catalog at the time


@dataclass
class BackupLag:
    samples: list[Sample] = field(default_factory=list)
    download_seconds: float = 0.0  # when the download stage ended, since the watch started
    caught_up_after: float | None = None  # seconds after the download's end; None: it did not
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        """`at most 1,234 photos and 12.3 s behind while 5,000 photos were stored at 55/s
        (40 samples); caught up 4 s after the download`."""
        during = [s for s in self.samples if s.at <= self.download_seconds] or self.samples
        if not during:
            return f"not measured ({'; '.join(self.failures[-1:]) or 'no sample'})"
        stored = during[-1].stored - during[0].stored
        span = max(during[-1].at - during[0].at, 1e-9)
        worst = max(during, key=lambda s: s.behind)
        caught = (
            f"caught up {self.caught_up_after:.0f} s after the download"
            if self.caught_up_after is not None
            else "not caught up"
        )
        return (
            f"at most {worst.behind:,} photos and {max(s.seconds for s in during):.1f} s behind"
            f" while {stored:,} photos were stored at {stored / span:,.0f}/s"
            f" ({len(during)} samples); {caught}"
        )


@contextmanager
def watching(
    config: LabConfig, stored: Callable[[], int], every: float = EVERY_SECONDS
) -> Iterator[BackupLag]:
    """Samples the lag while the body runs, then until it is 0 (at most CATCH_UP_SECONDS);
    a lab without bk-1 gets an empty record."""
    lag = BackupLag()
    state = load_state(config)
    if state is None or "bk-1" not in state.droplets:
        yield lag
        return
    db = state.droplets["db-1"]
    started, done = time.monotonic(), threading.Event()

    def sample() -> Sample | None:
        try:
            answer = json.loads(faults.run_in(db, LAG_COMMAND, timeout=60))
            lag.samples.append(
                Sample(time.monotonic() - started, answer["behind"], answer["seconds"], stored())
            )
            return lag.samples[-1]
        except (LabError, ValueError, KeyError, OSError) as error:  # a sample lost, not the run
            lag.failures.append(str(error)[:300])
            return None

    def run() -> None:
        while not done.wait(every):
            sample()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield lag
    finally:
        done.set()
        thread.join()
        lag.download_seconds = time.monotonic() - started

    def exact() -> float | None:
        """Seconds since the watch began when the exact check found the backup whole."""
        try:
            answer = json.loads(faults.run_in(db, EXACT_COMMAND, timeout=600))
        except (LabError, ValueError, OSError) as error:
            lag.failures.append(str(error)[:300])
            return None
        whole = answer.get("missing") == 0 and answer.get("manifests_missing") == 0
        return time.monotonic() - started if whole else None

    catch_up(lag, sample, every, exact)  # only after a download that ended well


def catch_up(
    lag: BackupLag,
    sample: Callable[[], Sample | None],
    every: float,
    exact: Callable[[], float | None],
) -> None:
    """Samples until one is at 0 and then the exact check finds the backup whole
    (`caught_up_after` set, from the exact check's time), or CATCH_UP_SECONDS have passed."""

    def whole() -> float | None:
        last = sample()
        return exact() if last is not None and last.behind == 0 else None

    with contextlib.suppress(LabError):  # not caught up: the line says so
        at = wait_for(whole, CATCH_UP_SECONDS, "the backup to catch up", every)
        lag.caught_up_after = max(at - lag.download_seconds, 0.0)
