"""`_runners/takedown.py` through Salt's own runner loader (every function with its `CLI
Example::`), and through a real master with a database minion on loopback: `takedown.add`
takes a photo down on the database, `takedown.list` shows it, a bad request fails the job and
changes nothing, and a site without the audit's S3 settings has no storage step (the step
itself is tests/integration/test_takedown_s3.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from harvester.db import connect
from lab.mission.catalog_images import fill_images
from tests.salt.conftest import runner_master_config
from tests.salt.loopback import salt_on_loopback

VENV = Path(sys.executable).parent.parent
LOAD = r"""
import json, sys
import salt.config, salt.loader
opts = salt.config.master_config(sys.argv[1])
runners = salt.loader.runner(opts, utils=salt.loader.utils(opts))  # as salt-run loads them
names = sorted(name for name in runners if name.startswith("takedown."))
g = runners["takedown.add"].__globals__
print(json.dumps({
    "names": names,
    "docs": {n: runners[n].__doc__ for n in names},
    "photo": g["add_arguments"](52712345678, None, "DMCA 7", None),
    "owner": g["add_arguments"](None, "1@N01", None, "alice"),
}))
"""


def test_the_runner_loads_with_its_examples(salt_call_bin, tmp_path):
    python = salt_call_bin.parent / "python"
    config = runner_master_config(tmp_path)
    result = subprocess.run([str(python), "-c", LOAD, str(config)], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["names"] == ["takedown.add", "takedown.apply", "takedown.list", "takedown.replay"]
    for name, doc in seen["docs"].items():
        assert "CLI Example::" in doc and f"salt-run {name}" in doc, name
    assert seen["photo"] == [
        "add", "--photo", "52712345678", "--reason", "DMCA 7", "--by", "salt-run takedown"
    ]  # fmt: skip
    assert seen["owner"] == ["add", "--owner", "1@N01", "--reason", "", "--by", "alice"]


def test_takedown_through_a_master_on_the_database_minion(salt_call_bin, db_url, sql):
    conn = connect(db_url)
    fill_images(conn, 3)
    conn.close()
    photo = int(sql("SELECT MIN(photo_id) FROM images")[0][0])
    base = Path(tempfile.mkdtemp(prefix="ccm-td-"))
    migrate = base / "m.yaml"
    migrate.write_text(yaml.safe_dump({"db_url": db_url}))
    master = {
        "ccmirror_venv": str(VENV),
        "ccmirror_migrate_config": str(migrate),
        "ccmirror_audit_config": str(base / "no-audit.yaml"),  # an rsync site
    }
    with salt_on_loopback(base, {"db-1": {"venv": str(VENV)}}, master) as salt:
        refused, code, _ = salt.run_json("takedown.add", f"photo={photo}", "owner=1@N01",
                                         "reason=x")  # fmt: skip
        assert code != 0 and refused["result"] is False, refused
        assert "exactly one of --photo ID and --owner NSID" in refused["error"]
        assert sql("SELECT COUNT(*) FROM takedowns") == [(0,)]

        added, code, _ = salt.run_json("takedown.add", f"photo={photo}", "reason=DMCA 7")
        assert code == 0, added
        assert added["takedown"]["withdrawn"] == {"pending": 1}
        assert "not an S3 site" in added["storage"]["skipped"]
        assert sql("SELECT state FROM images WHERE photo_id = %s", photo) == [("taken_down",)]
        assert sql("SELECT requested_by FROM takedowns") == [("salt-run takedown",)]

        listed, code, _ = salt.run_json("takedown.list")
        assert code == 0 and [t["photo_id"] for t in listed["takedowns"]] == [photo], listed
