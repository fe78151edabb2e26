"""The DigitalOcean simulator's droplets: listing, creating (every check before anything is
made, so a 422 leaves the account as it was), making each machine through the backend in a
worker thread, and destroying (never overtaking the create)."""

from __future__ import annotations

import time

from lab.sims.digitalocean import catalog
from lab.sims.digitalocean.account import Account
from lab.sims.digitalocean.backends import BackendError, log
from lab.sims.digitalocean.records import Droplet, Vpc, unprocessable
from lab.sims.digitalocean.validation import (
    checked_tags,
    checked_user_data,
    requested_names,
    resolve_region,
)

# What an adopted droplet (made before the simulator started: Terraform's) is listed as.
ADOPTED_SIZE, ADOPTED_IMAGE = "s-2vcpu-4gb", "debian-12-x64"


class DropletOps(Account):
    """/v2/droplets."""

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

    def create_droplets(self, body: dict, base_url: str) -> dict:
        """POST /v2/droplets with `name` (one) or `names` (up to ten): checked entirely
        before anything is made, so a 422 leaves the account as it was."""
        with self.lock:
            self.tick()
            names, single = requested_names(body)
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

    def droplet_spec(self, body: dict) -> dict:
        """Size, image, region, VPC, keys, tags and user data of a create request."""
        size = catalog.size_by_slug(body.get("size"))
        if size is None:
            raise unprocessable("You specified an invalid size for Droplet creation.")
        image = catalog.image_by_id_or_slug(body.get("image"))
        if image is None:
            raise unprocessable("You specified an invalid image for Droplet creation.")
        region = resolve_region(body.get("region"), self.settings.home_region)
        if size.slug not in catalog.sizes_in(region):
            raise unprocessable("Size is not available in this region.")
        if image.min_disk_size > size.disk:
            raise unprocessable("This image cannot be used with the specified size.")
        vpc = self.resolve_vpc(body.get("vpc_uuid"), region)
        user_data = checked_user_data(body.get("user_data"))
        return {
            "size": size,
            "image": image,
            "region": region,
            "vpc": vpc,
            "ssh_keys": self.resolve_keys(body.get("ssh_keys") or []),
            "tags": checked_tags(body.get("tags") or []),
            "user_data": user_data,
        }

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

    def add_droplet(self, name: str, spec: dict) -> Droplet:
        droplet = self.record_droplet(name, spec)
        self.start_worker(f"create-{droplet.id}", lambda: self.make_machine(droplet))
        return droplet

    def record_droplet(self, name: str, spec: dict) -> Droplet:
        """The API's record of a new droplet (status `new`, its create action running)."""
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
        return droplet

    def adopt_existing(self) -> list[str]:
        """The backend's machines made before the simulator started (Terraform's core), listed
        as active droplets of the home region's default VPC from the start; their names."""
        with self.lock:
            adopted = []
            for name, address, tags in self.backend.existing():
                spec = {
                    "size": catalog.size_by_slug(ADOPTED_SIZE),
                    "image": catalog.image_by_id_or_slug(ADOPTED_IMAGE),
                    "region": self.settings.home_region,
                    "vpc": self.default_vpc(self.settings.home_region),
                    "ssh_keys": [],
                    "tags": checked_tags(tags),
                    "user_data": None,
                }
                droplet = self.record_droplet(name, spec)
                droplet.create_action.status = "completed"
                droplet.create_action.completed = droplet.created
                droplet.status, droplet.made, droplet.private_address = "active", True, address
                adopted.append(name)
            return adopted

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
        # Its volumes are detached, never destroyed (DigitalOcean's destroy; the API's
        # destroy_with_associated_resources, which would, is not served).
        for volume in self.volumes.values():
            if droplet.id in volume.droplet_ids:
                volume.droplet_ids.remove(droplet.id)

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
