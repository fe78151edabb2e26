"""Harvester settings: a YAML file (rendered by Salt on real machines) with environment overrides.

Every setting has a default except the database URL and the Flickr API key. Environment
variables (`CCMIRROR_*`) win over the file, so a test or an operator can override one value
without writing a file. Secrets are kept out of `repr()` so they never reach a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ccmirror_common.hosts import DEFAULT_POLICY, HostPolicy
from ccmirror_common.metrics_server import MetricsSettings
from ccmirror_common.settings import ConfigError as ConfigError  # what callers catch
from ccmirror_common.settings import Environment, load_into

DEFAULT_CONFIG_PATH = Path("/etc/ccmirror/harvester.yaml")
FLICKR_API_URL = "https://api.flickr.com/services/rest/"


# The signed-call credentials: all three or none (`FlickrSettings.check_signing`).
SIGNING_FIELDS = ("api_secret", "oauth_token", "oauth_token_secret")


@dataclass
class FlickrSettings:
    api_url: str = FLICKR_API_URL
    api_key: str = field(default="", repr=False)
    # With these three every call is OAuth 1.0a-signed and sees every safety level; without
    # them the key sees safe photos only (Flickr: "Un-authed calls can only see Safe content").
    api_secret: str = field(default="", repr=False)
    oauth_token: str = field(default="", repr=False)
    oauth_token_secret: str = field(default="", repr=False)
    rate_limit_per_hour: float = 3600.0  # Flickr's limit per key; 0 lifts it (benchmarks)
    timeout: float = 30.0
    retries: int = 4  # further tries of one call on 5xx, 429, 105/201, malformed JSON
    retry_backoff: float = 1.0  # seconds before the first retry, doubled each time
    per_page: int = 500

    @property
    def signed(self) -> bool:
        return all(getattr(self, name) for name in SIGNING_FIELDS)

    def check_signing(self) -> None:
        """A partial set of signing credentials is a mistake, never a quiet unsigned key.
        Checked where calls are made (FlickrClient) and shown (`harvester status`), not at
        load: `harvester flickr-auth` runs with the key and secret before the token exists."""
        given = [name for name in SIGNING_FIELDS if getattr(self, name)]
        if given and len(given) < len(SIGNING_FIELDS):
            missing = [f"flickr.{name}" for name in SIGNING_FIELDS if name not in given]
            raise ConfigError(
                "signed Flickr calls need flickr.api_secret, flickr.oauth_token and "
                f"flickr.oauth_token_secret together: {', '.join(missing)} missing"
            )


@dataclass
class WorkerSettings:
    lease_seconds: int = 300
    max_attempts: int = 5  # a task that failed this many times is marked failed
    backoff_seconds: float = 30.0  # before a failed task is retried, doubled per attempt
    idle_poll_seconds: float = 2.0
    db_reconnect_seconds: float = 600.0  # how long a worker waits for MariaDB to come back
    # While this file exists the worker pauses after its page (Salt's `ccmirror.drain`).
    drain_file: str = "/var/lib/ccmirror/harvester.drain"


@dataclass
class QueueSettings:
    """`harvester serve`: the download queue's HTTP service on the database server."""

    bind: str = "127.0.0.1"  # the private-network address; never all interfaces by default
    port: int = 8700
    tokens_file: str = "/etc/ccmirror/queue-tokens.yaml"
    lease_seconds: int = 600  # a lease's life unless the worker asks for another
    max_lease_seconds: int = 3600
    max_items: int = 1000  # per lease
    max_attempts: int = 5  # `retry` reports before a photo is failed
    # A photo reported `retry` waits this long before it is leased again, doubled for each
    # retry it had before, at most the max (60, 120, 240, 480 s: a quarter of an hour for
    # the default 5 attempts, not a minute). 0: back to the queue at once.
    retry_backoff_seconds: float = 60.0
    retry_backoff_max_seconds: float = 3600.0
    reap_interval: float = 5.0  # seconds between sweeps for lapsed leases
    # Leases start past the last photo leased; every this often they look from the start,
    # for photos back in the queue (retries, lapsed leases).
    rescan_seconds: float = 10.0
    lease_retention_days: int = 7  # closed leases are kept this long, then pruned
    db_connections: int = 8
    # Request bodies over this are refused (413) unread; 0: max_items x 4 KiB + 64 KiB
    # (harvester.queue.guard.body_limit), room for a report of a full lease with its errors.
    max_body_bytes: int = 0
    # A worker holding this many unexpired leases gets 429 and no new one.
    max_open_leases: int = 4
    # Who may read /v1/status, /metrics and / without a token: addresses or CIDRs, matched
    # against the socket's peer (never a forwarded header). Salt adds the master's address.
    status_allow: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1"])


@dataclass
class FetchSettings:
    """The downloader's `fetch.allow_hosts`, read here too: a photo whose image or fallback
    URL is on another host is refused at import (by name, no DNS; ccmirror_common/hosts.py)."""

    allow_hosts: HostPolicy = DEFAULT_POLICY


@dataclass
class StorageSettings:
    """The S3 bucket the photos are in, for `harvester audit-storage --s3`. Its identity needs
    Read, List and Write on the bucket: Write only adds versions (the bucket has object lock),
    which is how an overwritten photo's stored version is made the latest again."""

    endpoint: str = ""  # https://... of the S3 gateway, or a managed S3 such as Spaces
    bucket: str = ""
    region: str = "us-east-1"
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)


@dataclass
class BackupTargetSettings:
    """The backup target that `weed filer.backup` copies every new object of the images bucket
    into (salt/backup/files/replication.toml.jinja), for `harvester backup-lag` and
    `restore-photos`. Its key is a reader's (Read and List on the backup bucket); the sink's
    (Write only, `sink_access_key`) is for `backup-check`'s copies alone, made of what
    filer.backup left out where filer.backup puts it. Backup keys are
    `<directory><main key>.versions/v_<main version id>`.
    `filer`: the backup cluster's filer URL when the target is SeaweedFS, whose S3 listing
    hides keys under `<key>.versions/` (a managed S3 such as Spaces lists them: leave it empty)."""

    endpoint: str = ""
    bucket: str = ""
    region: str = "us-east-1"
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    directory: str = "/"  # the sink's `directory`
    filer: str = ""
    sink_access_key: str = field(default="", repr=False)
    sink_secret_key: str = field(default="", repr=False)


@dataclass
class CatalogBackupSettings:
    """`harvester backup-catalog`: the databases dumped with the catalog, each beside it with
    its stamp (salt/db/backup.sls: a SeaweedFS site's filer store on db-1)."""

    also_databases: list[str] = field(default_factory=list)


@dataclass
class IncrementSettings:
    """`harvester seed increment` (db-1's daily schedule): new upload-time slices from the
    last one seeded up to `lag_hours` behind now (harvester/search/increment.py says why 24)."""

    start: int = 1072915200  # unix seconds: where slices begin when none is seeded (2004-01-01)
    lag_hours: float = 24.0
    stride: int = 86400  # one slice a day: walked newest first, near ceil(n/500) calls


@dataclass
class HarvesterMetricsSettings(MetricsSettings):
    """`metrics.listen` of `harvester work` (ccmirror_common/metrics_server.py), and where the
    batch jobs (audit, catalog backup, increment) record their success for node exporter's
    textfile collector (ccmirror_common/job_textfile.py; empty: nowhere)."""

    textfile_dir: str = ""


@dataclass
class Settings:
    db_url: str = field(default="", repr=False)
    flickr: FlickrSettings = field(default_factory=FlickrSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    backup_target: BackupTargetSettings = field(default_factory=BackupTargetSettings)
    catalog_backup: CatalogBackupSettings = field(default_factory=CatalogBackupSettings)
    increment: IncrementSettings = field(default_factory=IncrementSettings)
    metrics: HarvesterMetricsSettings = field(default_factory=HarvesterMetricsSettings)


# Environment variable -> (section or None for top level, setting name).
ENVIRONMENT: Environment = {
    "CCMIRROR_DB_URL": (None, "db_url"),
    "CCMIRROR_METRICS_LISTEN": ("metrics", "listen"),
    "CCMIRROR_METRICS_TEXTFILE_DIR": ("metrics", "textfile_dir"),
    "CCMIRROR_FLICKR_API_URL": ("flickr", "api_url"),
    "CCMIRROR_FLICKR_API_KEY": ("flickr", "api_key"),
    **{f"CCMIRROR_FLICKR_{name.upper()}": ("flickr", name) for name in SIGNING_FIELDS},
    "CCMIRROR_FLICKR_RATE_LIMIT": ("flickr", "rate_limit_per_hour"),
    "CCMIRROR_FLICKR_TIMEOUT": ("flickr", "timeout"),
    "CCMIRROR_FLICKR_RETRIES": ("flickr", "retries"),
    "CCMIRROR_FLICKR_RETRY_BACKOFF": ("flickr", "retry_backoff"),
    "CCMIRROR_LEASE_SECONDS": ("worker", "lease_seconds"),
    "CCMIRROR_MAX_ATTEMPTS": ("worker", "max_attempts"),
    "CCMIRROR_TASK_BACKOFF": ("worker", "backoff_seconds"),
    "CCMIRROR_WORKER_IDLE_POLL_SECONDS": ("worker", "idle_poll_seconds"),
    "CCMIRROR_HARVESTER_DRAIN_FILE": ("worker", "drain_file"),
    "CCMIRROR_QUEUE_BIND": ("queue", "bind"),
    "CCMIRROR_QUEUE_PORT": ("queue", "port"),
    "CCMIRROR_QUEUE_TOKENS_FILE": ("queue", "tokens_file"),
    "CCMIRROR_QUEUE_LEASE_SECONDS": ("queue", "lease_seconds"),
    "CCMIRROR_QUEUE_MAX_ATTEMPTS": ("queue", "max_attempts"),
    "CCMIRROR_QUEUE_REAP_INTERVAL": ("queue", "reap_interval"),
    "CCMIRROR_QUEUE_RESCAN_SECONDS": ("queue", "rescan_seconds"),
    "CCMIRROR_QUEUE_RETRY_BACKOFF_SECONDS": ("queue", "retry_backoff_seconds"),
    "CCMIRROR_QUEUE_RETRY_BACKOFF_MAX_SECONDS": ("queue", "retry_backoff_max_seconds"),
    "CCMIRROR_FETCH_ALLOW_HOSTS": ("fetch", "allow_hosts"),  # comma-separated
    "CCMIRROR_QUEUE_MAX_ITEMS": ("queue", "max_items"),
    "CCMIRROR_QUEUE_MAX_BODY_BYTES": ("queue", "max_body_bytes"),
    "CCMIRROR_QUEUE_MAX_OPEN_LEASES": ("queue", "max_open_leases"),
    "CCMIRROR_QUEUE_STATUS_ALLOW": ("queue", "status_allow"),  # comma-separated
    "CCMIRROR_STORAGE_ENDPOINT": ("storage", "endpoint"),
    "CCMIRROR_STORAGE_BUCKET": ("storage", "bucket"),
    "CCMIRROR_STORAGE_REGION": ("storage", "region"),
    "CCMIRROR_STORAGE_ACCESS_KEY": ("storage", "access_key"),
    "CCMIRROR_STORAGE_SECRET_KEY": ("storage", "secret_key"),
    **{
        f"CCMIRROR_BACKUP_TARGET_{name.upper()}": ("backup_target", name)
        for name in (
            "endpoint",
            "bucket",
            "region",
            "access_key",
            "secret_key",
            "directory",
            "sink_access_key",
            "sink_secret_key",
        )
    },
    "CCMIRROR_BACKUP_TARGET_FILER": ("backup_target", "filer"),
}


def load_settings(
    path: str | Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Read `path`, else $CCMIRROR_CONFIG, else the default file if present; then the env."""
    return load_into(
        Settings(),
        default_path=DEFAULT_CONFIG_PATH,
        environment=ENVIRONMENT,
        path=path,
        environ=environ,
    )
