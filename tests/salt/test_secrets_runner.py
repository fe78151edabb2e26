"""The `secrets` runner through Salt's own `salt-run` (no running master is needed: the
runner talks to no minion), against a master config in a temporary directory: the
checkout's runners, pillar_roots = [pillar/, a private root], and minion keys accepted in
its pki dir. What each minion then sees is rendered by `salt-call --local pillar.items`."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harvester.queue_tokens import TOKEN_PREFIX, hash_token
from lab.lab_secrets import write_lab_secrets, writer
from lab.salt_master import SALT_VENV, ensure_salt, generate_keys
from tests.salt.conftest import ROOT, make_salt_call

MINIONS = ["master", "db-1", "hv-1", "hv-2", "dl-1", "dl-2", "st-1"]
SITE = "{db_host: 10.250.0.2, storage_host: 10.250.0.3, private_network: 10.250.0.0/24}"


@dataclass
class Master:
    """A master's config directory, its private root and a renderer of minions' pillar."""

    config_dir: Path
    root_dir: Path
    private: Path
    salt_call: object

    def run(self, *args: str) -> tuple[int, dict, str]:
        """`salt-run --out=json ARGS`: exit code, the return, and all the output."""
        result = subprocess.run(
            [str(SALT_VENV / "bin" / "salt-run"), "-c", str(self.config_dir), "--out=json", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        try:
            returned = json.loads(result.stdout)
        except ValueError:
            raise AssertionError(f"salt-run {args}: {result.stdout}{result.stderr}") from None
        return result.returncode, returned, result.stdout + result.stderr

    def accept(self, *minion_ids: str) -> None:
        keys = self.root_dir / "etc" / "salt" / "pki" / "master" / "minions"
        keys.mkdir(parents=True, exist_ok=True)
        for minion_id in minion_ids:
            (keys / minion_id).write_text(minion_public_key())

    def pillar(self, minion_id: str) -> dict:
        return self.salt_call(minion_id, "pillar.items", "unmask=True")

    def record(self) -> dict:
        return json.loads((self.private / "secrets.json").read_text())

    def files(self) -> dict[str, tuple[str, int]]:
        """Every file of the private root: content and mtime."""
        return {
            str(path.relative_to(self.private)): (path.read_text(), path.stat().st_mtime_ns)
            for path in sorted(self.private.rglob("*"))
            if path.is_file() and not path.name.startswith(".")
        }


_PUBLIC_KEY: list[str] = []


def minion_public_key() -> str:
    """One key made with `salt-key --gen-keys`, accepted under every test minion's id."""
    if not _PUBLIC_KEY:
        _PUBLIC_KEY.append(generate_keys("minion")[1])
    return _PUBLIC_KEY[0]


def make_master(tmp: Path, salt_call_bin: Path) -> Master:
    if not (SALT_VENV / "bin" / "salt-run").exists():
        ensure_salt()
    config_dir, root_dir, private = tmp / "conf", tmp / "root", tmp / "private"
    config_dir.mkdir(parents=True)
    # salt-run records its job under the master's cache, made by a running master otherwise.
    (root_dir / "var" / "cache" / "salt" / "master" / "proc").mkdir(parents=True)
    config = {
        "root_dir": str(root_dir),
        "runner_dirs": [str(ROOT / "_runners")],
        "pillar_roots": {"base": [str(ROOT / "pillar"), str(private)]},
        "log_level": "quiet",
        "log_level_logfile": "debug",  # the most Salt would log
    }
    (config_dir / "master").write_text(yaml.safe_dump(config))
    salt_call = make_salt_call(salt_call_bin, tmp / "minion", [ROOT / "pillar", private])
    master = Master(config_dir, root_dir, private, salt_call)
    master.accept(*MINIONS)
    return master


@pytest.fixture
def master(tmp_path: Path, salt_call_bin: Path) -> Master:
    return make_master(tmp_path, salt_call_bin)


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory, salt_call_bin: Path) -> Master:
    """One initialised master the rotation tests share (each rotates its own kind)."""
    master = make_master(tmp_path_factory.mktemp("secrets-runner"), salt_call_bin)
    code, returned, _ = master.run("secrets.init", f"site={SITE}")
    assert code == 0, returned
    return master


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def every_secret(record: dict) -> list[str]:
    found: list[str] = []

    def walk(value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key != "site":
                    walk(item)
        elif isinstance(value, str) and len(value) >= 16 and not value.startswith("ssh-"):
            found.append(value)

    walk(record)
    return found


def public_of(private_key: str, tmp: Path) -> str:
    """The public half of an OpenSSH private key (type and base64 only)."""
    path = tmp / "key"
    path.write_text(private_key)
    os.chmod(path, 0o600)
    out = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True)
    return " ".join(out.stdout.split()[:2])


def key_part(public_key: str) -> str:
    return " ".join(public_key.split()[:2])


def test_init_writes_each_minion_its_own_file_and_a_second_run_changes_nothing(
    master: Master,
):
    code, returned, output = master.run("secrets.init", f"site={SITE}")
    assert code == 0, output
    assert returned["changed"] and returned["no_secrets"] == ["master"]
    assert returned["missing_flickr_key"] == ["hv-1", "hv-2"]  # real keys come from the user
    assert mode(master.private) == 0o700 and mode(master.private / "minions") == 0o700
    written = sorted(p.name for p in (master.private / "minions").iterdir())
    assert written == ["db-1.sls", "dl-1.sls", "dl-2.sls", "hv-1.sls", "hv-2.sls", "st-1.sls"]
    assert all(mode(master.private / "minions" / name) == 0o600 for name in written)
    assert mode(master.private / "secrets.json") == 0o600
    assert not [s for s in every_secret(master.record()) if s in output]

    dl1 = master.pillar("dl-1")
    assert dl1["site"]["queue_url"] == "http://10.250.0.2:8700"
    assert dl1["downloader"]["queue_token"].startswith(TOKEN_PREFIX)
    db1 = master.pillar("db-1")
    assert db1["queue"]["tokens"]["dl-1"] == hash_token(dl1["downloader"]["queue_token"])
    assert db1["db"]["passwords"]["hv-1"] == master.pillar("hv-1")["harvester"]["db_password"]
    st1 = master.pillar("st-1")["storage"]
    assert key_part(st1["authorized_keys"]["dl-1"]) == public_of(
        dl1["downloader"]["ssh_key"], master.root_dir
    )
    assert dl1["downloader"]["storage_host_key"] == st1["host_key"]["public"]

    before = master.files()
    code, returned, _ = master.run("secrets.init")
    assert code == 0 and not returned["changed"] and returned["files"] == []
    assert master.files() == before

    # fleet.up accepted a new downloader: only it, the queue and storage change.
    master.accept("dl-3")
    code, returned, _ = master.run("secrets.init")
    assert code == 0 and returned["added"] == ["dl-3"]
    after = master.files()
    changed = sorted(name for name in after if after[name] != before.get(name))
    assert changed == ["minions/db-1.sls", "minions/dl-3.sls", "minions/st-1.sls", "secrets.json"]
    dl3 = master.pillar("dl-3")["downloader"]
    assert master.pillar("db-1")["queue"]["tokens"]["dl-3"] == hash_token(dl3["queue_token"])
    assert "dl-3" in master.pillar("st-1")["storage"]["authorized_keys"]
    assert master.pillar("dl-1") == dl1


def test_init_without_site_facts_is_refused_and_writes_nothing(master: Master):
    code, returned, _ = master.run("secrets.init")
    assert code == 1 and "site facts missing: db_host, storage_host" in returned["error"]
    assert not master.private.exists()


def test_set_flickr_key_writes_only_that_harvesters_file_and_refuses_a_downloader(
    master: Master, tmp_path: Path
):
    assert master.run("secrets.init", f"site={SITE}")[0] == 0
    before = master.files()
    key, secret = "0123456789abcdef0123456789abcdef", "fedcba9876543210"

    code, returned, output = master.run(
        "secrets.set_flickr_key", "minion=hv-1", f"key={key}", f"secret={secret}"
    )
    assert code == 0 and returned == {"minion": "hv-1", "changed": True}
    assert key not in output and secret not in output
    after = master.files()
    assert sorted(n for n in after if after[n] != before[n]) == ["minions/hv-1.sls", "secrets.json"]
    flickr = master.pillar("hv-1")["harvester"]["flickr"]
    assert (flickr["api_key"], flickr["api_secret"]) == (key, secret)
    assert "api_key" not in master.pillar("hv-2")["harvester"].get("flickr", {})
    assert master.run("secrets.set_flickr_key", "minion=hv-1", f"key={key}", f"secret={secret}")[
        1
    ] == {"minion": "hv-1", "changed": False}

    code, returned, output = master.run(
        "secrets.set_flickr_key", "minion=dl-1", "key=abcdef0123", "secret=0123abcd"
    )
    assert code == 1 and "not a harvester" in returned["error"] and "abcdef0123" not in output
    assert master.files() == after

    # From a file, Salt records only the path: the key is nowhere under the master's root.
    other_key = "aaaabbbbccccdddd0000111122223333"
    key_file = tmp_path / "hv-2-flickr.yaml"
    key_file.write_text(f"key: {other_key}\nsecret: '9999888877776666'\n")
    code, returned, _ = master.run("secrets.set_flickr_key", "minion=hv-2", f"from_file={key_file}")
    assert code == 0 and returned == {"minion": "hv-2", "changed": True}
    assert master.pillar("hv-2")["harvester"]["flickr"]["api_key"] == other_key
    recorded = [
        path
        for path in master.root_dir.rglob("*")
        if path.is_file() and other_key.encode() in path.read_bytes()
    ]
    assert recorded == []


def test_rotate_storage_key_adds_switches_then_retires(initialised: Master, tmp_path: Path):
    master = initialised
    old_private = master.pillar("dl-1")["downloader"]["ssh_key"]
    old_public = public_of(old_private, tmp_path)

    def authorized() -> dict[str, str]:
        keys = master.pillar("st-1")["storage"]["authorized_keys"]
        return {label: key_part(key) for label, key in keys.items() if label.startswith("dl-1")}

    code, returned, _ = master.run("secrets.rotate", "what=storage_key")
    assert code == 0 and returned["state"] == "started" and returned["apply"] == ["st-*"]
    assert returned["minions"] == ["dl-1", "dl-2"]
    new_public = authorized()["dl-1.next"]
    assert (
        authorized() == {"dl-1": old_public, "dl-1.next": new_public} and new_public != old_public
    )
    assert master.pillar("dl-1")["downloader"]["ssh_key"] == old_private
    assert not master.run("secrets.rotate", "what=storage_key")[1]["changed"]  # re-run: same

    code, returned, _ = master.run("secrets.rotate", "what=storage_key", "step=switch")
    assert code == 0 and returned["state"] == "switched" and returned["apply"] == ["dl-*"]
    assert public_of(master.pillar("dl-1")["downloader"]["ssh_key"], tmp_path) == new_public
    assert authorized() == {"dl-1": new_public, "dl-1.previous": old_public}
    assert not master.run("secrets.rotate", "what=storage_key", "step=switch")[1]["changed"]

    code, returned, _ = master.run("secrets.rotate", "what=storage_key", "step=retire")
    assert code == 0 and returned["state"] == "done" and returned["apply"] == ["st-*"]
    assert authorized() == {"dl-1": new_public}
    assert public_of(master.pillar("dl-1")["downloader"]["ssh_key"], tmp_path) == new_public
    code, returned, _ = master.run("secrets.rotate", "what=storage_key", "step=retire")
    assert code == 0 and not returned["changed"] and returned["state"] == "done"


def test_rotate_queue_tokens_keeps_both_hashes_until_retired(initialised: Master):
    master = initialised
    old = master.pillar("dl-2")["downloader"]["queue_token"]

    assert master.run("secrets.rotate", "what=queue_tokens")[0] == 0
    assert master.pillar("dl-2")["downloader"]["queue_token"] == old
    old_hash, new_hash = master.pillar("db-1")["queue"]["tokens"]["dl-2"]
    assert old_hash == hash_token(old) and new_hash != old_hash

    assert master.run("secrets.rotate", "what=queue_tokens", "step=switch")[0] == 0
    new = master.pillar("dl-2")["downloader"]["queue_token"]
    assert hash_token(new) == new_hash
    assert master.pillar("db-1")["queue"]["tokens"]["dl-2"] == [new_hash, old_hash]

    assert master.run("secrets.rotate", "what=queue_tokens", "step=retire")[0] == 0
    assert master.pillar("db-1")["queue"]["tokens"]["dl-2"] == new_hash
    assert master.pillar("dl-2")["downloader"]["queue_token"] == new


def test_rotate_db_passwords_switches_database_and_programs_together(initialised: Master):
    master = initialised

    def passwords() -> tuple[dict, str]:
        return master.pillar("db-1")["db"]["passwords"], master.pillar("hv-1")["harvester"][
            "db_password"
        ]

    before = passwords()
    code, returned, _ = master.run("secrets.rotate", "what=db_passwords")
    assert code == 0 and returned["apply"] == [] and passwords() == before

    code, returned, _ = master.run("secrets.rotate", "what=db_passwords", "step=switch")
    assert code == 0 and returned["apply"] == ["db-*", "hv-*"]
    users, hv1 = passwords()
    assert users["hv-1"] == hv1 != before[1]
    assert all(users[name] != before[0][name] for name in ("migrate", "queue", "hv-1", "hv-2"))

    assert master.run("secrets.rotate", "what=db_passwords", "step=retire")[0] == 0
    assert passwords() == (users, hv1)


def test_rotation_steps_out_of_order_are_refused_and_change_nothing(initialised: Master):
    master = initialised
    before = master.files()
    for args, message in (
        (["what=queue_tokens", "step=switch"], "run step=start first"),
        (["what=keys"], "what must be one of"),
        (["what=storage_key", "step=later"], "step must be one of"),
    ):
        code, returned, _ = master.run("secrets.rotate", *args)
        assert code == 1 and message in returned["error"], returned
    assert master.files() == before

    assert master.run("secrets.rotate", "what=queue_tokens")[0] == 0
    started = master.files()
    code, returned, _ = master.run("secrets.rotate", "what=queue_tokens", "step=retire")
    assert code == 1 and "run step=switch first" in returned["error"]
    assert master.files() == started


def test_the_runner_and_the_queue_agree_on_tokens():
    module = writer()
    assert module.TOKEN_PREFIX == TOKEN_PREFIX
    assert module.hash_token("ccmq_x") == hash_token("ccmq_x")


def test_the_lab_keeps_secrets_recorded_under_the_old_record_name(tmp_path: Path):
    site = {"db_host": "10.9.0.2", "storage_host": "10.9.0.3"}
    write_lab_secrets(tmp_path, ["hv-1", "dl-1"], site)
    (tmp_path / "secrets.json").rename(tmp_path / "lab-secrets.json")
    before = yaml.safe_load((tmp_path / "minions" / "dl-1.sls").read_text())
    write_lab_secrets(tmp_path, ["hv-1", "dl-1", "dl-2"], site)
    assert yaml.safe_load((tmp_path / "minions" / "dl-1.sls").read_text()) == before
    assert not (tmp_path / "lab-secrets.json").exists()
    hv1 = yaml.safe_load((tmp_path / "minions" / "hv-1.sls").read_text())
    assert len(hv1["harvester"]["flickr"]["api_key"]) == 32  # the lab's throw-away key
    shutil.rmtree(tmp_path / "minions")
    write_lab_secrets(tmp_path, [], site)  # a file lost half-way is written again
    assert yaml.safe_load((tmp_path / "minions" / "dl-1.sls").read_text()) == before
