"""Takedown requests kept in the bucket too, so that a catalog restored from a backup older
than a takedown takes it again instead of putting the photo back.

A catalog backup is hours old when db-1 is lost. Restored, it knows nothing of a takedown made
since: the photo is `stored` (its `images/` key now a delete marker over older versions) or
`pending`, and `restore-photos` or the storage audit would copy its bytes back into
`images/`, a downloader would fetch it again. So `takedown apply` writes each request as
`takedown/requests/photo-<id>.json` or `owner-<nsid>.json` (JSON: the target, reason, who and
when; written once, under the bucket's retention like the moved objects), and `takedown
replay` (run by `storage.restore_catalog` before its other after-steps) adds back every
request the catalog lacks, as it was made, then applies them.

The key is the audit's (Read, List, Write on the bucket), as for the moves.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

from ccmirror_common.s3_errors import s3_errors
from harvester.config import StorageSettings
from harvester.takedown.requests import Request, TakedownError, add_takedown, checked_request
from harvester.takedown.storage import TAKEDOWN_PREFIX, TakedownStorageError

LEDGER_PREFIX = f"{TAKEDOWN_PREFIX}requests/"
MAX_RECORD_BYTES = 16_384  # a request is well under 2 KiB; anything larger is not ours


@dataclass
class Replayed:
    recorded: int = 0  # requests in the bucket
    replayed: int = 0  # of those, added back to the catalog
    unreadable: list[str] = field(default_factory=list)  # keys not a request: named, skipped

    def as_dict(self) -> dict:
        state = asdict(self)
        state["summary"] = (
            f"{self.recorded:,} takedown requests in {LEDGER_PREFIX},"
            f" {self.replayed:,} added back to the catalog"
            + (f", {len(self.unreadable):,} unreadable" if self.unreadable else "")
        )
        return state


def ledger_key(photo_id: int | None, owner: str | None) -> str:
    target = f"photo-{photo_id}" if owner is None else f"owner-{owner}"
    return f"{LEDGER_PREFIX}{target}.json"


def record_requests(conn, client, storage: StorageSettings) -> int:
    """Write every takedown the bucket does not hold yet; returns how many were written."""
    held = set(_ledger_keys(client, storage))
    written = 0
    for photo_id, owner, reason, by, created in _takedowns(conn):
        key = ledger_key(photo_id, owner)
        if key in held:
            continue
        body = {"photo_id": photo_id, "owner": owner, "reason": reason, "requested_by": by,
                "created_at": created.isoformat(sep=" ")}  # fmt: skip
        with s3_errors(f"cannot write s3://{storage.bucket}/{key}", TakedownStorageError):
            client.put_object(
                Bucket=storage.bucket, Key=key, Body=json.dumps(body).encode("utf-8"),
                ContentType="application/json",
            )  # fmt: skip
        written += 1
    return written


def replay_requests(conn, client, storage: StorageSettings) -> Replayed:
    """Add back every request in the bucket the catalog does not have, with its own reason,
    requester and time; its photos leave the queue as at the first `takedown add`."""
    known = {ledger_key(photo_id, owner) for photo_id, owner, *_ in _takedowns(conn)}
    replayed = Replayed()
    for key in _ledger_keys(client, storage):
        replayed.recorded += 1
        if key in known:
            continue
        try:
            request, created = _read_request(client, storage, key)
        except (TakedownError, ValueError, KeyError, TypeError):
            replayed.unreadable.append(key)
            continue
        add_takedown(conn, request, created)
        replayed.replayed += 1
    return replayed


def _takedowns(conn) -> list[tuple[int | None, str | None, str, str, datetime]]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT photo_id, owner, reason, requested_by, created_at FROM takedowns ORDER BY id"
        )
        rows = [(None if p is None else int(p), o, r, b, c) for p, o, r, b, c in cur.fetchall()]
    conn.commit()
    return rows


def _ledger_keys(client, storage: StorageSettings) -> list[str]:
    keys: list[str] = []
    with s3_errors(f"cannot list s3://{storage.bucket}/{LEDGER_PREFIX}", TakedownStorageError):
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=storage.bucket, Prefix=LEDGER_PREFIX
        )
        for page in pages:
            keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def _read_request(client, storage: StorageSettings, key: str) -> tuple[Request, datetime]:
    """The request a record holds, checked as `takedown add` checks one (ValueError, KeyError
    or TypeError for a record that is not one)."""
    with s3_errors(f"cannot read s3://{storage.bucket}/{key}", TakedownStorageError):
        answer = client.get_object(Bucket=storage.bucket, Key=key)
        data = answer["Body"].read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"{key}: over {MAX_RECORD_BYTES} bytes")
    body = json.loads(data)
    photo_id = None if body["photo_id"] is None else int(body["photo_id"])
    request = checked_request(photo_id, body["owner"], body["reason"], body["requested_by"])
    if key != ledger_key(request.photo_id, request.owner):
        raise ValueError(f"{key} holds the request of another target")
    return request, datetime.fromisoformat(body["created_at"])
