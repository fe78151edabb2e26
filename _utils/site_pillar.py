"""The `site:` pillar's facts, checked: the ports' defaults, the queue's URL, the private
network, SeaweedFS's masters pinned by address and each storage node's volume device; the
fleet's one rule for a minion id.
Part of the private pillar's writer (_utils/private_pillar.py loads this file by path, and
re-exports what its callers use): no Salt, no ``ccmirror`` import, so that the lab can load
it as the runners do."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

SITE_DEFAULTS = {"storage_port": 2222, "queue_port": 8700, "db_port": 3306}
# Where DigitalOcean shows a volume on its droplet (by the volume's name): Terraform's
# `storage_volumes` output and fleet.up (_utils/fleet_volumes.py) both name devices so.
VOLUME_DEVICE = re.compile(r"/dev/[A-Za-z0-9_./-]{1,200}")
# pillar/top.sls's rule for an id that gets its own secrets (there in Jinja): fullmatch.
MINION_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")


class SecretsError(ValueError):
    """The site facts, a minion id, a value or a step cannot be used; the message says why.
    Raised before anything is written."""


def site_facts(site: dict[str, Any]) -> dict[str, Any]:
    """The `site:` pillar: the given facts with defaults, checked, and the queue URL."""
    missing = [key for key in ("db_host", "storage_host") if not site.get(key)]
    if missing:
        raise SecretsError(f"site facts missing: {', '.join(missing)}")
    facts = {**SITE_DEFAULTS, **site}
    for key in SITE_DEFAULTS:
        if not isinstance(facts[key], int) or not 0 < facts[key] < 65536:
            raise SecretsError(f"site {key} must be a port number, not {facts[key]!r}")
    facts["queue_url"] = f"http://{facts['db_host']}:{facts['queue_port']}"
    if facts.get("private_network"):
        try:
            network = ipaddress.IPv4Network(facts["private_network"])
        except ValueError as exc:
            raise SecretsError(f"site private_network: {exc}") from None
        facts["private_network"] = str(network)
    check_storage_volumes(facts.get("storage_volumes"))
    return pin_storage_masters(facts)


def check_storage_volumes(volumes: object) -> None:
    """`site:storage_volumes`: storage node id => the block device salt/storage/volume.sls
    mounts at the storage root (absent: nothing to mount, as in the lab)."""
    if volumes is None:
        return
    if not isinstance(volumes, dict):
        raise SecretsError("site storage_volumes must be a mapping of minion id: device path")
    for node_id, device in volumes.items():
        check_minion_id(node_id)
        if not isinstance(device, str) or not VOLUME_DEVICE.fullmatch(device) or ".." in device:
            raise SecretsError(f"site storage_volumes: {node_id}: {device!r} is not a device path")


def changed_storage_nodes(
    before: dict[str, Any], add: dict[str, str], drop: list[str], volumes: dict[str, str]
) -> dict[str, Any]:
    """The site facts `before` with nodes added (id: address) and dropped, and volume devices
    recorded (id: device): a dropped node's device goes with it (its volume stays at
    DigitalOcean, and a node made again under its name records it again). The masters are
    pinned first with the nodes as they were, so that a master dropped now keeps its
    address."""
    nodes = {**(before.get("storage_nodes") or {}), **add}
    devices = {**(before.get("storage_volumes") or {}), **volumes}
    for node_id in drop:
        nodes.pop(node_id, None)
        devices.pop(node_id, None)
    changed = {**site_facts(before), "storage_nodes": nodes}
    if devices or "storage_volumes" in before:
        changed["storage_volumes"] = devices
    return site_facts(changed)


def pin_storage_masters(facts: dict[str, Any]) -> dict[str, Any]:
    """`facts` with SeaweedFS's masters pinned: `storage_masters` (ids, as Terraform gives
    them; else the first three of `storage_nodes` by id once there are three) and
    `storage_master_addresses` (id: the address each was pinned with). Raft's peers are
    addresses, fixed when the masters started: a node added, destroyed or replaced under an
    old name (a new address) must not change them, so a recorded address is kept even when
    its node leaves `storage_nodes` (README: SeaweedFS, the masters rule). Below three
    nodes and with none named nothing is pinned: salt/storage/seaweedfs/map.jinja runs one
    master on the first node."""
    nodes = facts.get("storage_nodes") or {}
    if not isinstance(nodes, dict):
        raise SecretsError("site storage_nodes must be a mapping of minion id: address")
    for node_id in nodes:
        check_minion_id(node_id)
    pinned = facts.get("storage_masters") or (sorted(nodes)[:3] if len(nodes) >= 3 else [])
    if not pinned:
        return facts
    if not isinstance(pinned, list) or len(set(pinned)) != len(pinned) or len(pinned) % 2 == 0:
        raise SecretsError(
            f"site storage_masters must be a list of an odd number of storage node ids (raft);"
            f" not {pinned!r}"
        )
    recorded = facts.get("storage_master_addresses") or {}
    if not isinstance(recorded, dict):
        raise SecretsError("site storage_master_addresses must be a mapping of id: address")
    addresses = {}
    for master in pinned:
        address = recorded.get(check_minion_id(master)) or nodes.get(master)
        if not address:
            raise SecretsError(
                f"storage master {master} has no address: it is neither in storage_nodes nor"
                " in storage_master_addresses"
            )
        addresses[master] = str(address)
    return {**facts, "storage_masters": list(pinned), "storage_master_addresses": addresses}


def check_minion_id(minion_id: object) -> str:
    """The fleet's one rule for a minion id, returned as is when it holds: lower-case
    letters, digits and '-', not starting with '-', at most 100 characters. The id is a
    pillar target and names an sls file: a glob (`dl-?`, `*-1`), a dot (an sls path
    separator), a slash or an upper-case letter would reach other files or be matched
    against other ids, and pillar/top.sls gives such an id no secrets anyway. fleet.py and
    the lab (lab/fleet/lab_secrets.py) call this function."""
    if not isinstance(minion_id, str) or not MINION_ID.fullmatch(minion_id):
        raise SecretsError(
            f"bad minion id {minion_id!r}: lower-case letters, digits and '-' only, starting"
            " with a letter or digit (such as dl-3)"
        )
    return minion_id
