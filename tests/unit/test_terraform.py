"""The Terraform of the static core (terraform/): formatted, and what it opens is what the
design allows. No provider can be downloaded here, so nothing is planned: the files are
parsed with python-hcl2 and the firewall rules, variables, outputs and literals checked.

What may be reached from where: MariaDB, the queue service, Salt and the storage's rsync
sshd only from the VPC's range; SSH (22) on the master/db and storage droplets only from
var.admin_cidrs; the fleet's SSH only from the VPC; nothing inbound from 0.0.0.0/0 or ::/0.
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
ANYWHERE = {"0.0.0.0/0", "::/0"}
MARIADB_PORT = "3306"
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
    """What a rule's source_addresses name: VPC, ADMINS, or literal addresses."""
    items = value if isinstance(value, list) else [value]
    found = set()
    for item in items:
        item = unquote(item)
        if item == "${digitalocean_vpc.core.ip_range}":
            found.add(VPC)
        elif item == "${var.admin_cidrs}":
            found.add(ADMINS)
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
            rules.append(
                {
                    "firewall": firewall,
                    "protocol": unquote(rule["protocol"]),
                    "port": str(port),
                    "sources": sources(rule.get("source_addresses", [])),
                    "other_sources": sorted(
                        key
                        for key in rule
                        if key.startswith("source_") and key != "source_addresses"
                    ),
                }
            )
    return rules


def inbound_problems(config: dict[str, list]) -> list[str]:
    """What breaks the design's rules for inbound traffic, one line each."""
    problems = []
    queue_port = str(resolve(config, "${var.queue_port}"))
    rsync_port = str(resolve(config, "${var.storage_rsync_port}"))
    for rule in inbound_rules(config):
        where = f"{rule['firewall']} {rule['protocol']}/{rule['port']}"
        if rule["sources"] & ANYWHERE:
            problems.append(f"{where}: open to the internet")
        if rule["other_sources"]:
            problems.append(f"{where}: sources beyond addresses: {rule['other_sources']}")
        literal = rule["sources"] - {VPC, ADMINS}
        if literal:
            problems.append(f"{where}: literal sources {sorted(literal)}")
        core_ssh = rule["port"] == "22" and rule["firewall"] in ("master_db", "storage")
        if core_ssh and rule["sources"] != {ADMINS}:
            problems.append(f"{where}: SSH on the core from {sorted(rule['sources'])}")
        if not core_ssh and rule["sources"] != {VPC}:
            problems.append(f"{where}: from {sorted(rule['sources'])}, not the VPC only")
    opened = {(r["firewall"], r["port"]) for r in inbound_rules(config)}
    for needed in (("master_db", MARIADB_PORT), ("master_db", queue_port), ("storage", rsync_port)):
        if needed not in opened:
            problems.append(f"{needed[0]}: port {needed[1]} not open to the VPC")
    if MARIADB_PORT in {port for firewall, port in opened if firewall != "master_db"}:
        problems.append("MariaDB's port open on a droplet other than the master/db")
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


def test_services_are_open_to_the_vpc_only_and_ssh_to_admins_only() -> None:
    config = core()
    assert inbound_problems(config) == []
    rules = {(r["firewall"], r["port"]): r["sources"] for r in inbound_rules(config)}
    assert rules[("master_db", MARIADB_PORT)] == {VPC}
    assert rules[("master_db", "8700")] == {VPC}  # the queue service
    assert rules[("storage", "2222")] == {VPC}  # rsync over the write-only sshd
    assert rules[("master_db", "22")] == rules[("storage", "22")] == {ADMINS}
    assert rules[("fleet", "22")] == {VPC}
    # The VPC's range is the configured CIDR, and admin_cidrs refuses the whole internet.
    (vpc,) = resources(config, "digitalocean_vpc").values()
    assert unquote(vpc["ip_range"]) == "${var.vpc_cidr}"
    (check,) = named(config, "variable")["admin_cidrs"]["validation"]
    assert all(cidr in check["condition"] for cidr in ANYWHERE)


def test_firewalls_cover_the_droplets_they_are_meant_for() -> None:
    config = core()
    firewalls = resources(config, "digitalocean_firewall")
    assert firewalls["master_db"]["droplet_ids"] == ["${digitalocean_droplet.master_db.id}"]
    assert firewalls["storage"]["droplet_ids"] == ["${digitalocean_droplet.storage.id}"]
    assert "digitalocean_tag.role[role].name" in str(firewalls["fleet"]["tags"])
    droplets = resources(config, "digitalocean_droplet")
    assert set(droplets) == {"master_db", "storage"}
    for droplet in droplets.values():
        assert unquote(droplet["vpc_uuid"]) == "${digitalocean_vpc.core.id}"
        assert unquote(droplet["ssh_keys"]) == "${var.ssh_key_fingerprints}"
    (attachment,) = resources(config, "digitalocean_volume_attachment").values()
    assert unquote(attachment["droplet_id"]) == "${digitalocean_droplet.storage.id}"
    (project,) = resources(config, "digitalocean_project").values()
    assert set(project["resources"]) == {
        "${digitalocean_droplet.master_db.urn}",
        "${digitalocean_droplet.storage.urn}",
        "${digitalocean_volume.storage.urn}",
    }


def test_the_checks_catch_an_open_port() -> None:
    """The same checks on a copy with MariaDB opened to the internet and SSH to the VPC."""
    text = (TERRAFORM_DIR / "firewall.tf").read_text()
    opened = text.replace(
        "port_range       = tostring(local.mariadb_port)\n"
        "    source_addresses = [digitalocean_vpc.core.ip_range]",
        'port_range       = tostring(local.mariadb_port)\n    source_addresses = ["0.0.0.0/0"]',
        1,
    )
    assert opened != text
    others = [p.read_text() for p in sorted(TERRAFORM_DIR.glob("*.tf")) if p.name != "firewall.tf"]
    problems = inbound_problems(load([opened, *others]))
    assert any("open to the internet" in p for p in problems), problems
    ssh_from_vpc = text.replace(
        "source_addresses = var.admin_cidrs", "source_addresses = [digitalocean_vpc.core.ip_range]"
    )
    assert any("SSH on the core" in p for p in inbound_problems(load([ssh_from_vpc, *others])))


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


def test_outputs_feed_the_masters_site_pillar() -> None:
    outputs = named(core(), "output")
    site = outputs["site_pillar"]["value"]["site"]
    assert set(site) >= SITE_KEYS
    assert site["db_host"] == "${digitalocean_droplet.master_db.ipv4_address_private}"
    assert site["storage_host"] == "${digitalocean_droplet.storage.ipv4_address_private}"
    assert site["private_network"] == "${digitalocean_vpc.core.ip_range}"
    assert {
        "vpc_id",
        "vpc_cidr",
        "db_private_ip",
        "storage_private_ip",
        "storage_volume_id",
    } <= set(outputs)


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
