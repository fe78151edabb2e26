"""The core as Terraform builds it gets the roles the design says: every minion id the
`core_minions` output names (terraform/outputs.tf, ids from the variables' defaults and the
storage droplets' `count`: st-1..st-N) is rendered against the real salt/top.sls by Salt's
own matcher (`salt-call --local state.show_top` with that id), not by an fnmatch of our own.

The design: `master` is the salt master only; `db-1` runs MariaDB and the queue; every `st-*`
is storage (SeaweedFS); `bk-1` (backup_region) the backup cluster. A core whose database
droplet matched only `master*` would get no database, and a storage droplet named outside
`st-*` no storage. The runners look for the database on the ids that get the db role only
(`batch.db_minion`)."""

from __future__ import annotations

import ast

from ccmirror_common.roles import EVERY_MINION_STATES, ROLES, role_of
from tests.salt.conftest import ROOT, SaltCall
from tests.unit.terraform_config import core, core_minion_ids, named

# Roles by droplet resource in terraform/main.tf, as the design gives them: Terraform's static
# core is every role `fleet.up` does not scale (ccmirror_common/roles.py), one droplet
# resource named as its role, whose ids get the role's states.
DESIGN_ROLES = {role.name: set(role.states) for role in ROLES if not role.scaled}
EVERY_MINION = set(EVERY_MINION_STATES)


def roles_from_top(salt_call: SaltCall, minion_id: str) -> set[str]:
    """The states salt/top.sls gives `minion_id` in the base environment."""
    top = salt_call(minion_id, "state.show_top")
    return set(top.get("base", []))


def test_every_core_minion_terraform_names_gets_its_roles_from_top_sls(salt_call: SaltCall):
    config = core()
    ids = core_minion_ids(config, storage_count=4)  # one past the three raft masters
    assert set(ids.values()) == set(DESIGN_ROLES)  # every core droplet is in the output
    assert sorted(m for m, d in ids.items() if d == "storage") == ["st-1", "st-2", "st-3", "st-4"]
    assert sorted(m for m, d in ids.items() if d == "backup") == ["bk-1"]  # backup_region's
    # Each id is of its droplet's role by the roles' own table (its prefix).
    assert {minion: role_of(minion).name for minion in ids} == ids
    got = {minion: roles_from_top(salt_call, minion) for minion in ids}
    assert got == {minion: EVERY_MINION | DESIGN_ROLES[droplet] for minion, droplet in ids.items()}
    # The site pillar's database is the droplet that runs it.
    site = named(config, "output")["site_pillar"]["value"]["site"]
    (db_droplet,) = [d for d, roles in DESIGN_ROLES.items() if "db" in roles]
    assert site["db_host"] == f"${{digitalocean_droplet.{db_droplet}.ipv4_address_private}}"


def runner_constant(path: str, name: str) -> str:
    """A module-level string constant of a runner, read without importing Salt's client."""
    tree = ast.parse((ROOT / path).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path}: no {name}")


def test_the_runners_look_for_the_database_on_the_db_minion_only(salt_call: SaltCall):
    """batch.db_minion (and audit and maintenance through it) asks the minions its target
    matches; each minion judges the target with Salt's matcher, as here."""
    target = runner_constant("_runners/batch.py", "DB_CANDIDATES")
    ids = core_minion_ids(core())
    matched = {minion for minion in ids if salt_call(minion, "match.compound", target) is True}
    assert matched == {minion for minion, droplet in ids.items() if droplet == "db"} == {"db-1"}
