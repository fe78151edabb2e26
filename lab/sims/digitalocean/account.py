"""The DigitalOcean simulator's account as state: its records, the one lock every operation
runs under, the clock that completes actions, the worker threads that make and remove
machines, and the look-ups every kind of operation shares (droplet, key, VPC by id)."""

from __future__ import annotations

import ipaddress
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from lab.sims.digitalocean import catalog
from lab.sims.digitalocean.backends import Backend
from lab.sims.digitalocean.records import Action, Droplet, SshKey, Volume, Vpc, not_found

PUBLIC_NETWORKS = (  # documentation ranges: a public address that is never routed
    ipaddress.IPv4Network("203.0.113.0/24"),
    ipaddress.IPv4Network("198.51.100.0/24"),
    ipaddress.IPv4Network("192.0.2.0/24"),
)


@dataclass
class Settings:
    boot_seconds: float = 2.0  # new -> active, at the earliest
    action_seconds: float = 1.0  # power actions
    droplet_limit: int = 25  # the account's limit, as on a new DigitalOcean account
    home_region: str = "nyc3"  # where a droplet goes when the request names no region


class Account:
    """One account's state. The operations on each kind of resource are subclasses
    (`lab.sims.digitalocean.cloud.Cloud` has them all); every public one runs under `lock`."""

    def __init__(self, backend: Backend, settings: Settings | None = None) -> None:
        self.backend = backend
        self.settings = settings or Settings()
        self.lock = threading.RLock()
        self.droplets: dict[int, Droplet] = {}
        self.actions: dict[int, Action] = {}
        self.tags: dict[str, int | None] = {}  # name -> id of the droplet tagged last
        self.keys: dict[int, SshKey] = {}
        self.vpcs: dict[str, Vpc] = {}
        self.volumes: dict[str, Volume] = {}
        self.workers: list[threading.Thread] = []
        self.droplet_ids = itertools.count(402_119_001)
        self.action_ids = itertools.count(2_318_846_001)
        self.key_ids = itertools.count(41_337_001)
        self.public_hosts = itertools.count(0)
        self.default_vpc(self.settings.home_region)

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

    def new_action(
        self, kind: str, droplet_id: int, region: str, resource_type: str = "droplet"
    ) -> Action:
        action = Action(next(self.action_ids), kind, droplet_id, region, time.time())
        action.resource_type = resource_type
        self.actions[action.id] = action
        return action

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

    def find_droplet(self, droplet_id: object) -> Droplet:
        try:
            return self.droplets[int(str(droplet_id))]
        except (KeyError, ValueError):
            raise not_found() from None

    def next_public_address(self) -> str:
        n = next(self.public_hosts)
        network = PUBLIC_NETWORKS[(n // 253) % len(PUBLIC_NETWORKS)]
        return str(network[2 + n % 253])

    def find_key(self, value: object, missing: Exception | None = None) -> SshKey | None:
        """By id (an int or its digits) or by fingerprint."""
        for key in self.keys.values():
            if str(value) == str(key.id) or value == key.fingerprint:
                return key
        if missing is not None:
            raise missing
        return None

    def default_vpc(self, region: str) -> Vpc:
        """Each region's default VPC, made on first use; the home region's is the backend's
        network (the lab's /24), the others DigitalOcean's usual /20s."""
        for vpc in self.vpcs.values():
            if vpc.region == region and vpc.default:
                return vpc
        if region == self.settings.home_region:
            network = self.backend.network
        else:
            # (first, second) octets: ams3's is 10.110.0.0/20 (10.10.110.0/20 has host bits).
            first, second = catalog.DEFAULT_VPC_RANGES[region]
            network = ipaddress.IPv4Network(f"{first}.{second}.0.0/20")
        vpc = Vpc(str(uuid.uuid4()), f"default-{region}", region, network, "", True, time.time())
        self.vpcs[vpc.id] = vpc
        return vpc

    def find_vpc(self, vpc_id: str) -> Vpc:
        vpc = self.vpcs.get(vpc_id)
        if vpc is None:
            raise not_found()
        return vpc
