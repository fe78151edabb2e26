"""The data volume of each storage droplet `fleet.up role=storage` makes: one DigitalOcean
block storage volume per st-N, in its droplet's region, named as Terraform names the static
core's (``<project_tag>-st-N``, terraform/main.tf ``digitalocean_volume.storage``), attached,
and its device path returned for ``site:storage_volumes`` (salt/storage/volume.sls mounts
it at the storage root). A volume of that name left by a destroyed droplet (fleet.destroy
never deletes one: the photos outlive the droplet, as with Terraform's prevent_destroy) is
attached again instead of a new one being made.

The fleet runner reaches it as ``__utils__["fleet_volumes.*"]``; no Salt, no ``__opts__``.
Every refusal is one VolumeError that says what was made and what a re-run does.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

try:
    import digitalocean
except ImportError:  # the fleet runner says so first
    digitalocean = None

# How DigitalOcean shows a volume on its droplet: by the volume's name (Terraform's
# storage_volumes output builds the same path).
DEVICE_PREFIX = "/dev/disk/by-id/scsi-0DO_Volume_"
ATTACH_SECONDS = 180.0
VOLUME_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}$")


class VolumeError(RuntimeError):
    """A volume that could not be made or attached; the message says which and what next."""


def volume_name(project_tag: str, droplet_name: str) -> str:
    """The one naming rule, Terraform's: ``${var.name}-st-N`` (var.name is the project tag).
    VolumeError when a project tag makes no volume name (DigitalOcean's rule)."""
    name = f"{project_tag}-{droplet_name}"
    if not VOLUME_NAME.match(name):
        raise VolumeError(
            f"no volume can be named {name!r} (lower-case letters, digits and '-', from a"
            " letter, 64 at most): choose a ccmirror_fleet:project_tag that can"
        )
    return name


def device_path(name: str) -> str:
    return f"{DEVICE_PREFIX}{name}"


def region_slug(resource: Any) -> str | None:
    region = getattr(resource, "region", None)
    return region.get("slug") if isinstance(region, dict) else region


def ensure_attached(
    conf: dict,
    api: Any,
    droplet: Any,
    progress: Callable[[str], None],
    seconds: float = ATTACH_SECONDS,
) -> str | None:
    """The device path of `droplet`'s volume once it is attached: the one of its name in its
    region (left by an earlier droplet of that name), else a new one of
    ``conf["storage_volume_gb"]`` GiB; None when ``conf["storage_volumes"]`` is false (the
    lab). Raises VolumeError, after which nothing is attached and a volume made stays (named
    in the message) for the next run to attach."""
    if not conf.get("storage_volumes", True):
        return None
    name = volume_name(conf["project_tag"], droplet.name)
    region = region_slug(droplet)
    try:
        volume = find(api, name, region)
        if volume is not None and droplet.id in (volume.droplet_ids or []):
            return device_path(name)  # a re-run: attached already
        if volume is not None and volume.droplet_ids:
            raise VolumeError(
                f"volume {name} is attached to droplet {volume.droplet_ids[0]}, not to"
                f" {droplet.name} ({droplet.id}): detach it there first"
            )
        if volume is None:
            volume = create(conf, name, region, droplet.name)
            progress(f"{droplet.name}: volume {name} made ({volume.size_gigabytes} GiB)")
        else:
            progress(f"{droplet.name}: volume {name} is left from an earlier {droplet.name}")
    except digitalocean.Error as error:
        raise VolumeError(f"volume {name}: {error}") from None
    attach(conf, volume, droplet, seconds)
    progress(f"{droplet.name}: volume {name} attached as {device_path(name)}")
    return device_path(name)


def find(api: Any, name: str, region: str | None) -> Any | None:
    """The volume called `name` in `region` (names are unique per region), or None."""
    found = [v for v in api.get_all_volumes(region=region) if v.name == name]
    return found[0] if found else None


def create(conf: dict, name: str, region: str | None, droplet_name: str) -> Any:
    """A new unformatted volume: salt/storage/volume.sls makes its filesystem (a formatted one
    would also be mounted by DigitalOcean's own agent under /mnt, beside the storage root)."""
    volume = digitalocean.Volume(
        token=conf["token"],
        end_point=conf["end_point"],
        name=name,
        region=region,
        size_gigabytes=conf["storage_volume_gb"],
        description=f"ccmirror: SeaweedFS volume data of {droplet_name} (made by fleet.up)",
        tags=[conf["project_tag"]],
    )
    volume.create()
    volume.droplet_ids = []
    return volume


def attach(conf: dict, volume: Any, droplet: Any, seconds: float) -> None:
    """Attach and wait until the action completes (DigitalOcean's actions are asynchronous:
    in-progress, then completed or errored)."""
    where = f"volume {volume.name} ({volume.id}) to {droplet.name}"
    then = "; it stays made: a re-run of fleet.up role=storage attaches it"
    try:
        answer = volume.attach(droplet.id, region_slug(droplet))
        action = digitalocean.Action(
            token=conf["token"], end_point=conf["end_point"], id=answer["action"]["id"]
        )
        deadline = time.monotonic() + seconds
        action.load_directly()
        while action.status == "in-progress" and time.monotonic() < deadline:
            time.sleep(1)
            action.load_directly()
    except (digitalocean.Error, KeyError, TypeError) as error:
        raise VolumeError(f"attach {where}: {error}{then}") from None
    if action.status != "completed":
        raise VolumeError(f"attach {where}: the action is {action.status} after {seconds:g}s{then}")
