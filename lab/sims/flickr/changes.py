"""What happens to photos after upload, set at run time through ``POST /_sim/photos``: an
owner deletes a photo, makes it private, or changes its license. Searches (``/_sim/truth``
too) and ``flickr.photos.getInfo`` then answer as Flickr would: a deleted or private photo is
in no search result, and getInfo says "Photo not found" (code 1) for both, unless a private
photo's secret is passed (which skips Flickr's permission check: ``visibility.ispublic`` 0).

The body is ``{"<photo id>": "deleted" | "private" | "public" | <license id>, ...}``:
"public" undoes "private"; a license id relabels the photo (a deletion is final). Reported
totals are not corrected for the changes (Flickr's are approximate anyway)."""

from __future__ import annotations

import dataclasses
import threading

from lab.sims.flickr.buckets import ID_STRIDE, Photo

DELETED, PRIVATE = "deleted", "private"


@dataclasses.dataclass
class Change:
    state: str | None = None  # DELETED, PRIVATE or None (public)
    license: int | None = None  # None: the generated one


class PhotoChanges:
    """The changed photos by id; `version` moves with every change (search caches key on it)."""

    def __init__(self) -> None:
        self.by_id: dict[int, Change] = {}
        self.buckets: set[int] = set()  # buckets holding a changed photo
        self.version = 0
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.by_id)

    def __contains__(self, photo_id: int) -> bool:
        return photo_id in self.by_id

    def apply(self, p: Photo) -> Photo | None:
        """The photo as a public search sees it now: None when deleted or private."""
        change = self.by_id.get(p.id)
        if change is None:
            return p
        if change.state is not None:
            return None
        return dataclasses.replace(p, license=change.license)

    def state_of(self, photo_id: int) -> str | None:
        change = self.by_id.get(photo_id)
        return None if change is None else change.state

    def license_of(self, p: Photo) -> int:
        change = self.by_id.get(p.id)
        return p.license if change is None or change.license is None else change.license

    def set(self, photo_id: int, what: str | int) -> None:
        with self._lock:
            change = self.by_id.setdefault(photo_id, Change())
            if change.state == DELETED:
                return  # a deleted photo stays deleted
            if what in (DELETED, PRIVATE):
                change.state = str(what)
            elif what == "public":
                change.state = None
            else:
                change.license = int(what)
            self.buckets.add(photo_id // ID_STRIDE)
            self.version += 1


def parse_changes(body: object, known_licenses: set[int]) -> dict[int, str | int]:
    """The request body checked whole before anything changes: one clear error otherwise."""
    if not isinstance(body, dict) or not body:
        raise ValueError('body must be a JSON object {"<photo id>": change}')
    parsed: dict[int, str | int] = {}
    for key, what in body.items():
        if not str(key).isdigit():
            raise ValueError(f"not a photo id: {key!r}")
        valid_state = what in (DELETED, PRIVATE, "public")
        valid_license = isinstance(what, int) and not isinstance(what, bool)
        if not (valid_state or (valid_license and what in known_licenses)):
            raise ValueError(
                f"photo {key}: {what!r} is not deleted, private, public or a license id"
                f" ({sorted(known_licenses)})"
            )
        parsed[int(key)] = what
    return parsed
