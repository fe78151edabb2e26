"""The `harvester` commands Salt runs on minions, as real processes: `tasks` (what a harvester
minion's worker holds, for `ccmirror.status` and `ccmirror.drain`) against a real MariaDB,
and `queue-status` (the queue's /v1/status on the database minion, for `batch.status`)
against a real `harvester serve`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from harvester.db import connect
from harvester.search.tasks import claim
from lab.processes import child
from tests.conftest import harvester_env, run_harvester
from tests.integration import test_queue_service
from tests.integration.test_harvest import seed_day

# The fixtures that fill a catalog and start the queue service on it.
catalog, start_queue, queue = (
    test_queue_service.catalog,
    test_queue_service.start_queue,
    test_queue_service.queue,
)


def test_tasks_lists_what_a_worker_holds_and_nothing_for_another(db_url, sql):
    env = harvester_env(db_url)
    seed_day(env, stride=3600)
    conn = connect(db_url)
    held = claim(conn, "hv-1", 600)
    conn.close()
    assert held is not None

    listed = run_harvester("tasks", "--worker", "hv-1", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    [(expires,)] = sql("SELECT lease_expires FROM search_tasks WHERE id = %s", held.id)
    assert json.loads(listed.stdout) == [
        {"id": held.id, "task": held.task_key, "page": 1, "lease_expires": str(expires)}
    ]
    human = run_harvester("tasks", "--worker", "hv-1", env=env)
    assert human.returncode == 0 and f"task {held.id} {held.task_key}: page 1" in human.stdout

    other = run_harvester("tasks", "--worker", "hv-2", "--json", env=env)
    assert other.returncode == 0 and json.loads(other.stdout) == []
    assert run_harvester("tasks", "--worker", "hv-2", env=env).stdout == "hv-2 holds no task\n"


def test_tasks_without_a_database_is_one_clear_error():
    closed = f"mysql://nobody:nothing@127.0.0.1:{child.free_port()}/ccmirror"
    failed = run_harvester("tasks", "--worker", "hv-1", "--json", env=harvester_env(closed))
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith("harvester: ") and len(failed.stderr.splitlines()) == 1


def queue_config(path: Path, db_url: str, port: int, bind: str) -> Path:
    path.write_text(yaml.safe_dump({"db_url": db_url, "queue": {"bind": bind, "port": port}}))
    return path


def test_queue_status_reads_the_queue_at_the_address_its_config_binds(queue, tmp_path):
    leased = queue.post("/v1/leases", "dl-1", {"max_items": 5})
    assert leased.status_code == 200, leased.text
    port = int(queue.url.rsplit(":", 1)[1])
    env = harvester_env("")  # the status needs no database
    # A queue bound to every address is asked on loopback.
    for bind in ("127.0.0.1", "0.0.0.0"):
        config = queue_config(tmp_path / f"queue-{bind}.yaml", "", port, bind)
        shown = run_harvester("--config", str(config), "queue-status", "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        assert status["leases_active"] == 1 and status["items_leased_out"] == 5, status
        assert status["images"]["leased"] == 5 and status["maintenance"] is False
        assert set(status) == set(queue.status())  # all of it, as the queue serves it
    human = run_harvester("--config", str(config), "queue-status", env=env)
    assert human.returncode == 0, human.stderr
    assert "maintenance off" in human.stdout and "leases out: 1 (5 photos)" in human.stdout


def test_queue_status_when_the_queue_does_not_answer_is_one_clear_error(tmp_path):
    port = child.free_port()
    config = queue_config(tmp_path / "queue.yaml", "", port, "127.0.0.1")
    failed = run_harvester("--config", str(config), "queue-status", "--json", env=harvester_env(""))
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr == (
        f"harvester: the queue did not answer at http://127.0.0.1:{port}/v1/status:"
        " [Errno 111] Connection refused\n"
    )
