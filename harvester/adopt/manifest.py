"""The attribution manifest of an import: what the license requires for each photo a batch of
`harvester import-tree` marked stored, in the downloader's manifest form (one JSON line per
photo: downloader/spool.py `write_manifest`), put as one object per batch at
`manifests/<yyyy>/<mm>/<dd>/import-<UTC stamp>-<batch>.jsonl` (ccmirror_common/layout.py).
An imported photo then carries its attribution on storage as a downloaded one does; a photo
put back at its recorded key (stored already) has its manifest line from when it was stored.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from datetime import datetime
from pathlib import Path

from ccmirror_common.layout import manifest_path
from downloader.s3.push import push_objects
from downloader.s3.target import S3Target
from downloader.spool import ATTRIBUTION  # the fields a downloader's manifest line carries

ATTRIBUTION_SQL = """
SELECT i.id, i.photo_id, i.license_id, l.name, l.url, i.owner, i.owner_name, i.title,
       i.page_url, i.image_url
FROM images i LEFT JOIN licenses l ON l.id = i.license_id
WHERE i.id IN ({ids})
"""


def manifest_text(conn, stored: dict[int, dict]) -> str:
    """A line per photo (catalog id -> {path, sha256, bytes, source_url}), in id order,
    with the catalog's attribution of each."""
    ids = ",".join(str(int(i)) for i in sorted(stored))
    with conn.cursor() as cur:
        cur.execute(ATTRIBUTION_SQL.format(ids=ids))
        rows = cur.fetchall()
    conn.commit()
    lines = []
    for row in sorted(rows):
        own = stored[int(row[0])]
        entry = {"photo_id": int(row[1]), "path": own["path"]}
        entry |= dict(zip(ATTRIBUTION, row[2:8], strict=True))
        entry |= {
            "page_url": row[8],
            "source_url": own.get("source_url") or row[9],
            "sha256": own["sha256"],
            "bytes": own["bytes"],
        }
        lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
    return "".join(lines)


def import_manifest_key(started: datetime, batch: int, day: datetime) -> str:
    return manifest_path(f"import-{started:%Y%m%dT%H%M%S%fZ}-{batch}", day.date())


def put_manifest(target: S3Target, key: str, text: str, concurrency: int = 1) -> None:
    """The manifest put with its SHA-256 by the downloader's push (PushFailed on a failure)."""
    data = text.encode("utf-8")
    with tempfile.TemporaryDirectory(prefix="ccmirror-import-manifest-") as folder:
        Path(folder, "manifest.jsonl").write_bytes(data)
        push_objects(
            Path(folder),
            {key: "manifest.jsonl"},
            target,
            digests={key: hashlib.sha256(data).hexdigest()},
            concurrency=concurrency,
            retry_seconds=300.0,
        )
