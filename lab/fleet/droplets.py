"""The lab's droplets: whole "machines" on this one, as root, made of namespaces.

Each droplet is a named network namespace on the lab bridge (see `lab.fleet.netns`), and a process
tree in new UTS, PID and mount namespaces whose PID 1 is the replacement `systemctl`
(docker-systemctl-replacement) running `init`. Its root is a copy-on-write overlay of the
host's root (lower = host /, upper and work under `<lab root>/<id>/`), with its own /proc,
/sys, /run, /tmp and /dev/shm, so what a droplet writes is seen by no other and not by the
host. Everything made is recorded in `<lab root>/state.json`; `down` also sweeps by name, so
it finds what a crashed `up` left behind.

The operations on a lab's droplets as a whole (`up`, `add`, `remove_droplet`, `down`,
`status`); the work itself is in `lab.fleet.launch` and `lab.fleet.teardown`, what they share in
`lab.fleet.core`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ccmirror_common.roles import ROLES
from lab.fleet import netns
from lab.fleet.core import (
    LabConfig,
    LabError,
    LabState,
    check_droplet_id,
    lab_lock,
    load_state,
    lock_path,
    require_root,
)
from lab.fleet.launch import Seed, answers, rewrite_hosts, start_droplets
from lab.fleet.teardown import remove, remove_tree, stop_droplets

DEFAULT_DROPLETS = tuple(role.first_minion for role in ROLES)  # one per role: master, db-1, ...


def parse_ids(text: str) -> list[str]:
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise LabError("no droplet ids given")
    for droplet_id in ids:
        check_droplet_id(droplet_id)
    if len(set(ids)) != len(ids):
        raise LabError(f"droplet ids repeat: {text}")
    return ids


def up(
    config: LabConfig,
    ids: Iterable[str],
    progress: Callable[[str], None] = print,
    host_services: Callable[[LabState], None] | None = None,
    seed: Seed | None = None,
) -> LabState:
    """Tear down whatever an earlier lab left, then build the bridge, the host's services
    (`host_services`, which records them in the state), and the droplets, each with the
    files `seed` writes before it starts; wait until each droplet's init answers."""
    ids = [check_droplet_id(droplet_id) for droplet_id in ids]
    require_root()
    with lab_lock(config):
        return build(config, ids, progress, host_services, seed)


def build(
    config: LabConfig,
    ids: list[str],
    progress: Callable[[str], None],
    host_services: Callable[[LabState], None] | None,
    seed: Seed | None,
) -> LabState:
    if remove(config):
        progress("cleaned up what an earlier lab left behind")
    config.root.mkdir(parents=True, exist_ok=True)
    os.chmod(config.root, 0o700)
    state = LabState(bridge=config.bridge, network=str(config.network))
    state.save(config.state_file)
    netns.create_bridge(config.bridge, config.network)
    if host_services is not None:
        host_services(state)
        state.save(config.state_file)
    start_droplets(config, state, ids, progress, seed)
    return state


def add(
    config: LabConfig,
    ids: Iterable[str],
    progress: Callable[[str], None] = print,
    seed: Seed | None = None,
) -> LabState:
    """More droplets in the running lab (what the DigitalOcean simulator will do per
    droplet created); every droplet's /etc/hosts then names them all."""
    ids = [check_droplet_id(droplet_id) for droplet_id in ids]
    require_root()
    with lab_lock(config):
        state = load_state(config)
        if state is None:
            raise LabError("the lab is down: `lab up` first")
        taken = [droplet_id for droplet_id in ids if droplet_id in state.droplets]
        if taken:
            raise LabError(f"already in the lab: {', '.join(taken)}")
        start_droplets(config, state, ids, progress, seed)
        rewrite_hosts(config, state)
        return state


def remove_droplet(
    config: LabConfig, droplet_id: str, progress: Callable[[str], None] = print
) -> None:
    """Take one droplet out of the running lab: its processes, namespaces, veth, directory,
    its place in the state and in every other droplet's /etc/hosts
    (`lab.fleet.lifecycle.remove` also deletes its minion key on the master, as destroying a
    droplet on DigitalOcean does). An unknown id is an error and changes nothing."""
    check_droplet_id(droplet_id)
    require_root()
    with lab_lock(config):
        state = load_state(config)
        if state is None or droplet_id not in state.droplets:
            known = ", ".join(state.droplets) if state else "none: the lab is down"
            raise LabError(f"no droplet {droplet_id!r} in the lab (droplets: {known})")
        droplet = state.droplets[droplet_id]
        stop_droplets([droplet], [droplet.netns])
        netns.delete_netns(droplet.netns)
        netns.delete_link(droplet.veth)
        remove_tree(Path(droplet.dir))
        del state.droplets[droplet_id]
        state.save(config.state_file)
        rewrite_hosts(config, state)
        progress(f"{droplet_id}: removed")


def down(config: LabConfig) -> bool:
    """Remove every process, namespace, link, mount and directory a lab of this config made,
    whether or not the state file knows of it. False when there was nothing to remove."""
    require_root()
    with lab_lock(config):
        removed = remove(config)
        lock_path(config).unlink(missing_ok=True)  # down leaves nothing, not even this
        return removed


def status(config: LabConfig) -> list[dict]:
    """Per droplet: its address, its PID 1, whether that is alive and whether it answers."""
    state = load_state(config)
    rows = []
    for droplet in state.droplets.values() if state else []:
        alive = droplet.alive()
        rows.append(
            {
                "id": droplet.id,
                "address": droplet.address,
                "pid": droplet.pid,
                "alive": alive,
                "answers": alive and answers(droplet),
            }
        )
    return rows
