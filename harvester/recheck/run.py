"""`harvester recheck`: ask Flickr again about stored photos, oldest-checked first, within the
key's rate limit, and flag the ones no longer CC, gone or private (their objects are kept).

One `flickr.photos.getInfo` per photo: it is the cheapest call that tells all three (a search
does not list a deleted or private photo, so absence alone cannot say which), and no Flickr
method takes several photo ids. getInfo answers "Photo not found" (code 1) for a deleted photo
and for one the caller may not see; passing the secret from the stored image URL skips the
permission check, so a private photo answers with `ispublic` 0 and stays apart from a deleted
one. The URL of an original or of a size h, k, 3k-6k carries a secret of its own, not the
photo's: such a private photo cannot be told from a deleted one and is flagged `gone` (the
issue counts private as gone anyway; only the flag's name is less precise).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from harvester.recheck.checks import Stored, Verdict, enrol, pick, record
from harvester.search.flickr_api import APIError, FlickrClient, Interrupted, TransientError

PHOTO_NOT_FOUND = 1
BATCH = 50  # photos per transaction: a SIGTERM loses at most this many answers


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
) -> RecheckStats:
    """Rounds over every stored photo: each round checks the photos last checked before it
    began (never-checked first). `once`: one round; `limit`: at most that many photos."""
    stats = RecheckStats(calls_base=client.calls)
    while not stop.is_set():
        began = now()
        checked = _round(conn, client, cc, began, stats, stop, limit, now, on_progress)
        if once or (limit is not None and stats.checked >= limit):
            break
        if not checked:
            stop.wait(idle_seconds)  # nothing stored yet: look again later
    return stats


def _round(conn, client, cc, began, stats, stop, limit, now, on_progress) -> int:
    done = 0
    while not stop.is_set():
        enrol(conn)
        room = BATCH if limit is None else min(BATCH, limit - stats.checked)
        photos = pick(conn, began, room) if room > 0 else []
        if not photos:
            return done
        verdicts = []
        try:
            for photo in photos:
                verdicts.append(verdict(client, photo, cc))
        except Interrupted:  # SIGTERM while waiting for the rate limit: keep what was said
            pass
        record(conn, verdicts, now())
        done += len(verdicts)
        stats.checked += len(verdicts)
        stats.results.update(v.result or "no answer" for v in verdicts)
        stats.calls = client.calls - stats.calls_base
        on_progress(stats)
    return done
