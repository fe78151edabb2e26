"""Downloader settings: a YAML file (Salt renders it on a droplet) with `CCMIRROR_*` overrides.

queue_url: http://10.0.0.2:8700
queue_token: TOKEN            # this droplet's bearer token; never logged
worker: dl-1                  # the name the token was issued for (default: hostname)
spool: /var/spool/ccmirror
storage: ccmirror-storage@10.0.0.3    # rsync over SSH: user@host, or an S3 bucket:
#  {endpoint: https://ams3.digitaloceanspaces.com, bucket: images, region: ams3,
#   access_key: KEY, secret_key: SECRET}   # or CCMIRROR_STORAGE_ENDPOINT, _BUCKET, ...
storage_port: 22
ssh_key: /etc/ccmirror/storage_key
known_hosts: /etc/ccmirror/known_hosts  # the storage host's key, pinned
batch_size: 500
min_free_mb: 1024             # no new lease while the spool's disk has less free
fetch: {concurrency: 64, per_host: 16, max_bytes: 52428800, timeout: 60,
        allow_hosts: ["*.staticflickr.com", "*.flickr.com"]}   # the only hosts fetched from
push: {timeout: 120, retry_seconds: 600, concurrency: 16}
metrics: {listen: "10.0.0.5:9712"}   # Prometheus' scrape address (private); empty: none
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ccmirror_common.hosts import DEFAULT_POLICY, HostPolicy
from ccmirror_common.metrics_server import MetricsSettings
from ccmirror_common.settings import ConfigError, Environment, load_into
from downloader.s3.target import FIELDS as S3_FIELDS
from downloader.s3.target import S3Target, TargetError

DEFAULT_CONFIG_PATH = Path("/etc/ccmirror/downloader.yaml")


@dataclass
class FetchSettings:
    concurrency: int = 64  # connections in flight, all hosts together
    per_host: int = 0  # connections to one host at once; 0: only the global limit
    per_host_rate: float = 0.0  # requests started per second per host; 0: unlimited
    # Per-domain limits: {"staticflickr.com": {"connections": 32, "per_second": 100}}; a key
    # covers the domain and its subdomains.
    hosts: dict = field(default_factory=dict)
    max_bytes: int = 50 * 1024 * 1024
    timeout: float = 120.0  # one request, connect to last byte
    # Host names, `*.` wildcards, addresses (ccmirror_common/hosts.py): nothing else is
    # requested, on any redirect hop, and no private address unless named (no SSRF).
    allow_hosts: HostPolicy = DEFAULT_POLICY


@dataclass
class PushSettings:
    timeout: float = 120.0  # rsync's I/O timeout; an S3 PUT's read timeout
    retry_seconds: float = 600.0  # how long a push keeps retrying before the daemon waits
    concurrency: int = 16  # S3 PUTs in flight (rsync sends one stream)


def parse_storage(value: object, source: str) -> str | S3Target:
    """`user@host` (rsync over SSH) or a mapping of S3_FIELDS (an S3 bucket)."""
    if isinstance(value, str):
        return value.strip()
    try:
        return S3Target.from_mapping(value)
    except TargetError as exc:
        raise ConfigError(f"{source}: {exc}") from None


@dataclass
class Settings:
    queue_url: str = ""
    queue_token: str = field(default="", repr=False)
    worker: str = field(default_factory=socket.gethostname)
    spool: str = "/var/spool/ccmirror"
    storage: str | S3Target = field(default="", metadata={"parse": parse_storage})
    storage_port: int = 22
    ssh_key: str = "/etc/ccmirror/storage_key"
    known_hosts: str = "/etc/ccmirror/known_hosts"
    batch_size: int = 500
    lease_seconds: int = 600
    min_free_mb: int = 1024
    lease_attempts: int = 3  # starts that fail to finish one lease before it is quarantined
    fetch: FetchSettings = field(default_factory=FetchSettings)
    push: PushSettings = field(default_factory=PushSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)  # listen: "host:port"

    def require(self, *names: str) -> None:
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            raise ConfigError(
                "missing setting(s): " + ", ".join(f"{n} (CCMIRROR_{n.upper()})" for n in missing)
            )


# Environment variable -> (section or None for top level, setting name).
ENVIRONMENT: Environment = {
    "CCMIRROR_QUEUE_URL": (None, "queue_url"),
    "CCMIRROR_QUEUE_TOKEN": (None, "queue_token"),
    "CCMIRROR_WORKER": (None, "worker"),
    "CCMIRROR_SPOOL": (None, "spool"),
    "CCMIRROR_STORAGE": (None, "storage"),
    "CCMIRROR_STORAGE_PORT": (None, "storage_port"),
    "CCMIRROR_SSH_KEY": (None, "ssh_key"),
    "CCMIRROR_KNOWN_HOSTS": (None, "known_hosts"),
    "CCMIRROR_BATCH_SIZE": (None, "batch_size"),
    "CCMIRROR_LEASE_SECONDS": (None, "lease_seconds"),
    "CCMIRROR_MIN_FREE_MB": (None, "min_free_mb"),
    "CCMIRROR_LEASE_ATTEMPTS": (None, "lease_attempts"),
    "CCMIRROR_FETCH_CONCURRENCY": ("fetch", "concurrency"),
    "CCMIRROR_FETCH_PER_HOST": ("fetch", "per_host"),
    "CCMIRROR_FETCH_PER_HOST_RATE": ("fetch", "per_host_rate"),
    "CCMIRROR_FETCH_MAX_BYTES": ("fetch", "max_bytes"),
    "CCMIRROR_FETCH_TIMEOUT": ("fetch", "timeout"),
    "CCMIRROR_FETCH_ALLOW_HOSTS": ("fetch", "allow_hosts"),  # comma-separated
    "CCMIRROR_PUSH_TIMEOUT": ("push", "timeout"),
    "CCMIRROR_PUSH_RETRY_SECONDS": ("push", "retry_seconds"),
    "CCMIRROR_PUSH_CONCURRENCY": ("push", "concurrency"),
    "CCMIRROR_METRICS_LISTEN": ("metrics", "listen"),
}
# An S3 bucket field by field (each overrides the file's; any one makes storage S3).
S3_ENVIRONMENT = {f"CCMIRROR_STORAGE_{name.upper()}": name for name in S3_FIELDS}


def load_settings(
    path: str | Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Read `path`, else $CCMIRROR_CONFIG, else the default file if present; then the env."""
    environ = os.environ if environ is None else environ
    settings = load_into(
        Settings(),
        default_path=DEFAULT_CONFIG_PATH,
        environment=ENVIRONMENT,
        path=path,
        environ=environ,
    )
    apply_s3_environment(settings, environ)
    if settings.push.concurrency < 1:
        raise ConfigError(
            f"push: 'concurrency' must be at least 1, not {settings.push.concurrency}"
        )
    return settings


def apply_s3_environment(settings: Settings, environ: Mapping[str, str]) -> None:
    """CCMIRROR_STORAGE_ENDPOINT, _BUCKET, _REGION, _ACCESS_KEY, _SECRET_KEY over the file's
    S3 mapping (an rsync `storage` string is replaced: the variables name a bucket)."""
    given = {key: environ[name] for name, key in S3_ENVIRONMENT.items() if name in environ}
    if not given:
        return
    base = settings.storage
    merged = {name: getattr(base, name) for name in S3_FIELDS} if isinstance(base, S3Target) else {}
    merged |= given
    try:
        settings.storage = S3Target.from_mapping(merged)
    except TargetError as exc:
        raise ConfigError(f"CCMIRROR_STORAGE_*: storage {exc}") from None
