"""The `secrets` runner through Salt's own `salt-run` (no running master is needed: the
runner talks to no minion), against a master config in a temporary directory: the
checkout's runners, pillar_roots = [pillar/, a private root], and minion keys accepted in
its pki dir. What each minion then sees is Salt's own pillar compilation for its id (as
`salt-call --local pillar.items` does; one test checks they agree). Multi-step rotations
run their runner calls and pillar renders in one Salt process (STEPS_SCRIPT): a `salt-run`
costs seconds of start-up on a loaded machine."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex

import pytest
import yaml

from harvester.queue.tokens import TOKEN_PREFIX, hash_token
from lab.fleet.lab_secrets import write_lab_secrets
from lab.fleet.salt_master import SALT_VENV, ensure_salt, generate_keys
from tests.salt.conftest import ROOT, make_salt_call, plain_util

# Run in Salt's Python: argv = master config, minion config; stdin = a JSON list of
# ["run", "fun", {kwargs}] (RunnerClient, the loader salt-run uses) and ["pillar", [ids]]
# (each id's pillar compiled from the minion config's roots); stdout = the results.
STEPS_SCRIPT = """
import json, sys
import salt.config, salt.pillar, salt.runner

master_opts = salt.config.master_config(sys.argv[1])
minion_opts = salt.config.minion_config(sys.argv[2])
runner = salt.runner.RunnerClient(master_opts)
results = []
for kind, *rest in json.load(sys.stdin):
    if kind == "run":
        results.append(runner.cmd(rest[0], kwarg=rest[1], print_event=False))
    else:
        results.append({
            minion_id: salt.pillar.get_pillar(
                dict(minion_opts, id=minion_id), {}, minion_id, saltenv="base"
            ).compile_pillar()
            for minion_id in rest[0]
        })
json.dump(results, sys.stdout)
"""
RUNNER_FUNCTIONS = ("forget", "init", "rotate", "set_flickr_key", "storage_nodes")
MINIONS = ["master", "db-1", "hv-1", "hv-2", "dl-1", "dl-2", "st-1", "bk-1"]
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

    def steps(self, *steps: list) -> list:
        """Runner calls and pillar renders in order, in one Salt process: their results."""
        script = self.config_dir / "steps.py"
        script.write_text(STEPS_SCRIPT)
        minion_config = self.config_dir.parent / "minion" / "minion"
        result = subprocess.run(
            [str(SALT_VENV / "bin" / "python"), str(script), str(self.config_dir / "master")]
            + [str(minion_config)],
            input=json.dumps(steps),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)

    def pillars(self, *minion_ids: str) -> dict[str, dict]:
        return self.steps(["pillar", list(minion_ids)])[0]

    def accept(self, *minion_ids: str) -> None:
        keys = self.root_dir / "etc" / "salt" / "pki" / "master" / "minions"
        keys.mkdir(parents=True, exist_ok=True)
        for minion_id in minion_ids:
            (keys / minion_id).write_text(minion_public_key())

    def salt_call_pillar(self, minion_id: str) -> dict:
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
        "utils_dirs": [str(ROOT / "_utils")],
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
    assert written == [
        "bk-1.sls", "db-1.sls", "dl-1.sls", "dl-2.sls", "hv-1.sls", "hv-2.sls", "st-1.sls"
    ]  # fmt: skip
    assert all(mode(master.private / "minions" / name) == 0o600 for name in written)
    assert mode(master.private / "secrets.json") == 0o600
    assert not [s for s in every_secret(master.record()) if s in output]

    seen = master.pillars("dl-1", "db-1", "hv-1", "st-1")
    dl1 = seen["dl-1"]
    assert master.salt_call_pillar("dl-1") == dl1  # what salt-call shows the minion
    assert dl1["site"]["queue_url"] == "http://10.250.0.2:8700"
    assert dl1["downloader"]["queue_token"].startswith(TOKEN_PREFIX)
    db1 = seen["db-1"]
    assert db1["queue"]["tokens"]["dl-1"] == hash_token(dl1["downloader"]["queue_token"])
    assert db1["db"]["passwords"]["hv-1"] == seen["hv-1"]["harvester"]["db_password"]
    st1 = seen["st-1"]["storage"]
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
    seen = master.pillars("dl-3", "db-1", "st-1", "dl-1")
    dl3 = seen["dl-3"]["downloader"]
    assert seen["db-1"]["queue"]["tokens"]["dl-3"] == hash_token(dl3["queue_token"])
    assert "dl-3" in seen["st-1"]["storage"]["authorized_keys"]
    assert seen["dl-1"] == dl1

    # fleet.down deleted dl-3's key: init names it; forget revokes its token and key.
    (master.root_dir / "etc" / "salt" / "pki" / "master" / "minions" / "dl-3").unlink()
    init, live, forgotten, seen = master.steps(
        ["run", "secrets.init", {}],
        ["run", "secrets.forget", {"minion": "dl-1"}],
        ["run", "secrets.forget", {"minion": "dl-3"}],
        ["pillar", ["db-1", "st-1", "dl-1"]],
    )
    assert init["not_accepted"] == ["dl-3"] and not init["changed"]
    assert live["retcode"] == 1 and "still accepted" in live["error"]
    assert forgotten == {"minion": "dl-3", "changed": True, "apply": ["db-*", "st-*"]}
    assert not (master.private / "minions" / "dl-3.sls").exists()
    assert sorted(seen["db-1"]["queue"]["tokens"]) == ["dl-1", "dl-2"]
    assert sorted(seen["st-1"]["storage"]["authorized_keys"]) == ["dl-1", "dl-2"]
    # Its S3 identity goes, and is named revoked (no key) so a gateway's reload drops it.
    identities = sorted(seen["st-1"]["storage"]["s3_identities"])
    assert identities == ["admin", "audit", "backup", "dl-1", "dl-2"]
    assert seen["st-1"]["storage"]["s3_revoked"] == ["dl-3"]
    assert seen["dl-1"] == dl1


def test_init_without_site_facts_is_refused_and_writes_nothing(master: Master):
    code, returned, _ = master.run("secrets.init")
    assert code == 1 and "site facts missing: db_host, storage_host" in returned["error"]
    assert not master.private.exists()


def test_set_flickr_key_writes_only_that_harvesters_file_and_refuses_a_downloader(
    master: Master, tmp_path: Path
):
    assert master.run("secrets.init", f"site={SITE}")[0] == 0
    before = master.files()
    key, secret = token_hex(16), token_hex(8)  # the shapes of a Flickr key and secret

    code, returned, output = master.run(
        "secrets.set_flickr_key", "minion=hv-1", f"key={key}", f"secret={secret}"
    )
    assert code == 0 and returned == {"minion": "hv-1", "changed": True}
    assert key not in output and secret not in output
    after = master.files()
    assert sorted(n for n in after if after[n] != before[n]) == ["minions/hv-1.sls", "secrets.json"]

    code, returned, output = master.run(
        "secrets.set_flickr_key", "minion=dl-1", f"key={key}", f"secret={secret}"
    )
    assert code == 1 and "not a harvester" in returned["error"] and key not in output
    assert master.files() == after

    # From a file, Salt records only the path: the key is nowhere under the master's root.
    other_key = token_hex(16)
    key_file = tmp_path / "hv-2-flickr.yaml"
    key_file.write_text(f"key: {other_key}\nsecret: '{token_hex(8)}'\n")
    code, returned, _ = master.run("secrets.set_flickr_key", "minion=hv-2", f"from_file={key_file}")
    assert code == 0 and returned == {"minion": "hv-2", "changed": True}
    recorded = [
        path
        for path in master.root_dir.rglob("*")
        if path.is_file() and other_key.encode() in path.read_bytes()
    ]
    assert recorded == []

    again, seen = master.steps(
        ["run", "secrets.set_flickr_key", {"minion": "hv-1", "key": key, "secret": secret}],
        ["pillar", ["hv-1", "hv-2", "dl-1"]],
    )
    assert again == {"minion": "hv-1", "changed": False}
    flickr = seen["hv-1"]["harvester"]["flickr"]
    # The harvester gets the key it uses; the secret (no call is signed yet) stays on the
    # master, in the record set_flickr_key wrote, and in no minion's file.
    assert flickr["api_key"] == key and "api_secret" not in flickr, sorted(flickr)
    assert secret not in json.dumps(seen)
    assert master.record()["minions"]["hv-1"]["flickr_secret"] == secret
    assert not [p for p in (master.private / "minions").iterdir() if secret in p.read_text()]
    assert seen["hv-2"]["harvester"]["flickr"]["api_key"] == other_key
    assert key not in json.dumps(seen["hv-2"]) and key not in json.dumps(seen["dl-1"])


def rotation(master: Master, what: str, ids: list[str], steps: list[str]) -> list:
    """The pillars of `ids` before, then each step's return and the pillars after it."""
    calls: list[list] = [["pillar", ids]]
    for step in steps:
        calls += [["run", "secrets.rotate", {"what": what, "step": step}], ["pillar", ids]]
    return master.steps(*calls)


def test_rotate_storage_key_adds_switches_then_retires(initialised: Master, tmp_path: Path):
    steps = ["start", "start", "switch", "switch", "retire", "retire"]
    before, *results = rotation(initialised, "storage_key", ["dl-1", "st-1", "db-1"], steps)
    returns, pillars = results[0::2], results[1::2]

    def authorized(seen: dict) -> dict[str, str]:
        keys = seen["st-1"]["storage"]["authorized_keys"]
        return {label: key_part(key) for label, key in keys.items() if label.startswith("dl-1")}

    def in_use(seen: dict) -> str:
        return public_of(seen["dl-1"]["downloader"]["ssh_key"], tmp_path)

    def s3_accepted(seen: dict) -> dict[str, str]:
        identities = seen["st-1"]["storage"]["s3_identities"]
        return {label: key["access_key"] for label, key in identities.items() if "dl-1" in label}

    def s3_in_use(seen: dict) -> str:
        return seen["dl-1"]["downloader"]["s3"]["access_key"]

    def backup_accepted(seen: dict) -> dict[str, str]:
        identities = seen["st-1"]["storage"]["s3_identities"]
        return {label: k["access_key"] for label, k in identities.items() if "backup" in label}

    def backup_in_use(seen: dict) -> str:  # db-1's catalog backup key
        return seen["db-1"]["catalog_backup"]["access_key"]

    old = in_use(before)
    assert authorized(before) == {"dl-1": old}
    started, restarted, switched, reswitched, retired, reretired = returns
    assert started["changed"] and started["state"] == "started" and started["apply"] == ["st-*"]
    assert started["minions"] == ["dl-1", "dl-2"]
    new = authorized(pillars[0])["dl-1.next"]
    assert new != old and authorized(pillars[0]) == {"dl-1": old, "dl-1.next": new}
    assert in_use(pillars[0]) == old  # downloaders keep the key storage accepted before
    old_s3 = s3_in_use(before)
    assert s3_accepted(before) == {"dl-1": old_s3} and s3_in_use(pillars[0]) == old_s3
    new_s3 = s3_accepted(pillars[0])["dl-1.next"]
    assert new_s3 != old_s3 and s3_accepted(pillars[0]) == {"dl-1": old_s3, "dl-1.next": new_s3}
    old_backup = backup_in_use(before)
    assert backup_accepted(before) == {"backup": old_backup}
    assert backup_in_use(pillars[0]) == old_backup
    new_backup = backup_accepted(pillars[0])["backup.next"]
    assert new_backup != old_backup
    assert not restarted["changed"] and pillars[1] == pillars[0]

    assert switched["state"] == "switched" and switched["apply"] == ["dl-*", "db-*"]
    assert backup_in_use(pillars[2]) == new_backup
    assert backup_accepted(pillars[2]) == {"backup": new_backup, "backup.previous": old_backup}
    assert in_use(pillars[2]) == new
    assert authorized(pillars[2]) == {"dl-1": new, "dl-1.previous": old}
    assert s3_in_use(pillars[2]) == new_s3
    assert s3_accepted(pillars[2]) == {"dl-1": new_s3, "dl-1.previous": old_s3}
    assert not reswitched["changed"] and pillars[3] == pillars[2]

    assert retired["state"] == "done" and retired["apply"] == ["st-*"]
    assert authorized(pillars[4]) == {"dl-1": new} and in_use(pillars[4]) == new
    assert s3_accepted(pillars[4]) == {"dl-1": new_s3} and s3_in_use(pillars[4]) == new_s3
    assert backup_accepted(pillars[4]) == {"backup": new_backup}
    assert backup_in_use(pillars[4]) == new_backup
    assert not reretired["changed"] and reretired["state"] == "done"


def test_rotate_backup_keys_bk1_accepts_both_until_retired(initialised: Master):
    """The backup cluster's admin, sink and reader keys: bk-1's gateway accepts the old and
    the new pair between start and retire; bk-1 itself and db-1 (the reader) switch; no
    other minion's pillar changes."""
    steps = ["start", "start", "switch", "retire"]
    ids = ["bk-1", "db-1", "st-1", "dl-1"]
    before, *results = rotation(initialised, "backup_keys", ids, steps)
    (started, restarted, switched, retired), pillars = results[0::2], results[1::2]

    def accepted(seen: dict) -> dict[str, str]:
        identities = seen["bk-1"]["storage"]["s3_identities"]
        return {label: key["access_key"] for label, key in identities.items()}

    def reader(seen: dict) -> str:
        return seen["db-1"]["backup_target"]["access_key"]

    old = accepted(before)
    assert sorted(old) == ["admin", "reader", "sink"] and reader(before) == old["reader"]
    assert started["apply"] == ["bk-*"] and started["state"] == "started"
    assert not restarted["changed"] and pillars[1] == pillars[0]
    new = {name: accepted(pillars[0])[f"{name}.next"] for name in old}
    assert accepted(pillars[0]) == old | {f"{name}.next": new[name] for name in old}
    assert all(new[name] != old[name] for name in old) and reader(pillars[0]) == old["reader"]

    assert switched["apply"] == ["bk-*", "db-*"] and switched["state"] == "switched"
    assert accepted(pillars[2]) == new | {f"{name}.previous": old[name] for name in old}
    assert reader(pillars[2]) == new["reader"]
    assert pillars[2]["bk-1"]["storage"]["s3_identities"]["sink"]["access_key"] == new["sink"]
    assert pillars[2]["db-1"]["backup_target"]["sink"]["access_key"] == new["sink"]

    assert retired["apply"] == ["bk-*"] and retired["state"] == "done"
    assert accepted(pillars[3]) == new and reader(pillars[3]) == new["reader"]
    for unconcerned in ("st-1", "dl-1"):
        assert all(seen[unconcerned] == before[unconcerned] for seen in pillars), unconcerned
    keys = initialised.record()["keys"]
    assert {name: keys[f"backup-{name}"]["access_key"] for name in old} == new


def test_rotate_queue_tokens_keeps_both_hashes_until_retired(initialised: Master):
    before, *results = rotation(
        initialised, "queue_tokens", ["dl-2", "db-1"], ["start", "switch", "retire"]
    )
    started, switched, retired = results[1::2]
    old = before["dl-2"]["downloader"]["queue_token"]
    assert before["db-1"]["queue"]["tokens"]["dl-2"] == hash_token(old)

    assert started["dl-2"]["downloader"]["queue_token"] == old
    old_hash, new_hash = started["db-1"]["queue"]["tokens"]["dl-2"]
    assert old_hash == hash_token(old) and new_hash != old_hash

    new = switched["dl-2"]["downloader"]["queue_token"]
    assert hash_token(new) == new_hash
    assert switched["db-1"]["queue"]["tokens"]["dl-2"] == [new_hash, old_hash]

    assert retired["db-1"]["queue"]["tokens"]["dl-2"] == new_hash
    assert retired["dl-2"]["downloader"]["queue_token"] == new


def test_rotate_db_passwords_switches_database_and_programs_together(initialised: Master):
    before, *results = rotation(
        initialised, "db_passwords", ["db-1", "hv-1"], ["start", "switch", "retire"]
    )
    (started_return, switched_return, _), (started, switched, retired) = (
        results[0::2],
        results[1::2],
    )

    def passwords(seen: dict) -> tuple[dict, str]:
        return seen["db-1"]["db"]["passwords"], seen["hv-1"]["harvester"]["db_password"]

    assert started_return["apply"] == [] and passwords(started) == passwords(before)
    assert switched_return["apply"] == ["db-*", "hv-*"]
    users, hv1 = passwords(switched)
    old_users, old_hv1 = passwords(before)
    assert users["hv-1"] == hv1 != old_hv1
    assert all(users[name] != old_users[name] for name in ("migrate", "queue", "hv-1", "hv-2"))
    assert passwords(retired) == (users, hv1)


def test_rotation_steps_out_of_order_are_refused_and_change_nothing(initialised: Master):
    master = initialised
    before = master.files()
    code, returned, _ = master.run("secrets.rotate", "what=queue_tokens", "step=switch")
    assert code == 1 and "run step=start first" in returned["error"]
    docs, *refused = master.steps(
        ["run", "doc.runner", {}],
        ["run", "secrets.rotate", {"what": "keys"}],
        ["run", "secrets.rotate", {"what": "storage_key", "step": "later"}],
    )
    # Only the runner functions are loaded (the plain writer is not), each with an example.
    ours = {name: doc for name, doc in docs.items() if name.startswith("secrets.")}
    assert sorted(ours) == [f"secrets.{name}" for name in RUNNER_FUNCTIONS]
    assert all("CLI Example::" in doc for doc in ours.values())
    assert [r["retcode"] for r in refused] == [1, 1]
    assert "what must be one of" in refused[0]["error"]
    assert "step must be one of" in refused[1]["error"]
    assert master.files() == before

    started, early = master.steps(
        ["run", "secrets.rotate", {"what": "queue_tokens"}],
        ["run", "secrets.rotate", {"what": "queue_tokens", "step": "retire"}],
    )
    assert started["state"] == "started"
    assert early["retcode"] == 1 and "run step=switch first" in early["error"]
    assert master.record()["rotations"]["queue_tokens"]["step"] == "started"


# Near-misses of real ids: a final newline, upper case, an underscore, a glob, a path.
HOSTILE_IDS = ["hv-1\n", "HV-1", "hv_1", "hv-?", "hv-*", "hv-1.sls", "../hv-1", "-hv-1"]


def test_a_minion_id_that_is_not_plain_is_refused_and_nothing_changes(master: Master):
    """Pillar gives such an id no secrets (pillar/top.sls), so the runner writes none for
    it: one clear error, no file touched."""
    assert master.run("secrets.init", f"site={SITE}")[0] == 0
    before = master.files()
    key, secret = token_hex(16), token_hex(8)
    calls = [
        ["run", "secrets.set_flickr_key", {"minion": minion, "key": key, "secret": secret}]
        for minion in HOSTILE_IDS
    ] + [
        ["run", "secrets.forget", {"minion": minion.replace("hv", "dl")}] for minion in HOSTILE_IDS
    ]
    for (_, function, kwargs), refused in zip(calls, master.steps(*calls), strict=True):
        minion = kwargs["minion"]
        assert refused["retcode"] == 1 and refused["changed"] is False, (function, minion)
        assert refused["error"].startswith(f"bad minion id {minion!r}: lower-case letters"), (
            function,
            refused,
        )
    assert master.files() == before

    # A key accepted under such an id (by hand, by mistake): init names it and writes nothing.
    master.accept("dl-X")
    code, returned, _ = master.run("secrets.init")
    assert code == 1 and returned["error"].startswith("bad minion id 'dl-X'"), returned
    assert master.files() == before


def test_the_runners_queue_tokens_are_the_queues_own_form(tmp_path: Path):
    """The writer takes the token form and hash from the queue's own module (one file for
    both sides): a downloader's token has the queue's prefix, db-1 holds its queue hash."""
    write_lab_secrets(
        tmp_path, ["db-1", "dl-1"], {"db_host": "10.9.0.2", "storage_host": "10.9.0.3"}
    )
    token = yaml.safe_load((tmp_path / "minions" / "dl-1.sls").read_text())["downloader"][
        "queue_token"
    ]
    db1 = yaml.safe_load((tmp_path / "minions" / "db-1.sls").read_text())
    assert token.startswith(TOKEN_PREFIX) and len(token) > len(TOKEN_PREFIX) + 40
    assert db1["queue"]["tokens"]["dl-1"] == hash_token(token)


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


def test_a_step_run_again_after_a_failure_midway_writes_what_was_missing(tmp_path: Path):
    """As if the runner was killed after saving the record but before writing st-1's file."""
    site = {"db_host": "10.9.0.2", "storage_host": "10.9.0.3"}
    write_lab_secrets(tmp_path, ["dl-1", "st-1"], site)
    writer = plain_util("private_pillar")
    writer.rotate_secrets(tmp_path, "storage_key", "start")
    st1 = tmp_path / "minions" / "st-1.sls"
    written = st1.read_text()
    st1.unlink()
    again = writer.rotate_secrets(tmp_path, "storage_key", "start")
    assert again["changed"] and again["files"] == ["minions/st-1.sls"]
    assert st1.read_text() == written and "dl-1.next" in written
    assert not writer.rotate_secrets(tmp_path, "storage_key", "start")["changed"]


STORAGE_SITE = (
    "{db_host: 10.250.0.2, storage_host: 10.250.0.3, private_network: 10.250.0.0/24,"
    " storage_backend: seaweedfs, storage_nodes: {st-1: 10.250.0.3, st-2: 10.250.0.4,"
    " st-3: 10.250.0.5}}"
)


def test_storage_nodes_come_and_go_while_the_masters_stay_pinned(master: Master):
    """What fleet.up and fleet.destroy call for a storage droplet: a node added and one
    dropped in the site's facts, which every minion sees; the masters pinned on the first
    run keep st-3's address after st-3 is gone. Bad input changes nothing."""
    master.accept("st-2", "st-3", "st-4")
    code, returned, _ = master.run("secrets.init", f"site={STORAGE_SITE}")
    assert code == 0, returned
    added, dropped, bad_address, not_storage, seen = master.steps(
        ["run", "secrets.storage_nodes", {"add": {"st-4": "10.250.0.6"}}],
        ["run", "secrets.storage_nodes", {"drop": "st-3"}],
        ["run", "secrets.storage_nodes", {"add": {"st-5": "not-an-address"}}],
        ["run", "secrets.storage_nodes", {"drop": ["db-1"]}],
        ["pillar", ["st-4", "dl-1"]],
    )
    assert added["changed"] and added["apply"] == ["st-*"]
    assert sorted(added["storage_nodes"]) == ["st-1", "st-2", "st-3", "st-4"]
    pinned = {"st-1": "10.250.0.3", "st-2": "10.250.0.4", "st-3": "10.250.0.5"}
    assert dropped["storage_nodes"] == {
        "st-1": "10.250.0.3",
        "st-2": "10.250.0.4",
        "st-4": "10.250.0.6",
    }
    assert dropped["storage_masters"] == ["st-1", "st-2", "st-3"]
    assert dropped["storage_master_addresses"] == pinned
    assert (
        bad_address["retcode"] == 1
        and "'not-an-address' is not an IP address" in (bad_address["error"])
    )
    assert not_storage["retcode"] == 1 and "db-1 is not a storage node" in not_storage["error"]
    for minion in ("st-4", "dl-1"):
        site = seen[minion]["site"]
        assert sorted(site["storage_nodes"]) == ["st-1", "st-2", "st-4"], minion
        assert site["storage_master_addresses"] == pinned, minion


def test_storage_nodes_change_under_the_writers_lock(tmp_path: Path):
    """A change of storage_nodes waits for the private root's lock and then reads the record
    afresh: another writer's change made meanwhile (here st-5, as a secrets.init would) is
    kept, and so is its own (st-4)."""
    site = {
        "db_host": "10.9.0.2",
        "storage_host": "10.9.0.3",
        "storage_nodes": {"st-1": "10.9.0.3"},
    }
    write_lab_secrets(tmp_path, ["st-1"], site)
    writer = plain_util("private_pillar")
    outcome: dict = {}
    with writer._FILES.locked(tmp_path):
        stale = writer.load_record(tmp_path)
        change = threading.Thread(
            target=lambda: outcome.update(
                writer.change_storage_nodes(tmp_path, {"st-4": "10.9.0.6"})
            )
        )
        change.start()
        change.join(timeout=2)  # it cannot finish while the lock is held
        assert change.is_alive() and not outcome
        stale["site"]["storage_nodes"]["st-5"] = "10.9.0.7"
        (tmp_path / "secrets.json").write_text(json.dumps(stale))
    change.join(timeout=60)
    assert sorted(outcome["storage_nodes"]) == ["st-1", "st-4", "st-5"]
    assert sorted(writer.load_record(tmp_path)["site"]["storage_nodes"]) == ["st-1", "st-4", "st-5"]


def credentials(pillar: dict) -> dict:
    """A harvester pillar's Flickr credentials (its other flickr: settings left out)."""
    names = ("api_key", "api_secret", "oauth_token", "oauth_token_secret")
    return {k: v for k, v in pillar["harvester"]["flickr"].items() if k in names}


def test_set_flickr_key_with_an_access_token_gives_the_harvester_what_it_signs_with(
    master: Master, tmp_path: Path
):
    """The token file `harvester flickr-auth` writes: the harvester's pillar then holds the
    key, the secret and the token; half a token is refused with nothing changed; a key set
    again without a token takes the old token away (a token belongs to one key)."""
    assert master.run("secrets.init", f"site={SITE}")[0] == 0
    token = {
        "key": token_hex(16),
        "secret": token_hex(8),
        "oauth_token": f"72157{token_hex(6)}-{token_hex(8)}",
        "oauth_token_secret": token_hex(8),
    }
    token_file = tmp_path / "hv-1-token.yaml"
    token_file.write_text(yaml.safe_dump(token))
    token_file.chmod(0o600)

    signed, seen = master.steps(
        ["run", "secrets.set_flickr_key", {"minion": "hv-1", "from_file": str(token_file)}],
        ["pillar", ["hv-1", "hv-2"]],
    )
    assert signed == {"minion": "hv-1", "changed": True}
    assert credentials(seen["hv-1"]) == {
        "api_key": token["key"],
        "api_secret": token["secret"],
        "oauth_token": token["oauth_token"],
        "oauth_token_secret": token["oauth_token_secret"],
    }
    assert token["oauth_token_secret"] not in json.dumps(seen["hv-2"])

    before = master.files()
    half = tmp_path / "half.yaml"
    half.write_text(yaml.safe_dump({k: v for k, v in token.items() if k != "oauth_token_secret"}))
    code, returned, output = master.run(
        "secrets.set_flickr_key", "minion=hv-1", f"from_file={half}"
    )
    assert code == 1 and "oauth_token and oauth_token_secret together" in returned["error"]
    assert token["oauth_token"] not in output
    code, returned, _ = master.run(
        "secrets.set_flickr_key", "minion=hv-1", f"key={token['key']}",
        f"secret={token['secret']}", f"oauth_token={token['oauth_token']}",
    )  # fmt: skip
    assert code == 1 and "both token fields or neither" in returned["error"]
    assert master.files() == before

    unsigned, seen = master.steps(
        ["run", "secrets.set_flickr_key",
         {"minion": "hv-1", "key": token["key"], "secret": token["secret"]}],
        ["pillar", ["hv-1"]],
    )  # fmt: skip
    assert unsigned == {"minion": "hv-1", "changed": True}
    assert credentials(seen["hv-1"]) == {"api_key": token["key"]}
    assert token["oauth_token_secret"] not in master.files()["minions/hv-1.sls"][0]
    assert not master.record()["minions"]["hv-1"]["flickr_oauth"]
