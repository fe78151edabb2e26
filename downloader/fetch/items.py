"""What goes into the fetcher and what comes out: an item to fetch and its one result.

Each item ends in exactly one outcome (OUTCOMES): `stored`, or a failure class the queue
understands (`gone`, `retry`, `bad`); `FetchResult.report()` is the item in the queue's format.
"""

from __future__ import annotations

from dataclasses import dataclass

from downloader import verify

OUTCOMES = ("stored", "gone", "retry", "bad")


@dataclass(frozen=True, slots=True)
class FetchItem:
    photo_id: int
    url: str
    fallback_url: str | None = None
    catalog_id: int | None = None  # the queue's id for the photo, passed through untouched


@dataclass(frozen=True, slots=True)
class FetchResult:
    item: FetchItem
    outcome: str  # one of OUTCOMES
    path: str | None = None  # its storage key: layout.image_path(photo_id, ext)
    sha256: str | None = None
    bytes: int = 0
    ext: str | None = None
    url: str | None = None  # the URL the bytes came from, after redirects (or the one tried)
    error: str | None = None  # one line, for failures
    reused: bool = False  # already present from an earlier run: hashed from disk, not fetched
    md5: str | None = None  # hex, for the S3 audit (listings give ETags, the MD5 of the bytes)
    file: str | None = None  # where it was written, in the output directory: local_name()

    def __post_init__(self) -> None:
        # The one place every error is made: whatever a host sent (a long redirect target,
        # control bytes) leaves the fetcher as a bounded, printable line.
        if self.error is not None:
            object.__setattr__(self, "error", verify.printable(self.error))

    def report(self) -> dict:
        """The item as the queue's `complete` call takes it."""
        key = self.item.catalog_id if self.item.catalog_id is not None else self.item.photo_id
        if self.outcome == "stored":
            return {
                "id": key,
                "result": "stored",
                "sha256": self.sha256,
                "bytes": self.bytes,
                "path": self.path,
                "md5": self.md5,
            }
        return {"id": key, "result": self.outcome, "error": self.error}
