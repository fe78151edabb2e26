"""What makes a response an image worth storing: pure checks, no I/O.

The fetcher calls these on the status line, the headers and the first bytes of the body, so
that a refusal costs no more than reading what was already received. Each answer is a failure
class the queue understands (`gone`, `retry`, `bad`) and one line saying why.
"""

from __future__ import annotations

import hashlib
import time
from email.utils import parsedate_to_datetime

# Flickr answers a deleted or private photo with a redirect to its "photo unavailable" image
# (https://s.yimg.com/pw/images/en-us/photo_unavailable.png and its variants), served with
# status 200: the URL gives it away, and so do its bytes when it is served in place.
PLACEHOLDER_URL_MARK = "photo_unavailable"
PLACEHOLDER_SHA256 = frozenset(
    {
        # the lab's placeholder (lab.image_host.placeholder_png)
        "cd214d30e7f8c882dc28a1960a2112cdebf9925cb71c08cc1fda8ae4830c3651",
    }
)
# Flickr's own "This photo is no longer available" PNG is published only by size and MD5, by
# scrapers that drop it: 2,051 bytes, MD5 880a7a58e05d3e83797f27573bb6d35c in
# Koichi-Hatake/ImageNetDownloadScript remove_err_img.py (FLICKER_ERR_IMG_SIZE and _HASH);
# the same MD5 in metal3d/imgnet-tools dl-imgnet.py (BADIMG, "flickr"). So a body of exactly
# that size is MD5-compared (an exact-match filter, not a security check); add a SHA-256
# here once one is seen in the wild.
PLACEHOLDER_MD5_BY_SIZE = {2051: frozenset({"880a7a58e05d3e83797f27573bb6d35c"})}
PLACEHOLDER_MAX_BYTES = 64 * 1024  # placeholders are small: only hash-compare bodies below this

MAGIC_BYTES_NEEDED = 12  # RIFF....WEBP is the longest signature
# Content types a CDN may put on an image; anything else (text/html above all) is refused.
# The magic bytes decide the format, so a generic binary type is accepted too.
_BINARY_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})


def sniff_ext(head: bytes) -> str | None:
    """The extension for an image's first bytes; None when not JPEG, PNG, GIF or WebP."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def content_type_ok(value: str | None) -> bool:
    """An image type, a generic binary type, or none at all (the magic bytes decide then)."""
    if not value:
        return True
    kind = value.split(";", 1)[0].strip().lower()
    return kind.startswith("image/") or kind in _BINARY_TYPES


def is_placeholder_url(url: str) -> bool:
    return PLACEHOLDER_URL_MARK in url


def is_placeholder(body: bytes, sha256_hex: str) -> bool:
    """Whether a whole body (with its SHA-256, already computed) is a known placeholder."""
    size = len(body)
    if size > PLACEHOLDER_MAX_BYTES:
        return False
    if sha256_hex in PLACEHOLDER_SHA256:
        return True
    md5s = PLACEHOLDER_MD5_BY_SIZE.get(size)
    return md5s is not None and hashlib.md5(body, usedforsecurity=False).hexdigest() in md5s


def status_outcome(status: int) -> tuple[str, str]:
    """The failure class of a non-200 final status, and why.

    403 is `retry`, not final: a CDN refuses originals it will not serve (the fetcher then
    tries the fallback URL) but also throttles with 403, and a wrongly final answer loses a
    photo, while a wrong `retry` costs a few attempts before the queue calls it failed.
    """
    if status in (404, 410):
        return "gone", f"HTTP {status}"
    if status in (403, 408, 425, 429) or status >= 500:
        return "retry", f"HTTP {status}"
    return "bad", f"HTTP {status}"


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(when - (time.time() if now is None else now), 0.0)
