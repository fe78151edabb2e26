"""Salt execution module: the two ends of the storage audit (`salt-run audit.storage`).

On the storage minion (`st-*`), ``inventory`` walks ``images/`` under the storage root,
hashes every file and writes a gzip'd, tab-separated inventory in the minion's cache
directory. On the database minion, ``compare`` hands an inventory to ``harvester
audit-storage``, which compares it with the catalog, requeues photos whose file is missing
or differs, and reports files the catalog does not know. ``read_chunk`` and ``write_chunk``
carry the inventory from one minion to the other through the master (the runner relays the
pieces): no master option such as ``file_recv`` is needed, and each piece stays well under
the event bus's 1 MiB (``max_event_size``), past which Salt trims a return.

Standard library only: the ccmirror package is not installed on storage minions.

The inventory (read by ``harvester/audit/storage.py``; the two agree on this text, not on
shared code)::

    # ccmirror-storage-inventory v1<TAB>storage=st-1<TAB>root=/srv/...<TAB>started=ISO<TAB>full=1
    images/aa/bb/123.jpg<TAB>bytes<TAB>mtime_ns<TAB>sha256 hex, or - when unreadable
    ...
    # end<TAB>files=N<TAB>bytes=B

Lines are in walk order (names sorted in each directory, depth first); a path's backslash,
tab and newline are written as ``\\\\``, ``\\t``, ``\\n``. The end line makes a cut file an
error rather than a short inventory.

Over 500 lines, one file: Salt syncs an execution module to a minion as a single file (no
`_utils` reach the storage minion), and both ends of the inventory's format live here.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import gzip
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime

log = logging.getLogger(__name__)

__virtualname__ = "ccmirror_audit"
# What Salt loads; the rest are this module's helpers (the tests call write_inventory).
__load__ = ["inventory", "read_chunk", "write_chunk", "compare"]
# Replaced by Salt's loader when it loads the module; named here for readers and linters.
__salt__: dict = {}
__opts__: dict = {}
__context__: dict = {}

DEFAULTS = {
    "storage_root": "/srv/ccmirror-storage",  # salt/storage/defaults.yaml
    "venv": "/opt/ccmirror/venv",
    "migrate_config": "/etc/ccmirror/migrate.yaml",
}
FORMAT = "ccmirror-storage-inventory v1"
INVENTORY = "inventory.tsv.gz"
SUMMARY = "inventory.json"  # the last inventory's summary: the next one's ETA
HASH_BLOCK = 1 << 20
# A piece's base64 (4/3 of it) plus Salt's envelope stays under max_event_size (1 MiB).
CHUNK_BYTES = 512 * 1024
MAX_CHUNK_BYTES = 640 * 1024
PROGRESS_SECONDS = 30.0
PROGRESS_TAG = "ccmirror/audit/progress"
SAMPLE = 20
COMPARE_TIMEOUT = 24 * 3600
ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n"})


def __virtual__():
    return __virtualname__


class AuditError(Exception):
    """A request this module refuses; the message says what to do."""


def _setting(name: str) -> str:
    value = __salt__["config.get"](f"ccmirror:{name}", "")
    if not value and name == "storage_root":
        value = __salt__["config.get"]("storage:root", "")  # the storage formula's pillar
    return str(value or DEFAULTS[name])


def _audit_dir() -> str:
    """Root's own directory on every minion, outside the storage tree it describes."""
    path = os.path.join(__opts__["cachedir"], "ccmirror_audit")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _failed(message: str, **extra) -> dict:
    __context__["retcode"] = 1
    log.error("ccmirror_audit: %s", message)
    return {"result": False, "comment": message, **extra}


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "no", "0", "off", "")
    return bool(value)


# --- the walk ------------------------------------------------------------------------------


def walk_files(directory: str, base: str, stats: dict) -> Iterator[tuple[str, os.stat_result]]:
    """(path relative to `base`, stat) of every regular file below `directory`: names sorted
    in each directory, a subdirectory walked where its name sorts, so every walk has the same
    order. Names starting with a dot are rsync's work in progress (`.~tmp~/` of
    --delay-updates, `.name.XXXXXX`): skipped, not orphans."""
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        stats["unreadable"] += 1
        _sample(stats, "unreadable_sample", f"{os.path.relpath(directory, base)}: {exc}")
        return
    for entry in entries:
        if entry.name.startswith("."):
            stats["skipped"] += 1
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode):
            yield from walk_files(entry.path, base, stats)
        elif stat.S_ISREG(info.st_mode):
            yield os.path.relpath(entry.path, base), info
        else:
            stats["skipped"] += 1  # symlinks, sockets: nothing a push writes


def path_key(path: str) -> tuple[str, ...]:
    """Walk order as a sort key: name by name, so `a/x` comes before `a.b`."""
    return tuple(path.split("/"))


def _sample(stats: dict, key: str, value: str) -> None:
    if len(stats[key]) < SAMPLE:
        stats[key].append(value)


def hash_file(path: str) -> str | None:
    """The file's sha256 hex; None when it cannot be read (a failing disk: corrupt)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(HASH_BLOCK):
                digest.update(block)
    except FileNotFoundError:
        raise  # gone since the listing: the walk leaves it out
    except OSError:
        return None
    return digest.hexdigest()


def gzip_text(path: str, mode: str):
    """An inventory as text. File names are bytes: surrogateescape keeps any name's bytes
    as they were, and a fast compression level keeps the CPU for hashing."""
    return gzip.open(  # noqa: SIM115 (the caller closes it)
        path, mode, compresslevel=3, encoding="utf-8", errors="surrogateescape", newline="\n"
    )


class PreviousInventory:
    """The last inventory, read alongside the walk (both in walk order): a file whose size
    and mtime are as they were reuses its hash without a dict of millions of paths."""

    def __init__(self, path: str, root: str) -> None:
        self.handle = None
        self.current: tuple[tuple[str, ...], str, int, int, str] | None = None
        if os.path.exists(path):
            self.handle = gzip_text(path, "rt")  # closed by close(): read alongside the walk
            try:
                header = self.handle.readline()
            except (OSError, EOFError):
                header = ""
            if f"\troot={root}\t" in header:  # hashes of another tree are no use here
                self._advance()
            else:
                self.close()

    def _advance(self) -> None:
        self.current = None
        try:
            for line in self.handle:
                if line.startswith("#"):
                    continue
                fields = line.rstrip("\n").split("\t")
                if len(fields) != 4 or fields[3] == "-":
                    continue
                path = _unescape(fields[0])
                self.current = (path_key(path), path, int(fields[1]), int(fields[2]), fields[3])
                return
        except (OSError, EOFError, ValueError):  # a damaged old inventory: hash everything
            pass
        self.close()

    def lookup(self, path: str, size: int, mtime_ns: int) -> str | None:
        key = path_key(path)
        while self.current is not None and self.current[0] < key:
            self._advance()
        if self.current is not None and self.current[0] == key:
            _, _, old_size, old_mtime, digest = self.current
            if (old_size, old_mtime) == (size, mtime_ns):
                return digest
        return None

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out, chars = [], iter(text)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append({"t": "\t", "n": "\n"}.get(nxt, nxt))
        else:
            out.append(char)
    return "".join(out)


class Progress:
    """A line in the minion's log and an event on the master's bus every `every` seconds."""

    def __init__(self, storage: str, expected_files: int | None, every: float) -> None:
        self.storage = storage
        self.every = every
        self.expected = expected_files
        self.started = time.monotonic()
        self.last = self.started

    def maybe_report(self, stats: dict) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.started
        rate = stats["files"] / elapsed if elapsed > 0 else 0.0
        eta = None
        if self.expected and rate > 0 and self.expected > stats["files"]:
            eta = round((self.expected - stats["files"]) / rate)
        data = {
            "storage": self.storage,
            "files": stats["files"],
            "bytes": stats["bytes"],
            "hashed": stats["hashed"],
            "files_per_second": round(rate, 1),
            "eta_seconds": eta,
        }
        log.info("storage inventory: %s", data)
        if __opts__.get("file_client") != "local":  # a minion of a master: tell it too
            with contextlib.suppress(Exception):
                __salt__["event.fire_master"](data, PROGRESS_TAG)


def write_inventory(
    root: str, out: str, full: bool, storage: str, progress_seconds: float = PROGRESS_SECONDS
) -> dict:
    """Walk `root`/images into the gzip'd inventory `out` (written aside, then renamed in
    place: a reader never sees half of one). Returns the counts."""
    images = os.path.join(root, "images")
    if not os.path.isdir(images):
        raise AuditError(f"no images/ under the storage root {root}: is this the storage minion?")
    stats = {
        "files": 0,
        "bytes": 0,
        "hashed": 0,
        "reused": 0,
        "unreadable": 0,
        "skipped": 0,
        "unreadable_sample": [],
    }
    started_at = _utc_now()
    started = time.monotonic()
    previous = None if full else PreviousInventory(out, root)
    progress = Progress(storage, _last_summary(out).get("files"), progress_seconds)
    partial = out + ".partial"
    try:
        with gzip_text(partial, "wt") as inventory:
            header = [FORMAT, f"storage={storage}", f"root={root}", f"started={started_at}"]
            inventory.write("# " + "\t".join(header + [f"full={int(full)}"]) + "\n")
            for path, info in walk_files(images, root, stats):
                digest = previous.lookup(path, info.st_size, info.st_mtime_ns) if previous else None
                if digest is None:
                    try:
                        digest = hash_file(os.path.join(root, path))
                    except FileNotFoundError:
                        continue  # gone between the listing and the read
                    stats["hashed"] += 1
                    if digest is None:
                        stats["unreadable"] += 1
                        _sample(stats, "unreadable_sample", path)
                else:
                    stats["reused"] += 1
                stats["files"] += 1
                stats["bytes"] += info.st_size
                inventory.write(
                    f"{path.translate(ESCAPES)}\t{info.st_size}\t{info.st_mtime_ns}"
                    f"\t{digest or '-'}\n"
                )
                progress.maybe_report(stats)
            inventory.write(f"# end\tfiles={stats['files']}\tbytes={stats['bytes']}\n")
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise
    finally:
        if previous is not None:
            previous.close()
    os.replace(partial, out)
    stats.update(
        storage=storage,
        root=root,
        path=out,
        started_at=started_at,
        full=full,
        seconds=round(time.monotonic() - started, 3),
        size=os.path.getsize(out),
        sha256=_file_sha256(out),
    )
    with open(os.path.join(os.path.dirname(out), SUMMARY), "w", encoding="utf-8") as handle:
        json.dump(stats, handle)
    return stats


def _last_summary(out: str) -> dict:
    try:
        with open(os.path.join(os.path.dirname(out), SUMMARY), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _exclusive(directory: str):
    """One inventory at a time on a minion: a second is refused, not queued."""
    with open(os.path.join(directory, "lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise AuditError("an inventory is already running on this minion") from None
            raise
        yield


def inventory(full=True, root=None, progress_seconds=PROGRESS_SECONDS):
    """
    Walk the storage tree (``images/`` under the storage root: pillar ``storage:root``,
    default /srv/ccmirror-storage, or ``root=``), hash every file (sha256) and write the
    gzip'd inventory to the minion's cache directory. With ``full=False`` a file whose size
    and mtime are as in the last inventory keeps its hash; a full audit (the default) reads
    every byte, which is how corruption that keeps size and time is found. Progress goes to
    the minion's log and, every ``progress_seconds``, to the master as the event
    ``ccmirror/audit/progress`` (``salt-run state.event 'ccmirror/audit/*'``). Returns
    counts, the inventory's path and sha256, and the time taken; the file list itself stays
    on the minion.

    CLI Example::

        salt 'st-*' ccmirror_audit.inventory
        salt 'st-*' ccmirror_audit.inventory full=False
    """
    root = str(root or _setting("storage_root"))
    directory = _audit_dir()
    try:
        with _exclusive(directory):
            stats = write_inventory(
                root,
                os.path.join(directory, INVENTORY),
                _bool(full),
                __opts__["id"],
                float(progress_seconds),
            )
    except AuditError as exc:
        return _failed(str(exc), root=root)
    except OSError as exc:
        return _failed(f"inventory of {root} failed: {exc}", root=root)
    stats["result"] = True
    stats["comment"] = (
        f"{stats['files']:,} files, {stats['bytes']:,} bytes in {stats['seconds']:.1f}s"
        f" ({stats['hashed']:,} hashed, {stats['reused']:,} unchanged since the last"
        f" inventory, {stats['unreadable']:,} unreadable)"
    )
    return stats


# --- moving the inventory through the master -----------------------------------------------


def _own_file(path: str) -> str:
    """`path` if it is a file of this module's directory; the pieces it hands out are only
    its own."""
    directory = os.path.realpath(_audit_dir())
    real = os.path.realpath(path)
    if os.path.dirname(real) != directory or not os.path.isfile(real):
        raise AuditError(f"{path} is not an inventory of this minion ({directory})")
    return real


def read_chunk(path, offset=0, size=CHUNK_BYTES):
    """
    A piece of an inventory this minion wrote, base64-encoded: ``data``, ``offset``, and
    ``eof`` once the piece reaches the end. For the ``audit.storage`` runner, which hands
    the pieces to ``write_chunk`` on the database minion.

    CLI Example::

        salt st-1 ccmirror_audit.read_chunk /var/cache/salt/minion/ccmirror_audit/inventory.tsv.gz 0
    """
    try:
        offset, size = int(offset), int(size)
        if offset < 0 or not 0 < size <= MAX_CHUNK_BYTES:
            raise AuditError(f"offset >= 0 and 0 < size <= {MAX_CHUNK_BYTES}, please")
        real = _own_file(str(path))
        with open(real, "rb") as handle:
            handle.seek(offset)
            data = handle.read(size)
            total = os.fstat(handle.fileno()).st_size
    except (AuditError, ValueError, OSError) as exc:
        return _failed(str(exc))
    return {
        "result": True,
        "offset": offset,
        "data": base64.b64encode(data).decode("ascii"),
        "eof": offset + len(data) >= total,
        "total": total,
    }


def write_chunk(name, offset, data):
    """
    Write a base64 piece of an inventory at ``offset`` of ``received/NAME`` in this
    minion's audit directory; offset 0 starts the file again. A piece that does not follow
    the last one is refused (the runner starts over). For the ``audit.storage`` runner.

    CLI Example::

        salt db-1 ccmirror_audit.write_chunk st-1.tsv.gz 0 H4sIAAAAAAAA...
    """
    try:
        name, offset = str(name), int(offset)
        if not name or "/" in name or name.startswith("."):
            raise AuditError(f"a plain file name, please, not {name!r}")
        directory = os.path.join(_audit_dir(), "received")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        path = os.path.join(directory, name)
        piece = base64.b64decode(str(data), validate=True)
        if offset == 0:
            with open(path, "wb") as handle:
                handle.write(piece)
        else:
            size = os.path.getsize(path) if os.path.exists(path) else -1
            if size != offset:
                raise AuditError(f"{name} has {size} bytes, not {offset}: start again at 0")
            with open(path, "ab") as handle:
                handle.write(piece)
    except (AuditError, ValueError, OSError) as exc:
        return _failed(str(exc))
    return {"result": True, "path": path, "size": offset + len(piece)}


# --- the database side ---------------------------------------------------------------------


def _inventory_path(inventory: str) -> str:
    """An absolute path, a `salt://` URL (cached here first), or a name `write_chunk` got."""
    if inventory.startswith("salt://"):
        cached = __salt__["cp.cache_file"](inventory)
        if not cached:
            raise AuditError(f"{inventory} is not served by the master")
        return cached
    if os.path.isabs(inventory):
        return inventory
    if "/" in inventory:
        raise AuditError(f"an absolute path, a salt:// URL or a received name, not {inventory!r}")
    return os.path.join(_audit_dir(), "received", inventory)


def compare(
    inventory, sha256=None, dry_run=False, samples=SAMPLE, clock_margin=2, timeout=COMPARE_TIMEOUT
):
    """
    On the database minion: compare a storage inventory with the catalog (``harvester
    audit-storage`` with the migrate config). A stored photo whose file is missing or
    differs (size, sha256) goes back to the download queue; files the catalog does not
    know are counted and the first ``samples`` named, never deleted. ``dry_run=True``
    changes nothing; photos stored after the walk began, less ``clock_margin`` seconds (the
    clocks' skew), are left for the next audit. ``inventory`` is an absolute path, a
    ``salt://`` URL, or the name ``write_chunk`` received it under; ``sha256`` (hex) is
    checked first when given.

    CLI Example::

        salt db-1 ccmirror_audit.compare salt://audit/st-1.tsv.gz dry_run=True
        salt db-1 ccmirror_audit.compare /root/inventory.tsv.gz
    """
    try:
        path = _inventory_path(str(inventory))
        if not os.path.isfile(path):
            raise AuditError(f"no inventory at {path}")
        if sha256 and _file_sha256(path) != str(sha256).lower():
            raise AuditError(f"{path} does not have the sha256 sent: the copy is damaged")
    except (AuditError, OSError) as exc:
        return _failed(str(exc))
    argv = [
        os.path.join(_setting("venv"), "bin", "harvester"),
        "--config",
        _setting("migrate_config"),
        "audit-storage",
        "--inventory",
        path,
        "--json",
        "--samples",
        str(int(samples)),
        "--clock-margin",
        str(int(clock_margin)),
    ]
    if _bool(dry_run):
        argv.append("--dry-run")
    out = __salt__["cmd.run_all"](
        argv,
        python_shell=False,
        timeout=int(timeout),
        ignore_retcode=True,
        output_loglevel="quiet",
    )
    text = (out["stdout"].strip() + "\n" + out["stderr"].strip()).strip()
    if out["retcode"] != 0:
        return _failed(text.splitlines()[-1] if text else f"exit code {out['retcode']}")
    try:
        audit = json.loads(out["stdout"])
    except ValueError:
        return _failed(f"harvester audit-storage said: {text[:300]}")
    return {"result": True, "comment": audit.get("summary", ""), "audit": audit}
