"""`salt-run batch.requeue` through a real master with a database minion on loopback: a dry
run counts, and a run moves, exactly the matching photos; a date the harvester refuses is the
job's failure. (Its refusals before any minion is asked: tests/salt/test_batch_runner.py.)"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml

from tests.integration.test_redrive import ROWS, catalog, failed_catalog  # noqa: F401 (fixture)
from tests.salt.loopback import salt_on_loopback

VENV = Path(sys.executable).parent.parent


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
