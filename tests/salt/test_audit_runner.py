"""`salt-run audit.storage` through a real salt-master with two real minions on loopback:
`st-1` walks a storage tree with `_modules/ccmirror_audit.py`, the inventory travels through
the master in pieces, and `db-1` compares it with a real MariaDB catalog through `harvester
audit-storage`. Keys are pre-seeded on both ends, as the lab does (never `auto_accept`).
Also: the runner and module load through Salt's loaders with a `CLI Example::` each, and
their refusals are one clear error."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.integration.test_storage_audit import PHOTOS, Mirror, fill_images, image_path_of
from tests.salt.conftest import runner_master_config
from tests.salt.loopback import Master, salt_on_loopback

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = Path(sys.executable).parent.parent
MINIONS = ("st-1", "db-1")


@dataclass
class SaltOnLoopback(Master):
    storage_root: Path
    migrate_config: Path
    transfer: str  # what the master's config makes the runner's transfer=auto choose


@pytest.fixture(params=["relay", "push"])
def salt(request, salt_call_bin) -> Iterator[SaltOnLoopback]:
    """A master with st-1 and db-1. `relay`: Salt's default master config; `push`: one that
    takes pushed files and serves them through minionfs, so the runner's `auto` pushes."""
    # Short: Salt's unix sockets live below root_dir, and a pytest tmp_path is too long.
    base = Path(tempfile.mkdtemp(prefix="ccm-audit-"))
    setup = SaltOnLoopback(base / "master", base / "storage", base / "migrate.yaml", request.param)
    master: dict = {"ccmirror_migrate_config": str(setup.migrate_config)}
    if request.param == "push":
        (base / "roots").mkdir()
        master |= {
            "file_recv": True,
            "fileserver_backend": ["roots", "minionfs"],
            "file_roots": {"base": [str(base / "roots")]},
        }
    ccmirror = {
        "venv": str(VENV),
        "migrate_config": str(setup.migrate_config),
        "storage_root": str(setup.storage_root),
    }
    with salt_on_loopback(base, {minion: ccmirror for minion in MINIONS}, master):
        yield setup


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
