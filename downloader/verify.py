"""What makes a response an image worth storing: pure checks, no I/O.

The fetcher calls these on the status line, the headers and the first bytes of the body, so
that a refusal costs no more than reading what was already received. Each answer is a failure
class the queue understands (`gone`, `retry`, `bad`) and one line saying why.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

# Flickr answers a deleted or private photo with a redirect to its "photo unavailable" image
# (https://s.yimg.com/pw/images/en-us/photo_unavailable.png and its variants), served with
# status 200: the URL gives it away, and so do its bytes when it is served in place.
PLACEHOLDER_URL_MARK = "photo_unavailable"
PLACEHOLDER_SHA256 = frozenset(
    {
        # the lab's placeholder (lab.sims.image_host.server.placeholder_png)
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
# A host may ask for an hour's pause at most: callers cap it lower still (the fetcher's
# max_pause, the daemon's longest wait), but no answer may make a wait unbounded or negative.
MAX_RETRY_AFTER = 3600.0
# An error string that leaves the fetcher: the queue keeps "<result>: <error>" in a column of
# 255 characters, so at most this many are kept whole, with the mark saying how long it was.
ERROR_CHARS = 240
# ASCII control characters (tab, newline, escape, DEL...) as \xNN; the rest is left to
# backslashreplace, which escapes every non-ASCII character.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}


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


def status_outcome(status: int, retry_after: str | None = None) -> tuple[str, str]:
    """The failure class of a non-200 final status, and why.

    403 without a throttling sign is `gone`: Flickr's image hosts answer a photo made private
    (or whose owner now refuses it) with 403, and trying again only burns attempts. Before
    this verdict the fetcher has already tried the fallback URL once (a CDN refuses originals
    it will not serve with 403, while the 500px copy is served), so a 403 reaching the queue
    is the final answer for both. A 403 carrying `Retry-After` is a CDN throttling: `retry`.
    """
    if status in (404, 410):
        return "gone", f"HTTP {status}"
    if status == 403:
        if retry_after is not None:
            return "retry", "HTTP 403 (throttled: Retry-After)"
        return "gone", "HTTP 403"
    if status in (408, 425, 429) or status >= 500:
        return "retry", f"HTTP {status}"
    return "bad", f"HTTP {status}"


def retry_after_seconds(
    value: str | None, now: float | None = None, cap: float = MAX_RETRY_AFTER
) -> float | None:
    """`Retry-After` (RFC 9110 10.2.3) as seconds from now, between 0 and `cap`; None when
    absent or not one of its two forms. Delay-seconds are ASCII digits only: `str.isdigit()`
    also takes '²' and other Unicode digits, which `int()` then refuses. An HTTP-date
    (IMF-fixdate, or the obsolete RFC 850 and asctime forms) is GMT even when it says no zone.
    The same parser serves the image hosts (the fetcher) and the queue service (its client)."""
    if not value:
        return None
    value = value.strip(" \t")
    if not value.isascii():
        return None
    if value.isdigit():
        digits = value.lstrip("0") or "0"
        # A dozen digits are more seconds than any cap; more would only cost time (and
        # int() of over 4,300 digits raises).
        return cap if len(digits) > 12 else float(min(int(digits), cap))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), cap)


def printable(text: str, limit: int = ERROR_CHARS) -> str:
    """`text` as one bounded line of printable ASCII: control and non-ASCII characters
    escaped (\\xNN, \\uNNNN), cut to `limit` characters with a mark saying how long it was.
    What a host sends ends up in an error string; a queue refuses reports over 1,000
    characters, and a log line or a status file should not carry a terminal escape."""
    if not (text.isascii() and text.isprintable()):
        text = text.translate(_ESCAPES).encode("ascii", "backslashreplace").decode("ascii")
    if len(text) <= limit:
        return text
    tail = f"... ({len(text):,} chars)"
    return text[: max(limit - len(tail), 0)] + tail
