"""`harvester recheck`: ask Flickr again about stored photos, oldest-checked first, within the
key's rate limit, and flag the ones no longer CC, gone or private (their objects are kept).

No Flickr method takes several photo ids, so a batch (oldest-checked first is also close to
upload order: rounds walk the photos in the order they were first checked) is swept first:
one `flickr.photos.search` of the batch's upload-time span with the CC licenses lists, 500 a
page, every photo of it that is still CC and visible. Only the photos it does not list get
a `flickr.photos.getInfo` each, the cheapest call that tells why: "Photo not found" (code 1)
for a deleted photo and for one the caller may not see, unless the photo's secret (from the
stored image URL) is passed, which skips the permission check, so a private photo answers
with `ispublic` 0; and the license otherwise. The URL of an original or of a size h, k, 3k-6k
carries a secret of its own, not the photo's: such a private photo cannot be told from a
deleted one and is flagged `gone` (the issue counts private as gone; only the flag's name is
less precise). Paging stops once the pages left would cost more than getInfo for the photos
still missing (a span far denser in CC photos than the catalog's batch).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from harvester.db import DATABASE_GONE
from harvester.recheck.checks import Stored, Verdict, enrol, pick, record
from harvester.search.flickr_api import APIError, FlickrClient, Interrupted, TransientError

PHOTO_NOT_FOUND = 1
SEARCH_CAP = 4000  # a search lists at most its first 4,000 results
BATCH = 500  # photos per sweep and transaction: one search page holds 500


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class RecheckStats:
    checked: int = 0
    calls: int = 0
    calls_base: int = 0  # the client's calls before the run (its license table)
    results: Counter = field(default_factory=Counter)

    @property
    def per_call(self) -> float:
        return self.checked / self.calls if self.calls else 0.0

    def line(self) -> str:
        shown = ", ".join(f"{k} {v:,}" for k, v in sorted(self.results.items())) or "none yet"
        return (
            f"recheck: {self.checked:,} photos, {self.calls:,} API calls"
            f" ({self.per_call:.2f} photos/call) | {shown}"
        )


def verdict(client: FlickrClient, photo: Stored, cc: set[int]) -> Verdict:
    try:
        info = client.photo_info(photo.photo_id, photo.secret)
    except APIError as exc:
        if exc.code != PHOTO_NOT_FOUND:
            raise
        return Verdict(photo.image_id, "gone", None, "getInfo: photo not found")
    except TransientError as exc:  # this photo waits for the next round
        return Verdict(photo.image_id, None, None, str(exc)[:255])
    if not info.public:
        return Verdict(photo.image_id, "private", info.license_id, "getInfo: not public")
    if info.license_id not in cc:
        detail = f"license {photo.license_id} -> {info.license_id} (recheck)"
        return Verdict(photo.image_id, "not_cc", info.license_id, detail)
    return Verdict(photo.image_id, "ok", info.license_id, "")


def sweep(client: FlickrClient, photos: list[Stored], cc: set[int]) -> dict[int, int]:
    """Photo id -> license of the batch's photos that a CC search of its span still lists."""
    wanted = {p.photo_id for p in photos}
    found: dict[int, int] = {}
    low, high = min(p.uploaded_at for p in photos), max(p.uploaded_at for p in photos)
    page = 1
    while True:
        try:
            result = client.search(min_upload=low, max_upload=high, licenses=sorted(cc), page=page)
        except (APIError, TransientError):
            return found  # what is not found yet is asked one by one
        for photo in result.photos:
            if int(photo["id"]) in wanted:
                found[int(photo["id"])] = int(photo["license"])
        missing = len(wanted) - len(found)
        last = min(result.pages, SEARCH_CAP // result.per_page)
        if not missing or page >= last or last - page > missing:
            return found
        page += 1


def verdicts(client: FlickrClient, photos: list[Stored], cc: set[int]) -> list[Verdict]:
    """One verdict per photo, in order; `Interrupted` (SIGTERM) ends the list early."""
    listed = sweep(client, photos, cc) if len(photos) > 1 else {}
    out = []
    try:
        for photo in photos:
            license_id = listed.get(photo.photo_id)
            if license_id is not None:
                out.append(Verdict(photo.image_id, "ok", license_id, ""))
            else:
                out.append(verdict(client, photo, cc))
    except Interrupted:
        pass
    return out


def recheck(
    conn,
    client: FlickrClient,
    cc: set[int],
    *,
    stop: threading.Event,
    once: bool = False,
    limit: int | None = None,
    now: Callable[[], datetime] = utc_now,
    idle_seconds: float = 60.0,
    on_progress: Callable[[RecheckStats], None] = lambda stats: None,
    reconnect: Callable[[Exception, object], object | None] | None = None,
) -> RecheckStats:
    """Rounds over every stored photo: each round checks the photos last checked before it
    began (never-checked first). `once`: one round; `limit`: at most that many photos.
    `reconnect(lost, conn)`: a new connection after MariaDB went away (None: stop), as
    `harvester.db.reconnect` makes; without it a lost connection ends the run."""
    stats = RecheckStats(calls_base=client.calls)
    while not stop.is_set():
        began = now()
        try:
            checked = _round(conn, client, cc, began, stats, stop, limit, now, on_progress)
        except DATABASE_GONE as lost:
            if reconnect is None:
                raise
            conn = reconnect(lost, conn)  # the round starts again: checked photos are not due
            if conn is None:
                break
            continue
        if once or (limit is not None and stats.checked >= limit):
            break
        if not checked:
            stop.wait(idle_seconds)  # nothing stored yet: look again later
    return stats


def _round(
    conn,
    client: FlickrClient,
    cc: set[int],
    began: datetime,
    stats: RecheckStats,
    stop: threading.Event,
    limit: int | None,
    now: Callable[[], datetime],
    on_progress: Callable[[RecheckStats], None],
) -> int:
    """One round's batches until no photo checked before `began` is left (or the limit)."""
    done = 0
    while not stop.is_set():
        enrol(conn)
        room = BATCH if limit is None else min(BATCH, limit - stats.checked)
        photos = pick(conn, began, room) if room > 0 else []
        if not photos:
            return done
        try:
            said = verdicts(client, photos, cc)
        except Interrupted:  # SIGTERM while the sweep waited for the rate limit
            return done
        record(conn, said, now())  # what was said before a SIGTERM is kept
        done += len(said)
        stats.checked += len(said)
        stats.results.update(v.result or "no answer" for v in said)
        stats.calls = client.calls - stats.calls_base
        on_progress(stats)
    return done
