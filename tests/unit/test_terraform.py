"""The Terraform of the static core (terraform/): formatted, and what it opens is what the
design allows. No provider can be downloaded here, so nothing is planned: the files are
parsed with python-hcl2 and the firewall rules, variables, outputs and literals checked.

What may be reached from where, by role tag (DigitalOcean's source_tags), never by the whole
VPC: MariaDB from the db, harvester and master tags; the queue service from the downloader
and master tags; Salt on the master from every role's tag; the storage's rsync sshd from the
downloader and master tags. SSH (22) on the core droplets only from var.admin_cidrs, the
fleet's SSH from the VPC; ICMP from the VPC; nothing inbound from 0.0.0.0/0 or ::/0.
(tests/salt/test_core_roles.py checks the roles salt/top.sls gives the core's minion ids.)
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest

from tests.conftest import ROOT

TERRAFORM_DIR = ROOT / "terraform"
TERRAFORM = shutil.which("terraform") or "/usr/local/bin/terraform"
VPC = "VPC"  # a rule's source: the VPC's range
ADMINS = "ADMINS"  # a rule's source: var.admin_cidrs
EVERY_ROLE = "tag:*"  # a rule's source: every role's tag, core and fleet
ANYWHERE = {"0.0.0.0/0", "::/0"}
MARIADB_PORT = "3306"
SALT_PORTS = "4505-4506"
CORE_FIREWALLS = ("master", "db", "storage")  # one per core droplet: its services
ADMIN_SSH = "core_admin_ssh"  # the core's SSH, from admin_cidrs only
ROLE_TAG = re.compile(r'\$\{digitalocean_tag\.role\["(\w+)"\]\.name\}')
SECRET_LOOKING = [
    re.compile(r"dop_v1_[0-9a-f]{20,}"),  # a DigitalOcean personal access token
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b(token|password|passwd|secret|api_key)\s*=\s*\"[^\"]+\"", re.IGNORECASE),
    re.compile(r"\b[0-9a-fA-F]{32,}\b"),  # a long hex string: a token or a hash of one
    re.compile(r"\b[A-Za-z0-9+/]{40,}={0,2}"),  # a long base64 blob: a key
]
SITE_KEYS = {
    "db_host",
    "db_port",
    "queue_port",
    "queue_url",
    "storage_host",
    "storage_port",
    "private_network",
}


def unquote(value: object) -> object:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load(texts: list[str]) -> dict[str, list]:
    """Top-level blocks of several .tf texts, merged by kind (resource, variable...)."""
    merged: dict[str, list] = {}
    for text in texts:
        for kind, items in hcl2.load(io.StringIO(text)).items():
            if not kind.startswith("__"):
                merged.setdefault(kind, []).extend(items)
    return merged


def core() -> dict[str, list]:
    return load([path.read_text() for path in sorted(TERRAFORM_DIR.glob("*.tf"))])


def named(config: dict[str, list], kind: str) -> dict[str, dict]:
    """Blocks with one label (variable, output) by name."""
    return {unquote(name): body for item in config.get(kind, []) for name, body in item.items()}


def resources(config: dict[str, list], resource_type: str) -> dict[str, dict]:
    found = {}
    for item in config.get("resource", []):
        for kind, instances in item.items():
            if unquote(kind) == resource_type:
                found.update({unquote(name): body for name, body in instances.items()})
    return found


def locals_of(config: dict[str, list]) -> dict[str, object]:
    return {key: value for item in config.get("locals", []) for key, value in item.items()}


def resolve(config: dict[str, list], value: object) -> object:
    """A literal, or a `${local.x}` / `${var.x}` (default) / `${tostring(...)}` of one."""
    value = unquote(value)
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\$\{(?:tostring\()?(local|var)\.(\w+)\)?\}", value)
    if not match:
        return value
    kind, name = match.groups()
    if kind == "local":
        return resolve(config, locals_of(config)[name])
    return resolve(config, named(config, "variable")[name].get("default"))


def sources(value: object) -> set[str]:
    """What a rule's source_addresses or source_tags name: VPC, ADMINS, `tag:<role>`,
    EVERY_ROLE, or literal addresses."""
    items = value if isinstance(value, list) else [value]
    found = set()
    for item in items:
        item = unquote(item)
        tag = ROLE_TAG.fullmatch(str(item))
        if item == "${digitalocean_vpc.core.ip_range}":
            found.add(VPC)
        elif item == "${var.admin_cidrs}":
            found.add(ADMINS)
        elif item == "${values(digitalocean_tag.role)[*].name}":
            found.add(EVERY_ROLE)
        elif tag:
            found.add(f"tag:{tag[1]}")
        else:
            found.add(str(item))
    return found


def inbound_rules(config: dict[str, list]) -> list[dict]:
    """Every inbound rule of every firewall, static or in a dynamic block, resolved."""
    rules = []
    for firewall, body in resources(config, "digitalocean_firewall").items():
        blocks = list(body.get("inbound_rule", []))
        for dynamic in body.get("dynamic", []):
            for label, spec in dynamic.items():
                if unquote(label) == "inbound_rule":
                    blocks += spec.get("content", [])
        for rule in blocks:
            port = resolve(config, rule.get("port_range", "all"))
            named_sources = ("source_addresses", "source_tags")
            rules.append(
                {
                    "firewall": firewall,
                    "protocol": unquote(rule["protocol"]),
                    "port": str(port),
                    "sources": set().union(*(sources(rule.get(k, [])) for k in named_sources)),
                    "other_sources": sorted(
                        key
                        for key in rule
                        if key.startswith("source_") and key not in named_sources
                    ),
                }
            )
    return rules


def allowed_services(config: dict[str, list]) -> dict[tuple[str, str], set[str]]:
    """(firewall, port) -> the role tags the design lets reach that service."""
    queue_port = str(resolve(config, "${var.queue_port}"))
    rsync_port = str(resolve(config, "${var.storage_rsync_port}"))
    return {
        ("db", MARIADB_PORT): {"tag:db", "tag:harvester", "tag:master"},
        ("db", queue_port): {"tag:downloader", "tag:master"},
        ("master", SALT_PORTS): {EVERY_ROLE},
        ("storage", rsync_port): {"tag:downloader", "tag:master"},
    }


def inbound_problems(config: dict[str, list]) -> list[str]:
    """What breaks the design's rules for inbound traffic, one line each."""
    problems = []
    allowed = allowed_services(config)
    for rule in inbound_rules(config):
        where = f"{rule['firewall']} {rule['protocol']}/{rule['port']}"
        if rule["sources"] & ANYWHERE:
            problems.append(f"{where}: open to the internet")
        if rule["other_sources"]:
            problems.append(f"{where}: sources beyond addresses and tags: {rule['other_sources']}")
        known = {VPC, ADMINS, EVERY_ROLE}
        literal = {s for s in rule["sources"] - known if not s.startswith("tag:")}
        if literal:
            problems.append(f"{where}: literal sources {sorted(literal)}")
        if rule["protocol"] == "icmp":
            if rule["sources"] != {VPC}:
                problems.append(f"{where}: ICMP from {sorted(rule['sources'])}")
        elif rule["port"] == "22":
            wanted = {ADMINS} if rule["firewall"] == ADMIN_SSH else {VPC}
            if rule["sources"] != wanted:
                problems.append(f"{where}: SSH from {sorted(rule['sources'])}")
        elif (rule["firewall"], rule["port"]) not in allowed:
            problems.append(f"{where}: a port the design does not open")
        elif rule["sources"] != allowed[(rule["firewall"], rule["port"])]:
            problems.append(f"{where}: from {sorted(rule['sources'])}, not its role tags")
    opened = {(r["firewall"], r["port"]) for r in inbound_rules(config)}
    for firewall, port in sorted(set(allowed) - opened):
        problems.append(f"{firewall}: port {port} not open to its role tags")
    return problems


def test_terraform_fmt_check_passes() -> None:
    if not Path(TERRAFORM).exists():
        pytest.skip(f"no terraform binary ({TERRAFORM})")
    result = subprocess.run(
        [TERRAFORM, "fmt", "-check", "-recursive", "-diff", "terraform/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_are_open_to_their_role_tags_only_and_ssh_to_admins_only() -> None:
    config = core()
    assert inbound_problems(config) == []
    rules = {(r["firewall"], r["port"]): r["sources"] for r in inbound_rules(config)}
    assert rules[("db", MARIADB_PORT)] == {"tag:db", "tag:harvester", "tag:master"}
    assert rules[("db", "8700")] == {"tag:downloader", "tag:master"}  # the queue service
    assert rules[("master", SALT_PORTS)] == {EVERY_ROLE}
    assert rules[("storage", "2222")] == {"tag:downloader", "tag:master"}  # write-only rsync
    assert rules[(ADMIN_SSH, "22")] == {ADMINS} and rules[("fleet", "22")] == {VPC}
    assert rules[("every_role", "all")] == {VPC}  # ICMP
    assert not {("master", "22"), ("db", "22"), ("storage", "22")} & set(rules)
    # The role tags are the core's and the fleet's roles, downloader and harvester required.
    roles = [unquote(r) for r in locals_of(config)["core_roles"]]
    fleet = named(config, "variable")["fleet_roles"]
    assert roles == ["master", "db", "storage"]
    required = [unquote(r) for r in fleet["default"]]
    assert required == ["downloader", "harvester"]
    assert all(f'contains(var.fleet_roles, "{r}")' in str(fleet["validation"]) for r in required)
    assert resources(config, "digitalocean_tag")["role"]["for_each"] == "${local.role_tags}"
    # The VPC's range is the configured CIDR, and admin_cidrs refuses the whole internet.
    (vpc,) = resources(config, "digitalocean_vpc").values()
    assert unquote(vpc["ip_range"]) == "${var.vpc_cidr}"
    (check,) = named(config, "variable")["admin_cidrs"]["validation"]
    assert all(cidr in check["condition"] for cidr in ANYWHERE)


def test_firewalls_cover_the_droplets_they_are_meant_for() -> None:
    config = core()
    firewalls = resources(config, "digitalocean_firewall")
    for name in CORE_FIREWALLS:
        assert firewalls[name]["droplet_ids"] == [f"${{digitalocean_droplet.{name}.id}}"]
    assert "digitalocean_tag.role[role].name" in str(firewalls["fleet"]["tags"])
    # The core's admin SSH follows the core roles' tags; ICMP and outbound every role's.
    assert "local.core_roles" in str(firewalls[ADMIN_SSH]["tags"])
    assert firewalls["every_role"]["tags"] == "${values(digitalocean_tag.role)[*].name}"
    assert len(firewalls["every_role"]["outbound_rule"]) == 3
    droplets = resources(config, "digitalocean_droplet")
    assert set(droplets) == {"master", "db", "storage"}
    for name, droplet in droplets.items():
        assert unquote(droplet["vpc_uuid"]) == "${digitalocean_vpc.core.id}"
        assert unquote(droplet["ssh_keys"]) == "${var.ssh_key_fingerprints}"
        assert f'${{digitalocean_tag.role["{name}"].name}}' in droplet["tags"]
    (attachment,) = resources(config, "digitalocean_volume_attachment").values()
    assert unquote(attachment["droplet_id"]) == "${digitalocean_droplet.storage.id}"
    (project,) = resources(config, "digitalocean_project").values()
    assert set(project["resources"]) == {
        "${digitalocean_droplet.master.urn}",
        "${digitalocean_droplet.db.urn}",
        "${digitalocean_droplet.storage.urn}",
        "${digitalocean_volume.storage.urn}",
    }


def test_the_checks_catch_an_open_port() -> None:
    """The same checks on copies with MariaDB opened to the internet, then to the whole VPC,
    and with the core's SSH opened to the VPC."""
    text = (TERRAFORM_DIR / "firewall.tf").read_text()
    others = [p.read_text() for p in sorted(TERRAFORM_DIR.glob("*.tf")) if p.name != "firewall.tf"]
    mariadb_tags = 'source_tags = [\n      digitalocean_tag.role["db"].name,'
    assert mariadb_tags in text

    def problems_with(old: str, new: str) -> list[str]:
        changed = text.replace(old, new, 1)
        assert changed != text
        return inbound_problems(load([changed, *others]))

    opened = problems_with(mariadb_tags, 'source_addresses = ["0.0.0.0/0"]\n    source_tags = [')
    assert any("open to the internet" in p for p in opened), opened
    to_vpc = problems_with(
        mariadb_tags, "source_addresses = [digitalocean_vpc.core.ip_range]\n    source_tags = ["
    )
    assert any("db tcp/3306: from" in p and "not its role tags" in p for p in to_vpc), to_vpc
    downloaders = problems_with(
        'role["harvester"].name,\n      digitalocean_tag',
        'role["downloader"].name,\n      digitalocean_tag',
    )
    assert any("db tcp/3306" in p for p in downloaders), downloaders
    ssh_from_vpc = problems_with(
        "source_addresses = var.admin_cidrs", "source_addresses = [digitalocean_vpc.core.ip_range]"
    )
    assert any("SSH from" in p for p in ssh_from_vpc), ssh_from_vpc


def test_every_variable_and_output_is_described_and_typed() -> None:
    config = core()
    variables = named(config, "variable")
    assert {"region", "vpc_cidr", "admin_cidrs", "ssh_key_fingerprints"} <= set(variables)
    for name, body in variables.items():
        assert str(unquote(body.get("description", ""))).strip(), f"variable {name}: no description"
        assert "type" in body, f"variable {name}: no type"
    for name, body in named(config, "output").items():
        assert str(unquote(body.get("description", ""))).strip(), f"output {name}: no description"
        assert body.get("sensitive") is not True, f"output {name}: a secret has no place here"


def core_minion_ids(config: dict[str, list]) -> dict[str, str]:
    """Droplet resource -> minion id, for every droplet the `core_minions` output names (its
    keys are `(digitalocean_droplet.X.name)`; a name is a variable's default)."""
    ids = {}
    droplets = resources(config, "digitalocean_droplet")
    for key in named(config, "output")["core_minions"]["value"]:
        match = re.fullmatch(r"\$\{\(digitalocean_droplet\.(\w+)\.name\)\}", key)
        assert match, f"core_minions: a key that is not a droplet's name: {key}"
        ids[match[1]] = str(resolve(config, droplets[match[1]]["name"]))
    return ids


def test_outputs_feed_the_masters_site_pillar() -> None:
    config = core()
    outputs = named(config, "output")
    site = outputs["site_pillar"]["value"]["site"]
    assert set(site) >= SITE_KEYS
    assert site["db_host"] == "${digitalocean_droplet.db.ipv4_address_private}"
    assert unquote(site["queue_url"]).startswith(
        "http://${digitalocean_droplet.db.ipv4_address_private}:"
    )
    assert site["storage_host"] == "${digitalocean_droplet.storage.ipv4_address_private}"
    assert site["private_network"] == "${digitalocean_vpc.core.ip_range}"
    assert {
        "vpc_id",
        "vpc_cidr",
        "core_minions",
        "master_private_ip",
        "db_private_ip",
        "storage_private_ip",
        "storage_volume_id",
    } <= set(outputs)
    # Every core droplet is named, with its private address, and by default as the lab has them.
    assert core_minion_ids(config) == {"master": "master", "db": "db-1", "storage": "st-1"}
    for droplet, address in zip(
        core_minion_ids(config), outputs["core_minions"]["value"].values(), strict=True
    ):
        assert address == f"${{digitalocean_droplet.{droplet}.ipv4_address_private}}"


def test_no_secret_in_any_file() -> None:
    config = core()
    names = set(named(config, "variable"))
    assert not {n for n in names if re.search(r"token|password|secret|private_key", n)}, names
    for provider in config.get("provider", []):
        for body in provider.values():
            assert not {"token", "spaces_secret_key"} & set(body), "the token comes from the env"
    files = [p for p in TERRAFORM_DIR.rglob("*") if p.is_file() and ".terraform" not in p.parts]
    assert files
    for path in files:
        text = path.read_text()
        for pattern in SECRET_LOOKING:
            match = pattern.search(text)
            assert match is None, f"{path.relative_to(ROOT)}: looks like a secret: {match[0]!r}"
    ignored = (TERRAFORM_DIR / ".gitignore").read_text().split()
    assert {"*.tfstate", "terraform.tfvars", ".terraform/"} <= set(ignored)
