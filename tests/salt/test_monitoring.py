"""The monitoring formulas rendered by Salt with this checkout's pillar: the node exporter on
every minion at its private address only, Prometheus and Alertmanager on the master, whose
rendered configs pass `promtool check config` (with the alert rules Salt installs) and
`amtool check-config`, and the webhook a secret of the private root."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lab.fleet.lab_secrets import write_lab_secrets
from tests.salt.conftest import MINIONS, ROOT, SITE, make_salt_call
from tests.salt.test_render import args, render
from tests.unit.test_alert_rules import alert_rules

WEBHOOK = "https://hooks.example.invalid/services/T000/B000/throwaway"
JOBS = {"node": 9100, "harvester": 9711, "downloader": 9712, "queue": 8700}
ONE_OF_EACH_ROLE = ["master", "db-1", "hv-1", "dl-1", "st-1"]


def host_address() -> str:
    """This machine's first global IPv4 address: a site whose private network holds it makes
    every `salt-call` here a minion with a private address."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(line.split()[3].split("/")[0] for line in out.splitlines())[0]


def tool(name: str, *arguments: str) -> subprocess.CompletedProcess:
    path = shutil.which(name)
    assert path, f"{name} is missing: install Debian's prometheus packages (make deps, as root)"
    return subprocess.run([path, *arguments], capture_output=True, text=True, timeout=60)


def defaults_args(state: dict) -> list[str]:
    """The ARGS= of a /etc/default file a state writes, as the service's argv (systemd
    reads the quoted value; `$ARGS` in ExecStart splits it at spaces)."""
    (line,) = [x for x in args(state)["contents"].splitlines() if x.startswith("ARGS=")]
    (value,) = shlex.split(line.removeprefix("ARGS="))
    return value.split()


@pytest.fixture(scope="module")
def site_on_this_host(salt_call_bin, tmp_path_factory) -> tuple[Path, object]:
    """A site whose private network is this machine's address (/32), a webhook in the
    master's settings of the private root: its root and salt-call."""
    root = tmp_path_factory.mktemp("monitoring-site") / "private"
    write_lab_secrets(root, MINIONS, {**SITE, "private_network": f"{host_address()}/32"})
    (root / "settings").mkdir(exist_ok=True)
    (root / "settings" / "master.sls").write_text(
        yaml.safe_dump({"monitoring": {"webhook_url": WEBHOOK}})
    )
    salt_call = make_salt_call(
        salt_call_bin, tmp_path_factory.mktemp("salt-monitoring"), [ROOT / "pillar", root]
    )
    return root, salt_call


@pytest.fixture(scope="module")
def highstates(site_on_this_host) -> dict[str, dict]:
    _, salt_call = site_on_this_host
    return {minion: salt_call(minion, "state.show_highstate") for minion in ONE_OF_EACH_ROLE}


@pytest.fixture(scope="module")
def without_address(salt_call) -> dict:
    """The master's monitoring states on SITE: its network is not this machine's, and its
    private root has no webhook."""
    return salt_call("master", "state.show_sls", "node_exporter,prometheus")


@pytest.mark.parametrize("minion", ONE_OF_EACH_ROLE)
def test_every_minion_runs_the_node_exporter_on_its_private_address_only(highstates, minion):
    highstate = highstates[minion]
    assert {
        "node_exporter-package-pkg-installed",
        "node_exporter-service-running",
        "node_exporter-textfile-file-directory",
    } <= set(highstate)
    argv = defaults_args(highstate["node_exporter-defaults-file-managed"])
    assert f"--web.listen-address={host_address()}:9100" in argv
    assert "--collector.textfile.directory=/var/lib/prometheus/node-exporter" in argv
    directory = args(highstate["node_exporter-textfile-file-directory"])
    assert directory["name"] == "/var/lib/prometheus/node-exporter"


def test_every_minion_publishes_its_addresses_to_the_mine(salt_call):
    """pillar/mine.sls is '*''s: the mine the master's targets come from."""
    pillar = salt_call("st-1", "pillar.items", "unmask=True")
    assert pillar["mine_functions"] == {"ccmirror_addresses": {"mine_function": "network.ip_addrs"}}


def test_without_an_address_in_the_private_network_it_listens_on_loopback(without_address):
    """SITE's network is not this machine's: never 0.0.0.0 or a public address."""
    highstate = without_address
    argv = defaults_args(highstate["node_exporter-defaults-file-managed"])
    assert "--web.listen-address=127.0.0.1:9100" in argv
    prometheus = defaults_args(highstate["prometheus-defaults-file-managed"])
    assert "--web.listen-address=127.0.0.1:9090" in prometheus


def test_only_the_master_runs_prometheus(highstates):
    for minion, highstate in highstates.items():
        has_it = "prometheus-service-running" in highstate
        assert has_it == (minion == "master"), minion
        assert ("prometheus-alertmanager-service-running" in highstate) == has_it


@pytest.fixture(scope="module")
def master_sls(site_on_this_host, tmp_path_factory) -> tuple[dict, Path]:
    """salt/prometheus rendered for the master, its rules and targets in a temporary
    directory (pillar prometheus:rules_dir, targets_dir): the states and that directory."""
    _, salt_call = site_on_this_host
    base = tmp_path_factory.mktemp("prometheus")
    override = {"prometheus": {"rules_dir": str(base / "rules"), "targets_dir": str(base)}}
    states = salt_call("master", "state.show_sls", "prometheus", f"pillar={json.dumps(override)}")
    assert isinstance(states, dict), states
    return states, base


def test_the_rendered_prometheus_config_passes_promtool_with_the_rules_and_targets(
    master_sls, tmp_path
):
    """The config Salt writes, with the rule file it installs and the target files it
    writes, is one `promtool check config` accepts: the four jobs of the contract, each
    reading its target file, alerts to Alertmanager on the master's private address."""
    states, base = master_sls
    rules = args(states["prometheus-rules-file-managed"])
    assert rules["source"] == "salt://prometheus/files/rules/ccmirror.rules.yml"
    assert rules["check_cmd"] == "promtool check rules" and "template" not in rules
    (base / "rules").mkdir(exist_ok=True)
    shutil.copy(
        ROOT / "salt" / "prometheus" / "files" / "rules" / "ccmirror.rules.yml", base / "rules"
    )
    for job in JOBS:
        state = args(states[f"prometheus-targets-{job}-file-managed"])
        assert state["name"] == str(base / "staged" / f"{job}.json")
        published = args(states[f"prometheus-targets-{job}-cmd-run"])["name"]
        assert published.endswith(f"mv -f {base}/{job}.json.new {base}/{job}.json"), published
        (base / f"{job}.json").write_text(state["contents"])
    config = tmp_path / "prometheus.yml"
    config.write_text(render(states["prometheus-config-file-managed"], "prometheus.yml"))
    result = tool("promtool", "check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    # The rules were found and checked.
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr  # every target file is there
    parsed = yaml.safe_load(config.read_text())
    assert {job["job_name"]: job["file_sd_configs"] for job in parsed["scrape_configs"]} == {
        job: [{"files": [str(base / f"{job}.json")], "refresh_interval": "30s"}] for job in JOBS
    }
    alertmanagers = parsed["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == [f"{host_address()}:9093"]
    argv = defaults_args(states["prometheus-defaults-file-managed"])
    assert f"--web.listen-address={host_address()}:9090" in argv


def checked_alertmanager_config(state: dict, directory: Path) -> dict:
    """The alertmanager.yml a state writes, once `amtool check-config` has passed it."""
    config = directory / "alertmanager.yml"
    config.write_text(render(state, "alertmanager.yml"))
    result = tool("amtool", "check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    return yaml.safe_load(config.read_text())


def test_the_webhook_from_the_private_root_is_alertmanagers_slack_receiver(master_sls, tmp_path):
    states, _ = master_sls
    state = states["prometheus-alertmanager-config-file-managed"]
    assert (args(state)["mode"], args(state)["group"], args(state)["show_changes"]) == (
        "0640",
        "prometheus",
        False,
    )
    parsed = checked_alertmanager_config(state, tmp_path)
    assert parsed["route"]["receiver"] == "webhook"
    (webhook,) = [r for r in parsed["receivers"] if r["name"] == "webhook"]
    (slack,) = webhook["slack_configs"]
    assert slack["api_url"] == WEBHOOK and slack["send_resolved"] is True
    assert "{{ range .Alerts }}" in slack["text"]  # Alertmanager's template, not Salt's
    argv = defaults_args(states["prometheus-alertmanager-defaults-file-managed"])
    assert f"--web.listen-address={host_address()}:9093" in argv
    assert "--cluster.listen-address=" in argv  # no cluster port on 0.0.0.0:9094


def test_no_webhook_is_a_receiver_that_drops_alerts(without_address, tmp_path):
    """SITE's private root has no settings/master.sls: nothing to post to, and the
    config still passes amtool."""
    state = without_address["prometheus-alertmanager-config-file-managed"]
    parsed = checked_alertmanager_config(state, tmp_path)
    assert parsed["route"]["receiver"] == "null"
    assert parsed["receivers"] == [{"name": "null"}]
    assert "hooks." not in json.dumps(parsed)
