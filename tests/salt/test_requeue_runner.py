"""`salt-run batch.requeue`: bad arguments are one clear error before any minion is asked
(through Salt's own runner loader, no master), and through a real master with a database
minion on loopback a dry run counts, and a run moves, exactly the matching photos."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from tests.integration.test_redrive import ROWS, catalog, failed_catalog  # noqa: F401 (fixture)
from tests.salt.conftest import runner_master_config
from tests.salt.loopback import salt_on_loopback

VENV = Path(sys.executable).parent.parent
LOAD_AND_REFUSE = r"""
import datetime, json, sys
import salt.config, salt.loader
opts = salt.config.master_config(sys.argv[1])
runners = salt.loader.runner(opts, utils=salt.loader.utils(opts))
g = runners["batch.requeue"].__globals__
g["__context__"] = {}
print(json.dumps({
    "doc": runners["batch.requeue"].__doc__,
    "refused": {
        name: runners["batch.requeue"](**kwargs)
        for name, kwargs in {
            "no_state": {}, "stored": {"state": "stored"},
            "bad_since": {"state": "failed", "since": "last week"},
        }.items()
    },
    "args": g["requeue_arguments"]("failed", "retry: HTTP 5%", datetime.date(2026, 2, 1), "True"),
    "plain": g["requeue_arguments"]("gone", None, None, False),
}))
"""


def test_requeue_refuses_bad_arguments_before_asking_a_minion(salt_call_bin, tmp_path):
    config = runner_master_config(tmp_path)
    python = salt_call_bin.parent / "python"
    result = subprocess.run(
        [str(python), "-c", LOAD_AND_REFUSE, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert "CLI Example::" in seen["doc"] and "salt-run batch.requeue" in seen["doc"]
    refused = seen["refused"]
    assert all(r["result"] is False and r["retcode"] == 1 for r in refused.values()), refused
    assert refused["no_state"]["error"] == "state must be one of failed, gone, not None"
    assert refused["stored"]["error"] == "state must be one of failed, gone, not 'stored'"
    assert "since must be a UTC date" in refused["bad_since"]["error"]
    assert seen["args"] == [
        "requeue",
        "--json",
        "--state",
        "failed",
        "--error",
        "retry: HTTP 5%",
        "--since",
        "2026-02-01",
        "--dry-run",
    ]
    assert seen["plain"] == ["requeue", "--json", "--state", "gone"]


def test_requeue_through_a_master_runs_on_the_database_minion(salt_call_bin, catalog, sql):  # noqa: F811
    failed_catalog(sql)
    before = sql(ROWS)
    base = Path(tempfile.mkdtemp(prefix="ccm-requeue-"))
    migrate = base / "m.yaml"
    migrate.write_text(yaml.safe_dump({"db_url": catalog}))
    master = {"ccmirror_venv": str(VENV), "ccmirror_migrate_config": str(migrate)}
    with salt_on_loopback(base, {"db-1": {"venv": str(VENV)}}, master) as salt:
        args = ("batch.requeue", "state=failed", "error=retry:%", "since=2026-02-01")
        dry, code, _ = salt.run_json(*args, "dry_run=True")
        assert code == 0 and dry["minion"] == "db-1", dry
        assert (dry["matched"], dry["requeued"], dry["dry_run"]) == (4, 0, True)
        assert sql(ROWS) == before
        done, code, _ = salt.run_json(*args)
        assert code == 0 and done["requeued"] == 4, done
        refused, code, _ = salt.run_json("batch.requeue", "state=failed", "since=2026-13-45")
        assert code == 1 and refused["result"] is False, refused
    pending = sql("SELECT id FROM images WHERE id <= 12 AND state = 'pending' ORDER BY id")
    assert [row[0] for row in pending] == [1, 4, 5, 7, 9, 10, 11, 12]
