"""What a real droplet's systemd does when a unit's main process dies by itself (a crash, not a
test's kill): start it again, as its `Restart=` says. The lab's init does not for units started
after boot (lab/fleet/faults.py says why), so a test whose fault may crash a daemon (SeaweedFS's
master has panicked after losing a volume server) runs this beside it:

    with SystemdRestarts(config, ["st-1", "st-2", "st-3"], WEED_UNITS) as restarts:
        ...                       # the fault; crashed units come back within `every` seconds
    restarts.restarted            # ["st-2: ccmirror-weed-master at 10:44:25", ...]

A droplet not in the lab (destroyed, not yet made) is skipped until it is there; a unit not
enabled on a droplet (no master on a volume-only node) is never started.
"""

from __future__ import annotations

import subprocess
import threading
import time

from lab.fleet.core import Droplet, LabConfig, LabError, enter_command, find_droplet
from lab.fleet.faults import (
    COMMAND_SECONDS,
    RESTARTS_ON_SIGKILL,
    host_pid,
    main_pid,
    recorded_main_pid,
    restart_policy,
    restart_unit,
)

CHECK_SECONDS = 3.0


class SystemdRestarts:
    """A thread restarting crashed units of `units` on `droplet_ids` every `every` seconds."""

    def __init__(
        self,
        config: LabConfig,
        droplet_ids: list[str],
        units: list[str],
        every: float = CHECK_SECONDS,
    ) -> None:
        self.config, self.droplet_ids, self.units, self.every = config, droplet_ids, units, every
        self.restarted: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="systemd-restarts", daemon=True)

    def __enter__(self) -> SystemdRestarts:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(COMMAND_SECONDS * 2)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for droplet_id in self.droplet_ids:
                try:
                    droplet = find_droplet(self.config, droplet_id)
                except LabError:
                    continue  # destroyed, or not made yet
                for unit in self.units:
                    try:
                        if restart_crashed(droplet, unit):
                            stamp = time.strftime("%H:%M:%S")
                            self.restarted.append(f"{droplet_id}: {unit} at {stamp}")
                    except (LabError, subprocess.SubprocessError) as error:
                        self.errors.append(f"{droplet_id}: {unit}: {error}")


def restart_crashed(droplet: Droplet, unit: str, timeout: float = COMMAND_SECONDS) -> bool:
    """Start `unit` again when it is enabled, its main process is gone and its `Restart=`
    covers a crash; True when it was."""
    recorded = recorded_main_pid(droplet, unit)
    if recorded and host_pid(droplet, recorded):
        # Running: learnt without a systemctl in the droplet (0.1 s of CPU each; this poll
        # asks about a dozen units every 3 s through a whole fault).
        return False
    pid = main_pid(droplet, unit)
    if pid and host_pid(droplet, pid):
        return False
    if not enabled(droplet, unit) or restart_policy(droplet, unit)[0] not in RESTARTS_ON_SIGKILL:
        return False
    restart_unit(droplet, unit, pid, timeout)
    return True


def enabled(droplet: Droplet, unit: str) -> bool:
    """Whether systemd would keep the unit running (`systemctl is-enabled` says enabled)."""
    command = enter_command(droplet, ["systemctl", "is-enabled", unit])
    shown = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_SECONDS)
    return shown.stdout.strip() == "enabled"
