"""The DigitalOcean simulator's actions: listing them, and the power actions on a droplet,
which complete `action_seconds` later."""

from __future__ import annotations

from lab.sims.digitalocean.account import Account
from lab.sims.digitalocean.records import not_found, unprocessable

POWER_ACTIONS = {  # type -> droplet status once it completes
    "power_on": "active",
    "power_off": "off",
    "shutdown": "off",
    "reboot": "active",
    "power_cycle": "active",
}


class ActionOps(Account):
    """/v2/actions and /v2/droplets/{id}/actions."""

    def list_actions(self, droplet_id: str | None = None) -> list[dict]:
        """Newest first, as DigitalOcean lists them."""
        with self.lock:
            self.tick()
            if droplet_id is not None:
                self.find_droplet(droplet_id)
            return [
                action.json()
                for action in sorted(self.actions.values(), key=lambda a: -a.id)
                if droplet_id is None
                or (
                    action.resource_type == "droplet" and str(action.resource_id) == str(droplet_id)
                )
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
