"""The S3 side of a SeaweedFS cluster: keys, identities changed on the running gateway, the
images bucket, and boto3 clients (the admin client of the tests and the lab).

Identities without a gateway restart. The gateway follows the filer's metadata under /etc/
and reloads its identities whenever one under /etc/iam/identities/ changes; `weed shell
s3.configure ... -apply` writes them there through the filer's IAM service. So a rotation is:
add the new key to the identity (both keys work), switch the downloader, remove the old key
(refused from then on). The commands go to `weed shell` on stdin, never argv. (The gateway
also re-reads its static -config on SIGHUP, but identities named there are "static" and the
dynamic store cannot change them: only the admin identity lives there.)

Keys that cannot destroy. A downloader's identity has the action `Write:<bucket>` only: put,
overwrite and delete (which in a versioned bucket add a version or a delete marker), but no
get, head or list. What refuses its deleting a *version* by id is not object lock on the
bucket by itself (SeaweedFS 4.48 lets `Write` remove any version that carries no retention
and no legal hold), but the bucket's default retention, stamped on every version at PUT:
GOVERNANCE mode, so the writer (no s3:BypassGovernanceRetention, no Admin) can neither delete
a version nor shorten its retention, while the admin key still can, with
`x-amz-bypass-governance-retention: true` (a takedown must stay possible; COMPLIANCE would
forbid even that for the whole period).
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass, field

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from lab.processes.seaweedfs import Cluster, StorageError, wait

REGION = "us-east-1"  # weed accepts any; botocore's signer needs one
# The lab's bucket: the storage formula's default (salt/storage/defaults.yaml, which the lab's
# site leaves unnamed), Python's one copy of it (tests/unit/test_lab_storage_settings.py).
IMAGES_BUCKET = "images"
RETENTION_MODE = "GOVERNANCE"
RETENTION_YEARS = 100  # weed's maximum: a version's protection must outlive the mirror
NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")  # an identity or bucket name
KEY_PART = re.compile(r"^[A-Za-z0-9+/=_-]{8,128}$")  # one shell word, no spaces or newlines
BUCKET_ACTIONS = ("Read", "List", "Tagging", "Write")  # what an identity may have on a bucket
WRITER_ACTIONS = ("Write",)  # a downloader's: put, never get or list
AUDITOR_ACTIONS = ("Read", "List", "Write")  # the audit's: list, compare, restore a version
UNKNOWN_KEY = "InvalidAccessKeyId"
REFUSED_KEY = ("AccessDenied", UNKNOWN_KEY, "SignatureDoesNotMatch")  # S3's codes for a key
PUT_PROBE_KEY = "probes/lab/put-allowed.txt"  # a new version per probe: nothing overwritten


@dataclass(frozen=True)
class S3Key:
    access_key: str
    secret_key: str = field(repr=False)


def new_key() -> S3Key:
    alphabet = string.ascii_uppercase + string.digits
    access = "".join(secrets.choice(alphabet) for _ in range(20))
    return S3Key(access, secrets.token_urlsafe(30))


def admin_key(cluster: Cluster) -> S3Key:
    return S3Key(cluster.admin_access_key, cluster.admin_secret_key)


def client(endpoint: str, key: S3Key, retries: int = 3, pool: int = 10) -> BaseClient:
    """A boto3 S3 client on `endpoint` with path-style addressing (no bucket DNS names) and
    `pool` connections (as many as the threads that share it)."""
    config = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": retries, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=pool,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key.access_key,
        aws_secret_access_key=key.secret_key,
        region_name=REGION,
        config=config,
    )


def admin_client(cluster: Cluster) -> BaseClient:
    return client(cluster.s3_url, admin_key(cluster))


def s3_put_allowed(endpoint: str, access_key: str, secret_key: str, bucket: str) -> bool:
    """Whether this key may write to `bucket`: True when a small probe object put under
    `probes/` is taken, False when the gateway refuses the key (unknown, wrong secret, or no
    Write on the bucket). Anything else (no such bucket, no gateway) is raised."""
    probe = client(endpoint, S3Key(access_key, secret_key), retries=1)
    try:
        probe.put_object(Bucket=bucket, Key=PUT_PROBE_KEY, Body=b"may this key put?\n")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in REFUSED_KEY:
            return False
        raise
    return True


@dataclass(frozen=True)
class WritableBucket:
    """A bucket made as the images bucket is, and a downloader's write-only key for it: what
    the downloader's tests and benchmarks push into."""

    cluster: Cluster
    name: str
    writer: S3Key

    def storage_setting(self, key: S3Key | None = None) -> dict[str, str]:
        return storage_setting(self.cluster, key or self.writer, self.name)

    def admin_client(self) -> BaseClient:
        return admin_client(self.cluster)


def writable_bucket(cluster: Cluster, name: str = IMAGES_BUCKET) -> WritableBucket:
    """Create bucket `name` (object lock, default retention) and an identity `writer-<name>`
    with Write on it alone; returns once the gateway accepts the writer's key."""
    create_images_bucket(admin_client(cluster), name)
    writer = new_key()
    add_identity(cluster, f"writer-{name}", writer, name)
    wait_known(cluster, writer, name)
    return WritableBucket(cluster, name, writer)


def create_images_bucket(
    admin: BaseClient,
    bucket: str = IMAGES_BUCKET,
    mode: str = RETENTION_MODE,
    years: int = RETENTION_YEARS,
) -> None:
    """The images bucket, created by the admin key: object lock (which turns versioning on and
    keeps it on) with a default retention stamped on every version written."""
    _check_name(bucket, "bucket")
    admin.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    rule = {"DefaultRetention": {"Mode": mode, "Years": years}}
    admin.put_object_lock_configuration(
        Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
    )


def add_identity(
    cluster: Cluster,
    name: str,
    key: S3Key,
    bucket: str = IMAGES_BUCKET,
    actions: tuple[str, ...] = WRITER_ACTIONS,
) -> None:
    """An identity with one key and `actions` on `bucket` only: by default a downloader's,
    `Write:<bucket>` and nothing else; AUDITOR_ACTIONS for the storage audit's."""
    _check_name(name, "identity")
    _check_name(bucket, "bucket")
    if not actions or not set(actions) <= set(BUCKET_ACTIONS):
        raise StorageError(f"actions must be some of {', '.join(BUCKET_ACTIONS)}: {actions}")
    _configure(cluster, f"-user={name} -actions={','.join(actions)} -buckets={bucket}", key)


def wait_known(
    cluster: Cluster, key: S3Key, bucket: str = IMAGES_BUCKET, timeout: float = 30.0
) -> None:
    """Until the gateway knows `key`: it loads identities as the filer's change reaches it.
    The probe is a listing, which changes nothing: a known write-only key is refused it with
    AccessDenied, an unknown one with InvalidAccessKeyId."""
    probe = client(cluster.s3_url, key, retries=1)

    def known() -> bool:
        try:
            probe.list_objects_v2(Bucket=bucket, MaxKeys=1)
        except ClientError as error:
            return error.response["Error"]["Code"] != UNKNOWN_KEY
        return True

    wait(known, timeout, f"the gateway to know the key {key.access_key}")


def storage_setting(cluster: Cluster, key: S3Key, bucket: str = IMAGES_BUCKET) -> dict[str, str]:
    """The `storage:` mapping of the downloader's (or the audit's) settings for this gateway,
    bucket and key."""
    return {
        "endpoint": cluster.s3_url,
        "bucket": bucket,
        "region": REGION,
        "access_key": key.access_key,
        "secret_key": key.secret_key,
    }


def add_key(cluster: Cluster, name: str, key: S3Key) -> None:
    """A second key for an existing identity (the first step of a rotation)."""
    _check_name(name, "identity")
    if name not in identities(cluster):
        raise StorageError(f"no identity {name!r}")
    _configure(cluster, f"-user={name}", key)


def remove_key(cluster: Cluster, name: str, access_key: str) -> None:
    """Retire one key of an identity: refused by the gateway from then on."""
    _check_name(name, "identity")
    if access_key not in identities(cluster).get(name, []):
        raise StorageError(f"identity {name!r} has no key {access_key!r}")
    cluster.shell(f"s3.configure -user={name} -access_key={access_key} -delete -apply")


def remove_identity(cluster: Cluster, name: str) -> None:
    _check_name(name, "identity")
    if name not in identities(cluster):
        raise StorageError(f"no identity {name!r}")
    cluster.shell(f"s3.configure -user={name} -delete -apply")


def identities(cluster: Cluster) -> dict[str, list[str]]:
    """The filer's dynamic identities: name -> access keys (the admin, static, is not one)."""
    listing = cluster.shell("s3.configure")
    try:
        configuration = json.loads(listing[listing.index("{") :])
    except ValueError as error:
        raise StorageError(f"s3.configure listed no configuration: {listing[:200]!r}") from error
    return {
        identity["name"]: [credential["accessKey"] for credential in identity["credentials"]]
        for identity in configuration.get("identities") or []
    }


def _configure(cluster: Cluster, what: str, key: S3Key) -> None:
    for part in (key.access_key, key.secret_key):
        if not KEY_PART.match(part):
            raise StorageError("a key must be 8-128 characters of A-Z a-z 0-9 + / = _ -")
    cluster.shell(
        f"s3.configure {what} -access_key={key.access_key} -secret_key={key.secret_key} -apply"
    )


def _check_name(name: str, what: str) -> None:
    if not NAME.match(name):
        raise StorageError(f"bad {what} name {name!r}: lowercase letters, digits, '.' and '-'")
