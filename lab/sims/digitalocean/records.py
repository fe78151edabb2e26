"""The DigitalOcean simulator's records (droplets, actions, VPCs, SSH keys) in DigitalOcean's
JSON shapes, and the API's errors (`{"id": ..., "message": ...}` with an HTTP status)."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lab.sims.digitalocean import catalog

NOT_FOUND = "The resource you were accessing could not be found."


class ApiError(Exception):
    """An answer DigitalOcean gives as `{"id": ..., "message": ...}` with an HTTP status."""

    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_id, self.message = status, error_id, message


def not_found() -> ApiError:
    return ApiError(404, "not_found", NOT_FOUND)


def unprocessable(message: str) -> ApiError:
    return ApiError(422, "unprocessable_entity", message)


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Action:
    id: int
    type: str
    resource_id: int
    region: str
    started: float
    status: str = "in-progress"
    completed: float | None = None
    due: float | None = None  # when it completes; None while it waits for a backend
    effect: Callable[[], None] | None = None  # applied once, when it completes
    # A volume's actions are DigitalOcean's "backend" actions, with no resource id.
    resource_type: str = "droplet"

    def json(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "type": self.type,
            "started_at": iso(self.started),
            "completed_at": iso(self.completed) if self.completed is not None else None,
            "resource_id": self.resource_id if self.resource_type == "droplet" else None,
            "resource_type": self.resource_type,
            "region": catalog.region_json(self.region),
            "region_slug": self.region,
        }


@dataclass
class Droplet:
    id: int
    name: str
    size: catalog.Size
    image: catalog.Image
    region: str
    vpc: Vpc
    tags: list[str]
    ssh_keys: list[int]
    user_data: str | None
    created: float
    public_address: str
    create_action: Action
    status: str = "new"
    private_address: str | None = None
    made: bool = False  # the backend made its machine
    # The public halves of `ssh_keys` as they were at creation: installed for root.
    authorized_keys: list[str] = field(default_factory=list)
    lifecycle: threading.Lock = field(default_factory=threading.Lock)
    volume_ids: list[str] = field(default_factory=list)  # attached (completed attach actions)

    def json(self) -> dict:
        v4 = []
        if self.status != "new" and self.private_address:
            netmask = str(self.vpc.network.netmask)
            # "<nil>" is what the real API puts as the private network's gateway.
            v4.append(
                {
                    "ip_address": self.private_address,
                    "netmask": netmask,
                    "gateway": "<nil>",
                    "type": "private",
                }
            )
            v4.append(
                {
                    "ip_address": self.public_address,
                    "netmask": "255.255.255.0",
                    "gateway": self.public_address.rsplit(".", 1)[0] + ".1",
                    "type": "public",
                }
            )
        return {
            "id": self.id,
            "name": self.name,
            "memory": self.size.memory,
            "vcpus": self.size.vcpus,
            "disk": self.size.disk,
            "locked": False,
            "status": self.status,
            "kernel": None,
            "created_at": iso(self.created),
            "features": ["private_networking"],
            "backup_ids": [],
            "next_backup_window": None,
            "snapshot_ids": [],
            "image": catalog.image_json(self.image),
            "volume_ids": list(self.volume_ids),
            "size": catalog.size_json(self.size),
            "size_slug": self.size.slug,
            "networks": {"v4": v4, "v6": []},
            "region": catalog.region_json(self.region),
            "tags": list(self.tags),
            "vpc_uuid": self.vpc.id,
        }


@dataclass
class Vpc:
    id: str
    name: str
    region: str
    network: ipaddress.IPv4Network
    description: str
    default: bool
    created: float

    def json(self) -> dict:
        return {
            "id": self.id,
            "urn": f"do:vpc:{self.id}",
            "name": self.name,
            "description": self.description,
            "region": self.region,
            "ip_range": str(self.network),
            "default": self.default,
            "created_at": iso(self.created),
        }


@dataclass
class SshKey:
    id: int
    name: str
    public_key: str
    fingerprint: str

    def json(self) -> dict:
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "public_key": self.public_key,
            "name": self.name,
        }


@dataclass
class Volume:
    """A block storage volume: in one region, attached to at most one droplet."""

    id: str
    name: str
    region: str
    size_gigabytes: int
    description: str
    filesystem_type: str
    filesystem_label: str
    tags: list[str]
    created: float
    droplet_ids: list[int] = field(default_factory=list)
    busy: Action | None = None  # the attach or detach under way: one at a time
    action_ids: list[int] = field(default_factory=list)

    def json(self) -> dict:
        return {
            "id": self.id,
            "region": catalog.region_json(self.region),
            "droplet_ids": list(self.droplet_ids),
            "name": self.name,
            "description": self.description,
            "size_gigabytes": self.size_gigabytes,
            "created_at": iso(self.created),
            "filesystem_type": self.filesystem_type,
            "filesystem_label": self.filesystem_label,
            "tags": list(self.tags),
        }
