"""Where things go on storage (the downloader's spool keeps them flat: downloader/spool.py).

    images/<aa>/<bb>/<photo_id>.<ext>        aa, bb: the photo id's last two bytes in hex,
                                             so at most 256 x 256 = 65,536 directories,
                                             evenly filled (ids are dense, not random)
    manifests/<yyyy>/<mm>/<dd>/<lease_id>.jsonl   one JSON line per stored image

A path depends only on the photo id and extension, so the same photo pushed twice lands on
the same file. Written by the downloader, read back by the storage audit and the lab's check.
"""

from __future__ import annotations

import re
from datetime import date

IMAGE_EXTENSIONS = ("jpg", "png", "gif", "webp")
# Any file where image_path puts one (group 1: the photo id); the extension is not checked, so
# the audit can tell an unknown file in the right place from one the layout never writes.
IMAGE_PATH = re.compile(r"^images/[0-9a-f]{2}/[0-9a-f]{2}/(\d{1,20})\.[A-Za-z0-9]{1,8}$")


def image_path(photo_id: int, ext: str) -> str:
    """`images/<aa>/<bb>/<photo_id>.<ext>`, relative to the storage root."""
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(f"not an image extension: {ext!r}")
    low = photo_id & 0xFFFF
    return f"images/{low & 0xFF:02x}/{low >> 8:02x}/{photo_id}.{ext}"


def manifest_path(lease_id: int | str, day: date) -> str:
    """`manifests/<yyyy>/<mm>/<dd>/<lease_id>.jsonl`, relative to the storage root (an
    import's manifest is named `import-<stamp>-<batch>` instead: harvester/adopt/manifest.py)."""
    return f"manifests/{day:%Y/%m/%d}/{lease_id}.jsonl"
