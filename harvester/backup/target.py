"""The backup target `weed filer.backup` copies the images bucket into, as the harvester reads
it: a reader's client, where a main version's copy lives, and the copies of a key listed.

The sink (salt/backup/files/replication.toml.jinja) follows the main filer, where a versioned
bucket keeps each version of `<key>` as the file `<key>.versions/v_<version id>`; it writes
each such file, once it is made, at that path under its `directory` (SeaweedFS 4.48, tried):

- a PUT into main: `<key>.versions/v_<id>` with the photo's bytes;
- an overwrite: a second key, `<key>.versions/v_<id2>`; the first stays;
- a version deleted with the admin key: nothing (deletes are never sent): its copy stays;
- a delete marker: `<key>.versions/v_<marker id>`, zero bytes;
- a change of a version's metadata (it becomes noncurrent): the same key again, which on a
  versioned backup bucket is a second version of the copy, same bytes.

A SeaweedFS backup cluster's S3 listing does not show those keys (its gateway takes any
directory named `*.versions` for its own versions folder), though HEAD and GET by key work:
listing the copies of a key then goes to the backup cluster's filer (`backup_target.filer`).
The backup bucket is versioned with object lock like main's: the sink's key (Write only) can
hide a copy behind a delete marker but not remove it, and a hidden copy is read by version.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import quote

from ccmirror_common.s3_errors import s3_errors
from harvester.audit.s3_listing import StorageAuditError, client_for

if TYPE_CHECKING:
    from harvester.config import BackupTargetSettings, StorageSettings

VERSIONS = ".versions/"
VERSION_FILE = "v_"
IMAGES = "images/"  # the layout's images prefix (ccmirror_common/layout.py)
MANIFESTS = "manifests/"  # its manifests: manifests/<yyyy>/<mm>/<dd>/<name>.jsonl
PAGE = 1000  # names per listing request
# The folders under each prefix, and how deep: images/<aa>/<bb>/, manifests/<yyyy>/<mm>/<dd>/.
_LAYOUT = {IMAGES: (re.compile(r"^[0-9a-f]{2}$"), 2), MANIFESTS: (re.compile(r"^\d{2,4}$"), 3)}


class BackupTargetError(RuntimeError):
    """The backup target is not set, cannot be reached, or refuses the key; nothing changed."""


def target_client(target: BackupTargetSettings):
    """A boto3 client for the backup target: BackupTargetError naming a missing setting."""
    for name in ("endpoint", "bucket", "access_key", "secret_key"):
        if not getattr(target, name):
            raise BackupTargetError(
                f"backup_target.{name} is not set (harvester.yaml `backup_target:`, or"
                f" CCMIRROR_BACKUP_TARGET_{name.upper()}): no backup target to compare with"
            )
    try:
        return client_for(target)  # the same settings' shape as `storage:`
    except StorageAuditError as error:
        raise BackupTargetError(str(error)) from None


def writer_client(target: BackupTargetSettings):
    """A boto3 client for the backup target with the sink's key (Write only): what
    backup-check's copies are made with, as filer.backup makes its own."""
    if not target.sink_access_key or not target.sink_secret_key:
        raise BackupTargetError(
            "backup_target.sink_access_key is not set (harvester.yaml `backup_target:`, or"
            " CCMIRROR_BACKUP_TARGET_SINK_ACCESS_KEY): no key to copy to the backup with"
        )
    writer = replace(target, access_key=target.sink_access_key,
                     secret_key=target.sink_secret_key)  # fmt: skip
    return target_client(writer)


def probe_sink(target: BackupTargetSettings, name: str) -> str:
    """One PUT with the sink's key at `probes/<name>/sink.txt` on the backup bucket (a new
    version each time: nothing overwritten): whether the sink's key as these settings have it
    still writes, which backup-check's copies need (after a rotation of the backup keys, say).
    The key written; BackupTargetError when the key is missing or refused."""
    client = writer_client(target)
    key = f"probes/{name}/sink.txt"
    body = f"sink key probe from {name}\n".encode()
    checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
    where = f"s3://{target.bucket} at {target.endpoint}"
    with s3_errors(f"the sink's key cannot write to the backup target {where}", BackupTargetError):
        client.put_object(Bucket=target.bucket, Key=key, Body=body, ChecksumSHA256=checksum)
    return key


def main_client(storage: StorageSettings):
    """A boto3 client for the main bucket with the audit's key (`storage:`)."""
    try:
        return client_for(storage)
    except StorageAuditError as error:
        said = str(error).replace("the S3 audit needs", "backup-lag and restore-photos need")
        raise BackupTargetError(said) from None


def check_reachable(client, bucket: str, endpoint: str, what: str) -> None:
    """One HEAD of the bucket, so that a wrong endpoint, key or bucket is one error before
    anything is read or written."""
    with s3_errors(f"cannot reach the {what} s3://{bucket} at {endpoint}", BackupTargetError):
        client.head_bucket(Bucket=bucket)


def reachable_clients(storage: StorageSettings, target: BackupTargetSettings) -> tuple:
    """The main bucket's client and the backup target's, each checked to answer first (one
    clear BackupTargetError otherwise): what backup-lag and restore-photos both start with."""
    main, copy = main_client(storage), target_client(target)
    check_reachable(main, storage.bucket, storage.endpoint, "main bucket")
    check_reachable(copy, target.bucket, target.endpoint, "backup target")
    return main, copy


def copy_key(target: BackupTargetSettings, key: str, version_id: str) -> str:
    """Where the copy of version `version_id` of main's `key` is on the backup target."""
    return f"{_prefix(target)}{key}{VERSIONS}{VERSION_FILE}{version_id}"


def put_back(client, storage: StorageSettings, key: str, data: bytes, sha256: bytes) -> None:
    """PUT `data` at main's `key` with the audit's key, with its SHA-256 as the downloader's
    push sends it (`x-amz-checksum-sha256`: the store refuses other bytes). A new version;
    nothing is removed."""
    checksum = base64.b64encode(sha256).decode()
    with s3_errors(f"cannot restore s3://{storage.bucket}/{key}", BackupTargetError):
        client.put_object(Bucket=storage.bucket, Key=key, Body=data, ChecksumSHA256=checksum)


def main_versions(client, storage: StorageSettings, key: str) -> list[dict]:
    """Main's versions and delete markers of exactly `key`, newest first (each a dict with
    VersionId, IsLatest, Size, ETag; markers with `marker`: True)."""
    with s3_errors(f"cannot list the versions of s3://{storage.bucket}/{key}", BackupTargetError):
        page = client.list_object_versions(Bucket=storage.bucket, Prefix=key, MaxKeys=1000)
    found = [dict(v, marker=False) for v in page.get("Versions") or () if v["Key"] == key]
    found += [dict(m, marker=True) for m in page.get("DeleteMarkers") or () if m["Key"] == key]
    return sorted(found, key=lambda v: v["LastModified"], reverse=True)


def has_copy(client, target: BackupTargetSettings, key: str, version_id: str) -> bool:
    """Whether the backup holds the copy of that version (a HEAD: 404 is no)."""
    copy = copy_key(target, key, version_id)
    try:
        with s3_errors(f"cannot check s3://{target.bucket}/{copy}", BackupTargetError):
            client.head_object(Bucket=target.bucket, Key=copy)
    except BackupTargetError as error:
        if "404" in str(error) or "NoSuchKey" in str(error) or "Not Found" in str(error):
            return False
        raise
    return True


def copies_of(client, target: BackupTargetSettings, key: str) -> list[str]:
    """Every copy of any version of main's `key` on the backup target, by backup key."""
    folder = f"{_prefix(target)}{key}{VERSIONS}"
    if target.filer:
        return [folder + name for name in _filer_names(target, folder)]
    with s3_errors(f"cannot list s3://{target.bucket}/{folder}", BackupTargetError):
        page = client.list_object_versions(Bucket=target.bucket, Prefix=folder, MaxKeys=1000)
    # The versions, not the current objects: a copy a stolen sink key hid behind a delete
    # marker is listed too (read_copy reads it by version).
    return list(dict.fromkeys(version["Key"] for version in page.get("Versions") or ()))


def copied_names(client, target: BackupTargetSettings, folder: str) -> list[str]:
    """The names of main's keys directly under `folder` (a main prefix ending in '/') that
    the backup holds a copy of: each such key is a folder `<name>.versions/` there."""
    where = _prefix(target) + folder
    if target.filer:
        names = _filer_entries(target, where)
    else:
        with s3_errors(f"cannot list s3://{target.bucket}/{where}", BackupTargetError):
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=target.bucket, Prefix=where
            )
            names = [entry["Key"][len(where) :].split("/", 1)[0]
                     for page in pages for entry in page.get("Contents") or ()]  # fmt: skip
    suffix = VERSIONS[:-1]
    return sorted({name.removesuffix(suffix) for name in names if name.endswith(suffix)})


def open_copy(client, target: BackupTargetSettings, key: str) -> tuple[object, int]:
    """A stream of the largest copy of main's `key` (a delete marker's copy has no bytes),
    and its size: for an object too big to read into memory (a catalog backup)."""
    sizes = {}
    for copy in copies_of(client, target, key):
        with s3_errors(f"cannot check s3://{target.bucket}/{copy}", BackupTargetError):
            sizes[copy] = int(client.head_object(Bucket=target.bucket, Key=copy)["ContentLength"])
    copy = max(sizes, key=lambda name: (sizes[name], name), default=None)
    if copy is None or not sizes[copy]:
        raise BackupTargetError(f"the backup target holds no copy of {key} with bytes")
    with s3_errors(f"cannot read s3://{target.bucket}/{copy}", BackupTargetError):
        return client.get_object(Bucket=target.bucket, Key=copy)["Body"], sizes[copy]


def read_copy(client, target: BackupTargetSettings, copy: str) -> bytes | None:
    """The bytes of a copy, or None when it has none. A copy hidden by a delete marker (what
    a stolen sink key can do on the backup: delete adds a marker, the retention keeps the
    version) is read by its version id on the backup."""
    data = _get(client, target, copy)
    if data is not None:
        return data
    for version_id in _copy_versions(client, target, copy):
        data = _get(client, target, copy, version_id)
        if data:
            return data
    return None


def _get(client, target: BackupTargetSettings, copy: str, version_id: str = "") -> bytes | None:
    extra = {"VersionId": version_id} if version_id else {}
    try:
        with s3_errors(f"cannot read s3://{target.bucket}/{copy}", BackupTargetError):
            return client.get_object(Bucket=target.bucket, Key=copy, **extra)["Body"].read()
    except BackupTargetError as error:
        said = str(error)  # a delete marker's version answers 405 MethodNotAllowed
        if any(code in said for code in ("NoSuchKey", "NoSuchVersion", "404", "MethodNotAllowed")):
            return None
        raise


def _copy_versions(client, target: BackupTargetSettings, copy: str) -> list[str]:
    """The backup bucket's own version ids of one copy."""
    if target.filer:  # the backup cluster keeps them as the files <copy>.versions/v_<id>
        names = _filer_entries(target, copy + VERSIONS)
        return [name.removeprefix(VERSION_FILE) for name in names if name.startswith(VERSION_FILE)]
    with s3_errors(f"cannot list the versions of s3://{target.bucket}/{copy}", BackupTargetError):
        page = client.list_object_versions(Bucket=target.bucket, Prefix=copy, MaxKeys=1000)
    return [v["VersionId"] for v in page.get("Versions") or () if v["Key"] == copy]


def _filer_names(target: BackupTargetSettings, folder: str) -> list[str]:
    """The version files in the backup filer's folder: each is a directory `v_<id>.versions`
    of the backup bucket's own versions of that copy."""
    names = _filer_entries(target, folder)
    return [name.removesuffix(VERSIONS[:-1]) for name in names if name.startswith(VERSION_FILE)]


def walk_keys(client, target: BackupTargetSettings, top: str = IMAGES) -> Iterator[list[str]]:
    """Every main key with copies on the backup target under `top` (IMAGES or MANIFESTS), a
    page at a time, each key once (`copies_of` then lists its copies, those a delete marker
    hides too).

    S3: one ListObjectsV2 of the images prefix, paged (a key whose copies go on in the next
    page waits for it). The filer (a SeaweedFS backup cluster, whose S3 listing does not show
    the copies) has no recursive listing: its folders of the layout (images/, images/<aa>/,
    images/<aa>/<bb>/: 65,793 at most) are each listed paged, `lastFileName` on, and the
    `<key>.versions` folders in the last are the page."""
    root = f"{_prefix(target)}{top}"
    if target.filer:
        yield from _walk_filer(target, root, top)
        return
    carried: list[str] = []
    paginator = client.get_paginator("list_objects_v2")
    with s3_errors(f"cannot list s3://{target.bucket}/{root}", BackupTargetError):
        for page in paginator.paginate(Bucket=target.bucket, Prefix=root,
                                       PaginationConfig={"PageSize": PAGE}):  # fmt: skip
            keys = dict.fromkeys(carried)
            for entry in page.get("Contents") or ():
                key, found, _ = entry["Key"].removeprefix(_prefix(target)).rpartition(VERSIONS)
                if found:
                    keys[key] = None
            *done, last = list(keys) or [None]  # the last key's copies may go on
            carried = [last] if last is not None else []
            if done:
                yield done
    if carried:
        yield carried


def _walk_filer(target: BackupTargetSettings, root: str, top: str) -> Iterator[list[str]]:
    folder, depth = _LAYOUT[top]
    yield from _walk_level(target, root, top, folder, depth)


def _walk_level(
    target: BackupTargetSettings, path: str, relative: str, folder: re.Pattern, depth: int
) -> Iterator[list[str]]:
    """The layout's folders below `path` (`relative` to the bucket's root: the key's start),
    each listed paged; at the bottom, its `<key>.versions` folders are the page."""
    for names in _filer_pages(target, path):
        if depth == 0:
            keys = [relative + name.removesuffix(VERSIONS[:-1])
                    for name in names if name.endswith(VERSIONS[:-1])]  # fmt: skip
            if keys:
                yield keys
            continue
        for name in (name for name in names if folder.match(name)):
            yield from _walk_level(target, f"{path}{name}/", f"{relative}{name}/", folder,
                                   depth - 1)  # fmt: skip


def _filer_entries(target: BackupTargetSettings, folder: str) -> list[str]:
    """The names in a folder of the backup filer (none when it has no such folder)."""
    return [name for page in _filer_pages(target, folder) for name in page]


def _filer_pages(target: BackupTargetSettings, folder: str) -> Iterator[list[str]]:
    """The names in a folder of the backup filer, a page at a time (`lastFileName` on); none
    when it has no such folder."""
    import requests

    url = f"{target.filer.rstrip('/')}/buckets/{target.bucket}/{quote(folder)}"
    last = ""
    while True:
        try:
            response = requests.get(url, params={"limit": PAGE, "lastFileName": last},
                                    timeout=30, headers={"Accept": "application/json"})  # fmt: skip
        except requests.RequestException as error:
            raise BackupTargetError(f"cannot list {folder} on the backup filer: {error}") from None
        if response.status_code == 404:
            return
        if response.status_code != 200:
            raise BackupTargetError(f"backup filer answered {response.status_code} for {folder}")
        listing = response.json()
        names = [entry["FullPath"].rsplit("/", 1)[-1] for entry in listing.get("Entries") or ()]
        if names:
            yield names
        if not listing.get("ShouldDisplayLoadMore") or not names:
            return
        last = names[-1]


def _prefix(target: BackupTargetSettings) -> str:
    directory = (target.directory or "/").strip("/")
    return f"{directory}/" if directory else ""
