"""The downloader's side of the queue service's HTTP API (`harvester serve`, /v1/leases).

A few calls a minute per droplet, so plain `requests` with one session. Failures come in
three kinds: `QueueUnavailable` (the service or its database is away: wait and try again),
`LeaseLost` (the lease lapsed or is not ours: its photos went back to the queue), and
`QueueRefused` (our token or our request is wrong: retrying will not help).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import requests

from downloader.verify import printable, retry_after_seconds

API = "/v1/leases"


class QueueError(RuntimeError):
    """A call to the queue service failed; the message never holds the token."""


class QueueUnavailable(QueueError):
    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LeaseLost(QueueError):
    """The lease lapsed or was closed: its unreported photos are with the queue again."""


class QueueRefused(QueueError):
    """401/403/4xx: a wrong token or a wrong request; retrying changes nothing.

    `status` is the HTTP status; `item_indices` the positions in the request's `items` that
    a validation refusal (422) names, so that a report refused for one item can be sent
    again without it."""

    def __init__(self, message: str, status: int = 400, item_indices: list[int] | None = None):
        super().__init__(message)
        self.status = status
        self.item_indices = item_indices or []


@dataclass(frozen=True)
class LeasedBatch:
    lease_id: int | None
    expires_at: str | None
    items: list[dict]
    maintenance: bool = False
    retry_after: float | None = None  # when no items came: seconds to wait


@dataclass
class QueueClient:
    url: str  # http://HOST:PORT
    token: str = field(repr=False)
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def lease(self, max_items: int, lease_seconds: int | None = None) -> LeasedBatch:
        body: dict = {"max_items": max_items}
        if lease_seconds:
            body["lease_seconds"] = lease_seconds
        answer = self._post(API, body)
        return LeasedBatch(
            lease_id=answer["lease_id"],
            expires_at=answer["expires_at"],
            items=answer["items"],
            maintenance=answer["maintenance"],
            retry_after=answer.get("retry_after"),
        )

    def complete(self, lease_id: int, reports: list[dict]) -> dict:
        """Report photos: `{"id", "result": "stored", "sha256", "bytes", "path"}` or
        `{"id", "result": "gone" | "retry" | "bad", "error"}`. Idempotent."""
        return self._post(f"{API}/{lease_id}/complete", {"items": reports})

    def extend(self, lease_id: int, seconds: int | None = None) -> str:
        answer = self._post(f"{API}/{lease_id}/extend", {"seconds": seconds} if seconds else {})
        return answer["expires_at"]

    def release(self, lease_id: int, item_ids: Iterable[int] | None = None) -> int:
        body = {"items": list(item_ids)} if item_ids is not None else {}
        return self._post(f"{API}/{lease_id}/release", body)["released"]

    def _post(self, path: str, body: dict) -> dict:
        try:
            response = self.session.post(self.url + path, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise QueueUnavailable(f"queue service at {self.url} unreachable: {exc}") from None
        if response.status_code == 200:
            return response.json()
        detail = _detail(response)
        where = f"queue service {path}: HTTP {response.status_code}"
        if response.status_code in (429, 502, 503, 504) or response.status_code >= 500:
            retry_after = _seconds(response.headers.get("Retry-After"), 5.0)
            raise QueueUnavailable(f"{where}: {detail}", retry_after)
        if response.status_code in (404, 409):
            raise LeaseLost(f"{where}: {detail}")
        raise QueueRefused(f"{where}: {detail}", response.status_code, _refused_items(response))

    def close(self) -> None:
        self.session.close()


def _detail(response: requests.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return printable(response.text, 200)
    return printable(str(detail), 500)


def _refused_items(response: requests.Response) -> list[int]:
    """The indices of `items` a 422 names: FastAPI's validation errors say where each fault
    is, as `loc` = ["body", "items", INDEX, ...]."""
    if response.status_code != 422:
        return []
    try:
        errors = response.json().get("detail")
    except (ValueError, AttributeError):
        return []
    found: set[int] = set()
    for error in errors if isinstance(errors, list) else []:
        loc = error.get("loc") if isinstance(error, dict) else None
        if isinstance(loc, list) and loc[:2] == ["body", "items"] and len(loc) > 2:
            index = loc[2]
            if type(index) is int:  # JSON numbers only: not a bool, not a field name
                found.add(index)
    return sorted(found)


def _seconds(value: str | None, default: float) -> float:
    seconds = retry_after_seconds(value)
    return default if seconds is None else seconds
