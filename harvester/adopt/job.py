"""`harvester import-tree DIR`: put the photos of a directory of an old layout (harvester/adopt/
tree.py) into the settings' S3 bucket and mark them stored, so none is fetched from Flickr again.

Why here, on the harvester's side: the catalog is the harvester's (its schema, its login on
db-1, where `salt-run storage.import` runs it with the storage audit's settings), and the S3
PUT is the downloader's: `downloader.s3.push.push_objects`, the code a downloader pushes a
lease with, imported as it is (SHA-256 sent and checked by the store, keep-alive pool,
retries). Data flows one way: the harvester may import the downloader's push, the downloader
never imports the harvester.

Files are taken a batch at a time, in the walk's order. Each file ends as one of:

- unknown: its name fits neither layout, no catalog photo has its id, or its secret, size or
  format is not that of a URL the catalog holds for the photo; never uploaded;
- bad: it claims a catalog photo but is not a whole image of the catalog's format, or cannot
  be read; never uploaded;
- skipped: its photo is already stored with these bytes and the bucket has them (a second
  run skips everything it did: a photo an import marked stored is taken as in the bucket,
  as it was marked only once its PUT was answered; another's is looked at with a HEAD),
  stored with other bytes (the catalog's copy stands), withdrawn (no longer CC), held by a
  downloader's lease, or a second file of the same photo;
- uploaded: put at the photo's key (images/<aa>/<bb>/<photo_id>.<ext>) and marked stored as a
  downloader's report marks it (`stored_images`: SHA-256, MD5, bytes, key; worker `import`,
  lease 0; `images.state` stored), its attribution in the batch's manifest object
  (harvester/adopt/manifest.py) as a downloader writes a lease's. A photo the catalog calls
  stored with these same bytes but whose key the bucket lacks (a site moving from rsync storage
  to a bucket) is put back at its recorded key, the catalog left as it is.

A photo is marked only when it is still free (pending, failed or gone, in no lease) in the
same transaction; one leased meanwhile keeps the downloader's copy. What is not uploaded is
written to the report file, a JSON line per file (path, outcome, reason); the result names the
first few of each kind. The identity needs Write (the PUTs) and Read (a HEAD of each key the
catalog already calls stored): the storage audit's own.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TextIO
from urllib.parse import urlsplit

from ccmirror_common.layout import image_path
from ccmirror_common.progress import ProgressLine
from downloader.fetch.settings import FetchSettings
from downloader.push import PushFailed
from downloader.s3.push import push_objects
from downloader.s3.target import S3Target
from harvester.adopt import manifest
from harvester.adopt.tree import Claim, Content, claim, examine, flickr_name, walk
from harvester.db import with_retry

BATCH = 1000  # files per catalog lookup, push and catalog transaction
WORKER = "import"  # stored_images.worker of an imported photo (its lease_id is 0)
FREE_STATES = ("pending", "failed", "gone")  # a gone photo's old copy is worth keeping
HEAD_THREADS = 10  # botocore keeps 10 connections per client (max_pool_connections)

LOOKUP_SQL = """
SELECT i.id, i.photo_id, i.state, i.lease_id, i.image_url, i.fallback_url,
       HEX(s.sha256), s.path, s.worker
FROM images i LEFT JOIN stored_images s ON s.image_id = i.id
WHERE i.photo_id IN ({ids})
"""


class ImportTreeError(RuntimeError):
    """The import stopped; the message says where and why (never a secret)."""


@dataclass(frozen=True)
class Photo:
    """A catalog photo as the import sees it."""

    id: int
    photo_id: int
    state: str
    lease_id: int
    urls: tuple[str, ...]  # its image URL and fallback URL
    stored_sha256: str | None  # lower-case hex, when stored
    stored_key: str | None
    stored_by: str | None  # stored_images.worker


@dataclass(frozen=True)
class Upload:
    claim: Claim
    photo: Photo
    content: Content
    key: str
    mark: bool  # False: the catalog already says stored (the bucket lacked the key)


@dataclass
class ImportResult:
    root: str
    bucket: str
    dry_run: bool
    seen: int = 0
    uploaded: int = 0
    skipped: int = 0
    unknown: int = 0
    bad: int = 0
    bytes: int = 0  # uploaded
    restored: int = 0  # of `uploaded`: already stored in the catalog, missing from the bucket
    reasons: dict[str, int] = field(default_factory=dict)  # skipped, by why
    manifests: list[str] = field(default_factory=list)  # the attribution of what it stored
    samples: dict[str, list[dict]] = field(default_factory=dict)
    report: str | None = None
    seconds: float = 0.0

    @property
    def matched(self) -> int:
        return self.seen - self.unknown

    def as_dict(self) -> dict:
        state = dict(self.__dict__)
        state["matched"] = self.matched
        state["files_per_second"] = round(self.seen / self.seconds, 1) if self.seconds else None
        state["summary"] = self.summary()
        return state

    def summary(self) -> str:
        would = "would upload" if self.dry_run else "uploaded"
        return (
            f"{self.seen:,} files in {self.root}: {self.matched:,} matched, {would}"
            f" {self.uploaded:,} ({self.bytes:,} bytes) to s3://{self.bucket}, skipped"
            f" {self.skipped:,}, {self.unknown:,} unknown, {self.bad:,} bad"
            + (f"; the list of files not uploaded: {self.report}" if self.report else "")
        )


class Importer:
    """One run over one tree; `run()` returns its result."""

    def __init__(
        self,
        conn,
        head_client,
        target: S3Target,
        root: Path,
        *,
        report: TextIO | None = None,
        dry_run: bool = False,
        concurrency: int = 16,
        samples: int = 20,
        stream: TextIO | None = None,
        progress_seconds: float | None = None,
    ) -> None:
        self.conn, self.head_client, self.target, self.root = conn, head_client, target, root
        self.report, self.dry_run, self.concurrency = report, dry_run, concurrency
        self.max_samples = samples
        self.max_bytes = FetchSettings().max_bytes  # the fetch's own cap on a photo
        self.result = ImportResult(str(root), target.bucket, dry_run)
        self.started = datetime.now(UTC)
        self.progress = ProgressLine(stream, interval=progress_seconds)

    def run(self) -> ImportResult:
        started = time.monotonic()
        batch: list[Claim] = []
        for relative in walk(self.root, self._unwalkable):
            self.result.seen += 1
            found = claim(relative)
            if found is None:
                self._not_taken(relative, "unknown", "its name fits neither layout")
            else:
                batch.append(found)
            if len(batch) >= BATCH:
                self._batch(batch)
                batch = []
            if self.progress.due():
                self._show()
        if batch:
            self._batch(batch)
        self.result.seconds = round(time.monotonic() - started, 3)
        self._show(final=True)
        return self.result

    def _batch(self, claims: list[Claim]) -> None:
        photos = self._lookup({c.photo_id for c in claims})
        uploads: dict[str, Upload] = {}
        to_check: dict[str, Upload] = {}
        for found in claims:
            upload = self._judge(found, photos.get(found.photo_id), uploads, to_check)
            if upload is not None:
                uploads[upload.key] = upload
        for key in self._in_bucket(to_check):
            self._skip(to_check.pop(key).claim.relative, "already stored")
        uploads.update(to_check)
        if uploads:
            self._upload(uploads)

    def _lookup(self, photo_ids: set[int]) -> dict[int, Photo]:
        ids = ",".join(str(int(i)) for i in sorted(photo_ids))
        with self.conn.cursor() as cur:
            cur.execute(LOOKUP_SQL.format(ids=ids))
            rows = cur.fetchall()
        self.conn.commit()  # a fresh snapshot for the next batch
        return {
            int(row[1]): Photo(
                int(row[0]),
                int(row[1]),
                row[2],
                int(row[3]),
                tuple(u for u in (row[4], row[5]) if u),
                row[6].lower() if row[6] else None,
                row[7],
                row[8],
            )  # fmt: skip
            for row in rows
        }

    def _judge(
        self,
        found: Claim,
        photo: Photo | None,
        uploads: dict[str, Upload],
        to_check: dict[str, Upload],
    ) -> Upload | None:
        """An upload, or None with the file's outcome recorded; `to_check` gets the files whose
        photo the catalog already stores with these bytes (the bucket decides)."""
        relative = found.relative
        if photo is None:
            return self._not_taken(relative, "unknown", f"no photo {found.photo_id} in the catalog")
        if not fits(found, photo.urls):
            return self._not_taken(relative, "unknown", _misfit(found, photo.urls))
        try:
            content = examine(self.root / relative, found.ext, self.max_bytes)
        except OSError as exc:
            return self._not_taken(relative, "bad", f"cannot read it: {exc.strerror or exc}")
        if content.problem:
            return self._not_taken(relative, "bad", content.problem)
        key = photo.stored_key or image_path(photo.photo_id, found.ext)
        earlier = uploads.get(key) or to_check.get(key)
        if earlier is not None:
            return self._skip(relative, f"a second file of photo {photo.photo_id}")
        if photo.stored_sha256 is not None:
            if photo.stored_sha256 != content.sha256:
                return self._skip(relative, "stored with other bytes")
            if photo.stored_by == WORKER:  # marked only once its PUT was answered 200
                return self._skip(relative, "already stored")
            to_check[key] = Upload(found, photo, content, key, mark=False)
            return None
        if photo.state not in FREE_STATES:
            return self._skip(relative, f"{photo.state} in the catalog")
        if photo.lease_id:
            return self._skip(relative, "held by a download lease")
        return Upload(found, photo, content, key, mark=True)

    def _in_bucket(self, wanted: dict[str, Upload]) -> list[str]:
        """The keys of `wanted` whose latest object in the bucket has the file's bytes."""
        if not wanted:
            return []
        from ccmirror_common.s3_errors import s3_errors
        from harvester.audit.s3_listing import StorageAuditError

        def has(key: str) -> bool:
            content = wanted[key].content
            with s3_errors(f"cannot look at s3://{self.target.bucket}/{key}", StorageAuditError):
                try:
                    head = self.head_client.head_object(Bucket=self.target.bucket, Key=key)
                except Exception as exc:  # botocore's ClientError: 404 is an answer
                    status = getattr(exc, "response", {}).get("ResponseMetadata", {})
                    if status.get("HTTPStatusCode") == 404:
                        return False
                    raise
            etag = str(head.get("ETag") or "").strip('"').lower()
            return head.get("ContentLength") == content.size and etag in (content.md5, "")

        keys = sorted(wanted)
        try:
            with ThreadPoolExecutor(HEAD_THREADS) as pool:
                return [key for key, there in zip(keys, pool.map(has, keys), strict=True) if there]
        except StorageAuditError as exc:
            raise ImportTreeError(str(exc)) from None

    def _upload(self, uploads: dict[str, Upload]) -> None:
        put: list[str] = []
        if not self.dry_run:
            try:
                push_objects(
                    self.root,
                    {key: u.claim.relative for key, u in uploads.items()},
                    self.target,
                    digests={key: u.content.sha256 for key, u in uploads.items()},
                    on_put=put.extend,
                    concurrency=self.concurrency,
                    retry_seconds=300.0,
                )
            except PushFailed as exc:
                self._mark([uploads[key] for key in put])  # what landed is stored all the same
                raise ImportTreeError(str(exc)) from None
        else:
            put = list(uploads)
        self._mark([uploads[key] for key in put])

    def _mark(self, landed: list[Upload]) -> None:
        new = [u for u in landed if u.mark]
        marked = self._mark_stored(new) if new and not self.dry_run else {u.photo.id for u in new}
        if marked and not self.dry_run:
            self._manifest([u for u in new if u.photo.id in marked])
        for upload in landed:
            if upload.mark and upload.photo.id not in marked:
                self._skip(upload.claim.relative, "leased while importing (its copy was put)")
                continue
            self.result.uploaded += 1
            self.result.bytes += upload.content.size
            self.result.restored += 0 if upload.mark else 1

    def _manifest(self, stored: list[Upload]) -> None:
        """The attribution of the photos just marked stored, as one manifest object."""
        lines = manifest.manifest_text(self.conn, {
            u.photo.id: {"path": u.key, "sha256": u.content.sha256, "bytes": u.content.size,
                         "source_url": source_url(u.claim, u.photo.urls)}
            for u in stored
        })  # fmt: skip
        key = manifest.import_manifest_key(self.started, len(self.result.manifests) + 1,
                                           datetime.now(UTC))  # fmt: skip
        try:
            manifest.put_manifest(self.target, key, lines)
        except PushFailed as exc:
            raise ImportTreeError(f"the photos are stored; their manifest is not: {exc}") from None
        self.result.manifests.append(key)

    def _mark_stored(self, new: list[Upload]) -> set[int]:
        """Mark the photos still free stored, as a downloader's report does; their ids."""
        now = datetime.now(UTC).replace(tzinfo=None)
        by_id = {u.photo.id: u for u in new}
        free = ", ".join(f"'{s}'" for s in FREE_STATES)

        def work(cur) -> set[int]:
            ids = ",".join(str(i) for i in sorted(by_id))
            cur.execute(
                f"SELECT id FROM images WHERE id IN ({ids}) AND state IN ({free})"
                " AND lease_id = 0 FOR UPDATE"
            )
            taken = sorted(int(row[0]) for row in cur.fetchall())
            if not taken:
                return set()
            cur.executemany(
                "INSERT IGNORE INTO stored_images"
                " (image_id, sha256, bytes, path, md5, worker, lease_id, stored_at)"
                " VALUES (%s, UNHEX(%s), %s, %s, UNHEX(%s), %s, 0, %s)",
                [
                    (i, by_id[i].content.sha256, by_id[i].content.size, by_id[i].key,
                     by_id[i].content.md5, WORKER, now)
                    for i in taken
                ],
            )  # fmt: skip
            cur.execute(
                "UPDATE images SET state = 'stored', lease_id = 0, last_error = NULL"
                f" WHERE id IN ({','.join(map(str, taken))})"
            )
            return set(taken)

        return with_retry(self.conn, work)

    def _unwalkable(self, relative: str, why: str) -> None:
        """A symlink, a special file or a directory that cannot be read: seen, unknown."""
        self.result.seen += 1
        self._not_taken(relative, "unknown", why)

    def _skip(self, relative: str, reason: str) -> None:
        self.result.reasons[reason] = self.result.reasons.get(reason, 0) + 1
        return self._not_taken(relative, "skipped", reason)

    def _not_taken(self, relative: str, outcome: str, reason: str) -> None:
        setattr(self.result, outcome, getattr(self.result, outcome) + 1)
        entry = {"path": relative, "outcome": outcome, "reason": reason}
        kept = self.result.samples.setdefault(outcome, [])
        if len(kept) < self.max_samples:
            kept.append(entry)
        if self.report is not None:
            self.report.write(json.dumps(entry) + "\n")

    def _show(self, final: bool = False) -> None:
        r = self.result
        rate = r.seen / self.progress.elapsed
        self.progress.show(
            f"import {r.root}: {r.seen:,} files seen, {r.matched:,} matched, {r.uploaded:,}"
            f" uploaded, {r.skipped:,} skipped, {r.unknown:,} unknown, {r.bad:,} bad"
            f" ({rate:,.0f} files/s)",
            final=final,
        )


def fits(found: Claim, urls: tuple[str, ...]) -> bool:
    """Whether the file is one the catalog's URLs name: an old-system file has the secret, size
    and format of one of them; a ccmirror-layout file (named by id) has the format of one."""
    return source_url(found, urls) is not None


def source_url(found: Claim, urls: tuple[str, ...]) -> str | None:
    """The first of the catalog's URLs the file is a copy of (fits), or None."""
    for url in urls:
        if found.layout == "ccmirror":
            if url_format(url) == found.ext:
                return url
            continue
        name = flickr_name(url)
        if name is not None and (name.secret, name.size, name.ext) == (
            found.secret,
            found.size,
            found.ext,
        ):
            return url
    return None


def url_format(url: str) -> str:
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower().lstrip(".")
    return "jpg" if suffix == "jpeg" else suffix


def _misfit(found: Claim, urls: tuple[str, ...]) -> str:
    names = ", ".join(PurePosixPath(urlsplit(u).path).name for u in urls) or "none"
    if found.layout == "ccmirror":
        return f"its format {found.ext} is not that of the catalog's URLs ({names})"
    return f"its secret, size or format is not that of the catalog's URLs ({names})"
