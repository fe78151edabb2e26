"""Salt execution module for ccmirror machines: what a minion is doing, drain and resume its
daemon, check its storage key with a real write, and the queue's maintenance switch.

Synced to minions from `_modules/`, with the `_utils/` it uses (saltutil.sync_all). It calls
the programs the states install (`/opt/ccmirror/venv/bin/downloader`, `.../harvester`) with
the configs the states write (`/etc/ccmirror/*.yaml`), so the daemons' own code decides what
`drained` means. Paths come from `config.get` (minion config, grains or pillar, under
`ccmirror:`): `venv`, `downloader_config`, `harvester_config`, `queue_config`,
`harvester_drain_file`, `role`.

The module loads everywhere; on a machine without ccmirror, `ccmirror.status` says so.

Exit codes: a drain, resume, storage check or maintenance switch that fails still returns
its report (`result: False`, the comment, the work) and sets `__context__["retcode"]`, so
`salt`/`salt-call` exit non-zero and the runners read the report as before; a bad argument
or the wrong minion raises CommandExecutionError (one line, no traceback; a runner's
LocalClient gets it as a string starting with "ERROR").
"""

from __future__ import annotations

import email.parser
import glob
import json
import os
import re
import time

import salt.utils.data
from salt.exceptions import CommandExecutionError

__virtualname__ = "ccmirror"
# Replaced by Salt's loader when it loads the module; named here for readers and linters.
__salt__: dict = {}
__opts__: dict = {}
__context__: dict = {}

DEFAULTS = {
    "venv": "/opt/ccmirror/venv",
    "downloader_config": "/etc/ccmirror/downloader.yaml",
    "harvester_config": "/etc/ccmirror/harvester.yaml",
    "queue_config": "/etc/ccmirror/queue.yaml",
    "harvester_drain_file": "/var/lib/ccmirror/harvester.drain",
}
# Roles by minion id prefix, as in salt/top.sls and pillar/top.sls.
ROLE_PREFIXES = (
    ("dl-", "downloader"),
    ("hv-", "harvester"),
    ("db-", "db"),
    ("st-", "storage"),
    ("bk-", "backup"),
    ("master", "master"),
)
SERVICES = {
    "downloader": "ccmirror-downloader",
    "harvester": "ccmirror-harvester",
    "db": "ccmirror-queue",
    "storage": "ccmirror-storage-sshd",  # rsync; SeaweedFS's: STORAGE_SERVICES
    "backup": "ccmirror-weed-backup",  # weed filer.backup, filling the backup cluster
}
# The storage role's main service by site:storage_backend (salt/storage/init.sls).
STORAGE_SERVICES = {"rsync": "ccmirror-storage-sshd", "seaweedfs": "ccmirror-weed-volume"}
POLL_SECONDS = 0.5


def __virtual__():
    return __virtualname__


def _setting(name: str) -> str:
    return __salt__["config.get"](f"ccmirror:{name}", DEFAULTS.get(name, ""))


def _minion_id() -> str:
    return __opts__["id"]


def _role() -> str:
    role = __salt__["config.get"]("ccmirror:role", "")
    if role:
        return role
    minion = _minion_id()
    for prefix, name in ROLE_PREFIXES:
        if minion.startswith(prefix):
            return name
    return "unknown"


def _program(name: str) -> str:
    return os.path.join(_setting("venv"), "bin", name)


def _run(argv: list[str], timeout: float | None = None) -> dict:
    return __salt__["cmd.run_all"](
        argv, python_shell=False, timeout=timeout, ignore_retcode=True, output_loglevel="quiet"
    )


def _downloader(*args: str, timeout: float | None = None) -> dict:
    return _run([_program("downloader"), "--config", _setting("downloader_config"), *args], timeout)


def _harvester(config: str, *args: str, timeout: float | None = None) -> dict:
    return _run([_program("harvester"), "--config", _setting(config), *args], timeout)


def _version() -> str | None:
    """The installed ccmirror's version, read from its metadata in the venv without running
    it: deploy.release asks before an upgrade, when the installed code may be any older one."""
    site = os.path.join(_setting("venv"), "lib", "python3*", "site-packages")
    pattern = os.path.join(site, "ccmirror-*.dist-info")  # the wheel's name, normalized
    found = [
        (os.path.getmtime(path), version)
        for path in glob.glob(pattern)
        if (version := _ccmirror_version(os.path.join(path, "METADATA"))) is not None
    ]
    # Two copies means an interrupted upgrade left one: pip writes the new one last.
    return max(found)[1] if found else None


def _ccmirror_version(metadata: str) -> str | None:
    """`Version` of a METADATA file when it is ccmirror's (not ccmirror-lab's, say)."""
    try:
        with open(metadata, encoding="utf-8") as handle:
            headers = email.parser.HeaderParser().parse(handle)
    except (OSError, UnicodeDecodeError):
        return None
    name = re.sub(r"[-_.]+", "-", str(headers.get("Name", ""))).lower()
    return headers.get("Version") if name == "ccmirror" else None


def _fresh_pillar(key: str, default: object) -> object:
    """A pillar value as the master compiles it now. The minion's copy in memory is from its
    start (a highstate does not renew it), and saltutil.refresh_pillar renews the minion's
    copy for later jobs, not this one's: pillar.items compiles afresh. Unmasked, as the
    value is read here and never returned whole."""
    fresh = __salt__["pillar.items"](unmask=True)
    return salt.utils.data.traverse_dict_and_list(fresh, key, default)


def _service_state(role: str) -> dict:
    name = SERVICES.get(role)
    if role == "storage":
        name = STORAGE_SERVICES.get(_fresh_pillar("site:storage_backend", "rsync"), name)
    if name is None:
        return {}
    out = _run(["systemctl", "is-active", name], 30)
    return {"name": name, "state": out["stdout"].strip() or "unknown"}


def _outcome(report: dict) -> dict:
    """The report as is; a failed one also fails the job's exit code (Salt's own guess from
    `result` in a dict is not relied on: `retcode` is the documented way)."""
    if not report.get("result"):
        __context__["retcode"] = 1
    return report


def _seconds(value, name: str) -> float:
    """A number of seconds, zero or more, checked as the runners check theirs (`_utils/`
    synced to minions with the modules); anything else is the caller's mistake."""
    try:
        return __utils__["arguments.seconds"](value, name)  # noqa: F821 (Salt injects it)
    except ValueError as exc:
        raise CommandExecutionError(str(exc)) from None


def _message(out: dict) -> str:
    return (out["stdout"].strip() + "\n" + out["stderr"].strip()).strip()


def _downloader_work() -> dict:
    out = _downloader("status", "--json", timeout=60)
    if out["retcode"] != 0:
        return {"error": _message(out)}
    try:
        return json.loads(out["stdout"])
    except ValueError:
        return {"error": f"downloader status --json printed no JSON: {_message(out)[:300]}"}


def _harvester_tasks() -> list[dict] | dict:
    """The search tasks this minion's worker holds (`harvester tasks`), read with the
    harvester's own settings and database code."""
    out = _harvester("harvester_config", "tasks", "--worker", _minion_id(), "--json", timeout=60)
    if out["retcode"] != 0:
        return {"error": _message(out).splitlines()[-1:]}
    return json.loads(out["stdout"])


def _harvester_work() -> dict:
    drain = os.path.exists(_setting("harvester_drain_file"))
    return {"drain_requested": drain, "tasks": _harvester_tasks()}


def status():
    """
    What this machine is: role, installed ccmirror version, its service's state, and its
    current work (a downloader's lease and phase, a harvester's task, the queue's
    maintenance switch on a db minion).

    CLI Example::

        salt 'dl-*' ccmirror.status
    """
    role = _role()
    version = _version()
    result = {
        "id": _minion_id(),
        "role": role,
        "installed": version is not None,
        "version": version,
        "service": _service_state(role),
    }
    if version is None:
        result["work"] = "ccmirror is not installed"
        return result
    if role == "downloader":
        result["work"] = _downloader_work()
    elif role == "harvester":
        result["work"] = _harvester_work()
    elif role in ("db", "master"):
        result["work"] = _maintenance("status", 0)
    return result


def drain(wait=0):
    """
    Ask this machine's daemon to take no new work, kept across restarts until
    ``ccmirror.resume``. A downloader finishes its lease when most of it is fetched, else
    releases the rest, then idles as ``drained``; a harvester gives its task back after the
    current page. With ``wait`` (seconds), return once it is idle, or ``result: False``
    when it is not in time. Safe to run twice.

    CLI Example::

        salt 'dl-*' ccmirror.drain wait=300
    """
    wait = _seconds(wait, "wait")
    role = _role()
    if role == "downloader":
        out = _downloader("drain", "--wait", f"{wait:g}", timeout=wait + 60)
        return _outcome(
            {
                "result": out["retcode"] == 0,
                "comment": _message(out),
                "work": _downloader_work(),
            }
        )
    if role == "harvester":
        return _outcome(_drain_harvester(wait))
    return {"result": True, "comment": f"nothing to drain on a {role} minion"}


def _drain_harvester(wait: float) -> dict:
    path = _setting("harvester_drain_file")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    deadline = time.monotonic() + wait
    while True:
        tasks = _harvester_tasks()
        if not tasks and not isinstance(tasks, dict):
            return {"result": True, "comment": "drained: no task held", "work": _harvester_work()}
        if time.monotonic() >= deadline:
            return {
                "result": not wait,
                "comment": "drain requested; the task in hand is given back after its page",
                "work": _harvester_work(),
            }
        time.sleep(POLL_SECONDS)


def resume():
    """
    Remove the drain request: the daemon takes work again within a second or two.
    Safe to run twice.

    CLI Example::

        salt 'dl-*' ccmirror.resume
    """
    role = _role()
    if role == "downloader":
        out = _downloader("resume", timeout=60)
        return _outcome({"result": out["retcode"] == 0, "comment": _message(out)})
    if role == "harvester":
        path = _setting("harvester_drain_file")
        existed = os.path.exists(path)
        if existed:
            os.remove(path)
        return {"result": True, "comment": "resumed" if existed else "was not drained"}
    return {"result": True, "comment": f"nothing to resume on a {role} minion"}


def check_storage():
    """
    On a downloader: write a small probe file (``manifests/probe/<minion>.txt``) to storage
    with rsync through the restricted storage key and the pinned host key, as a push does,
    and say whether it worked. The key cannot delete, so the probe stays (overwritten at the
    next check).

    CLI Example::

        salt 'dl-*' ccmirror.check_storage
    """
    role = _role()
    if role != "downloader":
        raise CommandExecutionError(
            f"check_storage runs on downloader minions only; {_minion_id()} is a {role} minion"
        )
    out = _downloader("check-storage", "--json", timeout=120)
    try:
        report = json.loads(out["stdout"])
    except ValueError:
        report = None
    if not isinstance(report, dict):
        return _outcome({"result": False, "comment": _message(out) or "downloader did not answer"})
    report["result"] = bool(report.pop("ok", False))
    report["comment"] = (
        f"wrote {report.get('path')} to {report.get('target')}"
        if report["result"]
        else str(report.get("error") or _message(out) or "check failed")
    )
    return _outcome(report)


def maintenance(action="status", retry_after=300):
    """
    The queue's maintenance switch, on the database minion: ``on`` (the queue vends no
    photo, takes reports, and harvesters pause after their page), ``off``, or ``status``.
    Safe to run twice.

    CLI Example::

        salt 'db-*' ccmirror.maintenance on
        salt 'db-*' ccmirror.maintenance status
    """
    # Salt reads arguments as YAML: `on` and `off` arrive as True and False.
    action = {True: "on", False: "off"}.get(action, action) if isinstance(action, bool) else action
    if action not in ("on", "off", "status"):
        raise CommandExecutionError(f"action must be on, off or status, not {action!r}")
    return _outcome(_maintenance(action, _seconds(retry_after, "retry_after")))


def _maintenance(action: str, retry_after: float) -> dict:
    """The switch's report; `status` (ccmirror.status on db minions) calls it too."""
    args = ["maintenance", action]
    if action == "on":
        args += ["--retry-after", str(int(retry_after))]
    out = _harvester("queue_config", *args, timeout=60)
    text = _message(out)
    return {
        "result": out["retcode"] == 0,
        "maintenance": text.startswith("maintenance on") if out["retcode"] == 0 else None,
        "comment": text,
    }
