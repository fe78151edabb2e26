"""#21's changes to photos in the middle of the download, as an operator and Flickr make them:

- two takedowns (`salt-run takedown.add`, which on a SeaweedFS site also moves a stored
  photo's object out of `images/`): one photo already stored, one still waiting in the
  queue. Both must end `taken_down`, the stored one's bytes under `takedown/`, and neither
  fetched or stored again;
- a stored photo's license changed to "All Rights Reserved" on Flickr (the simulator's
  `POST /_sim/photos`): the harvester's background re-check (pillar harvester:recheck, the
  `ccmirror-recheck` unit on hv-1) must flag it `not_cc` in `image_flags`, its object kept
  and its state `stored`.

The license changes first, as the faults begin; the re-check's flag is awaited only before the
mid-download catalog backup, so that the re-check's round runs beside the other faults. All of
it is done before that backup, so that db-1's loss later restores it."""

from __future__ import annotations

import requests

from lab.mission import stages as mission
from lab.sims.flickr import service as flickr_service
from tests.conftest import wait_for
from tests.e2e.catalog_queries import rows, value

ALL_RIGHTS_RESERVED = 0
REASON = "e2e: a DMCA notice"
FLAG_SECONDS = 600  # one round of the re-check over a few thousand stored photos, and more
STORED_BY_A_LEASE = (
    "SELECT i.photo_id FROM images i JOIN stored_images s ON s.image_id = i.id"
    " WHERE i.state = 'stored' AND s.lease_id <> 0 ORDER BY i.id"
)
STORED = "SELECT photo_id FROM images WHERE state = 'stored' ORDER BY id"
# The last in the queue: not leased before the takedown lands.
WAITING_LAST = (
    "SELECT photo_id FROM images WHERE state = 'pending' AND lease_id = 0 ORDER BY id DESC"
)


def takedowns(m: mission.Mission, license_changed: int) -> dict[str, int]:
    """One stored photo and one pending, unleased photo taken down; both without an image
    host fault, so that their end state is the takedown's alone."""
    skip = set(m.faults) | {license_changed}
    stored = _first(m, STORED_BY_A_LEASE, skip)
    waiting = _first(m, WAITING_LAST, skip)
    taken = {"stored": stored, "pending": waiting}
    for kind, photo in taken.items():
        m.show(f"    fault: takedown of a {kind} photo ({photo})")
        m.salt_run("takedown.add", f"photo={photo}", f"reason={REASON}", "by=e2e")
    m.taken_down.update(taken.values())
    return taken


def license_change(m: mission.Mission) -> int:
    """A stored photo relabelled "All Rights Reserved" on Flickr. Returns its id."""
    photo = _first(m, STORED, set(m.faults))
    m.show(f"    fault: photo {photo}'s license changed to All Rights Reserved on Flickr")
    base = flickr_service.api_url(m.config).removesuffix("/services/rest/")
    change = {str(photo): ALL_RIGHTS_RESERVED}
    answer = requests.post(f"{base}/_sim/photos", json=change, timeout=10)
    answer.raise_for_status()
    return photo


def wait_flagged(m: mission.Mission, photo: int) -> None:
    """Until the background re-check flags the photo whose license left CC."""
    wait_for(
        lambda: flag_of(m, photo) == "not_cc",
        FLAG_SECONDS,
        "the background re-check to flag the photo whose license left CC",
        5,
    )


def flag_of(m: mission.Mission, photo: int) -> str | None:
    return value(
        m,
        "SELECT f.flag FROM image_flags f JOIN images i ON i.id = f.image_id WHERE i.photo_id = %s",
        (photo,),
    )


def flags(m: mission.Mission) -> dict[int, str]:
    """Every flagged photo: its flag."""
    found = rows(
        m, "SELECT i.photo_id, f.flag FROM image_flags f JOIN images i ON i.id = f.image_id"
    )
    return {int(photo): flag for photo, flag in found}


def takedown_states(m: mission.Mission, photos: list[int]) -> dict[int, tuple]:
    """Each photo's state and whether it has a stored record."""
    found = rows(
        m,
        "SELECT i.photo_id, i.state, s.image_id IS NOT NULL FROM images i"
        " LEFT JOIN stored_images s ON s.image_id = i.id"
        f" WHERE i.photo_id IN ({', '.join(str(int(p)) for p in photos)})",
    )
    return {int(photo): (state, bool(has_record)) for photo, state, has_record in found}


def _first(m: mission.Mission, sql: str, skip: set[int]) -> int:
    for (photo,) in rows(m, sql + " LIMIT 200"):
        if int(photo) not in skip:
            return int(photo)
    raise AssertionError(f"no photo for the fault: {sql}")
