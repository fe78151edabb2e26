"""The DigitalOcean simulator's block storage volumes: /v2/volumes (create, list by name and
region, get, delete by id or by name) and their actions (attach, detach: by id at
/v2/volumes/{id}/actions, by name at /v2/volumes/actions), checked as DigitalOcean documents
them. Names: lower-case letters, digits and '-', starting with a letter, 64 at most, unique
in a region. Sizes: 1 GiB to 16 TiB. A volume is in one region and attaches only to a droplet
of that region, to one droplet at a time, up to 15 per droplet. Actions are asynchronous:
`in-progress`, then `completed` `action_seconds` later, when the attachment shows in the
volume's `droplet_ids` and the droplet's `volume_ids`; one action at a time per volume. An
attached volume cannot be deleted. A destroyed droplet's volumes are detached (droplets.py).
"""

from __future__ import annotations

import re
import time
import uuid

from lab.sims.digitalocean import catalog
from lab.sims.digitalocean.account import Account
from lab.sims.digitalocean.records import (
    Action,
    ApiError,
    Droplet,
    Volume,
    not_found,
    unprocessable,
)
from lab.sims.digitalocean.validation import checked_tags

NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
MAX_GB = 16 * 1024
PER_DROPLET = 15
FILESYSTEMS = ("ext4", "xfs")
ACTION_TYPES = {"attach": "attach_volume", "detach": "detach_volume"}


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


class VolumeOps(Account):
    """/v2/volumes and their actions."""

    def list_volumes(self, name: str | None, region: str | None) -> list[dict]:
        with self.lock:
            self.tick()
            return [
                v.json()
                for v in sorted(self.volumes.values(), key=lambda v: v.created)
                if (name is None or v.name == name) and (region is None or v.region == region)
            ]

    def get_volume(self, volume_id: str) -> dict:
        with self.lock:
            self.tick()
            return {"volume": self.find_volume(volume_id).json()}

    def create_volume(self, body: dict) -> dict:
        """POST /v2/volumes: every check before the volume is recorded."""
        with self.lock:
            self.tick()
            name, region = body.get("name"), body.get("region")
            if not isinstance(name, str) or not NAME.match(name):
                raise unprocessable(
                    "name must be lowercase and be composed only of numbers, letters and '-',"
                    " up to a limit of 64 characters, and begin with a letter"
                )
            if region not in catalog.REGIONS:
                raise unprocessable("region must be the slug of a region with block storage")
            size = body.get("size_gigabytes")
            if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_GB:
                raise unprocessable(f"size_gigabytes must be a whole number from 1 to {MAX_GB}")
            filesystem = body.get("filesystem_type") or ""
            if filesystem and filesystem not in FILESYSTEMS:
                raise unprocessable("filesystem_type must be ext4 or xfs")
            if any(v.name == name and v.region == region for v in self.volumes.values()):
                raise conflict(f"a volume named {name} already exists in {region}")
            volume = Volume(
                id=str(uuid.uuid4()),
                name=name,
                region=region,
                size_gigabytes=size,
                description=str(body.get("description") or ""),
                filesystem_type=filesystem,
                filesystem_label=str(body.get("filesystem_label") or "") if filesystem else "",
                tags=checked_tags(body.get("tags") or []),
                created=time.time(),
            )
            self.volumes[volume.id] = volume
            return {"volume": volume.json()}

    def delete_volume(self, volume_id: str) -> None:
        with self.lock:
            self.tick()
            self.remove_volume(self.find_volume(volume_id))

    def delete_volume_by_name(self, name: str | None, region: str | None) -> None:
        if not name or not region:
            raise unprocessable("name and region are required to delete a volume by name")
        with self.lock:
            self.tick()
            self.remove_volume(self.volume_by_name(name, region))

    def remove_volume(self, volume: Volume) -> None:
        if volume.droplet_ids or volume.busy is not None:
            raise conflict(
                "A volume that is attached to a Droplet cannot be deleted: detach it first"
            )
        del self.volumes[volume.id]

    def volume_action(self, volume_id: str | None, body: dict) -> dict:
        """POST /v2/volumes/{id}/actions, or /v2/volumes/actions with `volume_name`."""
        with self.lock:
            self.tick()
            kind = body.get("type")
            if kind not in ACTION_TYPES:
                raise unprocessable(f"the simulator does not do volume action {kind!r}")
            region = body.get("region")
            if volume_id is None:
                if not body.get("volume_name") or not region:
                    raise unprocessable("volume_name and region are required")
                volume = self.volume_by_name(str(body["volume_name"]), str(region))
            else:
                volume = self.find_volume(volume_id)
            if region is not None and region != volume.region:
                raise unprocessable(f"the volume is in {volume.region}, not in {region}")
            droplet = self.action_droplet(body.get("droplet_id"), volume)
            if volume.busy is not None and volume.busy.status == "in-progress":
                raise unprocessable("the volume has an action in progress; try again later")
            if kind == "attach":
                self.check_attach(volume, droplet)
            elif droplet.id not in volume.droplet_ids:
                raise unprocessable(f"the volume is not attached to droplet {droplet.id}")
            return {"action": self.start_volume_action(kind, volume, droplet).json()}

    def action_droplet(self, droplet_id: object, volume: Volume) -> Droplet:
        if droplet_id is None:
            raise unprocessable("droplet_id is required")
        try:
            droplet = self.droplets[int(str(droplet_id))]
        except (KeyError, ValueError):
            raise unprocessable(f"no droplet {droplet_id}") from None
        if droplet.region != volume.region:
            raise unprocessable(
                f"the volume is in {volume.region} and droplet {droplet.id} in"
                f" {droplet.region}: a volume attaches only to a droplet of its region"
            )
        return droplet

    def check_attach(self, volume: Volume, droplet: Droplet) -> None:
        if droplet.status == "new":
            raise unprocessable("Droplet is currently being created; try again later.")
        if volume.droplet_ids:
            raise unprocessable(
                f"the volume is already attached to droplet {volume.droplet_ids[0]}"
            )
        if len(droplet.volume_ids) >= PER_DROPLET:
            raise unprocessable(f"a droplet has at most {PER_DROPLET} volumes attached")

    def start_volume_action(self, kind: str, volume: Volume, droplet: Droplet) -> Action:
        """In progress now; applied when it completes (`action_seconds` later)."""
        action = self.new_action(ACTION_TYPES[kind], droplet.id, volume.region, "backend")
        action.due = action.started + self.settings.action_seconds
        volume.busy = action
        volume.action_ids.append(action.id)

        def apply() -> None:
            volume.busy = None
            if droplet.id not in self.droplets:
                return  # destroyed meanwhile: its attachments went with it
            if kind == "attach":
                volume.droplet_ids, droplet.volume_ids = (
                    [droplet.id],
                    [*droplet.volume_ids, volume.id],
                )
            else:
                volume.droplet_ids = []
                droplet.volume_ids = [v for v in droplet.volume_ids if v != volume.id]

        action.effect = apply
        return action

    def volume_actions(self, volume_id: str) -> list[dict]:
        with self.lock:
            self.tick()
            volume = self.find_volume(volume_id)
            return [self.actions[i].json() for i in sorted(volume.action_ids, reverse=True)]

    def volume_action_get(self, volume_id: str, action_id: str) -> dict:
        with self.lock:
            self.tick()
            volume = self.find_volume(volume_id)
            if not action_id.isdigit() or int(action_id) not in volume.action_ids:
                raise not_found()
            return {"action": self.actions[int(action_id)].json()}

    def find_volume(self, volume_id: str) -> Volume:
        volume = self.volumes.get(volume_id)
        if volume is None:
            raise not_found()
        return volume

    def volume_by_name(self, name: str, region: str) -> Volume:
        for volume in self.volumes.values():
            if volume.name == name and volume.region == region:
                return volume
        raise not_found()
