"""A YFCC100M-shaped file of the simulated Flickr universe's photos, for the lab.

The real dataset is a 2014 snapshot of Flickr; this writes the same 23 tab-separated fields
for the universe's CC 2.0 photos in a range, as the snapshot would have seen them, so that
`harvester import-yfcc` and `reconcile` can be run over photos the API harvest also finds.
A share of the lines carry an older license (the owner changed it since), which reconcile
must record.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote_plus

from lab.sims.flickr.universe import Universe

# Flickr's 2.0 licenses as the dataset names them (YFCC100M predates CC0 ids and 4.0).
YFCC_LICENSES = {
    1: ("Attribution-NonCommercial-ShareAlike License", "by-nc-sa"),
    2: ("Attribution-NonCommercial License", "by-nc"),
    3: ("Attribution-NonCommercial-NoDerivs License", "by-nc-nd"),
    4: ("Attribution License", "by"),
    5: ("Attribution-ShareAlike License", "by-sa"),
    6: ("Attribution-NoDerivs License", "by-nd"),
}
FLICKR_IMAGE_BASE = "https://live.staticflickr.com"  # the universe's default
OLD_LICENSE_EVERY = 20  # one line in 20 shows the license the photo had in 2014


def write_yfcc_sample(universe: Universe, min_upload: int, max_upload: int, path: Path) -> dict:
    """Write the lines; returns counts: lines, and how many carry an older license."""
    lines = changed = 0
    # The dataset's farm URLs, unless the universe's images are served elsewhere (the lab's
    # image host): then the download URL is there too, as the API's are.
    image_base = None if universe.image_base == FLICKR_IMAGE_BASE else universe.image_base
    with path.open("w", encoding="utf-8") as out:
        for photo in universe.search(min_upload, max_upload, set(YFCC_LICENSES), None):
            license_id = photo.license
            if photo.id % OLD_LICENSE_EVERY == 0:
                license_id = 1 + license_id % 6  # another CC 2.0 license
                changed += 1
            out.write("\t".join(yfcc_fields(photo, license_id, image_base)) + "\n")
            lines += 1
    return {"lines": lines, "older_license": changed}


def yfcc_fields(photo, license_id: int, image_base: str | None = None) -> list[str]:
    name, code = YFCC_LICENSES[license_id]
    page = f"http://www.flickr.com/photos/{photo.owner}/{photo.id}/"
    farm = image_base or f"http://farm{photo.farm}.staticflickr.com"
    download = f"{farm}/{photo.server}/{photo.id}_{photo.secret}.jpg"
    return [
        str(photo.id),
        photo.owner,
        quote_plus(photo.ownername),
        taken(photo.datetaken),
        str(photo.dateupload),
        "Canon+EOS+5D",
        quote_plus(photo.title),
        "",
        "",
        "",
        "",
        "",
        "",
        page,
        download,
        name,
        f"http://creativecommons.org/licenses/{code}/2.0/",
        str(photo.server),
        str(photo.farm),
        photo.secret,
        photo.originalsecret or photo.secret,
        photo.originalformat or "jpg",
        "0",
    ]


def taken(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.0")
