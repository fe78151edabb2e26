"""What the fleet runner does for storage droplets (`st-*`, SeaweedFS): their addresses and
volume devices (_utils/fleet_volumes.py) recorded in the site's facts when made, dropped when
destroyed (the volume itself stays at DigitalOcean) (``secrets.storage_nodes``,
under the private root's lock), which of them a re-run may finish, and why ``fleet.down``
takes none away. The fleet runner reaches it as ``__utils__["fleet_storage.*"]``; the runner
functions it needs come in as arguments.

The masters are pinned in the site's facts (_utils/private_pillar.py pin_storage_masters):
a node made here is a volume server only, and a destroyed master keeps its address in the
masters' peers (README: SeaweedFS, the masters rule).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ROLE = "storage"
PREFIX = "st-"


def down_refused() -> str:
    """Why fleet.down takes no storage droplet away, and what to do instead."""
    return (
        "fleet.down does not take storage droplets away: their volume servers hold photos. Move"
        " them off first with SeaweedFS's volume.evacuate (weed shell: `volume.evacuate -node"
        " <address>:8080 -apply`), then `salt-run fleet.destroy name=st-N`"
    )


def made_tag(project_tag: str) -> str:
    """On every droplet fleet.up makes: what tells its droplets from Terraform's static core
    (st-1..st-N), which a re-run must never hand new minion keys to."""
    return f"{project_tag}-fleet"


def resumable(role: str, droplet: Any, project_tag: str, ready_tag: str) -> bool:
    """Whether a re-run of fleet.up finishes a droplet: one without the ready tag, of a
    worker role; of storage only one fleet.up made (Terraform's are never ready-tagged)."""
    tags = droplet.tags or []
    return ready_tag not in tags and (role != ROLE or made_tag(project_tag) in tags)


def record_nodes(
    droplets: list[Any],
    address_of: Callable[[Any], str | None],
    change_nodes: Callable[..., dict],
    errors: dict[str, str],
    progress: Callable[[str], None],
    attach_volume: Callable[[Any], str | None],
) -> dict[str, Any]:
    """Each new storage droplet's data volume attached (`attach_volume`: its device path, None
    where droplets get none, or fleet_volumes.VolumeError), then its private address in
    ``site:storage_nodes`` and its
    device in ``site:storage_volumes`` (`change_nodes`: the ``secrets.storage_nodes``
    runner), so that its highstate mounts the volume and runs a volume server on it, and the
    other nodes learn of it. A droplet with no address or no volume, or a refused change, is
    named in `errors` and not recorded. Returns what secrets.storage_nodes returned."""
    add, volumes = {}, {}
    for droplet in droplets:
        address = address_of(droplet)
        if not address:
            errors[droplet.name] = "no private address: not added to site:storage_nodes"
            continue
        try:
            device = attach_volume(droplet)
        except RuntimeError as error:  # fleet_volumes.VolumeError
            errors[droplet.name] = f"not added to site:storage_nodes: {error}"
            continue
        add[droplet.name] = address
        if device:
            volumes[droplet.name] = device
    if not add:
        return {}
    changed = change_nodes(add=add, **({"volumes": volumes} if volumes else {}))
    if changed.get("error"):
        errors.update({name: f"secrets.storage_nodes: {changed['error']}" for name in add})
        return changed
    masters = changed.get("storage_master_addresses") or {}
    progress(
        f"site:storage_nodes: {', '.join(sorted(add))} added; masters stay"
        f" {', '.join(f'{m} ({a})' for m, a in sorted(masters.items())) or 'as computed'}"
    )
    return changed


def forget_node(name: str, change_nodes: Callable[..., dict], result: dict) -> dict[str, Any]:
    """`result` (fleet.destroy's) once a destroyed storage droplet is out of
    ``site:storage_nodes`` (a master's address stays in the pinned masters): its `storage`
    says what is left, `apply` names st-*; a refused change fails it. Another role's is
    returned as it is."""
    if not name.startswith(PREFIX):
        return result
    dropped = change_nodes(drop=[name])
    result["apply"] = sorted({*result.get("apply", []), "st-*"})
    if dropped.get("error"):
        result["storage"] = {"error": f"secrets.storage_nodes: {dropped['error']}"}
        result["result"], result["retcode"] = False, 1
    else:
        result["storage"] = {"storage_nodes": sorted(dropped.get("storage_nodes") or {})}
    return result
