"""`_runners/fleet.py` through Salt's own runner loader (a master config with runner_dirs on
this checkout, python-digitalocean in Salt's Python): every function found with its
`CLI Example::`, one clear error for a bad role, count or setting before anything is
called, and the pure parts (names and settings from `_utils/fleet_droplets.py`; from
`_utils/fleet_join.py` through Salt's utils loader, the user_data script, which holds no key,
and the handover script that brings the keys over SSH). The run against the simulator and
real minions is tests/lab/test_fleet_runner.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from lab.fleet import salt_master
from tests.salt.conftest import runner_master_config

ROOT = Path(__file__).resolve().parent.parent.parent
LOAD_AND_CHECK = r"""
import json, subprocess, sys, tempfile, os
import salt.config, salt.loader
opts = salt.config.master_config(sys.argv[1])
def _check(g, name):
    try:
        return runners.run(g["check_name"], name)  # in the runner's loader context
    except g["FleetError"] as error:
        return str(error)
utils = salt.loader.utils(opts)
runners = salt.loader.runner(opts, utils=utils)
names = sorted(name for name in runners if name.startswith("fleet."))
g = runners["fleet.up"].__globals__
keys = {"priv": "-----BEGIN RSA " + "PRIVATE KEY-----\nPRIV\n-----END RSA " + "PRIVATE KEY-----\n",
        "pub": "-----BEGIN PUBLIC KEY-----\nPUB\n-----END PUBLIC KEY-----\n"}
droplets = lambda name: utils[f"fleet_droplets.{name}"]
config = droplets("minion_config")("dl-3", "10.0.0.2", {"ret_port": 4506, "publish_port": 4505},
                                   {"systemd.scope": False})
script = utils["fleet_join.user_data"]("dl-3", config, sys.argv[2], "salt==3008.3")
handover = utils["fleet_join.handover_script"](keys["priv"], keys["pub"], "MASTERPUB\n", 1)
out = {
    "names": names,
    "docs": {n: runners[n].__doc__ for n in names},
    "bad_role": runners["fleet.up"](role="database", count=1),
    "bad_count": runners["fleet.up"](role="downloader", count="many"),
    "negative": runners["fleet.up"](role="downloader", count=-1),
    "down_zero": runners["fleet.down"](role="downloader", count=0),
    "down_both": runners["fleet.down"](role="downloader", count=1, keep=1),
    "down_keep_negative": runners["fleet.down"](role="downloader", keep=-1),
    "down_storage": runners["fleet.down"](role="storage", count=1),
    "bad_name": runners["fleet.destroy"](name="../etc"),
    "hostile_names": {name: runners["fleet.destroy"](name=name)
                      for name in ("dl-3\n", "dl-?", "*-1", "DL-3", "dl-3.example")},
    "id_rule": {name: _check(g, name) for name in ("dl-3", "master", "db-1", "st-10")},
    "no_token": runners["fleet.list"](),
    "next": droplets("next_names")("dl", {"dl-1", "dl-3", "hv-2"}, 3),
    "last": droplets("last_ones")(["dl-2", "dl-10", "dl-9", "dl-1"], 2),
    "tags": droplets("role_tags")("ccmirror", "downloader"),
    "storage_next": droplets("next_names")("st", {"st-1", "st-2", "st-4", "dl-3"}, 2),
    "work": droplets("describe_work")({"role": "downloader", "installed": True,
        "work": {"phase": "fetching", "lease": {"lease_id": 7, "items": 12, "fetched": 3}}}),
    "absent": droplets("describe_work")(False),
    "script": script,
    "handover": handover,
}
# Each script run in a scratch root: paths under it, Salt "present" so nothing installs;
# the handover's stdin is its script, as over SSH (`sh -s`), and it waits for user_data's mark.
def run(text, root, stdin=False):
    rooted = text.replace(" /etc/", f" {root}/etc/").replace(" /var/", f" {root}/var/")
    # systemctl prints itself with the umask the unit would inherit (the lab's does).
    rooted = rooted.replace("systemctl", 'echo "$(umask)" systemctl')
    rooted = rooted.replace("chown root:root", "true")
    command = ["sh", "-s"] if stdin else ["sh", "-c", rooted]
    done = subprocess.run(command, input=rooted if stdin else None, capture_output=True, text=True)
    files = {}
    for base, _, names in os.walk(root):
        for f in names:
            path = os.path.join(base, f)
            files[path[len(root):]] = [open(path).read(), oct(os.stat(path).st_mode & 0o777)]
    return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}, files
root = tempfile.mkdtemp()
out["waited"], _ = run(handover, tempfile.mkdtemp(), stdin=True)  # no user_data ran there
out["ran"], out["files"] = run(script, root)
out["handed"], out["files_after"] = run(handover, root, stdin=True)
try:
    droplets("settings")({"ccmirror_fleet": {"token": "t", "colour": "blue"}})
except ValueError as error:  # fleet_droplets' FleetValueError
    out["unknown_setting"] = str(error)
out["defaults"] = droplets("settings")({"interface": "10.0.0.2", "ccmirror_fleet": {"token": "t"}})
out["volume_name"] = utils["fleet_volumes.volume_name"]("ccmirror", "st-4")
out["bad_volume_gb"] = {}
for size in (0, 16385, "100", 2.5):
    try:
        droplets("settings")({"interface": "10.0.0.2",
                              "ccmirror_fleet": {"token": "t", "storage_volume_gb": size}})
    except ValueError as error:
        out["bad_volume_gb"][repr(size)] = str(error)
# fleet_storage with a stand-in for the secrets.storage_nodes runner (its own test is
# tests/salt/test_secrets_runner.py): what fleet.up and fleet.destroy hand it.
class Droplet:
    def __init__(self, name, address, tags=()):
        self.name, self.private_ip_address, self.tags = name, address, list(tags)
storage = lambda name: utils[f"fleet_storage.{name}"]
calls, errors, said = [], {}, []
def change_nodes(**kwargs):
    calls.append(kwargs)
    return {"storage_nodes": {"st-1": "10.0.0.3", "st-4": "10.0.0.9"},
            "storage_master_addresses": {"st-1": "10.0.0.3"}}
def attach_volume(droplet):  # fleet_volumes.ensure_attached's stand-in (the lab runs it)
    if droplet.name == "st-6":
        raise utils["fleet_volumes.ensure_attached"].__globals__["VolumeError"]("refused")
    if droplet.name == "st-7":
        return None  # storage_volumes false (the lab): recorded without a device
    return "/dev/disk/by-id/scsi-0DO_Volume_ccmirror-" + droplet.name
out["recorded"] = storage("record_nodes")(
    [Droplet("st-4", "10.0.0.9"), Droplet("st-5", None), Droplet("st-6", "10.0.0.10"),
     Droplet("st-7", "10.0.0.11")],
    lambda d: d.private_ip_address, change_nodes, errors, said.append, attach_volume)
out["forgot"] = storage("forget_node")("st-3", change_nodes, {"result": True, "apply": ["db-*"]})
out["forgot_worker"] = storage("forget_node")("dl-3", change_nodes, {"result": True})
out["storage_calls"], out["storage_errors"], out["storage_said"] = calls, errors, said
resumable = lambda role, tags: storage("resumable")(
    role, Droplet("x-1", None, tags), "ccmirror", "ccmirror-ready")
out["resumable"] = {
    "terraform": resumable("storage", ["ccmirror", "ccmirror-storage"]),
    "made": resumable("storage", ["ccmirror", "ccmirror-storage", "ccmirror-fleet"]),
    "made_ready": resumable("storage", ["ccmirror-storage", "ccmirror-fleet", "ccmirror-ready"]),
    "worker": resumable("downloader", ["ccmirror"]),
    "worker_ready": resumable("downloader", ["ccmirror", "ccmirror-ready"]),
}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def seen(salt_call_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    salt_master.ensure_salt()
    tmp = tmp_path_factory.mktemp("fleet-runner")
    config = runner_master_config(tmp, utils_dirs=[str(ROOT / "_utils")])
    # A venv whose salt-minion "exists": the script must skip installing Salt.
    venv = tmp / "salt-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "salt-minion").write_text("#!/bin/sh\n")
    (venv / "bin" / "salt-minion").chmod(0o755)
    python = salt_call_bin.parent / "python"
    result = subprocess.run(
        [str(python), "-c", LOAD_AND_CHECK, str(config), str(venv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_function_loads_with_a_cli_example(seen: dict) -> None:
    assert seen["names"] == ["fleet.destroy", "fleet.down", "fleet.list", "fleet.up"]
    for name, doc in seen["docs"].items():
        assert "CLI Example::" in doc and f"salt-run {name}" in doc, name


def test_bad_arguments_get_one_clear_error(seen: dict) -> None:
    assert seen["bad_role"]["result"] is False
    assert seen["bad_role"]["error"] == (
        "role must be one of downloader, harvester, storage; not 'database'"
    )
    assert seen["bad_count"]["error"] == "count must be a whole number; not 'many'"
    assert seen["negative"]["error"] == "count must be from 0 to 100; not -1"
    assert seen["down_zero"]["error"] == "count must be from 1 to 100; not 0"
    assert seen["down_both"]["error"] == (
        "give count (droplets to take away) or keep (to leave), not both"
    )
    assert seen["down_keep_negative"]["error"] == "keep must be from 0 to 100; not -1"
    # A volume server holds photos: never taken away by count, and the error says how.
    assert seen["down_storage"]["result"] is False and seen["down_storage"]["retcode"] == 1
    assert seen["down_storage"]["error"].startswith(
        "fleet.down does not take storage droplets away: their volume servers hold photos"
    )
    assert "volume.evacuate" in seen["down_storage"]["error"]
    assert "droplet name such as dl-3" in seen["bad_name"]["error"]
    # Names that are globs or near-misses of an id are refused before anything is looked
    # up (no token is set: a name let through would fail on that instead).
    for name, refused in seen["hostile_names"].items():
        assert refused["result"] is False and refused["retcode"] == 1, (name, refused)
        assert "droplet name such as dl-3" in refused["error"] or refused["error"].startswith(
            f"bad minion id {name!r}: lower-case letters, digits and '-' only"
        ), (name, refused)
    # dl-3 and a newline has the shape of a name (NAME's `$`): the id rule refuses it.
    assert seen["hostile_names"]["dl-3\n"]["error"].startswith("bad minion id 'dl-3\\n'")
    assert seen["id_rule"] == {name: name for name in ("dl-3", "master", "db-1", "st-10")}
    # Arguments fine, but the master has no token: said before any API call.
    assert seen["no_token"]["error"].startswith("no DigitalOcean token: set ccmirror_fleet:")
    assert seen["unknown_setting"] == "unknown ccmirror_fleet settings: colour"


def test_settings_default_to_the_masters_interface_and_digitalocean(seen: dict) -> None:
    defaults = seen["defaults"]
    assert defaults["master_address"] == "10.0.0.2"
    assert defaults["end_point"] == "https://api.digitalocean.com/v2/"
    assert defaults["project_tag"] == "ccmirror"
    # A new st-N's volume: Terraform's default size and Terraform's name (<project>-st-N).
    assert defaults["storage_volume_gb"] == 1000 and defaults["storage_volumes"] is True
    assert seen["volume_name"] == "ccmirror-st-4"
    assert set(seen["bad_volume_gb"]) == {"0", "16385", "'100'", "2.5"}
    for error in seen["bad_volume_gb"].values():
        assert error.startswith("ccmirror_fleet:storage_volume_gb must be a whole number of GiB")


def test_names_are_the_lowest_free_and_down_takes_the_highest(seen: dict) -> None:
    assert seen["next"] == ["dl-2", "dl-4", "dl-5"]
    assert seen["last"] == ["dl-10", "dl-9"]
    assert seen["tags"] == ["ccmirror", "ccmirror-downloader"]
    assert seen["work"] == "fetching, lease 7: 3 of 12 fetched"
    assert seen["absent"].startswith("no answer")


def test_user_data_holds_no_key_and_prepares_a_minion_that_waits_for_its_keys(
    seen: dict,
) -> None:
    script = seen["script"]
    assert script.startswith("#!/bin/sh\n")
    # DigitalOcean serves user_data to anything on the droplet: no key of any kind in it.
    assert "-----BEGIN" not in script and "PRIV" not in script and "PUB" not in script
    ran = seen["ran"]
    assert ran["rc"] == 0, ran
    files = seen["files"]
    assert not [path for path in files if "/pki/" in path]
    minion = yaml.safe_load(files["/etc/salt/minion.d/ccmirror.conf"][0])
    assert minion == {
        "id": "dl-3",
        "master": "10.0.0.2",
        "master_port": 4506,
        "publish_port": 4505,
        # A dead master connection noticed within a minute, not after minutes deaf.
        "tcp_keepalive_idle": 30,
        "tcp_keepalive_intvl": 10,
        "tcp_keepalive_cnt": 3,
        "systemd.scope": False,
    }
    assert files["/etc/salt/minion.d/ccmirror.conf"][1] == "0o600"
    unit = files["/etc/systemd/system/salt-minion.service"][0]
    assert "/salt-venv/bin/salt-minion" in unit
    # Never started on a key of its own making: only once the master's has come.
    assert "ConditionPathExists=/etc/salt/pki/minion/minion.pem" in unit
    assert "/etc/salt/ccmirror-fleet-prepared" in files
    # Salt was present: nothing installed; the unit enabled, not started.
    assert "pip" not in ran["stdout"] + ran["stderr"]
    assert ran["stdout"].splitlines()[-1] == "0022 systemctl enable salt-minion"
    assert "restart" not in ran["stdout"]


def test_the_handover_writes_the_keys_and_starts_the_minion_once_prepared(seen: dict) -> None:
    waited = seen["waited"]
    assert waited["rc"] == 3 and "did not prepare the minion within 1s" in waited["stderr"]
    handed = seen["handed"]
    assert handed["rc"] == 0, handed
    files = seen["files_after"]
    # A fake key, its header split so that the repository's secret scan does not match it.
    assert files["/etc/salt/pki/minion/minion.pem"] == [
        "-----BEGIN RSA " + "PRIVATE KEY-----\nPRIV\n-----END RSA " + "PRIVATE KEY-----\n",
        "0o600",
    ]
    assert files["/etc/salt/pki/minion/minion.pub"][0].startswith("-----BEGIN PUBLIC KEY")
    assert files["/etc/salt/pki/minion/minion.pub"][1] == "0o644"
    assert files["/etc/salt/pki/minion/minion_master.pub"] == ["MASTERPUB\n", "0o644"]
    # The keys were written under umask 077; the minion starts under 022, else what it
    # installs (the services' venvs) is root's alone and no service can run.
    restart = "0022 systemctl restart salt-minion"
    assert handed["stdout"].splitlines()[-2:] == [restart, "handed over"]


def test_storage_droplets_are_recorded_in_the_site_facts_and_forgotten_when_destroyed(
    seen: dict,
) -> None:
    """fleet.up role=storage names st-3 (the lowest free number; a key or droplet holds the
    others), records each new node's address (one without an address is an error, never
    recorded), fleet.destroy name=st-N drops it; Terraform's st-* are never resumed."""
    assert seen["storage_next"] == ["st-3", "st-5"]
    # Its volume's device goes with its address (salt/storage/volume.sls mounts it); a node
    # whose volume was refused is an error and not recorded: no volume server on a root disk.
    assert seen["storage_calls"] == [
        {
            "add": {"st-4": "10.0.0.9", "st-7": "10.0.0.11"},
            "volumes": {"st-4": "/dev/disk/by-id/scsi-0DO_Volume_ccmirror-st-4"},
        },
        {"drop": ["st-3"]},
    ]
    assert seen["storage_errors"] == {
        "st-5": "no private address: not added to site:storage_nodes",
        "st-6": "not added to site:storage_nodes: refused",
    }
    assert seen["storage_said"] == [
        "site:storage_nodes: st-4, st-7 added; masters stay st-1 (10.0.0.3)"
    ]
    assert seen["forgot"] == {
        "result": True,
        "apply": ["db-*", "st-*"],
        "storage": {"storage_nodes": ["st-1", "st-4"]},
    }
    assert seen["forgot_worker"] == {"result": True}
    assert seen["resumable"] == {
        "terraform": False,
        "made": True,
        "made_ready": False,
        "worker": True,
        "worker_ready": False,
    }
