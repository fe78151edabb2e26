"""The backup cluster in terraform/ (#20): bk-1, a one-node SeaweedFS of its own that `weed
filer.backup` fills from the main filers, made only when `backup_region` is set, in that
region (never the core's: a backup must outlive a region's outage), in a VPC of its own peered
with the core's, with its own volume that outlives it. What it may reach and be reached from
is checked with the rest of the firewalls (tests/unit/test_terraform.py); here, the mistakes
those checks must catch. Terraform's own checks of the variables (another region, ranges that
do not overlap) run in the real `terraform console`, on the expressions as main.tf writes them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from lab.fleet.salt_utils import plain_util
from tests.unit.terraform_config import (
    TERRAFORM_DIR,
    Config,
    core,
    droplet_names,
    instances,
    load,
    locals_of,
    named,
    resources,
    tf_texts,
    unquote,
    variables,
)
from tests.unit.test_terraform import TERRAFORM, VPC, inbound_problems, inbound_rules

PREVENT_DESTROY = [{"prevent_destroy": True, "__is_block__": True}]
BACKUP_RESOURCES = (
    ("digitalocean_vpc", "backup"),
    ("digitalocean_vpc_peering", "backup"),
    ("digitalocean_volume", "backup"),
    ("digitalocean_volume_attachment", "backup"),
    ("digitalocean_firewall", "backup"),
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the console's colours
FINGERPRINT = "f5:d1:78:ed:28:72:5f:e1:ac:94:fd:1f:e0:a3:48:6d"


def backup_built(config: Config, **overrides: object) -> dict[str, object]:
    """What the backup resources' `count`s make for these variables."""
    values = variables(config, **overrides)
    built: dict[str, object] = {"droplets": droplet_names(config, "backup", values)}
    for kind, name in BACKUP_RESOURCES:
        built[kind] = instances(config, kind, name, values)
    return built


@pytest.mark.parametrize("region", [None, "nyc3"])
def test_a_backup_region_makes_bk_1_with_its_vpc_peering_volume_and_firewall(region) -> None:
    config = core()
    overrides = {} if region is None else {"backup_region": region}
    assert backup_built(config, **overrides) == {
        "droplets": ["bk-1"],  # salt/top.sls: bk-* gets the backup role
        **{kind: 1 for kind, _ in BACKUP_RESOURCES},
    }


def test_no_backup_region_makes_nothing_of_the_backup_cluster() -> None:
    config = core()
    assert backup_built(config, backup_region="") == {
        "droplets": [],
        **{kind: 0 for kind, _ in BACKUP_RESOURCES},
    }
    # The core is the same without it.
    values = variables(config, backup_region="")
    assert droplet_names(config, "storage", values) == ["st-1", "st-2", "st-3"]
    assert instances(config, "digitalocean_vpc", "core", values) == 1


def test_bk_1_is_in_its_own_vpc_in_the_backup_region_peered_with_the_core() -> None:
    config = core()
    defaults = variables(config)
    # By default a backup cluster, in another region than the core's.
    assert unquote(defaults["backup_region"]) not in ("", unquote(defaults["region"]))
    vpc = resources(config, "digitalocean_vpc")["backup"]
    assert unquote(vpc["region"]) == "${var.backup_region}"
    assert unquote(vpc["ip_range"]) == "${var.backup_vpc_cidr}"
    droplet = resources(config, "digitalocean_droplet")["backup"]
    assert unquote(droplet["region"]) == "${var.backup_region}"
    assert unquote(droplet["vpc_uuid"]) == "${digitalocean_vpc.backup[0].id}"
    assert droplet["tags"] == [
        "${digitalocean_tag.project.name}",
        '${digitalocean_tag.role["backup"].name}',
    ]
    peering = resources(config, "digitalocean_vpc_peering")["backup"]
    assert peering["vpc_ids"] == ["${digitalocean_vpc.core.id}", "${digitalocean_vpc.backup[0].id}"]
    # DigitalOcean routes a peering only on droplets made once it exists: every core droplet
    # and bk-1 wait for it.
    for name, body in resources(config, "digitalocean_droplet").items():
        assert body.get("depends_on") == ["${digitalocean_vpc_peering.backup}"], name
    # The backup tag is a core role's: its SSH from admin_cidrs, Salt to the master.
    assert "backup" in [unquote(role) for role in locals_of(config)["core_roles"]]


def test_bk_1s_volume_is_its_own_in_its_region_and_outlives_it() -> None:
    config = core()
    volume = resources(config, "digitalocean_volume")["backup"]
    assert unquote(volume["name"]) == "${var.name}-bk-${count.index + 1}"
    assert unquote(volume["region"]) == "${var.backup_region}"
    assert unquote(volume["size"]) == "${var.backup_volume_gb}"
    assert volume["lifecycle"] == PREVENT_DESTROY
    attachment = resources(config, "digitalocean_volume_attachment")["backup"]
    assert attachment["droplet_id"] == "${digitalocean_droplet.backup[count.index].id}"
    assert attachment["volume_id"] == "${digitalocean_volume.backup[count.index].id}"
    # Its device path is named as a storage droplet's (DigitalOcean's by-id name).
    device = plain_util("fleet_volumes").device_path("${digitalocean_volume.backup[index].name}")
    assert f'=> "{device}"' in str(locals_of(config)["backup_volumes"])
    check = named(config, "variable")["backup_volume_gb"]["validation"][0]["condition"]
    assert "16384" in check


def test_outputs_and_site_facts_name_bk_1_by_id() -> None:
    config = core()
    outputs = named(config, "output")
    assert unquote(outputs["backup_nodes"]["value"]) == "${local.backup_nodes}"
    assert unquote(outputs["backup_volumes"]["value"]) == "${local.backup_volumes}"
    site = outputs["site_pillar"]["value"]["site"]
    assert site["backup_nodes"] == "${local.backup_nodes}"  # salt/backup, backup_site.jinja
    assert site["backup_volumes"] == "${local.backup_volumes}"
    nodes = locals_of(config)["backup_nodes"]
    loop = "for droplet in digitalocean_droplet.backup : droplet.name => "
    assert nodes == f"${{{{{loop}droplet.ipv4_address_private}}}}"
    assert "digitalocean_droplet.backup" in str(locals_of(config)["core_droplets"])


def test_bk_1_is_open_to_db_1s_reads_and_to_itself_only() -> None:
    config = core()
    rules = {(r["firewall"], r["port"]): r["sources"] for r in inbound_rules(config)}
    backup = {port: sources for (firewall, port), sources in rules.items() if firewall == "backup"}
    assert backup == {
        "8333": {"tag:db"},  # the backup reader's key: backup-lag, restore-photos
        "8888": {"tag:db", "tag:backup"},  # its filer's listing
        **{port: {"tag:backup"} for port in ("9333", "19333", "8080", "18080", "18888")},
        "all": {VPC},  # ICMP, as every_role's
    }
    # bk-1 reaches the main cluster's filers, nothing else of it (Salt: every role's tag).
    reached = {(f, p) for (f, p), sources in rules.items() if "tag:backup" in sources}
    assert reached - {("backup", p) for p in backup} == {("storage", "8888"), ("storage", "18888")}
    firewalls = resources(config, "digitalocean_firewall")
    assert firewalls["backup"]["tags"] == ['${digitalocean_tag.role["backup"].name}']
    assert firewalls["backup"]["outbound_rule"] == firewalls["every_role"]["outbound_rule"]


def firewall_tags(config: Config, body: dict, values: dict[str, object]) -> list[str]:
    """The tags a firewall applies to, for the forms firewall.tf writes them in."""
    tags = body.get("tags", [])
    if isinstance(tags, list):
        return tags
    fleet = [unquote(role) for role in values["fleet_roles"]]
    core_roles = [unquote(role) for role in locals_of(config)["core_roles"]]
    forms = {
        "${[for role in var.fleet_roles : digitalocean_tag.role[role].name]}": fleet,
        "${[for role in local.core_roles : digitalocean_tag.role[role].name]}": core_roles,
        "${values(digitalocean_tag.role)[*].name}": core_roles + fleet,
    }
    if tags == "${local.every_role_tags}":
        every = '${[for role, tag in digitalocean_tag.role : tag.name if role != "backup"]}'
        assert locals_of(config)["every_role_tags"] == every
        return [role for role in core_roles + fleet if role != "backup"]
    assert tags in forms, f"a firewall's tags the test cannot read: {tags}"
    return forms[tags]


def test_no_firewall_applies_to_more_than_five_tags() -> None:
    """DigitalOcean's limit (5 tags per firewall): the backup's tag made every_role's sixth."""
    config = core()
    values = variables(config)
    counts = {
        name: len(firewall_tags(config, body, values))
        for name, body in resources(config, "digitalocean_firewall").items()
    }
    assert max(counts.values()) <= 5, counts
    assert counts["every_role"] == 5  # master, db, storage, downloader, harvester


def test_the_checks_catch_the_backup_opened_wider() -> None:
    """bk-1's gateway opened to the downloaders, its volume server to the core's VPC, and the
    main cluster's volume servers opened to bk-1 are each a problem."""
    texts = tf_texts()
    text = texts.pop("firewall.tf")

    def problems_with(old: str, new: str, count: int = 1) -> list[str]:
        changed = text.replace(old, new, count)
        assert changed != text
        return inbound_problems(load([changed, *texts.values()]))

    gateway = rule("s3_gateway_port", "db")
    assert text.count(gateway) == 1
    downloaders = problems_with(gateway, rule("s3_gateway_port", "downloader"))
    assert any("backup tcp/8333: from" in p for p in downloaders), downloaders
    own = rule("weed_volume_port", "backup")
    assert text.count(own) == 1
    to_vpc = problems_with(own, own + "\n    source_addresses = [digitalocean_vpc.core.ip_range]")
    assert any("backup tcp/8080: from" in p for p in to_vpc), to_vpc
    main = rule("weed_volume_port", "storage")
    assert text.count(main) == 1
    volumes = problems_with(
        main, main.replace("].name]", '].name, digitalocean_tag.role["backup"].name]')
    )
    assert any("storage tcp/8080: from" in p for p in volumes), volumes


def rule(port: str, role: str) -> str:
    """A rule's port and its one source tag, as firewall.tf writes them."""
    return (
        f"port_range  = tostring(local.{port})\n"
        f'    source_tags = [digitalocean_tag.role["{role}"].name]'
    )


def console(directory: Path, expression: str, **tfvars: str) -> subprocess.CompletedProcess:
    """`terraform console` on `directory` (no provider: variables and locals only)."""
    args = [TERRAFORM, "console", f'-var=ssh_key_fingerprints=["{FINGERPRINT}"]']
    args += [f"-var={name}={value}" for name, value in tfvars.items()]
    env = {**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null", "TF_IN_AUTOMATION": "1"}
    return subprocess.run(
        args, cwd=directory, input=expression, capture_output=True, text=True, env=env, timeout=60
    )


def raw(expression: object) -> str:
    """An attribute's expression as python-hcl2 gives it, back to HCL: `${a}` as a, a list's
    items likewise."""
    if isinstance(expression, list):
        return "[" + ", ".join(raw(item) for item in expression) + "]"
    text = str(expression)
    return text[2:-1] if text.startswith("${") and text.endswith("}") else text


@pytest.fixture(scope="module")
def checks_dir(tmp_path_factory) -> Path:
    """variables.tf as it is, and the backup VPC's preconditions as locals, with the locals
    they read, in a directory Terraform evaluates without a provider."""
    config = core()
    directory = tmp_path_factory.mktemp("backup-checks")
    (directory / "variables.tf").write_text((TERRAFORM_DIR / "variables.tf").read_text())
    locals_ = locals_of(config)
    (vpc,) = resources(config, "digitalocean_vpc")["backup"]["lifecycle"]
    conditions = [raw(check["condition"]) for check in vpc["precondition"]]
    lines = [f"  {name} = {raw(locals_[name])}" for name in ("vpc_prefixes", "vpcs_overlap")]
    lines.append(f"  backup_checks = [{', '.join(conditions)}]")
    (directory / "checks.tf").write_text("locals {\n" + "\n".join(lines) + "\n}\n")
    return directory


@pytest.mark.parametrize(
    ("tfvars", "passes"),
    [
        ({}, [True, True]),  # the defaults: fra1 and ams3, 10.20.0.0/20 and 10.20.16.0/24
        ({"backup_region": "fra1"}, [False, True]),  # the core's region
        ({"backup_vpc_cidr": "10.20.8.0/24"}, [True, False]),  # inside vpc_cidr
        ({"backup_vpc_cidr": "10.20.0.0/16"}, [True, False]),  # around it
        ({"backup_vpc_cidr": "10.21.0.0/16", "region": "nyc3"}, [True, True]),
    ],
)
def test_terraform_refuses_a_backup_in_the_cores_region_or_range(checks_dir, tfvars, passes):
    if not Path(TERRAFORM).exists():
        pytest.skip(f"no terraform binary ({TERRAFORM})")
    result = console(checks_dir, "jsonencode(local.backup_checks)\n", **tfvars)
    assert result.returncode == 0 and "Error" not in result.stderr, result.stderr
    assert json.loads(json.loads(ANSI.sub("", result.stdout).split("\n")[-2])) == passes


def test_terraform_refuses_a_backup_region_that_is_no_region_slug(checks_dir) -> None:
    if not Path(TERRAFORM).exists():
        pytest.skip(f"no terraform binary ({TERRAFORM})")
    # The console goes on after a variable's error, which it writes to stderr.
    refused = ANSI.sub("", console(checks_dir, "var.backup_region\n", backup_region="ams").stderr)
    assert "Invalid value for variable" in refused
    assert "backup_region: a region slug" in refused
    for accepted in ("", "nyc3"):
        result = console(checks_dir, "var.backup_region\n", backup_region=accepted)
        assert "Error" not in result.stderr, result.stderr
