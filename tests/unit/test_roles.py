"""One roles table (ccmirror_common/roles.py): every place that names a role by its minion
ids follows it. Salt's files cannot import the table (they run under Salt's Python), so each
keeps its literal and this test reads them: a role added, renamed or re-prefixed in one place
and not the others fails here, not on the fleet."""

from __future__ import annotations

import ast
import re

import jinja2
import yaml

from ccmirror_common.roles import BY_NAME, EVERY_MINION_STATES, ROLES, role_of
from lab.fleet import droplets
from lab.fleet import lifecycle as lab_fleet
from tests.conftest import ROOT

GLOB_LITERAL = re.compile(r"""["']([a-z]+-?\*)["']""")


def constant(path: str, name: str) -> object:
    """A module-level constant of a file Salt loads, read without importing Salt."""
    tree = ast.parse((ROOT / path).read_text())
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} has no constant {name}")


def test_salt_top_applies_each_roles_states_by_its_glob() -> None:
    top = yaml.safe_load((ROOT / "salt" / "top.sls").read_text())["base"]
    assert top.pop("*") == list(EVERY_MINION_STATES)
    assert top == {role.glob: list(role.states) for role in ROLES}


def test_pillar_top_gives_each_role_its_pillars_then_its_settings() -> None:
    environment = jinja2.Environment()
    environment.filters["regex_match"] = lambda text, pattern: re.match(pattern, text)
    template = environment.from_string((ROOT / "pillar" / "top.sls").read_text())
    top = yaml.safe_load(template.render(opts={"id": "dl-1"}))["base"]
    del top["*"], top["dl-1"]  # every minion's, and the minion's own
    by_glob = {
        glob: [item for item in items if isinstance(item, str)] for glob, items in top.items()
    }
    assert by_glob == {role.glob: [*role.pillars, f"settings.{role.name}"] for role in ROLES}


def test_each_roles_pillar_names_its_extras() -> None:
    for role in ROLES:
        extras: set[str] = set()
        for name in role.pillars:
            pillar = yaml.safe_load((ROOT / "pillar" / f"{name}.sls").read_text()) or {}
            for listed in pillar.get("ccmirror", {}).get("extras", {}).values():
                extras.update(listed)
        assert sorted(extras) == sorted(role.extras), role.name


def test_runners_and_modules_follow_the_table() -> None:
    assert constant("_modules/ccmirror.py", "ROLE_PREFIXES") == tuple(
        (role.prefix, role.name) for role in sorted(ROLES, key=module_order)
    )
    assert constant("_runners/secrets.py", "ROLE_PREFIXES") == tuple(
        role.prefix for role in ROLES if role.secrets
    )
    installed = [role for role in ROLES if role.extras]
    assert constant("_runners/deploy.py", "ROLE_PREFIXES") == tuple(
        (role.prefix, role.name) for role in installed
    )
    waves = constant("_runners/deploy.py", "WAVES")
    assert sorted(glob for wave in waves for glob in wave) == sorted(r.glob for r in installed)
    assert constant("_runners/fleet.py", "ROLE_PREFIXES") == {
        role.name: role.prefix.rstrip("-") for role in ROLES if role.made_by_fleet_up
    }


def test_every_role_glob_in_states_and_runners_is_a_roles() -> None:
    """`'dl-*'` and the like, wherever Salt code targets a role by hand."""
    globs = {role.glob for role in ROLES}
    files = [*(ROOT / "salt").rglob("*.sls"), *(ROOT / "_runners").glob("*.py")]
    files += [*(ROOT / "_modules").glob("*.py"), *(ROOT / "_utils").glob("*.py")]
    found = {
        (str(path.relative_to(ROOT)), glob)
        for path in files
        for glob in GLOB_LITERAL.findall(path.read_text())
    }
    assert found, "the scan found no role glob at all"
    assert sorted((path, glob) for path, glob in found if glob not in globs) == []


def test_the_lab_makes_one_droplet_per_role_and_the_core_first() -> None:
    assert [role_of(minion).name for minion in droplets.DEFAULT_DROPLETS] == list(BY_NAME)
    first = [role_of(f"{prefix}1").name for prefix in lab_fleet.SERVERS_FIRST]
    assert first == ["master", "db", "storage", "backup"]


def module_order(role) -> int:
    """_modules/ccmirror.py lists the workers first (the common case first)."""
    return ["downloader", "harvester", "db", "storage", "backup", "master"].index(role.name)
