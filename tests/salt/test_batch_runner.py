"""`_runners/batch.py` through Salt's own runner loader (a master config with runner_dirs on
this checkout): every function loads with its `CLI Example::`, bad arguments give one clear
error before any minion is asked (no master runs here: a call that reached for one would
fail differently), and the status table is built from sample returns shaped as
`harvester status --json`, the queue's /v1/status and `ccmirror.status` give them. And
`batch.status` through a real master with a database and a harvester minion on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

from harvester.db import connect
from harvester.search.tasks import claim
from tests.conftest import harvester_env
from tests.integration import test_queue_service
from tests.integration.test_harvest import seed_day
from tests.salt.conftest import runner_master_config
from tests.salt.loopback import salt_on_loopback

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = Path(sys.executable).parent.parent
# The fixtures that fill a catalog and start the queue service on it.
catalog, start_queue, queue = (
    test_queue_service.catalog,
    test_queue_service.start_queue,
    test_queue_service.queue,
)
LOAD_AND_CHECK = r"""
import json, sys
import salt.config, salt.loader
opts = salt.config.master_config(sys.argv[1])
runners = salt.loader.runner(opts, utils=salt.loader.utils(opts))  # as salt-run loads them
names = sorted(name for name in runners if name.startswith("batch."))
g = runners["batch.status"].__globals__
harvest = {
    "tasks": {"pending": 3, "running": 1, "done": 40, "failed": 2},
    "photos": {"api": 1200, "yfcc": 0},
    "images": {"pending": 700, "leased": 200, "stored": 300},
    "photos_per_second": 12.5, "calls_per_second": 0.4,
    "catalog_lag": {"harvested_until": 1577923199, "lag_seconds": 93784},
    "rechecks": {"flags": {"not_cc": 3, "gone": 1, "private": 0},
                 "oldest_check": 1577836800, "last_check": 1577923199},
    "items_in_backoff": 50,
}
queue = {
    "maintenance": False, "images": {"pending": 900, "stored": 300},
    "leases_active": 2, "items_leased_out": 200, "stored_per_second_5m": 4.0,
    "eta_seconds": 225, "progress": 0.25,
    "stored": {"last_hour": 1200, "last_24h": 20000, "to_do": 900, "eta_seconds": 2700},
    "workers": [{"worker": "dl-1", "stored_per_second_5m": 4.0, "stored_1h": 300}],
}
fleet = {
    "dl-1": {"role": "downloader", "installed": True, "version": "0.1.0",
             "service": {"name": "ccmirror-downloader", "state": "active"},
             "work": {"phase": "fetching", "stored_per_second_5m": 4.0}},
    "hv-1": {"role": "harvester", "installed": True, "version": "0.1.0",
             "service": {"name": "ccmirror-harvester", "state": "active"},
             "work": {"drain_requested": False, "tasks": [{"id": 5, "page": 2}]}},
    "dl-2": "Minion did not return. [No response]",
}
# Through the loader, as batch.status calls it: its __utils__ exist only inside a loader call.
table = runners.run(g["status_table"], "db-1", harvest, queue, fleet)
broken = runners.run(g["status_table"], "db-1", {"error": "harvester: database error"},
                     {"error": "Connection refused"}, {})
errors = {}
for name, kwargs in {
    "no_kind": {},
    "bad_kind": {"kind": "photos"},
    "no_end": {"kind": "timeslices", "start": "2004-01-01"},
    "bad_date": {"kind": "timeslices", "start": "yesterday", "end": "2004-02-01"},
    "bad_stride": {"kind": "timeslices", "start": "2004-01-01", "end": "2004-02-01",
                   "stride": "-5"},
    "no_file": {"kind": "queries"},
    "missing_file": {"kind": "queries", "file": "/nonexistent/terms.txt"},
}.items():
    try:
        g["seed_arguments"](kwargs.get("kind"), kwargs.get("start"), kwargs.get("end"),
                            kwargs.get("stride"), kwargs.get("file"))
        errors[name] = None
    except g["BatchError"] as error:
        errors[name] = str(error)
import datetime
args, _ = g["seed_arguments"]("timeslices", datetime.date(2004, 1, 1), "2004-02-01", 3600, None)
terms = sys.argv[2]
qargs, qstdin = g["seed_arguments"]("queries", None, None, None, terms)
g["__context__"] = {}
refused = runners["batch.seed"](kind="photos")
refused_wait = runners["batch.wait"](until="forever")
refused_yfcc = runners["batch.import_yfcc"](paths="relative/sample.tsv")
refused_requeue = [runners["batch.requeue"](**kwargs) for kwargs in (
    {}, {"state": "stored"}, {"state": "failed", "since": "last week"})]
requeue_args = [g["requeue_arguments"]("failed", "retry: HTTP 5%", datetime.date(2026, 2, 1),
                                       "True"), g["requeue_arguments"]("gone", None, None, False)]
print(json.dumps({
    "names": names,
    "docs": {n: runners[n].__doc__ for n in names},
    "table": table, "broken": broken, "errors": errors, "args": args,
    "qargs": qargs, "qstdin": qstdin,
    "refused": refused, "refused_wait": refused_wait, "refused_yfcc": refused_yfcc,
    "refused_requeue": refused_requeue, "requeue_args": requeue_args,
    "left": [g["tasks_left"](table), g["photos_left"](table),
             g["tasks_left"](broken), g["photos_left"](broken)],
}, default=str))
"""


def test_batch_runner_loads_and_builds_its_table(salt_call_bin, tmp_path):
    config = runner_master_config(tmp_path)
    terms = tmp_path / "terms.txt"
    terms.write_text("# colours\nred\nblue\n")
    python = salt_call_bin.parent / "python"
    result = subprocess.run(
        [str(python), "-c", LOAD_AND_CHECK, str(config), str(terms)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["names"] == [
        "batch.db_minion",
        "batch.import_yfcc",
        "batch.reconcile",
        "batch.requeue",
        "batch.seed",
        "batch.status",
        "batch.wait",
    ]
    for name, doc in seen["docs"].items():
        assert "CLI Example::" in doc and f"salt-run {name}" in doc, name

    table = seen["table"]
    assert table["harvest"]["tasks"] == {"pending": 3, "running": 1, "done": 40, "failed": 2}
    assert table["catalog"]["by_source"] == {"api": 1200, "yfcc": 0}
    assert table["catalog"]["by_state"]["pending"] == 700  # the database's, not the snapshot
    assert table["catalog"]["by_state"]["leased"] == 200
    assert table["queue"]["eta_seconds"] == 225
    assert table["queue"]["workers"] == {"dl-1": "4.0/s, 300 stored in 1h"}
    assert table["fleet"]["dl-1"] == "downloader 0.1.0, active, fetching, 4.0 stored/s"
    assert table["fleet"]["hv-1"] == "harvester 0.1.0, active, task 5 page 2"
    assert table["fleet"]["dl-2"].startswith("no answer")
    assert "storage_audit" in table and table["storage_audit"] is None
    summary = table["summary"]
    assert "tasks: pending 3, running 1, done 40, failed 2" in summary
    assert "drained in 3m45s" in summary and "storage audit: not run" in summary
    # The words of the queue's page and `harvester status` (ccmirror_common/progress.py).
    assert (
        "catalog: 25.0% mirrored (300 of 1,200 CC photos stored); failed 0, gone 0, pending 650,"
        " leased 200, in backoff 50; not counted: taken down 0, no longer CC 0"
    ) in summary.splitlines()
    assert "stored 1,200 in the last hour, 20,000 in 24 h; at 1,200/h: 45m00s" in summary
    # How far behind now the catalog is (#21): the done slices' reach, and now minus that.
    assert table["harvest"]["catalog_lag"]["lag_seconds"] == 93784
    assert "harvested up to 2020-01-01T23:59:59Z, 1d02h behind now" in summary.splitlines()
    # What the background re-check flagged (#21), and how fresh its checks are.
    assert table["harvest"]["rechecks"]["flags"]["not_cc"] == 3
    assert (
        "re-check: last check 2020-01-01T23:59:59Z, oldest 2020-01-01T00:00:00Z;"
        " flagged: not_cc 3, gone 1, private 0"
    ) in summary.splitlines()
    assert seen["left"] == [4, 900, None, None]
    assert seen["broken"]["harvest"] == {"error": "harvester: database error"}
    assert seen["broken"]["queue"]["error"] == "Connection refused"

    errors = seen["errors"]
    assert "kind must be timeslices or queries" in errors["no_kind"]
    assert "photos" in errors["bad_kind"]
    assert "needs start= and end=" in errors["no_end"]
    assert "start must be a UTC date" in errors["bad_date"]
    assert "stride must be a positive whole number" in errors["bad_stride"]
    assert "needs file=" in errors["no_file"]
    assert "cannot read /nonexistent/terms.txt" in errors["missing_file"]
    assert seen["args"] == [
        "seed",
        "timeslices",
        "--stride",
        "3600",
        "--start",
        "2004-01-01",
        "--end",
        "2004-02-01",
    ]
    assert seen["qargs"] == ["seed", "queries", "/dev/stdin"]
    assert seen["qstdin"] == "# colours\nred\nblue\n"
    assert seen["refused"]["result"] is False and seen["refused"]["retcode"] == 1
    assert "kind must be" in seen["refused"]["error"]
    assert "until must be one of harvested, downloaded" in seen["refused_wait"]["error"]
    assert seen["refused_yfcc"]["retcode"] == 1
    assert "absolute paths on the db minion" in seen["refused_yfcc"]["error"]
    no_state, stored, bad_since = seen["refused_requeue"]
    assert all(r["result"] is False and r["retcode"] == 1 for r in seen["refused_requeue"])
    assert no_state["error"] == "state must be one of failed, gone, not None"
    assert stored["error"] == "state must be one of failed, gone, not 'stored'"
    assert "since must be a UTC date" in bad_since["error"]
    assert seen["requeue_args"] == [
        ["requeue", "--json", "--state", "failed", "--error", "retry: HTTP 5%"]
        + ["--since", "2026-02-01", "--dry-run"],
        ["requeue", "--json", "--state", "gone"],
    ]


def test_batch_status_through_a_master_asks_the_database_the_queue_and_a_harvester(
    salt_call_bin, queue, db_url, sql
):
    """`salt-run batch.status` with db-1 and hv-1 answering: db-1 runs `harvester status` and
    `harvester queue-status` (the queue's own config), hv-1 `ccmirror.status` (`harvester
    tasks`); a queue that does not answer is one line in the table."""
    seed_day(harvester_env(db_url), stride=3600)
    conn = connect(db_url)
    held = claim(conn, "hv-1", 600)
    conn.close()
    assert queue.post("/v1/leases", "dl-1", {"max_items": 5}).status_code == 200
    base = Path(tempfile.mkdtemp(prefix="ccm-batch-"))
    migrate, queue_yaml, harvester_yaml = (base / f"{n}.yaml" for n in ("m", "q", "h"))
    port = int(queue.url.rsplit(":", 1)[1])
    migrate.write_text(yaml.safe_dump({"db_url": db_url}))
    harvester_yaml.write_text(yaml.safe_dump({"db_url": db_url}))
    queue_yaml.write_text(yaml.safe_dump({"db_url": db_url, "queue": {"port": port}}))
    master = {
        "ccmirror_venv": str(VENV),
        "ccmirror_migrate_config": str(migrate),
        "ccmirror_queue_config": str(queue_yaml),
    }
    minions = {
        "db-1": {"venv": str(VENV)},
        "hv-1": {
            "venv": str(VENV),
            "harvester_config": str(harvester_yaml),
            "harvester_drain_file": str(base / "harvester.drain"),
        },
    }
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    with salt_on_loopback(base, minions, master) as salt:
        answer, code, _ = salt.run_json("batch.status")
        assert code == 0, answer
        assert answer["db_minion"] == "db-1"
        assert answer["harvest"]["tasks"]["running"] == 1
        assert (answer["queue"]["leases_active"], answer["queue"]["items_leased_out"]) == (1, 5)
        assert answer["fleet"]["hv-1"].startswith(f"harvester {version}, ")
        assert answer["fleet"]["hv-1"].endswith(f", task {held.id} page 1"), answer["fleet"]

        queue.stop()
        answer, code, _ = salt.run_json("batch.status")
        assert code == 0 and answer["harvest"]["tasks"]["running"] == 1, answer
        assert answer["queue"]["error"] == (
            f"harvester: the queue did not answer at http://127.0.0.1:{port}/v1/status:"
            " [Errno 111] Connection refused"
        )
