"""The lab's droplets configured by Salt as a fleet is: the wheelhouse served by the master,
the private pillar root filled with the lab's site facts and throw-away secrets, highstate
applied with progress, and the testinfra suite run from the master against the minions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ccmirror_common.roles import ROLES
from lab import CHECKOUT
from lab.fleet import droplets, salt_master, wheelhouse
from lab.fleet.core import LabConfig, LabError, LabState, enter_command, lab_lock, load_state
from lab.fleet.lab_secrets import write_lab_secrets
from lab.sims.flickr import service as flickr_service
from lab.sims.image_host import service as image_service

HIGHSTATE_SECONDS = 900.0
STORAGE_PORT = 2222  # the storage droplet's sshd (lab_secrets' default; the states use it)
QUEUE_PORT = 8700
SYNCED_DIRS = ("_modules", "_utils")  # custom modules minions sync from salt://
# What the workers connect to (the static core) starts first.
SERVERS_FIRST = tuple(role.prefix for role in ROLES if not role.scaled)


@dataclass
class MinionOutcome:
    """One minion's highstate return, summed up."""

    minion: str
    states: int = 0
    changed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "state id: comment"
    errors: list[str] = field(default_factory=list)  # render errors, no return at all

    @property
    def ok(self) -> bool:
        return self.states > 0 and not self.failed and not self.errors


def prepare(config: LabConfig, state: LabState, progress: Callable[[str], None] = print) -> None:
    """Everything the master serves besides the checkout's salt/ and pillar/: the wheelhouse,
    the custom module directories, and the private pillar for every droplet of the lab."""
    wheelhouse.build(config, progress=progress)
    link_synced_dirs(config)
    if write_private_pillar(config, state, progress):
        with lab_lock(config):  # the state file gains or changes a host service
            current = load_state(config) or state
            flickr_service.restart(config, current, salt_master.private_pillar(config))
            current.save(config.state_file)


def up(
    config: LabConfig,
    ids: list[str],
    progress: Callable[[str], None] = print,
    own_checkout: bool = False,
) -> LabState:
    """The droplets `ids` (any earlier lab torn down first) with the lab's salt master on the
    host serving the wheelhouse and the private pillar, every minion answering before this
    returns. `own_checkout`: the master serves a copy of this checkout (a test releases a
    new version by editing it)."""
    salt_master.ensure_salt(progress)

    def host_services(state: LabState) -> None:
        if own_checkout:
            wheelhouse.copy_checkout(config)
        wheelhouse.build(config, progress=progress)  # served from the master's first moment
        salt_master.start_master(config, state)

    state = droplets.up(
        config,
        ids,
        progress=progress,
        host_services=host_services,
        seed=salt_master.seed_minion(config),
    )
    prepare(config, state, progress)
    progress(f"salt-master on {config.host_address}; waiting for every minion's test.ping")
    salt_master.wait_minions(config, ids)
    return state


def add(
    config: LabConfig,
    ids: list[str],
    progress: Callable[[str], None] = print,
    with_minion: bool = True,
) -> LabState:
    """New droplets in the running lab as a new machine joins the fleet: with the lab's salt
    master, each gets a pre-seeded minion, its secrets in the private pillar (the db and
    storage droplets' pillar learns of it too), and answers test.ping before this returns.
    (Apply highstate to it, and to db-* and st-*, to configure it.)"""
    state = load_state(config)
    salted = bool(state and "salt-master" in state.services) and with_minion
    seed = salt_master.seed_minion(config) if salted else None
    state = droplets.add(config, ids, progress=progress, seed=seed)
    if salted:
        prepare(config, state, progress)
        salt_master.wait_minions(config, ids)
    return state


def remove(config: LabConfig, droplet_id: str, progress: Callable[[str], None] = print) -> None:
    """Take one droplet out of the running lab and, when the lab runs a salt master, delete
    its minion key there (what destroying a droplet on DigitalOcean and `salt-key -d` do)."""
    droplets.remove_droplet(config, droplet_id, progress=progress)
    state = load_state(config)
    if state is not None and "salt-master" in state.services:
        salt_master.forget_minion(config, droplet_id)


def link_synced_dirs(config: LabConfig) -> None:
    """`salt://_modules/` and the like from the checkout, through the lab's fileserver root:
    the checkout's top level itself is not served (its pillar/ and tests/ are no minion's)."""
    root = wheelhouse.fileserver_root(config)
    root.mkdir(parents=True, exist_ok=True)
    checkout = wheelhouse.served_checkout(config)
    for name in SYNCED_DIRS:
        link = root / name
        if (checkout / name).is_dir() and not link.is_symlink():
            link.symlink_to(checkout / name)


def site_facts(config: LabConfig, state: LabState) -> dict | None:
    """What the lab knows of its site, for the pillar: None when it has no database or no
    storage droplet (no role can be configured without both)."""
    db = first_with_prefix(state, "db-")
    storage = first_with_prefix(state, "st-")
    if db is None or storage is None:
        return None
    return {
        "db_host": db,
        "storage_host": storage,
        "storage_port": STORAGE_PORT,
        # Where the downloaders put photos: SeaweedFS's S3 gateways (the rsync target on st-*
        # stays a second backend a site may choose with "rsync").
        "storage_backend": "seaweedfs",
        # SeaweedFS's nodes (salt/storage/seaweedfs): every st-* droplet by id.
        "storage_nodes": {
            droplet_id: droplet.address
            for droplet_id, droplet in sorted(state.droplets.items())
            if droplet_id.startswith("st-")
        },
        # The backup cluster (salt/backup): every bk-* droplet by id; none, no backup.
        "backup_nodes": {
            droplet_id: droplet.address
            for droplet_id, droplet in sorted(state.droplets.items())
            if droplet_id.startswith("bk-")
        },
        "queue_port": QUEUE_PORT,
        "private_network": str(config.network),
        "flickr_api_url": flickr_service.api_url(config),
        "fetch_allow_hosts": image_service.allow_hosts(config),  # its image host's address
        # The salt master and the lab's checks read the queue's status from the bridge.
        "master_host": config.host_address,
    }


def first_with_prefix(state: LabState, prefix: str) -> str | None:
    ids = sorted(droplet_id for droplet_id in state.droplets if droplet_id.startswith(prefix))
    return state.droplets[ids[0]].address if ids else None


def write_private_pillar(
    config: LabConfig, state: LabState, progress: Callable[[str], None] = print
) -> bool:
    """False when there is nothing to write it from."""
    facts = site_facts(config, state)
    if facts is None:
        progress("private pillar: not written (the lab needs a db-* and an st-* droplet)")
        return False
    root = salt_master.private_pillar(config)
    write_lab_secrets(root, sorted(state.droplets), facts)
    write_lab_settings(root)
    return True


# The site's own role settings (pillar settings/<role>.sls in the private root), as an
# operator writes them. SeaweedFS sizes a node's volume slots as free disk / volume size, and
# grows a collection by 6-7 volumes at once: 30 GB volumes on a lab droplet sharing the
# host's disk would leave it no writable volume, so the lab's are small and counted.
LAB_WEED_SETTINGS = "storage:\n  seaweedfs:\n    volume_size_limit_mb: 256\n    max_volumes: 60\n"
# The master's Prometheus and Alertmanager at a lab's pace: a scrape and a rule evaluation
# every 5 s, a new alert told after 5 s and a change to it (its resolution) after 10 s, where
# the fleet's defaults (15 s, 30 s, 5 min) would keep a test waiting minutes.
LAB_MONITORING = {
    "prometheus": {
        "scrape_interval": "5s",
        "evaluation_interval": "5s",
        "alertmanager": {"group_wait": "5s", "group_interval": "10s"},
    }
}
LAB_SETTINGS = {
    "storage": LAB_WEED_SETTINGS,
    "backup": LAB_WEED_SETTINGS,  # bk-1's SeaweedFS too
    "master": yaml.safe_dump(LAB_MONITORING),
}


def write_lab_settings(root: Path) -> None:
    """The lab's settings/<role>.sls where the site has none: a mission's own (the e2e's
    master with its webhook) is the site's, and stays when a droplet joins later."""
    settings = root / "settings"
    settings.mkdir(mode=0o700, exist_ok=True)
    for role, text in LAB_SETTINGS.items():
        path = settings / f"{role}.sls"
        if not path.exists():
            path.write_text(text)


def highstate(
    config: LabConfig,
    ids: Iterable[str] | None = None,
    progress: Callable[[str], None] = print,
    timeout: float = HIGHSTATE_SECONDS,
    prepare_first: bool = True,
) -> dict[str, MinionOutcome]:
    """state.highstate on the droplets named, all at once; with no ids, on every droplet in
    two waves, the servers the others connect to first (as an orchestration would: a
    harvester started before its database user exists fails). The master's wheelhouse and
    the private pillar are brought up to date first unless `prepare_first` is False (the
    same inputs applied again). Progress is one line per state."""
    state = load_state(config)
    if state is None:
        raise LabError("the lab is down: `lab up` first")
    if "salt-master" not in state.services:
        raise LabError("the lab runs no salt master (it was made with --no-salt)")
    if ids:
        waves = [sorted(ids)]
        unknown = [target for target in waves[0] if target not in state.droplets]
        if unknown:
            raise LabError(f"no droplet {', '.join(unknown)} in the lab")
    else:
        servers = sorted(i for i in state.droplets if i.startswith(SERVERS_FIRST))
        waves = [wave for wave in (servers, sorted(set(state.droplets) - set(servers))) if wave]
    if prepare_first:
        prepare(config, state, progress)
    outcomes: dict[str, MinionOutcome] = {}
    for wave in waves:
        outcomes.update(apply_highstate(config, wave, progress, timeout))
    return outcomes


def apply_highstate(
    config: LabConfig, targets: list[str], progress: Callable[[str], None], timeout: float
) -> dict[str, MinionOutcome]:
    with tempfile.NamedTemporaryFile(prefix="lab-highstate-", suffix=".json") as out:
        process = subprocess.Popen(
            [
                str(salt_master.SALT_VENV / "bin" / "python"),
                "-P",  # not the script's directory on sys.path: its modules are the lab's
                str(Path(__file__).with_name("highstate.py")),
                "--config-dir",
                str(salt_master.config_dir(config)),
                "--out",
                out.name,
                "--timeout",
                str(timeout),
                *targets,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = []
        for line in process.stderr:  # the per-state lines, as they come
            lines.append(line.rstrip())
            progress(lines[-1])
        if process.wait() not in (0, 1):
            raise LabError("highstate: " + "\n".join(lines[-20:]))
        returns = json.loads(Path(out.name).read_text() or "{}")
    outcomes = {minion: summarize(minion, returns.get(minion)) for minion in targets}
    explain_dead_units(config, returns, outcomes)
    return outcomes


def explain_dead_units(
    config: LabConfig, returns: dict, outcomes: dict[str, MinionOutcome]
) -> None:
    """A service state that found its unit dead gets the unit's last log lines among its
    failures: the lab of a failed run is gone by the time anyone looks."""
    state = load_state(config)
    for minion, ret in returns.items():
        droplet = state.droplets.get(minion) if state else None
        if droplet is None or minion not in outcomes or not isinstance(ret, dict):
            continue
        for chunk in ret.values():
            if chunk.get("result") is True or "is dead" not in str(chunk.get("comment", "")):
                continue
            log = f"/var/log/journal/{chunk.get('name')}.service.log"
            try:
                tail = subprocess.run(
                    enter_command(droplet, ["tail", "-n", "20", log]),
                    capture_output=True, text=True, timeout=30,
                )  # fmt: skip
                lines = (tail.stdout + tail.stderr).strip()
            except (OSError, subprocess.SubprocessError) as exc:
                lines = f"(not read: {exc})"
            outcomes[minion].failed.append(f"{log}, its last lines:\n{lines[-3000:]}")


def summarize(minion: str, ret: object) -> MinionOutcome:
    outcome = MinionOutcome(minion)
    if not ret:
        outcome.errors.append("no return (minion down, or timed out)")
    elif isinstance(ret, list):  # render or compile errors: a list of messages
        outcome.errors.extend(str(line) for line in ret)
    elif isinstance(ret, dict):
        for key, chunk in sorted(ret.items(), key=lambda item: item[1].get("__run_num__", 0)):
            outcome.states += 1
            name = chunk.get("__id__", key)
            if chunk.get("result") is not True:
                outcome.failed.append(f"{name}: {str(chunk.get('comment', ''))[:500]}")
            if chunk.get("changes"):
                outcome.changed.append(name)
    else:
        outcome.errors.append(str(ret))
    return outcome


def report(outcomes: dict[str, MinionOutcome], show: Callable[[str], None] = print) -> bool:
    """A line per minion, then every failure; True when every minion succeeded."""
    for outcome in outcomes.values():
        verdict = "ok" if outcome.ok else "FAILED"
        show(
            f"  {outcome.minion:<10} {verdict:<6} {outcome.states} states,"
            f" {len(outcome.changed)} changed, {len(outcome.failed)} failed"
        )
        for problem in outcome.errors + outcome.failed:
            show("      " + problem.strip().replace("\n", "\n        "))
    return all(outcome.ok for outcome in outcomes.values())


def infra_command(config: LabConfig, extra: Iterable[str] = ()) -> tuple[list[str], dict]:
    """`pytest tests/infra --hosts='salt://*'` from the master: the salt venv's python (salt
    must be importable there), pointed at this lab's master config by SALT_CONFIG_DIR."""
    env = dict(os.environ, SALT_CONFIG_DIR=str(salt_master.config_dir(config)))
    env.pop("PYTHONPATH", None)
    argv = [
        str(salt_master.SALT_VENV / "bin" / "python"),
        "-m",
        "pytest",
        str(CHECKOUT / "tests" / "infra"),
        "--hosts=salt://*",
        *extra,
    ]
    return argv, env


def run_infra(config: LabConfig, extra: Iterable[str] = ()) -> int:
    argv, env = infra_command(config, extra)
    return subprocess.run(argv, env=env, cwd=CHECKOUT, stdout=sys.stdout).returncode
