"""A client for Flickr's REST API (JSON), made for long unattended harvests.

Calls go out as POST so the API key never sits in a URL (URLs end up in logs and in
exception messages). With the settings' signing credentials every call is OAuth 1.0a-signed
(HMAC-SHA1, requests-oauthlib) and searches ask for every safety level; without them the key
sees safe photos only. Each call waits for the key's token bucket, then is retried with
exponential backoff and jitter on what Flickr does when it is unwell: HTTP 5xx, 429 (honouring
Retry-After), `stat: fail` codes 105 and 201, malformed JSON, timeouts.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
from requests_oauthlib import OAuth1

from harvester.config import FlickrSettings
from harvester.search.licenses import License, parse_licenses
from harvester.search.metrics import HarvesterMetrics
from harvester.search.rate_limit import TokenBucket

RETRYABLE_CODES = {105, 201}  # "service currently unavailable"
FATAL_CODES = {100, 112, 114, 115, 116}  # bad key, unknown method, bad format/url
# Bad signature, missing signature, bad token, token without read permission: the signing
# credentials are wrong, and every further call would be refused the same way.
SIGNING_CODES = {96, 97, 98, 99}
SIGNING_HINT = (
    "check the signed-call credentials (flickr.api_key, flickr.api_secret, flickr.oauth_token, "
    "flickr.oauth_token_secret; `harvester flickr-auth` makes a new token)"
)
# Signed searches: safe, moderate and restricted (unsigned calls see safe only, whatever they
# ask). content_types: 0 photos, 1 screenshots, 2 "other", 3 virtual photos: every still
# image (media=photos already leaves out videos), so a CC image is never lost to how its
# owner typed it.
SAFE_SEARCH_ALL = 3
CONTENT_TYPES = "0,1,2,3"
T = TypeVar("T")
SEARCH_EXTRAS = (
    "license,date_upload,owner_name,original_format,o_dims,media,"
    "url_o,url_6k,url_5k,url_4k,url_3k,url_k,url_h,url_l,url_c,url_z,url_m"
)


class FlickrError(RuntimeError):
    """A call did not succeed; subclasses say whether trying again can help."""


class TransientError(FlickrError):
    """Flickr was unwell for every try of one call: try the task again later."""


class FatalError(FlickrError):
    """Nothing will work (bad key, not the Flickr API): the worker stops."""


class APIError(FlickrError):
    """Flickr refused this request (`stat: fail` with a non-transient code)."""

    def __init__(self, message: str, code: int = -1) -> None:
        super().__init__(message)
        self.code = code


class Interrupted(FlickrError):
    """The worker was asked to stop while waiting for the rate limit or a retry."""


@dataclass
class SearchPage:
    page: int
    pages: int
    per_page: int
    total: int
    photos: list[dict]


class FlickrClient:
    def __init__(
        self,
        settings: FlickrSettings,
        stop: threading.Event | None = None,
        metrics: HarvesterMetrics | None = None,
    ) -> None:
        if not settings.api_key:
            raise FatalError("no Flickr API key: set CCMIRROR_FLICKR_API_KEY or flickr.api_key")
        settings.check_signing()
        self.settings = settings
        self.stop = stop or threading.Event()
        # Counted whether or not anything serves them (`metrics.listen`).
        self.metrics = metrics or HarvesterMetrics(settings.rate_limit_per_hour)
        self.bucket = TokenBucket(
            settings.rate_limit_per_hour, self.stop, on_wait=self.metrics.rate_limit_waited
        )
        self.session = requests.Session()
        if settings.signed:
            self.session.auth = signer(settings)
        self.calls = 0  # every HTTP request made, retries included

    def call(self, method: str, parse: Callable[[dict], T] = dict, **params: str | int) -> T:
        """One API method, retried while Flickr is transiently unwell.

        `parse` turns the answer into what the caller needs; an answer it rejects
        (`MalformedPage`) is retried like a truncated one, so no half page is ever returned.
        """
        last: TransientError | None = None
        for attempt in range(self.settings.retries + 1):
            if attempt:
                self._sleep(self._backoff(attempt, last))
            if not self.bucket.acquire():
                raise Interrupted("stopped while waiting for the rate limit")
            try:
                return parse(self._call_once(method, params))
            except MalformedPage as exc:
                last = TransientError(str(exc))
            except TransientError as exc:
                last = exc
        raise TransientError(f"{method} failed {self.settings.retries + 1} times: {last}")

    def licenses(self) -> list[License]:
        payload = self.call("flickr.photos.licenses.getInfo")
        try:
            return parse_licenses(payload)
        except ValueError as exc:
            raise FatalError(f"API at {self.settings.api_url} is not Flickr: {exc}") from None

    def search(
        self,
        *,
        min_upload: int,
        max_upload: int,
        licenses: list[int],
        page: int,
        text: str | None = None,
    ) -> SearchPage:
        params: dict[str, str | int] = {
            "min_upload_date": min_upload,
            "max_upload_date": max_upload,
            "license": ",".join(str(i) for i in sorted(licenses)),
            "sort": "date-posted-desc",
            "media": "photos",
            "extras": SEARCH_EXTRAS,
            "per_page": self.settings.per_page,
            "page": page,
        }
        if text:
            params["text"] = text
        if self.settings.signed:
            params["safe_search"] = SAFE_SEARCH_ALL
            params["content_types"] = CONTENT_TYPES
        return self.call("flickr.photos.search", parse_search_page, **params)

    def photo_info(self, photo_id: int, secret: str | None = None) -> PhotoInfo:
        """`flickr.photos.getInfo`: license and visibility. With the photo's `secret` Flickr
        skips its permission check, so a private photo answers (ispublic 0) instead of
        "Photo not found" (code 1, also what a deleted photo answers: `APIError`)."""
        params: dict[str, str | int] = {"photo_id": photo_id}
        if secret:
            params["secret"] = secret
        return self.call("flickr.photos.getInfo", parse_photo_info, **params)

    def _call_once(self, method: str, params: dict[str, str | int]) -> dict:
        data = {
            **params,
            "method": method,
            "api_key": self.settings.api_key,
            "format": "json",
            "nojsoncallback": 1,
        }
        self.calls += 1
        try:
            response = self.session.post(
                self.settings.api_url, data=data, timeout=self.settings.timeout
            )
        except requests.Timeout:
            self.metrics.api_call(method, "timeout")
            raise TransientError(f"no answer within {self.settings.timeout:g}s") from None
        except requests.ConnectionError as exc:
            self.metrics.api_call(method, "http_error")
            raise TransientError(f"cannot reach {self.settings.api_url}: {_reason(exc)}") from None
        try:
            payload = self._payload(response)
        except FlickrError:
            limited = response.status_code == 429
            self.metrics.api_call(method, "rate_limited" if limited else "http_error")
            raise
        if payload["stat"] != "ok":
            self.metrics.api_call(method, "flickr_error")
            raise stat_error(payload)
        self.metrics.api_call(method, "ok")
        return payload

    def _payload(self, response: requests.Response) -> dict:
        """The answer's JSON object, with its `stat`; a FlickrError for anything that is not
        an answer of the Flickr REST API."""
        if response.status_code == 429 or response.status_code >= 500:
            error = TransientError(f"HTTP {response.status_code}")
            error.retry_after = _retry_after(response)  # type: ignore[attr-defined]
            raise error
        if response.status_code != 200:
            raise FatalError(
                f"HTTP {response.status_code} from {self.settings.api_url}: is it the Flickr "
                "REST API?"
            )
        try:
            # Bytes, not .text: JSON is UTF-8, and guessing a charset for 500 kB costs more
            # than parsing it.
            payload = json.loads(response.content)
        except ValueError:
            body = response.content.decode("utf-8", "replace").lstrip()
            if body.startswith("{"):
                raise TransientError("malformed JSON (truncated answer)") from None
            raise FatalError(
                f"{self.settings.api_url} does not answer like the Flickr REST API "
                f"(got {response.headers.get('Content-Type', 'no content type')}: "
                f"{body[:40]!r})"
            ) from None
        if not isinstance(payload, dict) or "stat" not in payload:
            raise FatalError(f"{self.settings.api_url} answered JSON without 'stat': not Flickr")
        return payload

    def _backoff(self, attempt: int, last: FlickrError | None) -> float:
        retry_after = getattr(last, "retry_after", None)
        if retry_after is not None:
            return retry_after
        base = self.settings.retry_backoff * 2 ** (attempt - 1)
        return base * random.uniform(0.5, 1.5)

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Interrupted("stopped while backing off")


def stat_error(payload: dict) -> FlickrError:
    """The error of a `stat: fail` answer, by what its code says about trying again."""
    code = _int(payload.get("code"), -1)
    message = f"Flickr error {code}: {payload.get('message', '')}"
    if code in RETRYABLE_CODES:
        return TransientError(message)
    if code in SIGNING_CODES:
        return FatalError(f"{message} ({SIGNING_HINT})")
    if code in FATAL_CODES:
        return FatalError(message)
    return APIError(message, code)


def signer(settings: FlickrSettings) -> OAuth1:
    """OAuth 1.0a HMAC-SHA1 over the whole request, form body included (as Flickr checks)."""
    return OAuth1(
        settings.api_key,
        client_secret=settings.api_secret,
        resource_owner_key=settings.oauth_token,
        resource_owner_secret=settings.oauth_token_secret,
    )


class MalformedPage(ValueError):
    """A search answer without the envelope or photo fields a page must have."""


def parse_search_page(payload: dict) -> SearchPage:
    try:
        envelope = payload["photos"]
        photos = envelope["photo"]
        if not isinstance(photos, list):
            raise TypeError("photo is not a list")
        for photo in photos:
            # The fields every stored row needs; a page missing them is retried whole.
            int(photo["id"]), int(photo["license"]), int(photo["dateupload"]), str(photo["owner"])
        return SearchPage(
            page=int(envelope["page"]),
            pages=int(envelope["pages"]),
            per_page=int(envelope["perpage"]),
            total=int(envelope["total"]),
            photos=photos,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedPage(f"search answer without a photos envelope ({exc!r})") from None


@dataclass(frozen=True)
class PhotoInfo:
    license_id: int
    public: bool


def parse_photo_info(payload: dict) -> PhotoInfo:
    try:
        photo = payload["photo"]
        return PhotoInfo(int(photo["license"]), bool(int(photo["visibility"]["ispublic"])))
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedPage(f"getInfo answer without license or visibility ({exc!r})") from None


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return min(float(value), 3600.0) if value is not None else None
    except ValueError:
        return None


def _int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def _reason(exc: Exception) -> str:
    # requests' messages repeat the URL with its query; keep only the innermost reason.
    reason = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)
    return str(reason).split(": ", 1)[-1][:200]
