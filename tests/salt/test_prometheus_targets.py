"""Prometheus' targets come from the Salt mine, with no hand edit: a real salt-master with
the master's minion on loopback (tests/salt/loopback.py) serving this checkout's states and
pillar. The master minion publishes its addresses (pillar/mine.sls); two fake minions,
dl-1 and hv-1, have accepted keys and mine data in the master's cache (as a minion's
`mine.update` leaves it; no process needed). The master minion applies
`prometheus.targets`, and the file_sd files name exactly those minions, each at its address
in the site's private network and the job's port. A minion whose key is deleted (what
`fleet.down` does) is gone from them at the next apply, and a real Prometheus, run as its
own user with file_sd's five-minute re-read, drops it within seconds: the files are
published readable, so the watch's event suffices. The queue lets the master's address in
the mine read its metrics (in the lab the salt master's own address is another)."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
import yaml

from lab.fleet.salt_master import SALT_VENV, write_file
from tests.conftest import prometheus_targets, wait_for
from tests.salt.loopback import Master, free_port, salt_on_loopback, start, stop, throwaway_keys
from tests.salt.test_monitoring import host_address

ROOT = Path(__file__).resolve().parent.parent.parent
PORTS = {"node": 9100, "harvester": 9711, "downloader": 9712, "queue": 8700}
FAKES = ("dl-1", "hv-1")
# Salt's own cache API, as the master stores what a minion's mine.update sends.
STORE_MINE = """
import json, sys
import salt.cache, salt.config
cache = salt.cache.factory(salt.config.master_config(sys.argv[1]))
for minion, addresses in json.loads(sys.argv[2]).items():
    cache.store("mine", minion, {"ccmirror_addresses": addresses})
"""


def add_fake_minions(base: Path, addresses: dict[str, list[str]]) -> None:
    """Accepted keys and mine data for minions that run no process."""
    pki = base / "master" / "root" / "etc" / "salt" / "pki" / "master" / "minions"
    for minion, (_, public) in throwaway_keys(list(addresses)).items():
        write_file(pki / minion, public, 0o644)
    subprocess.run(
        [str(SALT_VENV / "bin" / "python"), "-c", STORE_MINE]
        + [str(base / "master" / "master"), json.dumps(addresses)],
        check=True,
        timeout=60,
    )


def mine_holds(salt: Master, minions: set[str]) -> bool:
    """Whether the master minion's view of the mine has exactly these minions' addresses."""
    answer, _ = salt.call("master", "mine.get", "*", "ccmirror_addresses")
    return isinstance(answer, dict) and set(answer) == minions and all(answer.values())


def apply_targets(salt: Master, directory: Path) -> dict[str, dict[str, list[str]]]:
    """`state.sls prometheus.targets` on the master minion; job -> minion -> its targets."""
    pillar = json.dumps({"prometheus": {"targets_dir": str(directory)}})
    result, code = salt.call("master", "state.sls", "prometheus.targets", f"pillar={pillar}")
    assert code == 0 and all(state["result"] for state in result.values()), result
    written = {}
    for job in PORTS:
        entries = json.loads((directory / f"{job}.json").read_text())
        written[job] = {entry["labels"]["minion"]: entry["targets"] for entry in entries}
    return written


@contextmanager
def prometheus_reading(targets: Path, base: Path) -> Iterator[str]:
    """Debian's Prometheus as the `prometheus` user (as the package runs it), a job per
    target file with file_sd's default re-read (five minutes): its API's URL."""
    config = base / "prometheus.yml"
    jobs = [
        {"job_name": job, "file_sd_configs": [{"files": [f"{targets}/{job}.json"]}]}
        for job in PORTS
    ]
    config.write_text(yaml.safe_dump({"scrape_configs": jobs}))
    data = base / "tsdb"
    data.mkdir()
    user = pwd.getpwnam("prometheus")
    os.chown(data, user.pw_uid, user.pw_gid)
    url = f"http://127.0.0.1:{free_port()}"
    argv = ["runuser", "-u", "prometheus", "--", "prometheus", f"--config.file={config}"]
    argv += [f"--storage.tsdb.path={data}", f"--web.listen-address={url.removeprefix('http://')}"]
    process = start(argv, base / "prometheus.log")
    try:
        wait_for(lambda: _answers(url), 60, "Prometheus to answer")
        yield url
    finally:
        stop([process], grace=10)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def scraped_minions(url: str, job: str) -> list[str]:
    """The minion labels of `job`'s active targets in Prometheus."""
    return sorted(prometheus_targets(url).get(job, {}))


def queue_status_allow(salt: Master) -> list[str]:
    """The queue's `status_allow` as salt/queue/map.jinja makes it on the master minion."""
    template = '{% from "queue/map.jinja" import queue with context %}{{ queue.status_allow|json }}'
    answer, code = salt.call("master", "slsutil.renderer", f"string={template}")
    assert code == 0 and isinstance(answer, list), answer
    return answer


def test_file_sd_targets_follow_the_minions_in_the_mine():
    base = Path(tempfile.mkdtemp(prefix="ccm-prom-"))
    address = host_address()
    private = base / "private"
    private.mkdir()
    # Every loopback minion runs on this machine: its address is each one's private one.
    site = {"site": {"private_network": f"{address}/32", "queue_port": PORTS["queue"]}}
    (private / "site.sls").write_text(yaml.safe_dump(site))
    master = {
        "file_roots": {"base": [str(ROOT / "salt")]},
        "pillar_roots": {"base": [str(ROOT / "pillar"), str(private)]},
    }
    targets = base / "targets"
    throwaway_keys(["master", *FAKES])  # made at once, before the master starts
    with salt_on_loopback(base, {"master": {}}, master) as salt:
        add_fake_minions(base, {minion: ["127.0.0.2", address] for minion in FAKES})
        salt.run("salt", "master", "mine.update")
        wait_for(lambda: mine_holds(salt, {"master", *FAKES}), 60, "the mine to hold them")
        written = apply_targets(salt, targets)
        assert written == {
            "node": {m: [f"{address}:{PORTS['node']}"] for m in ("dl-1", "hv-1", "master")},
            "harvester": {"hv-1": [f"{address}:{PORTS['harvester']}"]},
            "downloader": {"dl-1": [f"{address}:{PORTS['downloader']}"]},
            "queue": {},
        }
        assert address in queue_status_allow(salt)  # the master's Prometheus reads /metrics

        os.chmod(base, 0o755)  # Prometheus' user reads the targets below it
        with prometheus_reading(targets, base) as prometheus:
            everyone = ["dl-1", "hv-1", "master"]
            wait_for(lambda: scraped_minions(prometheus, "node") == everyone, 30, "them scraped")

            result = salt.run("salt-key", "-d", "hv-1", "-y")
            assert result.returncode == 0, result.stdout + result.stderr
            written = apply_targets(salt, targets)
            assert sorted(written["node"]) == ["dl-1", "master"]
            assert written["harvester"] == {} and sorted(written["downloader"]) == ["dl-1"]
            # Within seconds, not at file_sd's re-read five minutes on.
            wait_for(
                lambda: (
                    scraped_minions(prometheus, "node") == ["dl-1", "master"]
                    and scraped_minions(prometheus, "harvester") == []
                ),
                30,
                "hv-1 to leave Prometheus' targets",
            )
