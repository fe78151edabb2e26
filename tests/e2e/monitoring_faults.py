"""#22 in the e2e's lab: the master droplet's Prometheus and Alertmanager (salt/prometheus),
at the lab's pace (lab/fleet/lifecycle.py LAB_MONITORING: 5 s scrapes and evaluations, 5 s
group wait, 10 s group interval), their webhook a receiver of this module on the lab's
bridge (the private root's settings/master.sls `monitoring:webhook_url`, as an operator
sets a Slack URL).

- Scraped: every droplet's node exporter, the queue, the harvester and each downloader that
  `fleet.up` made, with no hand edit (fleet.up rewrites the targets from the mine).
- A downloader's daemon killed and left dead (the faults after it go on meanwhile):
  CcmirrorDownloaderDown reaches the webhook no sooner than the rule's `for:` and within
  two scrape intervals, an evaluation and the group wait after it (the deadline below
  allows a busy machine more); restarted as systemd would, the resolution follows.
- `fleet.destroy` of a downloader: no longer a target within a minute.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lab.fleet import faults, salt_master
from lab.fleet.lifecycle import LAB_MONITORING
from lab.mission import stages as mission
from lab.mission.watch import PROMETHEUS_PORT
from tests.conftest import prometheus_targets, wait_for

SCRAPE_SECONDS = 5  # LAB_MONITORING
RULE_FOR_SECONDS = 120  # CcmirrorDownloaderDown's `for: 2m` (salt/prometheus/files/rules/)
GROUP_WAIT_SECONDS = 5
# The bound: two scrapes and the rule's `for:`, plus an evaluation and the group
# wait; a shared, busy machine is given a minute more before the test gives up.
FIRING_BOUND = 2 * SCRAPE_SECONDS + RULE_FOR_SECONDS + SCRAPE_SECONDS + GROUP_WAIT_SECONDS
FIRING_DEADLINE = FIRING_BOUND + 60
RESOLVED_DEADLINE = 90  # the restart, a scrape, an evaluation, a group interval
TARGETS_DEADLINE = 60  # "scraped within a minute"; gone within one
DOWN_ALERT = "CcmirrorDownloaderDown"
TARGETS_DIR = "/etc/prometheus/targets"  # salt/prometheus/defaults.yaml
MINE_FUNCTION = "ccmirror_addresses"  # pillar/mine.sls


@dataclass
class Post:
    at: float  # time.monotonic() when it arrived
    title: str
    text: str


@dataclass
class WebhookReceiver:
    """A Slack-format webhook on the lab's bridge address: what Alertmanager posts."""

    address: str
    posts: list[Post] = field(default_factory=list)

    def __post_init__(self) -> None:
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                for attachment in body.get("attachments") or [body]:
                    posts.append(
                        Post(time.monotonic(), attachment.get("title", ""), attachment["text"])
                    )
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass  # the test reads the posts, not a log

        self.server = ThreadingHTTPServer((self.address, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def first(self, status: str, alert: str, minion: str, since: float) -> Post | None:
        for post in self.posts:
            if post.at >= since and post.title == f"[{status}] {alert}" and minion in post.text:
                return post
        return None


def master_settings(receiver: WebhookReceiver) -> dict:
    """The private root's settings/master.sls: the lab's pace and the receiver's URL."""
    return {**LAB_MONITORING, "monitoring": {"webhook_url": receiver.url}}


def targets(m: mission.Mission) -> dict[str, dict[str, str]]:
    """What the master's Prometheus scrapes now: job -> minion -> health (up, down,
    unknown)."""
    address = m.state().droplets["master"].address
    return prometheus_targets(f"http://{address}:{PROMETHEUS_PORT}")


def every_role_scraped(m: mission.Mission) -> dict:
    """Waits (up to a minute) until every droplet's node exporter, the queue, the
    harvesters and the downloaders are scraped and up; what was scraped, and how long."""
    droplets = sorted(m.state().droplets)
    expected = {
        "node": droplets,
        "queue": [d for d in droplets if d.startswith("db-")],
        "harvester": [d for d in droplets if d.startswith("hv-")],
        "downloader": [d for d in droplets if d.startswith("dl-")],
    }
    started = time.monotonic()

    def all_up() -> bool:
        seen = targets(m)
        return all(
            sorted(m for m, health in seen.get(job, {}).items() if health == "up") == minions
            for job, minions in expected.items()
        )

    with contextlib.suppress(AssertionError):  # the test names what was missing
        wait_for(all_up, TARGETS_DEADLINE, "every droplet's exporters to be scraped and up", 1)
    return {"expected": expected, "seen": targets(m), "seconds": time.monotonic() - started}


def downloader_down(m: mission.Mission, receiver: WebhookReceiver, minion: str) -> dict:
    """`kill -9` of `minion`'s downloader, left dead until its alert reaches the webhook,
    then restarted as systemd would; the seconds each notification took."""
    killed = faults.kill_daemon(m.config, minion, "ccmirror-downloader")
    at = time.monotonic()
    fired = _wait_post(receiver, "FIRING", minion, at, FIRING_DEADLINE)
    faults.restart_like_systemd(m.config, killed)
    back = time.monotonic()
    resolved = _wait_post(receiver, "RESOLVED", minion, back, RESOLVED_DEADLINE)
    return {
        "fired after": fired.at - at if fired else None,
        "fired": fired,
        "resolved after restart": resolved.at - back if resolved else None,
        "resolved": resolved,
        "posts": [(round(p.at - at), p.title, p.text[:200]) for p in receiver.posts],
    }


def in_background(work: Callable[[], dict]) -> Callable[[], dict]:
    """`work` started in a thread; the call returned waits for its result (or raises its
    exception)."""
    pool = ThreadPoolExecutor(1)
    future = pool.submit(work)
    pool.shutdown(wait=False)
    return future.result


def destroyed_unscraped(m: mission.Mission, minion: str) -> dict:
    """Seconds until `minion` (just removed by fleet.destroy) is no target of any job (None
    if it still was after a minute); when it was, what the master had: the jobs that still
    scraped it, its targets files and the mine's answer."""
    started = time.monotonic()
    try:
        wait_for(
            lambda: all(minion not in scraped for scraped in targets(m).values()),
            TARGETS_DEADLINE,
            f"{minion} to leave Prometheus' targets",
            1,
        )
    except AssertionError:
        return {"seconds": None, "master had": _scrape_sources(m, minion)}
    return {"seconds": time.monotonic() - started}


def _scrape_sources(m: mission.Mission, minion: str) -> dict[str, object]:
    """Where a stale target came from: Prometheus' jobs that list `minion`, the master
    droplet's targets files, the master's accepted keys and what its mine answers."""
    master = faults.find_droplet(m.config, "master")
    mine = salt_master.salt_command(
        m.config, "salt", ["--out=json", "master", "mine.get", "*", MINE_FUNCTION]
    )
    found: dict[str, object] = {
        "jobs": sorted(job for job, seen in targets(m).items() if minion in seen),
        "accepted keys": sorted(p.name for p in salt_master.minion_keys_dir(m.config).iterdir()),
    }
    try:
        found["targets files"] = faults.run_in(
            master, ["sh", "-c", f"ls -l --time-style=+%T {TARGETS_DIR}; cat {TARGETS_DIR}/*.json"]
        )[-3000:]
        answer = subprocess.run(mine, capture_output=True, text=True, timeout=60)
        found["mine"] = (answer.stdout + answer.stderr)[-2000:]
    except Exception as error:  # noqa: BLE001 (a diagnosis: whatever it found is kept)
        found["error"] = f"{type(error).__name__}: {error}"[-500:]
    return found


def _wait_post(
    receiver: WebhookReceiver, status: str, minion: str, since: float, seconds: float
) -> Post | None:
    try:
        return wait_for(
            lambda: receiver.first(status, DOWN_ALERT, minion, since),
            seconds,
            f"{DOWN_ALERT} {status.lower()} for {minion} at the webhook",
            1,
        )
    except AssertionError:
        return None  # the test reports every post that came
