"""From a search result to the row each source table keeps: only what attribution needs.

The image URL is the original (`url_o`) when its owner allows it, else the largest size the
answer offers; `image_size` records which, so the downloader and an auditor can tell. A photo
whose image URL is not http(s) on a host of `fetch.allow_hosts` is refused (`photo_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ccmirror_common.hosts import HostPolicy

HOST_NOT_ALLOWED = "host_not_allowed"  # the reason counted for a refused photo

# Flickr size suffixes, largest first (long edge: o = original, 6k 6144 … m 500).
SIZES_BY_PREFERENCE = ("o", "6k", "5k", "4k", "3k", "k", "h", "l", "c", "z", "m")
SOURCE_TABLES = {"timeslice": "flickr_timeslice_photos", "query": "flickr_query_photos"}
ROW_COLUMNS = (
    "photo_id",
    "owner",
    "owner_name",
    "title",
    "license_id",
    "page_url",
    "image_url",
    "image_size",
    "width",
    "height",
    "uploaded_at",
    "task_id",
)


class BadPhoto(ValueError):
    """A result without the fields every photo must have."""


@dataclass(frozen=True)
class PhotoRow:
    photo_id: int
    owner: str
    owner_name: str
    title: str
    license_id: int
    page_url: str
    image_url: str
    image_size: str
    width: int | None
    height: int | None
    uploaded_at: int

    def values(self, task_id: int) -> tuple:
        return (
            self.photo_id,
            self.owner,
            self.owner_name,
            self.title,
            self.license_id,
            self.page_url,
            self.image_url,
            self.image_size,
            self.width,
            self.height,
            self.uploaded_at,
            task_id,
        )


def photo_row(photo: dict) -> PhotoRow | None:
    """The row for one search result; None when it offers no image URL at all."""
    try:
        photo_id = int(photo["id"])
        owner = str(photo["owner"])
        license_id = int(photo["license"])
        uploaded_at = int(photo["dateupload"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadPhoto(f"photo without {exc}") from None
    chosen = best_size(photo)
    if chosen is None:
        return None
    size, url, width, height = chosen
    return PhotoRow(
        photo_id=photo_id,
        owner=owner,
        owner_name=str(photo.get("ownername") or "")[:255],
        title=str(photo.get("title") or "")[:1024],
        license_id=license_id,
        page_url=f"https://www.flickr.com/photos/{owner}/{photo_id}/",
        image_url=url,
        image_size=size,
        width=width,
        height=height,
        uploaded_at=uploaded_at,
    )


def photo_rows(
    photos: Iterable[dict], hosts: HostPolicy
) -> tuple[list[PhotoRow], list[tuple[str, str]]]:
    """The rows of a page's photos that have an image URL on an allowed host, and for each
    photo refused its reason (counted) and a line saying which photo and why."""
    rows: list[PhotoRow] = []
    refused: list[tuple[str, str]] = []
    for photo in photos:
        row = photo_row(photo)
        if row is None:
            continue
        why = hosts.check_url(row.image_url)
        if why is None:
            rows.append(row)
        else:
            refused.append((HOST_NOT_ALLOWED, f"photo {row.photo_id}: {why}"))
    return rows, refused


def best_size(photo: dict) -> tuple[str, str, int | None, int | None] | None:
    for size in SIZES_BY_PREFERENCE:
        url = photo.get(f"url_{size}")
        if url:
            width, height = photo.get(f"width_{size}"), photo.get(f"height_{size}")
            return size, str(url), _dim(width), _dim(height)
    return None


def store_rows(cur, source: str, task_id: int, rows: list[PhotoRow]) -> None:
    """One multi-row upsert: a photo seen again refreshes its fields, never duplicates."""
    if not rows:
        return
    table = SOURCE_TABLES[source]
    updates = ", ".join(f"{c} = VALUES({c})" for c in ROW_COLUMNS if c != "photo_id")
    values = ",".join(_sql_values(cur.connection.escape, row, task_id) for row in rows)
    cur.execute(
        f"INSERT INTO {table} ({', '.join(ROW_COLUMNS)}) VALUES {values}"
        f" ON DUPLICATE KEY UPDATE {updates}, last_seen = CURRENT_TIMESTAMP(6)"
    )


def _sql_values(escape: Callable[[str], str], row: PhotoRow, task_id: int) -> str:
    # Built here rather than by executemany: PyMySQL's per-value work was most of a
    # worker's CPU. Integers are formatted as integers; every string is quoted by the
    # connection's own escape().
    return (
        f"({row.photo_id:d},{escape(row.owner)},{escape(row.owner_name)},"
        f"{escape(row.title)},{row.license_id:d},{escape(row.page_url)},"
        f"{escape(row.image_url)},{escape(row.image_size)},{_sql_int(row.width)},"
        f"{_sql_int(row.height)},{row.uploaded_at:d},{task_id:d})"
    )


def _sql_int(value: int | None) -> str:
    return "NULL" if value is None else f"{value:d}"


def _dim(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
