"""The DigitalOcean simulator's tags: made on first use or by request, on droplets only,
with the counts and the last tagged droplet DigitalOcean shows."""

from __future__ import annotations

from lab.sims.digitalocean.account import Account
from lab.sims.digitalocean.records import not_found, unprocessable
from lab.sims.digitalocean.validation import TAG


class TagOps(Account):
    """/v2/tags."""

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
