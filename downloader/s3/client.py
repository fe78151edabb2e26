"""One S3 PUT: a SigV4 signature (downloader/s3/sigv4.py) over the downloader's own asyncio
HTTP client (downloader/fetch/http/), the one its GETs use: about half the client CPU per
small photo of botocore's signer over urllib3 and threads, and the signature a sixth of
botocore's (bench/s3_push_vs_fetch.py; README, the S3 paragraph).

Each PUT carries the file's SHA-256 twice: as `x-amz-checksum-sha256` (base64), which the
store checks against the bytes it received and refuses with BadDigest, storing nothing; and
as the signed `x-amz-content-sha256` (hex), so the signature covers the digest (SeaweedFS
4.48 checks only the first: tried, a wrong signed hash alone is stored; AWS checks both).
The digest is the one the fetch stage computed while streaming the photo (the journal has
it), so a push does not hash a photo again and a photo changed in the spool since it was
fetched is refused by the store instead of stored. boto3 would hash every body again for the
signature; the signer, told the digest, does not.

What a failed PUT means is `PutError.transient`: a refused, reset or timed-out connection, a
malformed answer, a 5xx, SlowDown or RequestTimeout may pass; a refused key or signature, a
missing bucket, a digest the store does not accept, or any other 4xx will not, however long
one waits.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from urllib.parse import quote

from downloader.fetch.http import BadUrl, HttpClient, HttpError, Response
from downloader.fetch.http.target import Target
from downloader.s3.sigv4 import Signer
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
ANSWER_KEPT = 64 * 1024  # of a refusal's body: its Code and Message are in the first bytes
USER_AGENT = "ccmirror-downloader"


class PutError(Exception):
    """A PUT that did not store its object; `transient`: whether trying again may help."""

    def __init__(self, key: str, message: str, *, transient: bool, status: int = 0) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.transient = transient
        self.status = status


class ObjectWriter:
    """PUTs into one bucket through one keep-alive pool: `async with writer:` opens the pool
    on the running loop (and closes it), then any number of tasks call `put_file`."""

    def __init__(
        self,
        target: S3Target,
        *,
        connections: int = 16,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.target = target
        self.connections = connections
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._signer = Signer(target.access_key, target.secret_key, target.region)
        self._bucket_url = f"{target.base_url}/{target.bucket}/"
        # The Host line the HTTP client sends, which the signature covers; the endpoint has
        # no path (S3Target.check), so a key's path is /<bucket>/<key>.
        self._host = Target(self._bucket_url, b"", "PUT").host_header
        self._bucket_path = f"/{target.bucket}/"
        self._client: HttpClient | None = None

    async def __aenter__(self) -> ObjectWriter:
        self._client = HttpClient(
            user_agent=USER_AGENT,
            connect_timeout=self.connect_timeout,
            # A PUT is answered within `timeout` of its start, its body's upload included.
            read_timeout=self.timeout,
            total_timeout=self.timeout,
            allow_hosts=None,  # the settings' own endpoint, not a catalog URL
            max_idle_per_host=self.connections,
        )
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def put_file(self, key: str, path: Path, sha256_hex: str | None = None) -> int:
        """Store `path` at `key`; its size. `sha256_hex` is the content's digest (computed
        here when not given). Raises PutError, or OSError for a local file that cannot be
        read."""
        assert self._client is not None, "use `async with writer`"
        body = path.read_bytes()  # a photo is small; the spool's disk answers in microseconds
        digest = sha256_hex or hashlib.sha256(body).hexdigest()
        url, headers = self.signed_put(key, digest, len(body))
        try:
            response = await self._client.put(url, headers, body)
            if response.status == 200:
                response.discard()  # the connection goes back to the pool
                return len(body)
            answer = await _answer(response)
        except BadUrl as exc:  # an endpoint or key that cannot be requested at all
            raise PutError(key, str(exc), transient=False) from None
        except HttpError as exc:  # connect, reset, timeout, a malformed answer
            raise PutError(key, f"{type(exc).__name__}: {exc}"[:300], transient=True) from None
        raise refusal(key, response.status, answer)

    def signed_put(self, key: str, sha256_hex: str, size: int) -> tuple[str, dict[str, str]]:
        """The URL and headers of a PUT of `size` bytes with that digest, signed now."""
        quoted = quote(key, safe="/~")
        checksum = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
        headers = self._signer.sign(
            "PUT",
            self._host,
            self._bucket_path + quoted,
            {"x-amz-checksum-sha256": checksum},
            sha256_hex,
        )
        headers["Content-Length"] = str(size)  # outside the signature, as S3 allows
        headers["Content-Type"] = CONTENT_TYPES.get(Path(key).suffix, "application/octet-stream")
        return self._bucket_url + quoted, headers


def refusal(key: str, status: int, body: bytes) -> PutError:
    """The store's answer other than 200, as a PutError that says what it said."""
    found = ERROR_CODE.search(body or b"")
    code = found.group(1).decode("ascii", "replace") if found else f"HTTP {status}"
    said = ERROR_MESSAGE.search(body or b"")
    message = said.group(1).decode("ascii", "replace") if said else ""
    transient = status >= 500 or status == 429 or code in TRANSIENT_CODES
    text = f"{code} ({status})" + (f": {message}" if message else "")
    return PutError(key, text, transient=transient, status=status)


async def _answer(response: Response) -> bytes:
    """The first ANSWER_KEPT bytes of a refusal's body (the rest read and dropped)."""
    kept = bytearray()

    def keep(data: bytes) -> None:
        if len(kept) < ANSWER_KEPT:
            kept.extend(data[: ANSWER_KEPT - len(kept)])

    await response.read(keep)
    return bytes(kept)
