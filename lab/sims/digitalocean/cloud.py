"""The DigitalOcean simulator's account: droplets, actions, tags, SSH keys and VPCs, checked
the way DigitalOcean checks them and rendered in its JSON shapes. No HTTP here (see
`lab.sims.digitalocean.server`): each operation takes parsed JSON and returns a payload or
raises `ApiError`.

Time matters as on the real service: a droplet is `new` (no addresses) until its machine is
made and `boot_seconds` have passed, then `active` with a private and a public IPv4; its
create action goes from `in-progress` to `completed` then. Power actions take
`action_seconds`. Machines are made and removed by a backend (`lab.sims.digitalocean.backends`) in
worker threads, one droplet's create and destroy in order.

The account's state is `lab.sims.digitalocean.account.Account`; each kind of resource's
operations are a module of their own (`droplets`, `actions`, `tags`, `keys`, `vpcs`,
`volumes`), its
records and errors in `records`, the request checks in `validation`.
"""

from __future__ import annotations

from lab.sims.digitalocean.actions import ActionOps
from lab.sims.digitalocean.droplets import DropletOps
from lab.sims.digitalocean.keys import KeyOps
from lab.sims.digitalocean.tags import TagOps
from lab.sims.digitalocean.volumes import VolumeOps
from lab.sims.digitalocean.vpcs import VpcOps


class Cloud(DropletOps, ActionOps, TagOps, KeyOps, VpcOps, VolumeOps):
    """One account: its state and every operation on it, under the account's one lock (one
    object, as the server calls it; each base class is one kind of resource)."""
