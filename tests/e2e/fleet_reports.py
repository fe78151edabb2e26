"""What the e2e test reads of the fleet to explain a failure: testinfra's run from the master,
and the droplets' sshd as the replacement systemctl sees it."""

from __future__ import annotations

import subprocess
import time

from lab.fleet import faults
from lab.fleet import lifecycle as fleet
from lab.mission import stages as mission

# testinfra's run, during the download on two shared cores (one CI run: over 600 s, unexplained).
INFRA_SECONDS = 1200
SSHD_PROBE = (
    "systemctl is-active ssh; cat /run/ssh.service.status 2>&1; ls -ld /run/sshd 2>&1;"
    " ps -eo pid,ppid,lstart,args | grep -v ' ps -eo';"
    " tail -n 20 /var/log/journal/ssh.service.log /var/log/systemctl.log 2>&1"
)


def sshd_states(m: mission.Mission, minions: tuple[str, ...]) -> dict[str, str]:
    """Per droplet: whether the replacement systemctl calls ssh active, its status file, the
    privilege separation directory and the processes (what a failure here needs to be read)."""
    found = {}
    for minion in minions:
        try:
            droplet = faults.find_droplet(m.config, minion)
            found[minion] = faults.run_in(droplet, ["sh", "-c", SSHD_PROBE + "; true"])
        except Exception as error:  # a probe for a failure message: never fails the run
            found[minion] = f"probe failed: {error}"
    return found


def infra(m: mission.Mission) -> subprocess.CompletedProcess:
    """`pytest tests/infra --hosts='salt://*'` from the lab's master, its time shown."""
    argv, env = fleet.infra_command(m.config, ["-q", "-p", "no:cacheprovider", "-rA"])
    started = time.monotonic()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=INFRA_SECONDS)
    m.show(f"    testinfra from the master: {time.monotonic() - started:.0f}s")
    return result


def infra_failures(result: subprocess.CompletedProcess) -> str:
    """What a failed testinfra run says of its failures (its FAILURES section), and its end."""
    failures = result.stdout.partition("= FAILURES =")[2].partition("short test summary")[0]
    return failures[:8000] + result.stdout[-1500:] + result.stderr[-2000:]


def sshd_report(run: dict) -> str:
    states = run["sshd_before_second_highstate"]
    return "\n".join(
        f"\n--- {minion} before the second highstate:\n{text}" for minion, text in states.items()
    )
