"""The DigitalOcean simulator's account: droplets, actions, tags, SSH keys and VPCs, checked
the way DigitalOcean checks them and rendered in its JSON shapes. No HTTP here (see
`lab.sims.digitalocean.server`): each operation takes parsed JSON and returns a payload or
raises `ApiError`.

Time matters as on the real service: a droplet is `new` (no addresses) until its machine is
made and `boot_seconds` have passed, then `active` with a private and a public IPv4; its
create action goes from `in-progress` to `completed` then. Power actions take
`action_seconds`. Machines are made and removed by a backend (`lab.sims.digitalocean.backends`) in
worker threads, one droplet's create and destroy in order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import itertools
import re
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lab.sims.digitalocean import catalog
from lab.sims.digitalocean.backends import Backend, BackendError, log

MAX_NAMES = 10  # droplets in one create request
MAX_USER_DATA = 64 * 1024
NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$")
TAG = re.compile(r"^[A-Za-z0-9_:-]{1,255}$")
VPC_NAME = re.compile(r"^[A-Za-z0-9-]{1,255}$")
KEY_TYPES = (
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-ed25519",
)
POWER_ACTIONS = {  # type -> droplet status once it completes
    "power_on": "active",
    "power_off": "off",
    "shutdown": "off",
    "reboot": "active",
    "power_cycle": "active",
}
NOT_FOUND = "The resource you were accessing could not be found."
PUBLIC_NETWORKS = (  # documentation ranges: a public address that is never routed
    ipaddress.IPv4Network("203.0.113.0/24"),
    ipaddress.IPv4Network("198.51.100.0/24"),
    ipaddress.IPv4Network("192.0.2.0/24"),
)


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
class Settings:
    boot_seconds: float = 2.0  # new -> active, at the earliest
    action_seconds: float = 1.0  # power actions
    droplet_limit: int = 25  # the account's limit, as on a new DigitalOcean account
    home_region: str = "nyc3"  # where a droplet goes when the request names no region


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

    def json(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "type": self.type,
            "started_at": iso(self.started),
            "completed_at": iso(self.completed) if self.completed is not None else None,
            "resource_id": self.resource_id,
            "resource_type": "droplet",
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
            "volume_ids": [],
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


def fingerprint(public_key: str) -> str:
    """The MD5 fingerprint DigitalOcean shows (aa:bb:...); ApiError for what is no key."""
    parts = public_key.split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise unprocessable(
            "Key invalid type, we support 'ssh-rsa', 'ssh-dss', 'ecdsa-sha2-nistp256',"
            " 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', or 'ssh-ed25519'"
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        kind = blob[4 : 4 + length].decode()
    except (binascii.Error, struct.error, UnicodeDecodeError):
        kind = ""
    if kind != parts[0]:
        raise unprocessable("Key invalid, key should be of the form 'type key [comment]'")
    digest = hashlib.md5(blob).hexdigest()  # noqa: S324 - the format DigitalOcean uses
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


class Cloud:
    """One account. Every public method runs under the account's lock."""

    def __init__(self, backend: Backend, settings: Settings | None = None) -> None:
        self.backend = backend
        self.settings = settings or Settings()
        self.lock = threading.RLock()
        self.droplets: dict[int, Droplet] = {}
        self.actions: dict[int, Action] = {}
        self.tags: dict[str, int | None] = {}  # name -> id of the droplet tagged last
        self.keys: dict[int, SshKey] = {}
        self.vpcs: dict[str, Vpc] = {}
        self.workers: list[threading.Thread] = []
        self.droplet_ids = itertools.count(402_119_001)
        self.action_ids = itertools.count(2_318_846_001)
        self.key_ids = itertools.count(41_337_001)
        self.public_hosts = itertools.count(0)
        self.default_vpc(self.settings.home_region)

    # ------------------------------------------------------------------ time and workers
    def tick(self) -> None:
        """Complete every action whose time has come (called before every answer)."""
        now = time.time()
        for action in self.actions.values():
            if action.status == "in-progress" and action.due is not None and action.due <= now:
                action.status, action.completed = "completed", action.due
                if action.effect is not None:
                    action.effect()

    def start_worker(self, name: str, work: Callable[[], None]) -> None:
        thread = threading.Thread(target=work, name=name)
        self.workers = [t for t in self.workers if t.is_alive()] + [thread]
        thread.start()

    def wait_workers(self, timeout: float) -> bool:
        """Let machines being made or removed finish (a clean stop); False if some did not."""
        deadline = time.monotonic() + timeout
        for thread in list(self.workers):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.workers)

    def new_action(self, kind: str, droplet_id: int, region: str) -> Action:
        action = Action(next(self.action_ids), kind, droplet_id, region, time.time())
        self.actions[action.id] = action
        return action

    # ------------------------------------------------------------------ account
    def account(self) -> dict:
        return {
            "account": {
                "droplet_limit": self.settings.droplet_limit,
                "floating_ip_limit": 3,
                "volume_limit": 100,
                "email": "lab@ccmirror.invalid",
                "uuid": "b6fr89dbf6d9156cace5f3c78dc9851d957381ef",
                "email_verified": True,
                "status": "active",
                "status_message": "",
            }
        }

    # ------------------------------------------------------------------ droplets
    def list_droplets(self, tag_name: str | None, name: str | None) -> list[dict]:
        with self.lock:
            self.tick()
            return [
                d.json()
                for d in self.droplets.values()
                if (tag_name is None or tag_name in d.tags) and (name is None or d.name == name)
            ]

    def get_droplet(self, droplet_id: str) -> dict:
        with self.lock:
            self.tick()
            return {"droplet": self.find_droplet(droplet_id).json()}

    def find_droplet(self, droplet_id: object) -> Droplet:
        try:
            return self.droplets[int(str(droplet_id))]
        except (KeyError, ValueError):
            raise not_found() from None

    def create_droplets(self, body: dict, base_url: str) -> dict:
        """POST /v2/droplets with `name` (one) or `names` (up to ten): checked entirely
        before anything is made, so a 422 leaves the account as it was."""
        with self.lock:
            self.tick()
            names, single = self.requested_names(body)
            spec = self.droplet_spec(body)
            if len(self.droplets) + len(names) > self.settings.droplet_limit:
                raise unprocessable(
                    "creating this/these droplet(s) will exceed your droplet limit"
                    f" ({self.settings.droplet_limit})"
                )
            if self.backend.unique_names:
                self.refuse_taken_names(names)
            for name in names:
                refusal = self.backend.refuse(name, spec["vpc"].network)
                if refusal:
                    raise unprocessable(f"{name}: {refusal}")
            for tag in spec["tags"]:
                self.tags.setdefault(tag, None)
            made = [self.add_droplet(name, spec) for name in names]
            links = {
                "actions": [
                    {
                        "id": d.create_action.id,
                        "rel": "create" if single else "multiple_create",
                        "href": f"{base_url}actions/{d.create_action.id}",
                    }
                    for d in made
                ]
            }
            if single:
                return {"droplet": made[0].json(), "links": links}
            return {"droplets": [d.json() for d in made], "links": links}

    def refuse_taken_names(self, names: list[str]) -> None:
        """A backend whose machines are named by their droplet (the lab) takes a name once:
        checked here too, since a droplet still being made is not in the lab yet."""
        live = {d.name for d in self.droplets.values()}
        taken = sorted({n for n in names if n in live or names.count(n) > 1})
        if taken:
            raise unprocessable(f"droplet names already in use here: {', '.join(taken)}")

    def requested_names(self, body: dict) -> tuple[list[str], bool]:
        if body.get("names") is not None:
            names = body["names"]
            if not isinstance(names, list) or not names:
                raise unprocessable("names must be a list of one or more droplet names")
            if len(names) > MAX_NAMES:
                raise unprocessable(f"You may only create up to {MAX_NAMES} droplets at once.")
            single = False
        else:
            names, single = [body.get("name")], True
        for name in names:
            if not isinstance(name, str) or not NAME.match(name):
                raise unprocessable(
                    "Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)"
                )
        return names, single

    def droplet_spec(self, body: dict) -> dict:
        """Size, image, region, VPC, keys, tags and user data of a create request."""
        size = catalog.size_by_slug(body.get("size"))
        if size is None:
            raise unprocessable("You specified an invalid size for Droplet creation.")
        image = catalog.image_by_id_or_slug(body.get("image"))
        if image is None:
            raise unprocessable("You specified an invalid image for Droplet creation.")
        region = self.resolve_region(body.get("region"))
        if size.slug not in catalog.sizes_in(region):
            raise unprocessable("Size is not available in this region.")
        if image.min_disk_size > size.disk:
            raise unprocessable("This image cannot be used with the specified size.")
        vpc = self.resolve_vpc(body.get("vpc_uuid"), region)
        user_data = body.get("user_data")
        if user_data is not None and not isinstance(user_data, str):
            raise unprocessable("user_data must be a string")
        if user_data is not None and len(user_data.encode()) > MAX_USER_DATA:
            raise unprocessable("user_data is too long: 64 KiB at most")
        return {
            "size": size,
            "image": image,
            "region": region,
            "vpc": vpc,
            "ssh_keys": self.resolve_keys(body.get("ssh_keys") or []),
            "tags": self.checked_tags(body.get("tags") or []),
            "user_data": user_data,
        }

    def resolve_region(self, value: object) -> str:
        """A slug, a prefix such as `nyc` (any datacenter there), or nothing (anywhere)."""
        if value is None or value == "":
            return self.settings.home_region
        if isinstance(value, str):
            if value in catalog.REGIONS:
                return value
            matches = [slug for slug in catalog.REGIONS if slug.rstrip("0123456789") == value]
            if matches:
                return matches[-1]
        raise unprocessable("You specified an invalid region for Droplet creation.")

    def resolve_vpc(self, vpc_uuid: object, region: str) -> Vpc:
        if vpc_uuid is None or vpc_uuid == "":
            return self.default_vpc(region)
        vpc = self.vpcs.get(str(vpc_uuid))
        if vpc is None:
            raise unprocessable(f"vpc_uuid {vpc_uuid} is not a VPC of this account")
        if vpc.region != region:
            raise unprocessable(f"VPC {vpc.id} is in {vpc.region}, not in {region}")
        return vpc

    def resolve_keys(self, values: object) -> list[int]:
        if not isinstance(values, list):
            raise unprocessable("ssh_keys must be a list of key ids or fingerprints")
        ids = []
        for value in values:
            key = self.find_key(value, missing=None)
            if key is None:
                raise unprocessable(f"ssh_keys: no key {value} on this account")
            ids.append(key.id)
        return ids

    def checked_tags(self, tags: object) -> list[str]:
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise unprocessable("tags must be a list of strings")
        for tag in tags:
            if not TAG.match(tag):
                raise unprocessable(
                    f"tag {tag!r}: tags may contain letters, numbers, colons, dashes,"
                    " and underscores (255 at most)"
                )
        return list(dict.fromkeys(tags))

    def add_droplet(self, name: str, spec: dict) -> Droplet:
        droplet_id = next(self.droplet_ids)
        action = self.new_action("create", droplet_id, spec["region"])
        droplet = Droplet(
            id=droplet_id,
            name=name,
            size=spec["size"],
            image=spec["image"],
            region=spec["region"],
            vpc=spec["vpc"],
            tags=list(spec["tags"]),
            ssh_keys=list(spec["ssh_keys"]),
            user_data=spec["user_data"],
            created=action.started,
            public_address=self.next_public_address(),
            create_action=action,
            authorized_keys=[self.keys[key_id].public_key for key_id in spec["ssh_keys"]],
        )

        def become_active() -> None:
            if droplet.status == "new":
                droplet.status = "active"

        action.effect = become_active
        self.droplets[droplet_id] = droplet
        for tag in droplet.tags:
            self.tags[tag] = droplet_id
        self.start_worker(f"create-{droplet_id}", lambda: self.make_machine(droplet))
        return droplet

    def next_public_address(self) -> str:
        n = next(self.public_hosts)
        network = PUBLIC_NETWORKS[(n // 253) % len(PUBLIC_NETWORKS)]
        return str(network[2 + n % 253])

    def make_machine(self, droplet: Droplet) -> None:
        with droplet.lifecycle:
            try:
                address = self.backend.create(
                    droplet.name,
                    droplet.user_data,
                    droplet.tags,
                    droplet.vpc.network,
                    droplet.authorized_keys,
                )
            except (BackendError, OSError) as error:
                log(f"droplet {droplet.id} ({droplet.name}): create failed: {error}")
                with self.lock:
                    droplet.create_action.status = "errored"
                    droplet.create_action.completed = time.time()
                return
            with self.lock:
                droplet.private_address, droplet.made = address, True
                earliest = droplet.created + self.settings.boot_seconds
                droplet.create_action.due = max(time.time(), earliest)

    def destroy_droplet(self, droplet_id: str) -> None:
        with self.lock:
            self.tick()
            droplet = self.find_droplet(droplet_id)
            self.remove_droplet(droplet)

    def destroy_by_tag(self, tag_name: str | None) -> None:
        if not tag_name:
            raise unprocessable("tag_name is required to delete droplets by tag")
        with self.lock:
            self.tick()
            for droplet in [d for d in self.droplets.values() if tag_name in d.tags]:
                self.remove_droplet(droplet)

    def remove_droplet(self, droplet: Droplet) -> None:
        """Gone from the API at once; its machine is removed in the background, after its
        creation has finished (a destroy never overtakes the create)."""
        del self.droplets[droplet.id]
        action = self.new_action("destroy", droplet.id, droplet.region)

        def remove_machine() -> None:
            with droplet.lifecycle:
                try:
                    if droplet.made:
                        self.backend.destroy(droplet.name)
                except (BackendError, OSError) as error:
                    log(f"droplet {droplet.id} ({droplet.name}): destroy failed: {error}")
                    with self.lock:
                        action.status, action.completed = "errored", time.time()
                    return
                with self.lock:
                    action.due = time.time()

        self.start_worker(f"destroy-{droplet.id}", remove_machine)

    # ------------------------------------------------------------------ actions
    def list_actions(self, droplet_id: str | None = None) -> list[dict]:
        """Newest first, as DigitalOcean lists them."""
        with self.lock:
            self.tick()
            if droplet_id is not None:
                self.find_droplet(droplet_id)
            return [
                action.json()
                for action in sorted(self.actions.values(), key=lambda a: -a.id)
                if droplet_id is None or str(action.resource_id) == str(droplet_id)
            ]

    def get_action(self, action_id: str, droplet_id: str | None = None) -> dict:
        with self.lock:
            self.tick()
            if droplet_id is not None:
                self.find_droplet(droplet_id)
            try:
                action = self.actions[int(action_id)]
            except (KeyError, ValueError):
                raise not_found() from None
            if droplet_id is not None and str(action.resource_id) != str(droplet_id):
                raise not_found()
            return {"action": action.json()}

    def droplet_action(self, droplet_id: str, body: dict) -> dict:
        """POST /v2/droplets/{id}/actions for the power actions; others are refused."""
        with self.lock:
            self.tick()
            droplet = self.find_droplet(droplet_id)
            kind = body.get("type")
            if kind not in POWER_ACTIONS:
                raise unprocessable(f"the simulator does not do droplet action {kind!r}")
            if droplet.status == "new":
                raise unprocessable("Droplet is currently being created; try again later.")
            action = self.new_action(kind, droplet.id, droplet.region)
            action.due = action.started + self.settings.action_seconds
            target = POWER_ACTIONS[kind]

            def apply() -> None:
                droplet.status = target

            action.effect = apply
            return {"action": action.json()}

    # ------------------------------------------------------------------ tags
    def tag_json(self, name: str) -> dict:
        tagged = [d for d in self.droplets.values() if name in d.tags]
        droplets: dict = {"count": len(tagged)}
        last = self.droplets.get(self.tags.get(name) or -1)
        if last is not None and name in last.tags:
            droplets["last_tagged_uri"] = f"/v2/droplets/{last.id}"
            droplets["last_tagged"] = last.json()
        resources = {"count": len(tagged), "droplets": droplets}
        if "last_tagged_uri" in droplets:
            resources["last_tagged_uri"] = droplets["last_tagged_uri"]
        for kind in ("images", "volumes", "volume_snapshots", "databases"):
            resources[kind] = {"count": 0}
        return {"name": name, "resources": resources}

    def list_tags(self) -> list[dict]:
        with self.lock:
            self.tick()
            return [self.tag_json(name) for name in sorted(self.tags)]

    def get_tag(self, name: str) -> dict:
        with self.lock:
            self.tick()
            if name not in self.tags:
                raise not_found()
            return {"tag": self.tag_json(name)}

    def create_tag(self, body: dict) -> dict:
        """Creating a tag that exists answers 201 with it, as DigitalOcean does."""
        with self.lock:
            name = body.get("name")
            if not isinstance(name, str) or not TAG.match(name):
                raise unprocessable(
                    "tag name may contain letters, numbers, colons, dashes, and underscores"
                    " (255 at most)"
                )
            self.tags.setdefault(name, None)
            return {"tag": self.tag_json(name)}

    def delete_tag(self, name: str) -> None:
        with self.lock:
            if name not in self.tags:
                raise not_found()
            for droplet in self.droplets.values():
                if name in droplet.tags:
                    droplet.tags.remove(name)
            del self.tags[name]

    def tag_resources(self, name: str, body: dict, tag: bool) -> None:
        """POST (tag) or DELETE (untag) /v2/tags/{name}/resources: droplets only."""
        with self.lock:
            if name not in self.tags:
                raise not_found()
            resources = body.get("resources")
            if not isinstance(resources, list) or not resources:
                raise unprocessable("resources must be a list of {resource_id, resource_type}")
            targets = []
            for resource in resources:
                if not isinstance(resource, dict) or resource.get("resource_type") != "droplet":
                    raise unprocessable("the simulator tags droplets only")
                targets.append(self.find_droplet(resource.get("resource_id")))
            for droplet in targets:
                if tag and name not in droplet.tags:
                    droplet.tags.append(name)
                    self.tags[name] = droplet.id
                elif not tag and name in droplet.tags:
                    droplet.tags.remove(name)

    # ------------------------------------------------------------------ SSH keys
    def find_key(self, value: object, missing: Exception | None = None) -> SshKey | None:
        """By id (an int or its digits) or by fingerprint."""
        for key in self.keys.values():
            if str(value) == str(key.id) or value == key.fingerprint:
                return key
        if missing is not None:
            raise missing
        return None

    def list_keys(self) -> list[dict]:
        with self.lock:
            return [key.json() for key in self.keys.values()]

    def get_key(self, value: str) -> dict:
        with self.lock:
            return {"ssh_key": self.find_key(value, missing=not_found()).json()}

    def create_key(self, body: dict) -> dict:
        with self.lock:
            name, public_key = body.get("name"), body.get("public_key")
            if not isinstance(name, str) or not name.strip():
                raise unprocessable("Name can't be blank")
            if not isinstance(public_key, str):
                raise unprocessable("Public key can't be blank")
            print_ = fingerprint(public_key.strip())
            if self.find_key(print_) is not None:
                raise unprocessable("SSH Key is already in use on your account")
            key = SshKey(next(self.key_ids), name, public_key.strip(), print_)
            self.keys[key.id] = key
            return {"ssh_key": key.json()}

    def rename_key(self, value: str, body: dict) -> dict:
        with self.lock:
            key = self.find_key(value, missing=not_found())
            name = body.get("name")
            if not isinstance(name, str) or not name.strip():
                raise unprocessable("Name can't be blank")
            key.name = name
            return {"ssh_key": key.json()}

    def delete_key(self, value: str) -> None:
        with self.lock:
            key = self.find_key(value, missing=not_found())
            del self.keys[key.id]

    # ------------------------------------------------------------------ VPCs
    def default_vpc(self, region: str) -> Vpc:
        """Each region's default VPC, made on first use; the home region's is the backend's
        network (the lab's /24), the others DigitalOcean's usual /20s."""
        for vpc in self.vpcs.values():
            if vpc.region == region and vpc.default:
                return vpc
        if region == self.settings.home_region:
            network = self.backend.network
        else:
            second, third = catalog.DEFAULT_VPC_RANGES[region]
            network = ipaddress.IPv4Network(f"10.{second}.{third}.0/20")
        vpc = Vpc(str(uuid.uuid4()), f"default-{region}", region, network, "", True, time.time())
        self.vpcs[vpc.id] = vpc
        return vpc

    def list_vpcs(self) -> list[dict]:
        with self.lock:
            return [vpc.json() for vpc in self.vpcs.values()]

    def find_vpc(self, vpc_id: str) -> Vpc:
        vpc = self.vpcs.get(vpc_id)
        if vpc is None:
            raise not_found()
        return vpc

    def get_vpc(self, vpc_id: str) -> dict:
        with self.lock:
            return {"vpc": self.find_vpc(vpc_id).json()}

    def create_vpc(self, body: dict) -> dict:
        with self.lock:
            name, region = body.get("name"), body.get("region")
            if not isinstance(name, str) or not VPC_NAME.match(name):
                raise unprocessable("name: letters, numbers and '-' (1 to 255)")
            if any(vpc.name == name for vpc in self.vpcs.values()):
                raise unprocessable(f"a VPC named {name} already exists")
            if region not in catalog.REGIONS:
                raise unprocessable("You specified an invalid region for VPC creation.")
            network = self.vpc_range(body.get("ip_range"))
            description = body.get("description") or ""
            vpc = Vpc(str(uuid.uuid4()), name, region, network, description, False, time.time())
            self.vpcs[vpc.id] = vpc
            return {"vpc": vpc.json()}

    def vpc_range(self, value: object) -> ipaddress.IPv4Network:
        """A private range from /16 to /24 that overlaps no other VPC; chosen when absent."""
        if value is None or value == "":
            for second in range(200, 256):
                candidate = ipaddress.IPv4Network(f"10.{second}.0.0/20")
                if not any(candidate.overlaps(v.network) for v in self.vpcs.values()):
                    return candidate
            raise unprocessable("no free ip_range left")
        try:
            network = ipaddress.IPv4Network(str(value))
        except ValueError:
            raise unprocessable(f"ip_range {value!r} is not a CIDR block") from None
        if not network.is_private or not 16 <= network.prefixlen <= 24:
            raise unprocessable("ip_range must be a private range from /16 to /24")
        for vpc in self.vpcs.values():
            if network.overlaps(vpc.network):
                raise unprocessable(f"ip_range {network} overlaps VPC {vpc.name}")
        return network

    def rename_vpc(self, vpc_id: str, body: dict) -> dict:
        with self.lock:
            vpc = self.find_vpc(vpc_id)
            name = body.get("name")
            if name is not None:
                if not isinstance(name, str) or not VPC_NAME.match(name):
                    raise unprocessable("name: letters, numbers and '-' (1 to 255)")
                vpc.name = name
            if isinstance(body.get("description"), str):
                vpc.description = body["description"]
            return {"vpc": vpc.json()}

    def delete_vpc(self, vpc_id: str) -> None:
        with self.lock:
            vpc = self.find_vpc(vpc_id)
            if vpc.default:
                raise ApiError(403, "forbidden", "Can not delete default VPC")
            if any(d.vpc is vpc for d in self.droplets.values()):
                raise ApiError(403, "forbidden", "Can not delete VPC with members")
            del self.vpcs[vpc_id]
