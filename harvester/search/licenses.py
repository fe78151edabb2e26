"""Flickr's license table and the one rule that matters: a license is CC when its URL says so.

Flickr adds license ids (9/10 in 2015-2019, 11-16 for CC 4.0 in 2025), so the table is read
from `flickr.photos.licenses.getInfo` at start and never hard-coded; the old system's fixed id
list requested 7 and 8 (not CC) and missed 9 and 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

CC_HOSTS = ("creativecommons.org", "www.creativecommons.org")
# Flickr's CC ids as of 2025 (2.0: 1-6, CC0 9, PDM 10, 4.0: 11-16): only for when the table
# from getInfo has not been read yet (a YFCC100M import before any harvest).
DEFAULT_CC_LICENSE_IDS = frozenset({1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16})
CC_PATH_PREFIXES = ("/licenses/", "/publicdomain/zero/", "/publicdomain/mark/")


@dataclass(frozen=True)
class License:
    id: int
    name: str
    url: str

    @property
    def is_cc(self) -> bool:
        return is_cc_url(self.url)


def is_cc_url(url: str) -> bool:
    """True for Creative Commons licenses and tools (CC0, Public Domain Mark)."""
    parts = urlsplit(url.strip())
    return parts.hostname in CC_HOSTS and parts.path.startswith(CC_PATH_PREFIXES)


def parse_licenses(payload: dict) -> list[License]:
    """Licenses from a getInfo JSON answer; ValueError when it has not that shape."""
    try:
        entries = payload["licenses"]["license"]
        return [License(int(e["id"]), str(e["name"]), str(e.get("url") or "")) for e in entries]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a flickr.photos.licenses.getInfo answer ({exc!r})") from None


def store_licenses(conn, licenses: list[License]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO licenses (id, name, url, is_cc) VALUES (%s, %s, %s, %s)"
            " ON DUPLICATE KEY UPDATE name = VALUES(name), url = VALUES(url),"
            " is_cc = VALUES(is_cc)",
            [(lic.id, lic.name, lic.url, lic.is_cc) for lic in licenses],
        )
    conn.commit()
