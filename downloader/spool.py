"""The spool: the lease in hand, on disk, as a journal that a restarted daemon resumes from.

    SPOOL/lease/lease.json        the lease, its items and its phase (rewritten atomically)
    SPOOL/lease/results.jsonl     one line per photo whose fetch ended (appended as they end)
    SPOOL/lease/files/            what goes to storage, in its layout (downloader.layout):
        images/<aa>/<bb>/<photo_id>.<ext>
        manifests/<yyyy>/<mm>/<dd>/<lease_id>.jsonl

A lease moves through the phases below; each is recorded before the next begins, so a
daemon killed anywhere redoes at most the phase it was in, and every phase can be redone:
a photo with a result line is not fetched again, a push of the same files is the same
files on storage, a second report of a photo changes nothing at the queue.

    fetching -> fetched (manifest written) -> pushed -> reported -> (directory removed)
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from downloader.layout import manifest_path

PHASES = ("fetching", "fetched", "pushed", "reported")
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
    manifest: str = ""  # its path relative to files/, once written
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
        """One JSON line per stored image, with the attribution its license requires."""
        day = day or datetime.now(UTC)
        relative = manifest_path(self.lease_id, day.date())
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
        path = self.files / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, "".join(lines))
        self.manifest = relative
        return relative

    def pushed_paths(self) -> list[str]:
        """Every file of this lease to push: its stored images and its manifest."""
        stored = [r["path"] for r in self.results().values() if r["result"] == "stored"]
        return sorted(stored) + ([self.manifest] if self.manifest else [])

    def reports(self) -> list[dict]:
        """The report of every photo with a result, in the queue service's shape."""
        reports = []
        for result in self.results().values():
            if result["result"] == "stored":
                reports.append({k: result[k] for k in ("id", "result", "sha256", "bytes", "path")})
            else:
                reports.append(
                    {"id": result["id"], "result": result["result"], "error": result["error"]}
                )
        return reports


class Spool:
    """One lease at a time under `root/lease`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lease_dir = root / "lease"

    def current(self) -> LeaseJournal | None:
        """The lease a previous run left, to resume; None when there is none."""
        state_file = self.lease_dir / "lease.json"
        if not state_file.exists():
            if self.lease_dir.exists():  # killed before lease.json was written: nothing held
                shutil.rmtree(self.lease_dir)
            return None
        state = json.loads(state_file.read_text(encoding="utf-8"))
        return LeaseJournal(
            self.lease_dir,
            lease_id=state["lease_id"],
            expires_at=state["expires_at"],
            items=state["items"],
            phase=state["phase"],
            leased_at=state.get("leased_at", ""),
            manifest=state.get("manifest", ""),
        )

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

    def free_bytes(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize
