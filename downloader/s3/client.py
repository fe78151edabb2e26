"""One S3 PUT: botocore's SigV4 signer over a urllib3 pool (bench/s3_clients.py chose them).

Each PUT carries the file's SHA-256 twice: as `x-amz-checksum-sha256` (base64), which the
store checks against the bytes it received and refuses with BadDigest, storing nothing; and
as the signed `x-amz-content-sha256` (hex), so the signature covers the digest (SeaweedFS
4.48 checks only the first: tried, a wrong signed hash alone is stored; AWS checks both).
The digest is the one the fetch stage computed while streaming the photo (the journal has
it), so a push does not read a photo twice and a photo changed in the spool since it was
fetched is refused by the store instead of stored. boto3 would hash every body again for the
signature; the signer alone, told the digest, does not (`KnownDigestSigner`).

What a failed PUT means is `PutError.transient`: a refused, reset or timed-out connection, a
5xx, SlowDown or RequestTimeout may pass; a refused key or signature, a missing bucket, a
digest the store does not accept, or any other 4xx will not, however long one waits.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from pathlib import Path
from urllib.parse import quote

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from downloader.s3.target import S3Target

TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"}
CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".jsonl": "application/x-ndjson",
    ".txt": "text/plain; charset=utf-8",
}
ERROR_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
ERROR_MESSAGE = re.compile(rb"<Message>([^<]{0,300})</Message>")
HASH_CHUNK = 1 << 20
# urllib3 warns of every connection it retries once: with the store away that is a line per
# PUT per attempt (thousands a minute). The push logs one line per attempt instead.
logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


class PutError(Exception):
    """A PUT that did not store its object; `transient`: whether trying again may help."""

    def __init__(self, key: str, message: str, *, transient: bool, status: int = 0) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.transient = transient
        self.status = status


class KnownDigestSigner(S3SigV4Auth):
    """SigV4 for S3 with the payload's SHA-256 given, not computed from the body again."""

    def payload(self, request: AWSRequest) -> str:
        return request.context["payload_sha256"]


class ObjectWriter:
    """PUTs into one bucket through one keep-alive pool, from any number of threads."""

    def __init__(
        self,
        target: S3Target,
        *,
        connections: int = 16,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.target = target
        self._signer = KnownDigestSigner(
            Credentials(target.access_key, target.secret_key), "s3", target.region
        )
        self._pool = urllib3.PoolManager(
            num_pools=1,
            maxsize=connections,
            block=True,  # a thread waits for a free connection instead of opening another
            # Once at once, rewinding the file: a keep-alive connection the store closed while
            # idle. Anything else the push retries, with its backoff and classification.
            retries=urllib3.Retry(total=1, redirect=0, status=0, backoff_factor=0),
            timeout=urllib3.Timeout(connect=connect_timeout, read=timeout),
        )

    def close(self) -> None:
        self._pool.clear()

    def put_file(self, key: str, path: Path, sha256_hex: str | None = None) -> int:
        """Store `path` at `key`; its size. `sha256_hex` is the content's digest (computed
        here when not given). Raises PutError, or OSError for a local file that cannot be
        read."""
        digest = sha256_hex or file_sha256(path)
        with open(path, "rb") as body:
            size = body.seek(0, 2)
            body.seek(0)
            url, headers = self.signed_put(key, digest, size)
            try:
                response = self._pool.urlopen(
                    "PUT", url, body=body, headers=headers, redirect=False, preload_content=True
                )
            except urllib3.exceptions.HTTPError as exc:  # connect, reset, timeout, protocol
                raise PutError(key, _connection_error(exc), transient=True) from None
        if response.status != 200:
            raise refusal(key, response.status, response.data)
        return size

    def signed_put(self, key: str, sha256_hex: str, size: int) -> tuple[str, dict[str, str]]:
        """The URL and headers of a PUT of `size` bytes with that digest, signed now."""
        url = f"{self.target.base_url}/{self.target.bucket}/{quote(key, safe='/~')}"
        request = AWSRequest(
            method="PUT",
            url=url,
            headers={"x-amz-checksum-sha256": base64.b64encode(bytes.fromhex(sha256_hex)).decode()},
        )
        request.context["payload_sha256"] = sha256_hex
        self._signer.add_auth(request)
        headers = dict(request.headers.items())
        headers["Content-Length"] = str(size)  # outside the signature, as S3 allows
        headers["Content-Type"] = CONTENT_TYPES.get(Path(key).suffix, "application/octet-stream")
        return url, headers


def refusal(key: str, status: int, body: bytes) -> PutError:
    """The store's answer other than 200, as a PutError that says what it said."""
    found = ERROR_CODE.search(body or b"")
    code = found.group(1).decode("ascii", "replace") if found else f"HTTP {status}"
    said = ERROR_MESSAGE.search(body or b"")
    message = said.group(1).decode("ascii", "replace") if said else ""
    transient = status >= 500 or status == 429 or code in TRANSIENT_CODES
    text = f"{code} ({status})" + (f": {message}" if message else "")
    return PutError(key, text, transient=transient, status=status)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as body:
        while chunk := body.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _connection_error(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    # urllib3 puts the pool object's repr in front: keep what the socket said.
    return re.sub(r"^<[^>]*>:\s*", "", text)[:300] or type(exc).__name__
