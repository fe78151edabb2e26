"""Salt execution module: the SeaweedFS cluster as a storage minion (`st-*`) sees it, for
``salt-run storage.status`` and ``salt-run storage.repair``.

``status`` asks the raft leader among the masters over HTTP (``/cluster/status``,
``/dir/status``, ``/vol/status``) and each volume server for its disk (``/status``): nodes,
volume slots, bytes, files, the replication, and the volumes with fewer copies than their
replica placement asks. ``repair`` runs SeaweedFS's own tools in ``weed shell`` (commands
on stdin, never argv): ``volume.fix.replication`` copies a volume that lost a copy onto a
server with a free slot, ``volume.balance`` moves volumes from full servers to empty ones.

Why ``volume.balance`` often moves nothing (read in SeaweedFS's source,
weed/shell/command_volume_balance.go and weed/topology/balancer/, and seen with ``-v``):

- it ranks servers by *bytes* in whole volumes, ``bytes // volumeSizeLimit``
  (``balancer.UsedVolumeEquivalents``), not by volume count, and ``-volumeBy=ALL`` only
  chooses which volumes may move, not this ranking. Until servers hold whole volume-size
  limits of data (30 GB each here, 256 MB in the lab), every one counts as empty: the ideal
  ratio is 0 and no move "helps" (``-v`` prints ``volumes:0 ... idealVolumeRatio 0``);
- ``balancer.IsGoodMove`` refuses a replica onto a host that already holds another copy of
  the volume (machine anti-affinity by IP): servers sharing an address, as on loopback,
  never receive a replicated volume.

A new volume server is used anyway: the master places new volumes on it as the collection
grows, and ``volume.fix.replication`` copies lost replicas onto it.

Settings (``config.get``: minion config, grains or pillar), each also an argument for tests:
``site:storage_nodes`` (id -> address; the masters are ``storage:seaweedfs:masters``, else
the pinned ``site:storage_master_addresses``, else the first three ids sorted, one below
three), ``storage:seaweedfs:ports`` (master 9333, volume 8080) and
``storage:seaweedfs:prefix`` (weed is ``<prefix>/venv/bin/weed``).
Standard library only: ccmirror is not installed on storage minions.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

log = logging.getLogger(__name__)

__virtualname__ = "ccmirror_storage"
__load__ = ["status", "repair"]
# Replaced by Salt's loader when it loads the module; named here for readers and linters.
__salt__: dict = {}
__context__: dict = {}

DEFAULT_PREFIX = "/opt/seaweedfs"  # salt/storage/defaults.yaml: storage:seaweedfs:prefix
DEFAULT_PORTS = {"master": 9333, "volume": 8080}
HTTP_TIMEOUT = 10
SAMPLE = 50  # under-replicated volumes listed in full; the rest are counted
STEPS = {
    # name: the weed shell command; -apply is added when the repair applies
    "fix_replication": "volume.fix.replication",
    "balance": "volume.balance -collection=ALL_COLLECTIONS",
}
ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
# weed shell's lines (weed/shell/command_volume_fix_replication.go, command_volume_balance.go)
UNDER = re.compile(r"^volume (\d+) replication \S+(, but under replicated| is not well placed)")
COPY = re.compile(r"^replicating volume (\d+) \S+ from (\S+) to dataNode (\S+)")
TRIM = re.compile(r"^deleting volume (\d+) from (\S+) \.\.\.")
MOVE = re.compile(r"moving \S* ?volume (?:\S+_)?(\d+) (\S+) => (\S+)")
UNPLACED = re.compile(r"^failed to place volume (\d+) replica")  # no server with room for it
STUCK = re.compile(r"^no progress made on (\d+) under replicated volumes")
FAILED = re.compile(r"^(error: |unknown command|fixing under replicated volume \d+: )")


def __virtual__():
    return __virtualname__


class StorageError(Exception):
    """A request this module refuses, or a cluster that does not answer; says which."""


def _failed(message: str, **extra) -> dict:
    __context__["retcode"] = 1
    log.error("ccmirror_storage: %s", message)
    return {"result": False, "comment": message, **extra}


# --- settings ------------------------------------------------------------------------------


def _config(key: str, default=None):
    return __salt__["config.get"](key, default)


def _port(name: str) -> int:
    value = _config(f"storage:seaweedfs:ports:{name}", None) or DEFAULT_PORTS[name]
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StorageError(f"storage:seaweedfs:ports:{name} is not a port: {value!r}") from None


def _addresses(value, name: str) -> list[str]:
    """host:port addresses from a list or a comma-separated string; refused if malformed."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    addresses = [str(item).strip() for item in items if str(item).strip()]
    bad = [address for address in addresses if not ADDRESS.match(address)]
    if bad or not addresses:
        raise StorageError(f"{name} must be host:port addresses, comma-separated; not {value!r}")
    return addresses


def masters_of(
    nodes: dict, port: int, named: list | None = None, pinned: dict | None = None
) -> list[str]:
    """The masters as salt/storage/seaweedfs/map.jinja places them: `named` addresses, else
    the `pinned` ones (site:storage_master_addresses, id: address), else the first three
    storage nodes by id (raft needs an odd count), one below three."""
    if named:
        return [f"{address}:{port}" for address in named]
    if isinstance(pinned, dict) and pinned:
        return [f"{pinned[master]}:{port}" for master in sorted(pinned)]
    if not isinstance(nodes, dict) or not nodes:
        raise StorageError(
            "pillar site:storage_nodes is empty: no SeaweedFS masters known (is this a"
            " storage minion?)"
        )
    ids = sorted(nodes)
    return [f"{nodes[i]}:{port}" for i in ids[: 3 if len(ids) >= 3 else 1]]


def _masters(masters) -> list[str]:
    if masters:
        return _addresses(masters, "masters")
    named = _config("storage:seaweedfs:masters", []) or []
    pinned = _config("site:storage_master_addresses", {}) or {}
    return masters_of(_config("site:storage_nodes", {}), _port("master"), named, pinned)


def _weed(weed) -> str:
    path = str(weed or os.path.join(_config("storage:seaweedfs:prefix", DEFAULT_PREFIX) or
                                    DEFAULT_PREFIX, "venv", "bin", "weed"))  # fmt: skip
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise StorageError(f"no weed binary at {path} (storage:seaweedfs:prefix)")
    return path


def _seconds(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not 0 < number <= 7 * 86400:
        raise StorageError(f"{name} must be a number of seconds from 1 to a week; not {value!r}")
    return number


def _flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise StorageError(f"{name} must be True or False; not {value!r}")


# --- asking the cluster ------------------------------------------------------------------


def _get_json(url: str, timeout: float) -> dict:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http only)
        return json.loads(response.read().decode("utf-8"))


def _http_address(server: str) -> str:
    """weed names a server host:port.grpcport; its HTTP address is host:port."""
    host, _, port = server.rpartition(":")
    return f"{host}:{port.split('.')[0]}" if host else server


def find_leader(masters: list[str], timeout: float) -> tuple[str, dict]:
    """The raft leader's HTTP address and the answer of the first master that answered."""
    errors = []
    for master in masters:
        try:
            cluster = _get_json(f"http://{master}/cluster/status", timeout)
        except (OSError, ValueError) as exc:
            errors.append(f"{master}: {exc}")
            continue
        leader = cluster.get("Leader") or ""
        if leader:
            return _http_address(leader), cluster
        errors.append(f"{master}: no raft leader")
    raise StorageError("no SeaweedFS master answered with a leader: " + "; ".join(errors))


def placement_copies(placement) -> tuple[str, int]:
    """A replica placement ({"dc", "rack", "node"} from /vol/status, or "001") as its
    three digits and the copies it asks for."""
    if isinstance(placement, dict):
        digits = [int(placement.get(k) or 0) for k in ("dc", "rack", "node")]
    else:
        digits = [int(c) for c in str(placement or "000").zfill(3)[-3:]]
    return "".join(map(str, digits)), 1 + sum(digits)


def volume_table(vol_status: dict) -> dict[int, dict]:
    """Volume id -> its copies, as the master's /vol/status reports them."""
    volumes: dict[int, dict] = {}
    for racks in (vol_status.get("Volumes") or {}).get("DataCenters", {}).values():
        for nodes in (racks or {}).values():
            for node, held in (nodes or {}).items():
                for volume in held or []:
                    replication, wanted = placement_copies(volume.get("ReplicaPlacement"))
                    entry = volumes.setdefault(
                        int(volume["Id"]),
                        {
                            "id": int(volume["Id"]),
                            "collection": volume.get("Collection", ""),
                            "replication": replication,
                            "wanted": wanted,
                            "nodes": [],
                            "files": 0,
                            "bytes": 0,
                            "read_only": False,
                        },
                    )
                    entry["nodes"].append(node)
                    # The fullest copy: a copy being written may lag by a heartbeat.
                    live = int(volume.get("FileCount", 0)) - int(volume.get("DeleteCount", 0))
                    entry["files"] = max(entry["files"], live)
                    entry["bytes"] = max(entry["bytes"], int(volume.get("Size", 0)))
                    entry["read_only"] = entry["read_only"] or bool(volume.get("ReadOnly"))
    for entry in volumes.values():
        entry["nodes"].sort()
        entry["copies"] = len(entry["nodes"])
    return volumes


def data_nodes(dir_status: dict) -> list[dict]:
    topology = dir_status.get("Topology") or {}
    nodes = []
    for center in topology.get("DataCenters") or []:
        for rack in center.get("Racks") or []:
            for node in rack.get("DataNodes") or []:
                volumes, most = int(node.get("Volumes", 0)), int(node.get("Max", 0))
                nodes.append(
                    {
                        "address": node["Url"],
                        "data_center": center.get("Id", ""),
                        "rack": rack.get("Id", ""),
                        "volumes": volumes,
                        "max_volumes": most,
                        "free_slots": max(most - volumes, 0),
                    }
                )
    return sorted(nodes, key=lambda n: n["address"])


def node_disk(address: str, timeout: float) -> dict | None:
    """A volume server's data directories' disk (its /status), summed; None if it does not
    answer."""
    try:
        answer = _get_json(f"http://{address}/status", timeout)
    except (OSError, ValueError):
        return None
    disks = answer.get("DiskStatuses") or []
    total = sum(int(d.get("all", 0)) for d in disks)
    free = sum(int(d.get("free", 0)) for d in disks)
    return {"total_bytes": total, "free_bytes": free, "used_bytes": total - free}


def summarize(leader: str, cluster: dict, dir_status: dict, vol_status: dict, disks: dict):
    """The status dict from the master's three answers and the servers' disks."""
    volumes = volume_table(vol_status)
    nodes = data_nodes(dir_status)
    for node in nodes:
        node["disk"] = disks.get(node["address"])
    under = sorted(
        (v for v in volumes.values() if v["copies"] < v["wanted"]), key=lambda v: v["id"]
    )
    max_id = int(cluster.get("MaxVolumeId") or 0)
    known_disks = [n["disk"] for n in nodes if n["disk"]]
    layouts = (dir_status.get("Topology") or {}).get("Layouts") or []
    replication = {v["replication"] for v in volumes.values()}
    replication |= {str(layout.get("replication")) for layout in layouts if "replication" in layout}
    return {
        "result": True,
        "leader": leader,
        "masters": sorted({leader, *(_http_address(p) for p in cluster.get("Peers") or [])}),
        "nodes": nodes,
        "volume_servers": len(nodes),
        "volumes": len(volumes),
        "max_volumes": sum(n["max_volumes"] for n in nodes),
        "free_slots": sum(n["free_slots"] for n in nodes),
        "files": sum(v["files"] for v in volumes.values()),
        "bytes": sum(v["bytes"] for v in volumes.values()),  # one copy of each volume
        "stored_bytes": sum(v["bytes"] * v["copies"] for v in volumes.values()),  # all copies
        "capacity_bytes": sum(d["total_bytes"] for d in known_disks),
        "used_bytes": sum(d["used_bytes"] for d in known_disks),
        "free_bytes": sum(d["free_bytes"] for d in known_disks),
        "replication": sorted(replication),
        "under_replicated": {
            "volumes": len(under),
            "files": sum(v["files"] for v in under),
            "bytes": sum(v["bytes"] for v in under),
            "list": under[:SAMPLE],
        },
        # Ids the master allocated that no live server holds: every copy lost (or removed).
        "missing_volume_ids": sorted(set(range(1, max_id + 1)) - set(volumes))[:SAMPLE],
    }


def cluster_status(masters: list[str], timeout: float) -> dict:
    leader, cluster = find_leader(masters, timeout)
    try:
        dir_status = _get_json(f"http://{leader}/dir/status", timeout)
        vol_status = _get_json(f"http://{leader}/vol/status", timeout)
    except (OSError, ValueError) as exc:
        raise StorageError(f"the leader {leader} did not answer: {exc}") from None
    disks = {node["address"]: node_disk(node["address"], timeout) for node in
             data_nodes(dir_status)}  # fmt: skip
    return summarize(leader, cluster, dir_status, vol_status, disks)


def status(masters=None, timeout=HTTP_TIMEOUT):
    """
    The SeaweedFS cluster from its masters: the raft leader; each volume server (address,
    volumes, max volumes, free slots, its disk's total/used/free bytes); volumes, files and
    bytes (one copy, and all copies); capacity, used and free bytes of the servers' disks;
    the replication; the volumes with fewer copies than their replica placement asks (with
    their files: photos with one copy fewer), and volume ids no live server holds.
    ``masters`` (host:port, comma-separated) overrides the masters found from pillar.

    CLI Example::

        salt 'st-1' ccmirror_storage.status
        salt 'st-1' ccmirror_storage.status masters=10.0.0.3:9333
    """
    try:
        return cluster_status(_masters(masters), _seconds(timeout, "timeout"))
    except StorageError as exc:
        return _failed(str(exc))


# --- repairing -----------------------------------------------------------------------------


def run_shell(weed: str, masters: list[str], command: str, timeout: float) -> tuple[str, str]:
    """One command in `weed shell` between lock and unlock (the admin lock: one shell at a
    time moves volumes), on stdin; its stdout and stderr."""
    script = f"lock\n{command}\nunlock\nexit\n"
    try:
        result = subprocess.run(  # noqa: S603 (argv of our own; the command is on stdin)
            [weed, "shell", f"-master={','.join(masters)}"],
            input=script,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StorageError(f"weed shell {command!r}: no end in {timeout:.0f}s") from None
    if result.returncode != 0:
        raise StorageError(f"weed shell {command!r} exited {result.returncode}: "
                           f"{result.stderr.strip()[-300:]}")  # fmt: skip
    return result.stdout, result.stderr


def parse_step(step: str, stdout: str, stderr: str) -> dict:
    """What a fix.replication or balance run reported: volumes found under-replicated,
    copies (made, or planned in a dry run), trims of a surplus copy, moves, failures."""
    report: dict = {"step": step, "under_replicated": 0, "copies": [], "trimmed": [],
                    "moves": [], "unplaced": [], "errors": [], "stuck": 0}  # fmt: skip
    for line in (stdout + "\n" + stderr).splitlines():
        line = line.strip()
        if UNDER.match(line):
            report["under_replicated"] += 1
        elif match := COPY.match(line):
            report["copies"].append({"volume": int(match[1]), "from": match[2], "to": match[3]})
        elif match := TRIM.match(line):
            report["trimmed"].append({"volume": int(match[1]), "from": match[2]})
        elif match := MOVE.search(line):
            report["moves"].append({"volume": int(match[1]), "from": match[2], "to": match[3]})
        elif match := UNPLACED.match(line):
            report["unplaced"].append(int(match[1]))
        elif match := STUCK.match(line):
            report["stuck"] = int(match[1])
        elif FAILED.match(line):
            report["errors"].append(line[:300])
    report["output"] = [line for line in stdout.splitlines() if line.strip()][-20:]
    return report


def _steps(steps) -> list[str]:
    names = [s.strip() for s in (steps.split(",") if isinstance(steps, str) else steps or [])]
    names = [name for name in names if name]
    unknown = [name for name in names if name not in STEPS]
    if unknown or not names:
        raise StorageError(f"steps must be some of {', '.join(STEPS)}; not {steps!r}")
    return names


def repair(apply=True, steps="fix_replication,balance", masters=None, weed=None, timeout=3600):
    """
    Repair the SeaweedFS cluster with its own tools, in ``weed shell`` under its admin lock:
    ``volume.fix.replication`` (a volume with fewer copies than its replication asks gets a
    copy on a server with a free slot; a surplus copy is trimmed) then ``volume.balance``
    (volumes move from fuller servers to emptier ones: see the module's docstring for when
    it moves nothing). ``apply=False`` is a dry run: SeaweedFS says what it would copy and
    move, and changes nothing. ``steps`` picks some (comma-separated). Returns each step's
    report (copies, trims, moves, errors, the last lines of its output), the totals, and
    the under-replicated volumes after. ``timeout`` bounds each step (seconds).

    CLI Example::

        salt 'st-1' ccmirror_storage.repair
        salt 'st-1' ccmirror_storage.repair apply=False
        salt 'st-1' ccmirror_storage.repair steps=fix_replication
    """
    try:
        apply = _flag(apply, "apply")
        names = _steps(steps)
        timeout = _seconds(timeout, "timeout")
        masters = _masters(masters)
        weed = _weed(weed)
        reports = []
        for name in names:
            started = time.monotonic()
            command = STEPS[name] + (" -apply" if apply else "")
            stdout, stderr = run_shell(weed, masters, command, timeout)
            report = parse_step(name, stdout, stderr)
            report.update(command=command, seconds=round(time.monotonic() - started, 1))
            reports.append(report)
        after = cluster_status(masters, HTTP_TIMEOUT)
    except StorageError as exc:
        return _failed(str(exc))
    return _outcome(apply, reports, after["under_replicated"]["volumes"])


def _outcome(apply: bool, reports: list[dict], under_after: int) -> dict:
    """The repair's answer: a failure when weed reported an error, or when an applied
    fix.replication leaves volumes with a copy missing (no server had room: add one)."""
    copies = sum(len(r["copies"]) for r in reports)
    moves = sum(len(r["moves"]) for r in reports)
    unplaced = sorted({vid for r in reports for vid in r["unplaced"]})
    errors = [error for r in reports for error in r["errors"]]
    if apply:
        text = f"copied {copies} volume(s), moved {moves}"
    else:
        text = f"dry run: would copy {copies} volume(s), move {moves}"
    text += f"; {under_after} volume(s) under-replicated after"
    if unplaced:
        text += (f"; no server with a free slot for {len(unplaced)} volume(s): add a volume"
                 " server (fleet.up role=storage)")  # fmt: skip
    if errors:
        text += f"; {len(errors)} error(s), the first: {errors[0]}"
    answer = {
        "apply": apply,
        "steps": reports,
        "copied": copies if apply else 0,
        "moved": moves if apply else 0,
        "would_copy": 0 if apply else copies,  # a dry run's plan
        "would_move": 0 if apply else moves,
        "unplaced": unplaced,
        "under_replicated_after": under_after,
    }
    fixing = any(r["step"] == "fix_replication" for r in reports)
    if errors or (apply and fixing and under_after):
        return _failed(text, **answer)
    return {"result": True, "comment": text, **answer}
