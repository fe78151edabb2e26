"""The fleet's roles: one table for what a minion id means. A minion's role is its id's
prefix (`dl-3` is a downloader); Salt matches the role by the glob `<prefix>*`.

Salt's own files cannot import this (salt/top.sls, pillar/top.sls, the runners and modules run
under Salt's Python, without ccmirror): each keeps its literal, and tests/unit/test_roles.py
checks every one of them against this table, as it checks the lab's default droplets.
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    name: str
    prefix: str  # minion ids start with it
    states: tuple[str, ...]  # salt/top.sls: the formulas applied
    pillars: tuple[str, ...]  # pillar/top.sls: the role's defaults (then settings.<name>)
    extras: tuple[str, ...]  # the ccmirror wheel's extras it installs (none: not installed)
    scaled: bool  # made and removed by `fleet.up`/`fleet.down`; else Terraform's static core
    secrets: bool  # `secrets.init` writes each minion of the role its own file
    # `fleet.up` adds more though Terraform makes the first ones (storage: volume servers);
    # never taken away by `fleet.down`.
    grows: bool = False

    @property
    def made_by_fleet_up(self) -> bool:
        """Whether `fleet.up` makes droplets of the role (_runners/fleet.py ROLE_PREFIXES)."""
        return self.scaled or self.grows

    @property
    def glob(self) -> str:
        """The Salt target of the role, as in salt/top.sls."""
        return f"{self.prefix}*"

    @property
    def first_minion(self) -> str:
        """The lab's first droplet of the role: `master`, `db-1`, ..."""
        return self.prefix if not self.prefix.endswith("-") else f"{self.prefix}1"


# salt/top.sls's `'*'`: what every minion gets besides its role's states.
EVERY_MINION_STATES = ("common", "node_exporter")

ROLES: tuple[Role, ...] = (
    Role(
        "master", "master", ("master", "prometheus"), ("master",), (), scaled=False, secrets=False
    ),
    # The database server also serves the queue and runs the harvester's database commands
    # (migrate, import-yfcc, reconcile, the audit's database side).
    Role(
        "db",
        "db-",
        ("db", "queue"),
        ("db", "queue"),
        ("harvester", "queue"),
        scaled=False,
        secrets=True,
    ),
    Role(
        "harvester",
        "hv-",
        ("harvester",),
        ("harvester",),
        ("harvester",),
        scaled=True,
        secrets=True,
    ),
    Role(
        "downloader",
        "dl-",
        ("downloader",),
        ("downloader",),
        ("downloader",),
        scaled=True,
        secrets=True,
    ),
    Role("storage", "st-", ("storage",), ("storage",), (), scaled=False, secrets=True, grows=True),
    # The backup cluster (#20): a SeaweedFS of its own, elsewhere, that `weed filer.backup`
    # fills from the main cluster's filer. Not `st-*`: every `st-*` target (the storage
    # formula, orchestration, the fleet runner) means a node of the main cluster.
    Role("backup", "bk-", ("backup",), ("backup",), (), scaled=False, secrets=True),
)
BY_NAME = {role.name: role for role in ROLES}


def role_of(minion_id: str) -> Role | None:
    """The role a minion id names (by its prefix, as Salt's globs match), or None."""
    return next((role for role in ROLES if minion_id.startswith(role.prefix)), None)
