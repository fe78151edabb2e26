"""The Terraform of the static core (terraform/): formatted, and what it opens is what the
design allows. No provider can be downloaded here, so nothing is planned: the files are
parsed with python-hcl2 and the firewall rules, variables, outputs and literals checked.

What may be reached from where, by role tag (DigitalOcean's source_tags), never by the whole
VPC: MariaDB from the db, harvester, master and storage (SeaweedFS's filer store) tags; the
queue service from the downloader and master tags; Salt on the master from every role's tag;
the S3 gateway on the storage droplets from the downloader and master tags, SeaweedFS's
master and volume ports (HTTP and gRPC) from the storage tag alone, its filers' from the
storage and backup tags (bk-1's filer.backup); on the backup droplet bk-1, its gateway from
the db tag, its filer from the db and backup tags, the rest from the backup tag alone. SSH
(22) on the core droplets only from var.admin_cidrs, the fleet's SSH from the VPC; ICMP from
the VPC; nothing inbound from 0.0.0.0/0 or ::/0.

What gets built: storage_count st-* droplets, each with its own volume, for SeaweedFS; for
Spaces a versioned bucket and no storage droplet (the `count` expressions are evaluated for
each backend, tests/unit/terraform_config.py); bk-1 with its VPC, peering and volume only
when backup_region is set, in another region than the core. (tests/salt/test_core_roles.py
checks the roles salt/top.sls gives each minion id of the `core_minions` output.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lab.fleet.salt_utils import plain_util
from tests.conftest import ROOT
from tests.unit.terraform_config import (
    TERRAFORM_DIR,
    Config,
    choose,
    core,
    core_minion_ids,
    droplet_names,
    evaluate,
    instances,
    load,
    locals_of,
    named,
    resolve,
    resources,
    tf_texts,
    unquote,
    variables,
)

TERRAFORM = shutil.which("terraform") or "/usr/local/bin/terraform"
VPC = "VPC"  # a rule's source: the VPC's range
ADMINS = "ADMINS"  # a rule's source: var.admin_cidrs
EVERY_ROLE = "tag:*"  # a rule's source: every role's tag, core and fleet
ANYWHERE = {"0.0.0.0/0", "::/0"}
MARIADB_PORT = "3306"
SALT_PORTS = "4505-4506"
ADMIN_SSH = "core_admin_ssh"  # the core's SSH, from admin_cidrs only
ROLE_TAG = re.compile(r'\$\{digitalocean_tag\.role\["(\w+)"\]\.name\}')
SECRET_LOOKING = [
    re.compile(r"dop_v1_[0-9a-f]{20,}"),  # a DigitalOcean personal access token
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b(token|password|passwd|secret|api_key)\s*=\s*\"[^\"]+\"", re.IGNORECASE),
    re.compile(r"\b[0-9a-fA-F]{32,}\b"),  # a long hex string: a token or a hash of one
    re.compile(r"\b[A-Za-z0-9+/]{40,}={0,2}"),  # a long base64 blob: a key
    re.compile(r"\bDO[0-9A-Z]{16,}\b"),  # a Spaces access key id
]
S3_GATEWAY_PORT = "8333"
WEED_CLUSTER_PORTS = ("9333", "19333", "8080", "18080", "8888", "18888")
WEED_FILER_PORTS = ("8888", "18888")
SITE_KEYS = {
    "db_host",
    "db_port",
    "queue_port",
    "queue_url",
    "storage_host",
    "storage_port",
    "private_network",
    "storage_backend",
    "storage_endpoint",
    "storage_bucket",
    "storage_region",
    "storage_nodes",
}


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


def inbound_rules(config: Config) -> list[dict]:
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


def allowed_services(config: Config) -> dict[tuple[str, str], set[str]]:
    """(firewall, port) -> the role tags the design lets reach that service."""
    queue_port = str(resolve(config, "${var.queue_port}"))
    allowed = {
        ("db", MARIADB_PORT): {"tag:db", "tag:harvester", "tag:master", "tag:storage"},
        ("db", queue_port): {"tag:downloader", "tag:master"},
        ("master", SALT_PORTS): {EVERY_ROLE},
        ("storage", S3_GATEWAY_PORT): {"tag:downloader", "tag:db", "tag:master"},
    }
    allowed.update({("storage", port): {"tag:storage"} for port in WEED_CLUSTER_PORTS})
    # bk-1's weed filer.backup follows the main filers (HTTP and gRPC), nothing else of them.
    allowed.update({("storage", port): {"tag:storage", "tag:backup"} for port in WEED_FILER_PORTS})
    # The backup cluster: db-1 reads its gateway and its filer's listing; the rest is its own.
    allowed.update({("backup", port): {"tag:backup"} for port in WEED_CLUSTER_PORTS})
    allowed[("backup", S3_GATEWAY_PORT)] = {"tag:db"}
    allowed[("backup", WEED_FILER_PORTS[0])] = {"tag:db", "tag:backup"}
    return allowed


def inbound_problems(config: Config) -> list[str]:
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
    assert rules[("db", MARIADB_PORT)] == {"tag:db", "tag:harvester", "tag:master", "tag:storage"}
    assert rules[("db", "8700")] == {"tag:downloader", "tag:master"}  # the queue service
    assert rules[("master", SALT_PORTS)] == {EVERY_ROLE}
    assert rules[("storage", S3_GATEWAY_PORT)] == {"tag:downloader", "tag:db", "tag:master"}
    for port in set(WEED_CLUSTER_PORTS) - set(WEED_FILER_PORTS):  # masters, volume servers
        assert rules[("storage", port)] == {"tag:storage"}, port
    for port in WEED_FILER_PORTS:  # the filers: the cluster's own, and bk-1's filer.backup
        assert rules[("storage", port)] == {"tag:storage", "tag:backup"}, port
    assert {port for firewall, port in rules if firewall == "storage"} == {
        S3_GATEWAY_PORT,
        *WEED_CLUSTER_PORTS,
    }  # the rsync sshd is gone
    assert rules[(ADMIN_SSH, "22")] == {ADMINS} and rules[("fleet", "22")] == {VPC}
    assert rules[("every_role", "all")] == {VPC}  # ICMP
    assert not {("master", "22"), ("db", "22"), ("storage", "22")} & set(rules)
    # The role tags are the core's and the fleet's roles, downloader and harvester required.
    roles = [unquote(r) for r in locals_of(config)["core_roles"]]
    fleet = named(config, "variable")["fleet_roles"]
    assert roles == ["master", "db", "storage", "backup"]  # bk-1's SSH: the core's
    required = [unquote(r) for r in fleet["default"]]
    assert required == ["downloader", "harvester"]
    assert all(f'contains(var.fleet_roles, "{r}")' in str(fleet["validation"]) for r in required)
    assert resources(config, "digitalocean_tag")["role"]["for_each"] == "${local.role_tags}"
    # The VPC's range is the configured CIDR, and admin_cidrs refuses the whole internet.
    vpc = resources(config, "digitalocean_vpc")["core"]
    assert unquote(vpc["ip_range"]) == "${var.vpc_cidr}"
    (check,) = named(config, "variable")["admin_cidrs"]["validation"]
    assert all(cidr in check["condition"] for cidr in ANYWHERE)


def test_firewalls_cover_the_droplets_they_are_meant_for() -> None:
    config = core()
    firewalls = resources(config, "digitalocean_firewall")
    for name in ("master", "db"):
        assert firewalls[name]["droplet_ids"] == [f"${{digitalocean_droplet.{name}.id}}"]
    # Storage by its role tag: every st-* droplet, those fleet.up adds at run time included.
    assert firewalls["storage"]["tags"] == ['${digitalocean_tag.role["storage"].name}']
    assert "droplet_ids" not in firewalls["storage"]
    assert "digitalocean_tag.role[role].name" in str(firewalls["fleet"]["tags"])
    # The core's admin SSH follows the core roles' tags; ICMP and outbound every role's.
    assert "local.core_roles" in str(firewalls[ADMIN_SSH]["tags"])
    assert firewalls["every_role"]["tags"] == "${local.every_role_tags}"  # but bk-1's
    assert len(firewalls["every_role"]["outbound_rule"]) == 3
    assert firewalls["backup"]["tags"] == ['${digitalocean_tag.role["backup"].name}']
    droplets = resources(config, "digitalocean_droplet")
    assert set(droplets) == {"master", "db", "storage", "backup"}
    for name, droplet in droplets.items():
        vpc = "backup[0]" if name == "backup" else "core"
        assert unquote(droplet["vpc_uuid"]) == f"${{digitalocean_vpc.{vpc}.id}}"
        assert unquote(droplet["ssh_keys"]) == "${var.ssh_key_fingerprints}"
        assert f'${{digitalocean_tag.role["{name}"].name}}' in droplet["tags"]
    (project,) = resources(config, "digitalocean_project").values()
    assert project["resources"] == (
        "${concat([digitalocean_droplet.master.urn, digitalocean_droplet.db.urn], "
        "digitalocean_droplet.storage[*].urn, digitalocean_volume.storage[*].urn, "
        "digitalocean_spaces_bucket.images[*].urn, digitalocean_droplet.backup[*].urn, "
        "digitalocean_volume.backup[*].urn)}"
    )


def storage_built(config: Config, **overrides: object) -> dict[str, object]:
    """What the storage resources' `count`s make for these variables."""
    values = variables(config, **overrides)
    return {
        "droplets": droplet_names(config, "storage", values),
        "volumes": instances(config, "digitalocean_volume", "storage", values),
        "attachments": instances(config, "digitalocean_volume_attachment", "storage", values),
        "buckets": instances(config, "digitalocean_spaces_bucket", "images", values),
    }


@pytest.mark.parametrize("count", [None, 1, 5])
def test_seaweedfs_makes_storage_count_st_droplets_each_with_its_own_volume(count) -> None:
    config = core()
    overrides = {} if count is None else {"storage_count": count}
    built = storage_built(config, **overrides)
    wanted = count or 3  # the default: three, for three raft masters
    assert built == {
        "droplets": [f"st-{n}" for n in range(1, wanted + 1)],
        "volumes": wanted,
        "attachments": wanted,
        "buckets": 0,
    }
    assert all(re.fullmatch(r"st-[0-9]+", name) for name in built["droplets"])  # top.sls st-*
    # Volume N on droplet N, a volume per droplet named after it, kept if a droplet goes.
    attachment = resources(config, "digitalocean_volume_attachment")["storage"]
    assert attachment["droplet_id"] == "${digitalocean_droplet.storage[count.index].id}"
    assert attachment["volume_id"] == "${digitalocean_volume.storage[count.index].id}"
    volume = resources(config, "digitalocean_volume")["storage"]
    assert unquote(volume["name"]) == "${var.name}-st-${count.index + 1}"
    assert unquote(volume["size"]) == "${var.storage_volume_gb}"
    # fleet.up role=storage names a later st-N's volume and its device by the same one rule,
    # with Terraform's default size (var.name is the fleet's project_tag).
    volumes = plain_util("fleet_volumes")
    terraforms = unquote(volume["name"]).replace("${var.name}", "ccmirror")
    assert volumes.volume_name("ccmirror", "st-7") == terraforms.replace("${count.index + 1}", "7")
    device = volumes.device_path("${digitalocean_volume.storage[index].name}")
    assert f'=> "{device}"' in (ROOT / "terraform" / "main.tf").read_text()
    size = named(config, "variable")["storage_volume_gb"]["default"]
    assert size == plain_util("fleet_droplets").DEFAULTS["storage_volume_gb"]
    assert "16 TiB" in str(volume["description"])
    assert volume["lifecycle"] == [{"prevent_destroy": True, "__is_block__": True}]


def test_spaces_makes_a_versioned_bucket_and_no_storage_droplet() -> None:
    config = core()
    built = storage_built(config, storage_backend="spaces", storage_count=5)
    assert built == {"droplets": [], "volumes": 0, "attachments": 0, "buckets": 1}
    bucket = resources(config, "digitalocean_spaces_bucket")["images"]
    assert bucket["versioning"] == [{"enabled": True, "__is_block__": True}]
    assert unquote(bucket["name"]) == "${var.storage_bucket}"
    assert unquote(bucket["region"]) == "${var.region}"
    assert unquote(bucket["acl"]) == "private"
    assert bucket["lifecycle"] == [{"prevent_destroy": True, "__is_block__": True}]
    # Only the two backends are accepted, SeaweedFS by default.
    backend = named(config, "variable")["storage_backend"]
    assert unquote(backend["default"]) == "seaweedfs"
    (check,) = backend["validation"]
    assert check["condition"] == '${contains(["seaweedfs", "spaces"], var.storage_backend)}'


def test_storage_count_is_validated_from_one_to_a_hundred() -> None:
    variable = named(core(), "variable")["storage_count"]
    (check,) = variable["validation"]
    assert check["condition"] == (
        "${var.storage_count >= 1 && var.storage_count <= 100 && "
        "floor(var.storage_count) == var.storage_count}"
    )
    assert variable["default"] == 3


def test_the_checks_catch_an_open_port() -> None:
    """The same checks on copies with MariaDB opened to the internet, then to the whole VPC,
    with the core's SSH opened to the VPC, and with SeaweedFS's volume servers opened to the
    downloaders."""
    texts = tf_texts()
    text = texts.pop("firewall.tf")
    mariadb_tags = 'source_tags = [\n      digitalocean_tag.role["db"].name,'
    assert mariadb_tags in text

    def problems_with(old: str, new: str) -> list[str]:
        changed = text.replace(old, new, 1)
        assert changed != text
        return inbound_problems(load([changed, *texts.values()]))

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
    volume_rule = (
        "port_range  = tostring(local.weed_volume_port)\n"
        '    source_tags = [digitalocean_tag.role["storage"].name]'
    )
    volumes = problems_with(
        volume_rule, volume_rule.replace('role["storage"]', 'role["downloader"]')
    )
    assert any("storage tcp/8080: from" in p for p in volumes), volumes


def test_every_variable_and_output_is_described_and_typed() -> None:
    config = core()
    variables_ = named(config, "variable")
    assert {"region", "vpc_cidr", "admin_cidrs", "ssh_key_fingerprints"} <= set(variables_)
    for name, body in variables_.items():
        assert str(unquote(body.get("description", ""))).strip(), f"variable {name}: no description"
        assert "type" in body, f"variable {name}: no type"
    for name, body in named(config, "output").items():
        assert str(unquote(body.get("description", ""))).strip(), f"output {name}: no description"
        assert body.get("sensitive") is not True, f"output {name}: a secret has no place here"


def site_fact(config: Config, key: str, **overrides: object) -> object:
    """A key of the site pillar's output as the HCL decides it for these variables."""
    site = named(config, "output")["site_pillar"]["value"]["site"]
    return choose(config, site[key], variables(config, **overrides))


def test_outputs_feed_the_masters_site_pillar() -> None:
    config = core()
    outputs = named(config, "output")
    site = outputs["site_pillar"]["value"]["site"]
    assert set(site) >= SITE_KEYS
    assert site["db_host"] == "${digitalocean_droplet.db.ipv4_address_private}"
    assert unquote(site["queue_url"]).startswith(
        "http://${digitalocean_droplet.db.ipv4_address_private}:"
    )
    assert site["private_network"] == "${digitalocean_vpc.core.ip_range}"
    assert {"vpc_id", "vpc_cidr", "core_minions", "master_private_ip", "db_private_ip"} <= set(
        outputs
    )
    assert {"storage_nodes", "storage_volumes", "storage_endpoint"} <= set(outputs)
    # Every core droplet is named, storage_count st-* among them, as the lab has them.
    assert core_minion_ids(config) == {
        "master": "master",
        "db-1": "db",
        "st-1": "storage",
        "st-2": "storage",
        "st-3": "storage",
        "bk-1": "backup",
    }
    assert set(core_minion_ids(config, storage_backend="spaces", backup_region="")) == {
        "master",
        "db-1",
    }


def test_site_pillar_names_the_store_for_each_backend() -> None:
    config = core()
    st_1 = "digitalocean_droplet.storage[0].ipv4_address_private"
    assert droplet_names(config, "storage", variables(config))[0] == "st-1"  # index 0
    # SeaweedFS: st-1's S3 gateway, on the port its firewall opens to the downloaders.
    assert (
        site_fact(config, "storage_endpoint") == f'"http://${{{st_1}}}:${{local.s3_gateway_port}}"'
    )
    assert str(evaluate(config, "${local.s3_gateway_port}", {})) == S3_GATEWAY_PORT
    assert site_fact(config, "storage_nodes") == (
        "${{for droplet in digitalocean_droplet.storage : "
        "droplet.name => droplet.ipv4_address_private}}"
    )
    # The keys today's states read name st-1 until they move to storage_endpoint.
    assert site_fact(config, "storage_host") == f"${{{st_1}}}"
    assert str(resolve(config, site_fact(config, "storage_port"))) == S3_GATEWAY_PORT
    # Spaces: the region's endpoint, and no storage node.
    spaces = {"storage_backend": "spaces"}
    endpoint = site_fact(config, "storage_endpoint", **spaces)
    assert endpoint == '"https://${var.region}.digitaloceanspaces.com"'
    assert site_fact(config, "storage_host", **spaces) == '"${var.region}.digitaloceanspaces.com"'
    assert site_fact(config, "storage_port", **spaces) == 443
    assert droplet_names(config, "storage", variables(config, **spaces)) == []
    # SeaweedFS's masters: three (raft) from three storage droplets on, else one; on the
    # first of them (st-1..st-3), none with Spaces.
    masters = (
        "${[for droplet in slice(digitalocean_droplet.storage, 0, local.storage_master_count)"
        " : droplet.name]}"
    )
    assert site_fact(config, "storage_masters") == masters
    counts = {
        n: evaluate(config, "${local.storage_master_count}", variables(config, storage_count=n))
        for n in (1, 2, 3, 4, 100)
    }
    assert counts == {1: 1, 2: 1, 3: 3, 4: 3, 100: 3}
    assert evaluate(config, "${local.storage_master_count}", variables(config, **spaces)) == 0
    # Bucket, region and backend come from the variables as they are.
    for key, variable in (("bucket", "storage_bucket"), ("region", "region")):
        assert site_fact(config, f"storage_{key}") == f"${{var.{variable}}}"
    assert site_fact(config, "storage_backend") == "${var.storage_backend}"


def test_the_default_bucket_is_the_storage_formulas() -> None:
    """One default name, the storage formula's (salt/storage/defaults.yaml): a site Terraform
    makes with the defaults names the same bucket as one whose pillar names none, and as the
    lab."""
    formula = yaml.safe_load((ROOT / "salt" / "storage" / "defaults.yaml").read_text())
    bucket = named(core(), "variable")["storage_bucket"]
    assert unquote(bucket["default"]) == formula["storage"]["seaweedfs"]["bucket"]


def test_no_secret_in_any_file() -> None:
    config = core()
    names = set(named(config, "variable"))
    secret = r"token|password|secret|private_key|access_key|access_id"
    assert not {n for n in names if re.search(secret, n)}, names
    for provider in config.get("provider", []):
        for body in provider.values():
            assert not {"token", "spaces_access_id", "spaces_secret_key"} & set(body), (
                "the token and the Spaces keys come from the environment"
            )
    assert not resources(config, "digitalocean_spaces_key"), "its secret would be in the state"
    files = [p for p in TERRAFORM_DIR.rglob("*") if p.is_file() and ".terraform" not in p.parts]
    assert files
    for path in files:
        text = path.read_text()
        for pattern in SECRET_LOOKING:
            match = pattern.search(text)
            assert match is None, f"{path.relative_to(ROOT)}: looks like a secret: {match[0]!r}"
    ignored = (TERRAFORM_DIR / ".gitignore").read_text().split()
    assert {"*.tfstate", "terraform.tfvars", ".terraform/"} <= set(ignored)
