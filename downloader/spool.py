"""The spool: the lease in hand, on disk, as a journal that a restarted daemon resumes from.

    SPOOL/lease/lease.json        the lease, its items and its phase (rewritten atomically)
    SPOOL/lease/results.jsonl     one line per photo whose fetch ended (appended as they end)
    SPOOL/lease/starts            one line per daemon start that resumed the lease
    SPOOL/lease/put.txt           one line per object an S3 push stored (appended as they land)
    SPOOL/lease/files/            what goes to storage, flat: one directory however many photos
        <photo_id>.<ext>          a photo; its storage key (`path` in its result line) is
                                  layout.image_path: images/<aa>/<bb>/<photo_id>.<ext>
        manifest.jsonl            the manifest; its key (`manifest` in lease.json) is
                                  layout.manifest_path: manifests/<yyyy>/<mm>/<dd>/<lease>.jsonl
    SPOOL/lease/layout/           the rsync push only: files/ at their storage keys, as hard
                                  links made just before the push (downloader.push.link_tree)
    SPOOL/quarantine/<lease>-<utc>/   a lease that could not be finished, kept for a person
    SPOOL/reserve                 space held back for the journal when the disk fills up

Why flat: the storage layout spreads consecutive photo ids over 65,536 directories, so a
spool that mirrored it made a directory per photo (20,000 photos, 20,258 directories), and on
ext4 creating and removing them cost more kernel time than writing the photos. A lease is at
most a few thousand files: one directory holds them well.

Each result line and lease.json name the file under files/ (`file`, `manifest_file`) beside
the storage key. A journal written by a version before this layout (a daemon upgraded
mid-lease) names none: its files are at their keys under files/, and `uploads` reads them
from there, so such a lease is fetched on, pushed and reported like any other.

A lease moves through the phases below; each is recorded before the next begins, so a
daemon killed anywhere redoes at most the phase it was in, and every phase can be redone:
a photo with a result line is not fetched again, a push of the same files is the same
files on storage, a second report of a photo changes nothing at the queue.

    fetching -> fetched (manifest written) -> pushed -> reported -> (directory removed)

A lease that keeps failing (the daemon crashes on it, is restarted, resumes it, crashes
again) would hold a droplet in a restart loop: each resume is counted in `starts`, and the
daemon gives such a lease up and moves its directory to the quarantine (`Spool.quarantine`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ccmirror_common.layout import manifest_path
from downloader.verify import printable

PHASES = ("fetching", "fetched", "pushed", "reported")
MANIFEST_FILE = "manifest.jsonl"  # under files/, beside the photos (never an image's name)
QUARANTINE = "quarantine"
# Held back while fetching so that, when the disk fills up, the journal, the manifest and
# the phase changes that push and report what was fetched still have room: enough for the
# lease.json (rewritten through a temp file) and the manifest of a 1,000-photo lease. (Not
# always the directories of an rsync push's layout: about 1,300 for 1,000 photos, a 4 KB
# block each on ext4; on a disk that filled up those may not fit, and that push fails.)
RESERVE_BYTES = 2 * 1024 * 1024
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class SpoolError(Exception):
    """Writing the spool failed (disk full, a bad path): a local fault, never the photo's,
    so it stops the fetch instead of burning the photo's attempts with `retry` reports."""


class JournalError(Exception):
    """The journal in the spool cannot be read: there is no lease to resume from it."""


# The attribution each stored image carries in its manifest line (the license requires it).
ATTRIBUTION = ("license_id", "license_name", "license_url", "owner", "owner_name", "title")


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` so that a reader (or a restart) sees the old or the new text, whole."""
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)


@dataclass
class LeaseJournal:
    directory: Path
    lease_id: int
    expires_at: str
    items: list[dict]
    phase: str = "fetching"
    leased_at: str = ""
    manifest: str = ""  # its storage key, once written
    manifest_file: str = ""  # its file under files/; "" in an older journal: at its key
    _results: dict[int, dict] | None = field(default=None, repr=False)

    @property
    def files(self) -> Path:
        return self.directory / "files"

    @property
    def results_path(self) -> Path:
        return self.directory / "results.jsonl"

    def save(self) -> None:
        state = {
            "lease_id": self.lease_id,
            "expires_at": self.expires_at,
            "phase": self.phase,
            "leased_at": self.leased_at,
            "manifest": self.manifest,
            "manifest_file": self.manifest_file,
            "items": self.items,
        }
        write_atomically(self.directory / "lease.json", json.dumps(state))

    def set_phase(self, phase: str) -> None:
        if PHASES.index(phase) <= PHASES.index(self.phase):
            raise ValueError(f"lease {self.lease_id}: phase {phase} after {self.phase}")
        self.phase = phase
        self.save()

    def results(self) -> dict[int, dict]:
        """Photo id -> its fetch result; a line torn by a kill is not a result."""
        if self._results is None:
            self._results = {}
            if self.results_path.exists():
                for line in self.results_path.read_text(encoding="utf-8").splitlines():
                    try:
                        result = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(result, dict) and isinstance(result.get("id"), int):
                        self._results[result["id"]] = result
        return self._results

    def record(self, results: list[dict]) -> None:
        """Append fetch results (flushed, not fsynced: a killed process loses nothing that
        reached the kernel, and a lost line only means one more fetch)."""
        lines = "".join(json.dumps(r) + "\n" for r in results)
        with open(self.results_path, "a", encoding="utf-8") as out:
            out.write(lines)
        known = self.results()
        for result in results:
            known[result["id"]] = result

    def unfetched(self) -> list[dict]:
        done = self.results()
        return [item for item in self.items if item["id"] not in done]

    def write_manifest(self, day: datetime | None = None) -> str:
        """One JSON line per stored image, with the attribution its license requires; its
        storage key."""
        day = day or datetime.now(UTC)
        key = manifest_path(self.lease_id, day.date())
        results = self.results()
        lines = []
        for item in self.items:
            result = results.get(item["id"])
            if result is None or result["result"] != "stored":
                continue
            entry = {"photo_id": item["photo_id"], "path": result["path"]}
            entry |= {key: item.get(key) for key in ATTRIBUTION}
            entry |= {
                "page_url": item["page_url"],
                "source_url": result.get("url") or item["image_url"],
                "sha256": result["sha256"],
                "bytes": result["bytes"],
            }
            lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
        write_atomically(self.files / MANIFEST_FILE, "".join(lines))
        self.manifest, self.manifest_file = key, MANIFEST_FILE
        return key

    def uploads(self) -> dict[str, str]:
        """Storage key -> its file under files/, for every file of this lease to push: its
        stored images (sorted by key) and its manifest. An older journal's files are at
        their keys (module docstring)."""
        stored = [r for r in self.results().values() if r["result"] == "stored"]
        files = {r["path"]: r.get("file") or r["path"] for r in stored}
        uploads = {key: files[key] for key in sorted(files)}
        if self.manifest:
            uploads[self.manifest] = self.manifest_file or self.manifest
        return uploads

    def pushed_paths(self) -> list[str]:
        """The storage key of every file of this lease to push (see `uploads`)."""
        return list(self.uploads())

    def digests(self) -> dict[str, str]:
        """Path -> SHA-256 hex of every stored photo, as the fetch computed it: what the
        store is told to check each upload against."""
        return {
            r["path"]: r["sha256"]
            for r in self.results().values()
            if r["result"] == "stored" and r.get("sha256")
        }

    def put_keys(self) -> set[str]:
        """The keys an S3 push of this lease already stored; a torn last line is no key."""
        try:
            text = (self.directory / "put.txt").read_text(encoding="utf-8")
        except FileNotFoundError:
            return set()
        lines = text.split("\n")
        return {line for line in lines[:-1] if line}  # the last is "" or torn by a kill

    def record_put(self, keys: list[str]) -> None:
        """Append keys the store took (flushed, not fsynced: a lost line is one more PUT of
        the same bytes, which a versioned bucket keeps as an identical version)."""
        with open(self.directory / "put.txt", "a", encoding="utf-8") as out:
            out.write("".join(f"{key}\n" for key in keys))

    def reports(self) -> list[dict]:
        """The report of every photo with a result, in the queue service's shape. Errors
        are bounded again here: a spool written by an older version may hold longer ones."""
        reports = []
        for result in self.results().values():
            if result.get("result") == "stored":
                report = {k: result.get(k) for k in ("id", "result", "sha256", "bytes", "path")}
                if result.get("md5"):  # the S3 audit compares it with the bucket's ETags
                    report["md5"] = result["md5"]
                reports.append(report)
            else:
                error = printable(str(result.get("error") or result.get("result")))
                reports.append({"id": result["id"], "result": result.get("result"), "error": error})
        return reports

    def count_start(self) -> int:
        """Note one more daemon start resuming this lease; the number of such starts."""
        with open(self.directory / "starts", "a", encoding="utf-8") as out:
            out.write(datetime.now(UTC).isoformat(timespec="seconds") + "\n")
        return self.starts()

    def starts(self) -> int:
        try:
            return (self.directory / "starts").read_text(encoding="utf-8").count("\n")
        except FileNotFoundError:
            return 0

    def clear_starts(self) -> None:
        """A clean stop is not a failure: the count is of failures in a row."""
        (self.directory / "starts").unlink(missing_ok=True)


class Spool:
    """One lease at a time under `root/lease`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lease_dir = root / "lease"

    def current(self) -> LeaseJournal | None:
        """The lease a previous run left, to resume; None when there is none. JournalError
        when its lease.json cannot be read (the lease cannot be resumed from it)."""
        state_file = self.lease_dir / "lease.json"
        if not state_file.exists():
            if self.lease_dir.exists():  # killed before lease.json was written: nothing held
                shutil.rmtree(self.lease_dir)
            return None
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            journal = LeaseJournal(
                self.lease_dir,
                lease_id=int(state["lease_id"]),
                expires_at=state["expires_at"],
                items=list(state["items"]),
                phase=state["phase"],
                leased_at=state.get("leased_at", ""),
                manifest=state.get("manifest", ""),
                manifest_file=state.get("manifest_file", ""),
            )
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise JournalError(f"{state_file}: {printable(repr(exc))}") from None
        if journal.phase not in PHASES:
            raise JournalError(f"{state_file}: unknown phase {printable(str(journal.phase))}")
        return journal

    def quarantine(self, why: str, lease_id: int | None = None) -> Path:
        """Move the lease in hand out of the way, with a note saying why, for a person to
        read; the daemon goes on with a new lease."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        base = self.root / QUARANTINE / f"{lease_id if lease_id is not None else 'unknown'}-{stamp}"
        target, n = base, 1
        while target.exists():
            target, n = base.with_name(f"{base.name}.{n}"), n + 1
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.lease_dir, target)
        with contextlib.suppress(OSError):  # a full disk must not stop the move itself
            (target / "why.txt").write_text(why + "\n", encoding="utf-8")
        return target

    def quarantined(self) -> int:
        return count_quarantined(self.root)

    def begin(self, lease_id: int, expires_at: str, items: list[dict]) -> LeaseJournal:
        if self.lease_dir.exists():
            raise RuntimeError(f"the spool already holds a lease: {self.lease_dir}")
        self.lease_dir.mkdir(parents=True)
        (self.lease_dir / "files").mkdir()
        journal = LeaseJournal(
            self.lease_dir,
            lease_id,
            expires_at,
            items,
            leased_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        journal.save()
        return journal

    def finish(self, journal: LeaseJournal) -> None:
        """Remove a reported lease; a kill midway leaves a reported lease to remove again."""
        shutil.rmtree(journal.directory)

    def hold_reserve(self) -> None:
        """Set RESERVE_BYTES aside (best effort: on a disk already short of them, nothing)."""
        path = self.root / "reserve"
        try:
            if path.stat().st_size >= RESERVE_BYTES:
                return
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError:
            path.unlink(missing_ok=True)

    def free_reserve(self) -> None:
        """Give the reserve back to the disk: the journal needs room to finish the lease."""
        (self.root / "reserve").unlink(missing_ok=True)

    def free_bytes(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize


def count_quarantined(spool_root: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(spool_root / QUARANTINE) if entry.is_dir())
    except FileNotFoundError:
        return 0


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL
