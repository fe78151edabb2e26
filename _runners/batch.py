"""The `batch` runner: a harvest batch from the master: seed search tasks, see the whole
pipeline in one table, reconcile, and wait for a stage to finish (for orch.harvest and
orch.download).

The work runs on the database minion (the first `db-*` with the migrate config; salt/top.sls
gives `db-*` the db and queue roles, and `master*` the master role only) with the programs
and configs the states install there: `harvester` from /opt/ccmirror/venv with
/etc/ccmirror/migrate.yaml (the one config there whose user may create tasks and the
temporary tables reconcile stages in), as root. The queue's `GET /v1/status` (no token:
its own address is in the queue's `status_allow`) is read on that minion too, by `harvester
queue-status` with /etc/ccmirror/queue.yaml, at the address the queue config binds: the queue
is reachable from the private network only.
Master options `ccmirror_venv`, `ccmirror_migrate_config`, `ccmirror_queue_config` move
the paths.

Over 500 lines, one module: each function is a step of a batch as an operator drives it
(seed, import, reconcile, requeue, status, wait), all through the same database minion and
`harvester` call; `salt-run batch.<step>` is the one place to look for them.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__load__ = ["seed", "import_yfcc", "status", "reconcile", "requeue", "wait", "db_minion"]

DB_CANDIDATES = "db-*"  # salt/top.sls: db + queue; master* is the salt master only
WORKERS = "dl-* or hv-*"
DEFAULTS = {
    "venv": "/opt/ccmirror/venv",
    "migrate_config": "/etc/ccmirror/migrate.yaml",
    "queue_config": "/etc/ccmirror/queue.yaml",
}
TASK_STATES = ("pending", "running", "done", "failed")
IMAGE_STATES = ("pending", "leased", "stored", "failed", "gone", "withdrawn", "taken_down")
CALL_TIMEOUT = 120
RECONCILE_TIMEOUT = 24 * 3600
IMPORT_TIMEOUT = 24 * 3600
DATE = re.compile(r"^(\d+|\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?Z?)?)$")
CREATED = re.compile(r"created ([\d,]+) search tasks")
REQUEUE_STATES = ("failed", "gone")

__opts__: dict = {}  # replaced by Salt's loader


class BatchError(ValueError):
    """Bad arguments, or no database minion; the message says what to do."""


def _progress(message: str) -> None:
    """A progress event for salt-run's caller; silent outside a job (_utils/runner_tools.py)."""
    event = globals().get("__jid_event__")
    __utils__["runner_tools.progress"](event, message, log, "batch")  # noqa: F821 (Salt injects it)


def _client():
    return __utils__["runner_tools.local_client"](__opts__)  # noqa: F821


def _setting(name: str) -> str:
    return __opts__.get(f"ccmirror_{name}") or DEFAULTS[name]


def _harvester_argv(*args: str, config: str = "migrate") -> list[str]:
    """`harvester` on the database minion with one of its configs (migrate or queue)."""
    return [f"{_setting('venv')}/bin/harvester", "--config", _setting(f"{config}_config"), *args]


def _db_minion(client) -> str:
    """The database minion: the first (by id) that has the migrate config."""
    found = client.cmd(
        DB_CANDIDATES,
        "file.file_exists",
        [_setting("migrate_config")],
        tgt_type="glob",
        timeout=CALL_TIMEOUT,
    )
    with_config = sorted(minion for minion, ret in found.items() if ret is True)
    if not with_config:
        raise BatchError(
            f"no database minion ({DB_CANDIDATES} with {_setting('migrate_config')}) answered:"
            " apply the db states first"
        )
    return with_config[0]


def db_minion():
    """
    The database minion the batch, audit and maintenance runners work on (it runs MariaDB
    and the queue): the first (by id) ``db-*`` that has the migrate config. Only ``db-*``
    gets the db and queue roles (salt/top.sls); the salt master (``master*``) is never asked.

    CLI Example::

        salt-run batch.db_minion
    """
    try:
        with _client() as client:
            return {"result": True, "minion": _db_minion(client)}
    except BatchError as error:
        return _failed(str(error))


def _run(client, minion: str, argv: list[str], timeout: int = CALL_TIMEOUT, stdin=None) -> dict:
    return __utils__["runner_tools.run_command"](client, minion, argv, timeout, stdin)  # noqa: F821


def _harvester_on_db(args: list[str], doing: str, timeout: int = CALL_TIMEOUT, stdin=None):
    """`harvester ARGS` on the database minion, shown as `doing`: (the minion, its return)."""
    with _client() as client:
        minion = _db_minion(client)
        _progress(f"{doing} on {minion}")
        return minion, _run(client, minion, _harvester_argv(*args), timeout, stdin)


def _failed(message: str, **extra) -> dict[str, Any]:
    """One clear error; salt-run and orchestration see the job failed."""
    __context__["retcode"] = 1  # noqa: F821 (Salt injects it)
    log.error("batch: %s", message)
    return {"result": False, "error": message, "retcode": 1, **extra}


def seed(kind=None, start=None, end=None, stride=None, file=None):
    """
    Create search tasks on the database: ``kind=timeslices`` with ``start`` and ``end``
    (UTC dates, end exclusive) and optionally ``stride`` (seconds, default 600), or
    ``kind=queries`` with ``file`` (on the master: one search text per line, # comments)
    and optionally ``start``/``end``. Tasks that exist already are not made twice, so a
    second run creates none. Harvesters pick the tasks up within seconds.

    CLI Example::

        salt-run batch.seed kind=timeslices start=2004-01-01 end=2026-01-01
        salt-run batch.seed kind=timeslices start=2020-01-01 end=2020-02-01 stride=3600
        salt-run batch.seed kind=queries file=/root/terms.txt
    """
    try:
        args, stdin = seed_arguments(kind, start, end, stride, file)
        minion, out = _harvester_on_db(args, f"seeding {kind}", stdin=stdin)
    except BatchError as error:
        return _failed(str(error), kind=kind)
    if out["retcode"] != 0:
        return _failed(_message(out), kind=kind, minion=minion)
    created = CREATED.search(out["stdout"])
    return {
        "result": True,
        "minion": minion,
        "kind": kind,
        "created": int(created[1].replace(",", "")) if created else None,
        "comment": out["stdout"].strip(),
    }


def import_yfcc(paths=None):
    """
    Import YFCC100M files into the catalog's sources (``harvester import-yfcc`` on the
    database minion): ``paths``, a list of files on that minion (the dataset as published:
    plain, .gz or .bz2; tens of GB, so they are put there directly, not through the
    master). Rows seen before are updated, not duplicated, so a second run is harmless.
    Then ``batch.reconcile`` merges them into the catalog.

    CLI Example::

        salt-run batch.import_yfcc paths='[/srv/yfcc/yfcc100m_dataset-0.bz2]'
        salt-run batch.import_yfcc paths=/srv/yfcc/sample.tsv
    """
    try:
        files = [paths] if isinstance(paths, str) else list(paths or [])
        if not files or not all(isinstance(f, str) and f.startswith("/") for f in files):
            raise BatchError("paths must name one or more absolute paths on the db minion")
        doing = f"importing {len(files)} YFCC100M file(s)"
        minion, out = _harvester_on_db(["import-yfcc", "--json", *files], doing, IMPORT_TIMEOUT)
    except (BatchError, TypeError) as error:
        return _failed(str(error), paths=paths)
    if out["retcode"] != 0:
        return _failed(_message(out), minion=minion, paths=files)
    return {"result": True, "minion": minion, "paths": files, "imported": _json_or_error(out)}


def status():
    """
    The pipeline in one table: search tasks by state, photos per source, the catalog by
    queue state, the queue (leases out, stored/s, ETA, per worker), each harvester's and
    downloader's version, daemon and rate, the last storage audit (`salt-run
    audit.storage`; None before the first), and how far behind now the catalog is (the last
    upload second the done time slices reach without a gap; db-1's schedule seeds new days).
    ``summary`` is the same as text.

    CLI Example::

        salt-run batch.status
        salt-run batch.status --out=json
    """
    try:
        table = _collect_status()
    except BatchError as error:
        return _failed(str(error))
    if "error" in table["harvest"]:
        __context__["retcode"] = 1  # noqa: F821 (Salt injects it)
    return table


def _collect_status() -> dict[str, Any]:
    with _client() as client:
        minion = _db_minion(client)
        harvest = _run(client, minion, _harvester_argv("status", "--json"))
        queue = _run(client, minion, _harvester_argv("queue-status", "--json", config="queue"))
        fleet = client.cmd(WORKERS, "ccmirror.status", tgt_type="compound", timeout=CALL_TIMEOUT)
    return status_table(minion, _json_or_error(harvest), _json_or_error(queue), fleet)


def reconcile(batch_size=None, restart=False):
    """
    Merge every source into the `images` catalog (``harvester reconcile`` on the database
    minion): new CC photos enter the download queue. A pass stopped midway resumes where it
    stood; ``restart=True`` starts a new pass. Returns the pass's summary line, and posts it
    (or the error) to the operator's webhook (pillar ``monitoring:webhook_url``, if set).

    CLI Example::

        salt-run batch.reconcile
        salt-run batch.reconcile batch_size=50000
    """
    args = ["reconcile"]
    try:
        if batch_size is not None:
            args += ["--batch-size", str(_positive(batch_size, "batch_size"))]
    except BatchError as error:
        return _failed(str(error))  # bad input: nothing run, nothing posted
    if _truthy(restart):
        args.append("--restart")
    try:
        minion, out = _harvester_on_db(args, "reconcile", RECONCILE_TIMEOUT)
    except BatchError as error:
        return _notified(_failed(str(error)), "reconcile")
    if out["retcode"] != 0:
        return _notified(_failed(_message(out), minion=minion), "reconcile")
    lines = out["stdout"].strip().splitlines()
    done = {"result": True, "minion": minion, "comment": lines[-1] if lines else ""}
    return _notified(done, "reconcile")


def requeue(state=None, error=None, since=None, dry_run=False):
    """
    Put ``state=failed`` (or ``gone``) photos back in the download queue with a fresh attempt
    count (``harvester requeue`` on the database minion, in batches), only those whose last
    error is LIKE ``error`` and whose catalog row last changed at or after ``since`` (UTC)
    if given. ``dry_run=True`` counts them and changes nothing.

    CLI Example::

        salt-run batch.requeue state=failed dry_run=True
        salt-run batch.requeue state=failed error='retry: HTTP 5%' since=2026-12-01
    """
    try:
        args = requeue_arguments(state, error, since, dry_run)
        minion, out = _harvester_on_db(args, f"requeue of {state} photos", RECONCILE_TIMEOUT)
    except BatchError as problem:
        return _failed(str(problem), state=state)
    if out["retcode"] != 0:
        return _failed(_message(out), minion=minion, state=state)
    return {"result": True, "minion": minion, **_json_or_error(out)}


def wait(until="harvested", timeout=86400, interval=30, notify_every=900):
    """
    Poll ``batch.status`` until a stage is finished, for orchestration:
    ``until=harvested`` (no search task pending or running) or ``until=downloaded`` (no
    photo pending or leased in the queue). Fails after ``timeout`` seconds. Posts to the
    operator's webhook (pillar ``monitoring:webhook_url``, if set) a line when it starts,
    one every ``notify_every`` seconds (0: none between) and one at the end.

    CLI Example::

        salt-run batch.wait until=harvested timeout=3600
        salt-run batch.wait until=downloaded interval=60 notify_every=3600
    """
    try:
        if until not in FINISHED:
            raise BatchError(f"until must be one of {', '.join(FINISHED)}, not {until!r}")
        timeout = _positive(timeout, "timeout")
        interval = _positive(interval, "interval")
        notify = __utils__["batch_notify.wait_notices"]  # noqa: F821 (Salt injects it)
        notices = notify(__opts__, until, notify_every, _duration)
    except ValueError as error:  # BatchError, or notify_every's
        return _failed(str(error))
    deadline = time.monotonic() + timeout
    while True:
        try:
            table = _collect_status()
            left = FINISHED[until](table)
        except BatchError as error:
            table, left = {"error": str(error)}, None  # a minion restarting: asked again
        notices.update(left)
        if left == 0:
            done = {"result": True, "until": until, "comment": until, "status": table}
            return notices.end(done, left)
        _progress(f"{until}: {'?' if left is None else f'{left:,}'} left")
        if time.monotonic() + interval > deadline:
            return notices.end(_failed(f"not {until} after {timeout}s", status=table), left)
        time.sleep(interval)


# --- pure parts -----------------------------------------------------------------------------


def seed_arguments(kind, start, end, stride, file) -> tuple[list[str], str | None]:
    """`harvester seed` arguments (and the queries file's text, passed on stdin: the file
    is on the master, the program on the database minion)."""
    if kind not in ("timeslices", "queries"):
        raise BatchError(f"kind must be timeslices or queries, not {kind!r}")
    args = ["seed", kind]
    stdin = None
    if kind == "timeslices":
        if start is None or end is None:
            raise BatchError("kind=timeslices needs start= and end= (UTC dates)")
        if file is not None:
            raise BatchError("file= is for kind=queries")
        if stride is not None:
            args += ["--stride", str(_positive(stride, "stride"))]
    else:
        if file is None:
            raise BatchError("kind=queries needs file= (on the master, one text a line)")
        if stride is not None:
            raise BatchError("stride= is for kind=timeslices")
        try:
            stdin = Path(str(file)).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BatchError(f"cannot read {file}: {exc.__class__.__name__}") from None
        args.append("/dev/stdin")
    for name, value in (("start", start), ("end", end)):
        if value is not None:
            args += [f"--{name}", _date(value, name)]
    return args, stdin


def requeue_arguments(state, error, since, dry_run) -> list[str]:
    if state not in REQUEUE_STATES:
        raise BatchError(f"state must be one of {', '.join(REQUEUE_STATES)}, not {state!r}")
    args = ["requeue", "--json", "--state", state]
    if error is not None:
        args += ["--error", str(error)]
    if since is not None:
        args += ["--since", _date(since, "since")]
    return [*args, "--dry-run"] if _truthy(dry_run) else args


def status_table(db_minion: str, harvest: dict, queue: dict, fleet: dict) -> dict[str, Any]:
    """batch.status's answer from the database minion's `harvester status --json`, the
    queue's /v1/status and the workers' `ccmirror.status`."""
    tasks = dict.fromkeys(TASK_STATES, 0) | harvest.get("tasks", {})
    catalog = {
        "by_source": harvest.get("photos", {}),
        # The database's count, fresh: the queue's snapshot may be seconds old, and a wait
        # for the queue to drain must not read "nothing pending" from before a reconcile.
        "by_state": dict.fromkeys(IMAGE_STATES, 0) | harvest.get("images", queue.get("images", {})),
    }
    queue_row = {
        key: queue.get(key)
        for key in (
            "as_of",
            "maintenance",
            "leases_active",
            "items_leased_out",
            "stored_per_second_5m",
            "eta_seconds",
            "progress",
            "mirrored",
            "stored",
        )
    }
    if "error" in queue:
        queue_row = {"error": queue["error"]}
    queue_row["workers"] = {
        row["worker"]: f"{row['stored_per_second_5m']}/s, {row['stored_1h']} stored in 1h"
        for row in queue.get("workers", [])
    }
    table = {
        "db_minion": db_minion,
        "harvest": (
            {"error": harvest["error"]}
            if "error" in harvest
            else {
                "tasks": tasks,
                "catalog_lag": harvest.get("catalog_lag"),
                "rechecks": harvest.get("rechecks"),
            }
        ),
        "catalog": catalog,
        "queue": queue_row,
        "fleet": {minion: _fleet_line(ret) for minion, ret in sorted(fleet.items())},
        "storage_audit": harvest.get("storage_audit"),
    }
    table["summary"] = summary_text(table, harvest)
    return table


def summary_text(table: dict, harvest: dict) -> str:
    tasks = table["harvest"].get("tasks")
    lines = [
        "tasks: "
        + (
            ", ".join(f"{state} {n:,}" for state, n in tasks.items())
            if tasks
            else f"error: {table['harvest'].get('error')}"
        ),
        "photos: "
        + (", ".join(f"{s} {n:,}" for s, n in table["catalog"]["by_source"].items()) or "none"),
        # The words of the queue's page and `harvester status` (ccmirror_common/progress.py).
        "catalog: "
        + _progress_module().format_mirrored(
            table["catalog"]["by_state"], harvest.get("items_in_backoff")
        ),
    ]
    queue = table["queue"]
    if "error" in queue:
        lines.append(f"queue: error: {queue['error']}")
    else:
        eta = queue.get("eta_seconds")
        lines.append(
            f"queue: {queue.get('leases_active')} leases out ({queue.get('items_leased_out')}"
            f" photos), {queue.get('stored_per_second_5m')} stored/s, drained in "
            + (_duration(eta) if eta is not None else "unknown")
            + (" (maintenance)" if queue.get("maintenance") else "")
        )
        if queue.get("stored"):
            lines.append(_progress_module().format_stored_rate(queue["stored"]))
    if harvest.get("photos_per_second") is not None:
        lines.append(
            f"harvest: {harvest.get('photos_per_second')} photos/s,"
            f" {harvest.get('calls_per_second')} calls/s"
        )
    if harvest.get("catalog_lag") is not None:
        lines.append(_progress_module().format_catalog_lag(harvest["catalog_lag"]))
    if harvest.get("rechecks") is not None:
        lines.append(_progress_module().format_rechecks(harvest["rechecks"]))
    lines += [f"{minion}: {line}" for minion, line in table["fleet"].items()]
    audit = table["storage_audit"]
    lines.append(f"storage audit: {'not run' if audit is None else audit['summary']}")
    return "\n".join(lines)


def tasks_left(table: dict) -> int | None:
    """Search tasks pending or running; None when the harvest status could not be read."""
    tasks = table["harvest"].get("tasks")
    return None if tasks is None else sum(tasks[state] for state in ("pending", "running"))


def photos_left(table: dict) -> int | None:
    """Photos pending or leased in the catalog; None when the database could not be read."""
    if "error" in table["harvest"]:
        return None
    return sum(table["catalog"]["by_state"][state] for state in ("pending", "leased"))


FINISHED = {"harvested": tasks_left, "downloaded": photos_left}


def _fleet_line(ret) -> str:
    """One line per worker minion from `ccmirror.status`."""
    if not isinstance(ret, dict):
        return f"no answer: {ret}"
    if not ret.get("installed"):
        return f"{ret.get('role', '?')}: ccmirror is not installed"
    service = ret.get("service") or {}
    line = f"{ret.get('role')} {ret.get('version')}"
    if service:
        line += f", {service.get('state')}"
    work = ret.get("work")
    if not isinstance(work, dict):
        return line
    if "error" in work:
        return f"{line}, error: {work['error']}"
    if ret.get("role") == "downloader":
        line += f", {work.get('phase', '?')}"
        if work.get("stored_per_second_5m") is not None:
            line += f", {work['stored_per_second_5m']} stored/s"
        return line
    tasks = work.get("tasks")
    if isinstance(tasks, list):
        line += ", " + (", ".join(f"task {t['id']} page {t['page']}" for t in tasks) or "idle")
    if work.get("drain_requested"):
        line += " (drained)"
    return line


def _notified(ret: dict, label: str) -> dict:
    """`ret` after its end is posted to the operator's webhook (_utils/batch_notify.py)."""
    return __utils__["batch_notify.with_notice"](__opts__, ret, label)  # noqa: F821


def _json_or_error(out: dict) -> dict:
    return __utils__["runner_tools.json_or_error"](out)  # noqa: F821


def _message(out: dict) -> str:
    return __utils__["runner_tools.last_line"](out)  # noqa: F821


def _progress_module():
    """ccmirror_common/progress.py, loaded by path: the programs' own words and formats."""
    return __utils__["runner_tools.shared_module"]("progress")  # noqa: F821


def _duration(seconds: float) -> str:
    """The programs' own format (ccmirror_common/progress.py), so an ETA reads alike."""
    return _progress_module().format_duration(seconds)


def _date(value, name: str) -> str:
    # Salt reads a bare 2004-01-01 as YAML: a date object.
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if not DATE.match(text):
        raise BatchError(f"{name} must be a UTC date (2004-01-01) or unix seconds, not {value!r}")
    return text


def _positive(value, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0 or isinstance(value, bool):
        raise BatchError(f"{name} must be a positive whole number, not {value!r}")
    return number


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "no", "0", "off", "")
    return bool(value)
