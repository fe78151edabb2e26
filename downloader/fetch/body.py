"""A body as the fetcher receives it: checked, hashed and kept while it streams in.

The fetcher (downloader/fetch/fetcher.py) drives the exchanges; this is what happens to
their bytes. Everything here runs in the connection's data_received, so it stays lean.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable

from downloader import verify
from downloader.spool import SpoolError

SPILL_BYTES = 1024 * 1024  # bodies up to this stay in memory until verified, larger ones spill
OpenTemp = Callable[[int, str], tuple[str, int]]


class Refused(Exception):
    """A verification failure found while reading: the outcome class and why."""

    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


class Body:
    """A body as it streams in, fed from the connection's data_received: the size cap, the
    magic bytes, sha256 and md5 as bytes arrive; bodies up to SPILL_BYTES stay in memory until
    verified, larger ones go on to the temp file as they come."""

    __slots__ = (
        "open_temp", "photo_id", "cap", "digest", "md5", "size", "chunks", "ext", "temp", "fd",
    )  # fmt: skip

    def __init__(self, open_temp: OpenTemp, photo_id: int, cap: int) -> None:
        self.open_temp = open_temp  # (photo id, ext) -> (temp path, descriptor)
        self.photo_id = photo_id
        self.cap = cap
        self.digest = hashlib.sha256()
        # The S3 audit compares it with the object's ETag: a listing gives MD5s, not SHA-256s.
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0
        self.chunks: list[bytes] = []
        self.ext: str | None = None
        self.temp: str | None = None
        self.fd: int | None = None

    def feed(self, data: bytes) -> None:
        size = self.size + len(data)
        if size > self.cap:
            raise Refused("bad", f"too large: over the {self.cap:,}-byte cap while reading")
        self.size = size
        self.digest.update(data)
        self.md5.update(data)
        if self.fd is not None:
            write_all(self.fd, data)
            return
        chunks = self.chunks
        chunks.append(data)
        if self.ext is None and size >= verify.MAGIC_BYTES_NEEDED:
            self.ext = sniff(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if size > SPILL_BYTES:
            self.temp, self.fd = self.open_temp(self.photo_id, self.ext or "jpg")
            write_all(self.fd, b"".join(chunks))
            self.chunks = []

    def in_memory(self) -> bytes:
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def discard(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)
            self.temp = None


def sniff(head: bytes) -> str:
    ext = verify.sniff_ext(head)
    if ext is None:
        raise Refused("bad", f"not an image: starts with {head[:8]!r}")
    return ext


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as e:
        raise SpoolError(f"cannot write the spool: {e.strerror or e}") from e
