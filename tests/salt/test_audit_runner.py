"""`salt-run audit.storage` through a real salt-master with two real minions on loopback:
`st-1` walks a storage tree with `_modules/ccmirror_audit.py`, the inventory travels through
the master in pieces, and `db-1` compares it with a real MariaDB catalog through `harvester
audit-storage`. Keys are pre-seeded on both ends, as the lab does (never `auto_accept`).
Also: the runner and module load through Salt's loaders with a `CLI Example::` each, and
their refusals are one clear error."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lab.fleet.salt_master import SALT_VENV, generate_keys, write_file
from tests.conftest import wait_for
from tests.integration.test_storage_audit import PHOTOS, Mirror, fill_images, image_path_of
from tests.salt.conftest import runner_master_config

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = Path(sys.executable).parent.parent
MINIONS = ("st-1", "db-1")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class SaltOnLoopback:
    config_dir: Path  # the master's -c
    storage_root: Path
    migrate_config: Path
    transfer: str  # what the master's config makes the runner's transfer=auto choose

    def run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SALT_VENV / "bin" / tool), "-c", str(self.config_dir), "--out=json", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_json(self, *args: str, timeout: float = 300) -> tuple[dict, int, list[str]]:
        """`salt-run ARGS`: its return (the last JSON document), exit code, and the progress
        messages it showed before."""
        result = self.run("salt-run", *args, timeout=timeout)
        decoder, text, at, documents = json.JSONDecoder(), result.stdout, 0, []
        while text[at:].strip():
            document, at = decoder.raw_decode(text, len(text) - len(text[at:].lstrip()))
            documents.append(document)
        assert documents and isinstance(documents[-1], dict), result.stdout + result.stderr
        progress = [d["event"]["message"] for d in documents[:-1] if d.get("suffix") == "progress"]
        return documents[-1], result.returncode, progress

    def call(self, minion: str, *args: str):
        result = self.run("salt", "-t", "60", minion, *args)
        return json.loads(result.stdout)[minion], result.returncode


def start(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={"PATH": os.environ["PATH"]},
        )  # fmt: skip


@functools.cache
def throwaway_keys() -> dict[str, tuple[str, str]]:
    """Key pairs for the master and each minion, made once for both masters of this file
    (salt-key takes a second or two each)."""
    names = ("master", *MINIONS)
    with ThreadPoolExecutor(len(names)) as pool:
        return dict(zip(names, pool.map(generate_keys, names), strict=True))


def stop(processes: list[subprocess.Popen], grace: float = 1.0) -> None:
    """SIGTERM, then SIGKILL to each process group after `grace` seconds: a throwaway
    master's orderly shutdown takes several seconds and keeps nothing worth waiting for."""
    for process in processes:
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture(params=["relay", "push"])
def salt(request, salt_call_bin) -> Iterator[SaltOnLoopback]:
    """A master with st-1 and db-1. `relay`: Salt's default master config; `push`: one that
    takes pushed files and serves them through minionfs, so the runner's `auto` pushes."""
    # Short: Salt's unix sockets live below root_dir, and a pytest tmp_path is too long.
    base = Path(tempfile.mkdtemp(prefix="ccm-audit-"))
    publish, ret = free_port(), free_port()
    master_dir = base / "master"
    pki = master_dir / "root" / "etc" / "salt" / "pki" / "master"
    keys = throwaway_keys()
    private, public = keys["master"]
    write_file(pki / "master.pem", private, 0o400)
    write_file(pki / "master.pub", public, 0o644)
    setup = SaltOnLoopback(master_dir, base / "storage", base / "migrate.yaml", request.param)
    master = {
        "interface": "127.0.0.1",
        "publish_port": publish,
        "ret_port": ret,
        "root_dir": str(master_dir / "root"),
        "user": "root",
        "auto_accept": False,
        "runner_dirs": [str(ROOT / "_runners")],
        "utils_dirs": [str(ROOT / "_utils")],
        "ccmirror_migrate_config": str(setup.migrate_config),
        "log_level_logfile": "info",
    }
    if request.param == "push":
        (base / "roots").mkdir()
        master |= {
            "file_recv": True,
            "fileserver_backend": ["roots", "minionfs"],
            "file_roots": {"base": [str(base / "roots")]},
        }
    write_file(master_dir / "master", yaml.safe_dump(master), 0o644)
    processes = [
        start(
            [str(SALT_VENV / "bin" / "salt-master"), "-c", str(master_dir), "-l", "quiet"],
            base / "master.out",
        )
    ]
    for minion in MINIONS:
        directory = base / minion
        minion_pki = directory / "root" / "etc" / "salt" / "pki" / "minion"
        private, public = keys[minion]
        write_file(minion_pki / "minion.pem", private, 0o400)
        write_file(minion_pki / "minion.pub", public, 0o644)
        write_file(minion_pki / "minion_master.pub", (pki / "master.pub").read_text(), 0o644)
        write_file(pki / "minions" / minion, public, 0o644)
        config = {
            "id": minion,
            "master": "127.0.0.1",
            "master_port": ret,
            "publish_port": publish,
            "root_dir": str(directory / "root"),
            "user": "root",
            "acceptance_wait_time": 1,
            "module_dirs": [str(ROOT / "_modules")],
            "systemd.scope": False,
            "ccmirror": {
                "venv": str(VENV),
                "migrate_config": str(setup.migrate_config),
                "storage_root": str(setup.storage_root),
            },
        }
        write_file(directory / "minion", yaml.safe_dump(config), 0o644)
        processes.append(
            start(
                [str(SALT_VENV / "bin" / "salt-minion"), "-c", str(directory), "-l", "quiet"],
                base / f"{minion}.out",
            )
        )
    try:

        def answering() -> bool:
            result = setup.run("salt", "--static", "-t", "3", "*", "test.ping", timeout=60)
            try:
                return set(json.loads(result.stdout or "{}")) == set(MINIONS)
            except ValueError:
                return False

        wait_for(answering, 90, "both minions to answer the master", interval=0.5)
        yield setup
    finally:
        stop(processes)
        shutil.rmtree(base, ignore_errors=True)


def test_audit_storage_through_a_master_requeues_bad_files_and_reports_orphans(
    salt, db_url, sql, tmp_path
):
    conn_setup(db_url)
    salt.migrate_config.write_text(yaml.safe_dump({"db_url": db_url}))
    mirror = Mirror(db_url, sql, salt.storage_root, tmp_path)
    stored = mirror.store()
    gone, corrupt = stored[0], stored[3]
    mirror.path_of(gone).unlink()
    mirror.path_of(corrupt).write_bytes(b"not the photo")
    (salt.storage_root / "images" / "stray.txt").write_text("left by hand")

    answer, code, progress = salt.run_json("audit.storage", "clock_margin=0", "progress_seconds=0")
    assert code == 0, answer
    # The walk's own progress (an event per file here), shown by the runner as it comes.
    assert f"st-1: walked {PHOTOS:,} files" in " | ".join(progress), progress
    assert (answer["storage"], answer["db_minion"]) == ("st-1", "db-1")
    assert answer["transfer"] == salt.transfer
    audit = answer["audit"]
    assert {k: audit[k] for k in ("files", "ok", "missing", "corrupt", "orphans", "requeued")} == {
        "files": PHOTOS,
        "ok": PHOTOS - 2,
        "missing": 1,
        "corrupt": 1,
        "orphans": 1,
        "requeued": 2,
    }
    assert audit["samples"]["missing"] == [image_path_of(sql, gone)]
    assert audit["samples"]["orphans"] == ["images/stray.txt"]
    assert answer["inventory"]["files"] == PHOTOS and answer["comment"] == audit["summary"]
    states = dict(sql("SELECT id, state FROM images"))
    assert [i for i, state in states.items() if state == "pending"] == [gone, corrupt]
    assert (salt.storage_root / "images" / "stray.txt").exists()

    # Run again: the requeued photos are no longer stored, so nothing more to requeue.
    again, code, _ = salt.run_json("audit.storage", "full=False")
    assert code == 0, again
    assert (again["audit"]["missing"], again["audit"]["requeued"]) == (0, 0), again
    assert (again["inventory"]["reused"], again["inventory"]["hashed"]) == (PHOTOS, 0)
    assert sql("SELECT COUNT(*) FROM storage_audits") == [(2,)]

    if salt.transfer == "push":
        return
    # Refusals: one clear error each, retcode 1.
    bad, code, _ = salt.run_json("audit.storage", "timeout=-5")
    assert code == 1 and "timeout must be a positive" in bad["error"], bad
    answer, code = salt.call("st-1", "ccmirror_audit.inventory", "root=/nonexistent")
    assert code == 1 and "no images/ under the storage root /nonexistent" in answer["comment"]
    answer, code = salt.call("st-1", "ccmirror_audit.read_chunk", "/etc/passwd", "0")
    assert code == 1 and "not an inventory of this minion" in answer["comment"]
    answer, code = salt.call("db-1", "ccmirror_audit.compare", "st-1.tsv.gz", "sha256=deadbeef")
    assert code == 1 and "the copy is damaged" in answer["comment"]
    answer, code = salt.call("db-1", "ccmirror_audit.write_chunk", "st-1.tsv.gz", "5", "AAAA")
    assert code == 1 and "start again at 0" in answer["comment"]
    assert sql("SELECT COUNT(*) FROM storage_audits") == [(2,)]


def conn_setup(db_url: str) -> None:
    from harvester.db import connect

    conn = connect(db_url)
    fill_images(conn, PHOTOS)
    conn.close()


LOAD_AND_CHECK = r"""
import json, sys
import salt.config, salt.loader
opts = salt.config.master_config(sys.argv[1])
runners = salt.loader.runner(opts, utils=salt.loader.utils(opts))  # as salt-run loads them
minion_opts = salt.config.minion_config(None)
minion_opts.update(module_dirs=[sys.argv[2]], file_client="local")
modules = salt.loader.minion_mods(minion_opts)
names = sorted(n for n in runners if n.startswith("audit.")) + sorted(
    n for n in modules if n.startswith("ccmirror_audit."))
docs = {n: (runners.get(n) or modules.get(n)).__doc__ for n in names}
print(json.dumps({"names": names, "docs": docs}))
"""


def test_runner_and_module_load_through_salt_with_a_cli_example_each(salt_call_bin, tmp_path):
    config = runner_master_config(tmp_path)
    result = subprocess.run(
        [str(salt_call_bin.parent / "python"), "-c", LOAD_AND_CHECK, str(config),
         str(ROOT / "_modules")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["names"] == [
        "audit.storage",
        "ccmirror_audit.compare",
        "ccmirror_audit.inventory",
        "ccmirror_audit.read_chunk",
        "ccmirror_audit.write_chunk",
    ]
    for name, doc in seen["docs"].items():
        command = "salt-run" if name.startswith("audit.") else "ccmirror_audit."
        assert "CLI Example::" in doc and command in doc, name
