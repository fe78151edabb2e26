"""Which S3 client the downloader's push uses: PUT/s and client CPU per object, one run.

A private SeaweedFS cluster shaped as the lab's (`lab/processes/seaweedfs.py`: a master, two
volume servers with replication 001, a filer and the S3 gateway as separate processes on
loopback; the images bucket with object lock and its default retention, a writer identity with
Write on it alone) takes the same N files of
5-20 KB (random bytes, written to disk once) from each candidate in turn, every PUT sending
the file's SHA-256 as `x-amz-checksum-sha256` (the digests are known beforehand, as the
fetch stage's journal knows them), with the same concurrency:

- boto3: one client, `max_pool_connections` = concurrency, a thread per connection (boto3
  also hashes each body again for the signed `x-amz-content-sha256`, as it does over http);
- signer+requests: botocore's `S3SigV4Auth` over one `requests.Session` (pool of the same
  size), the payload hash being the known digest (`downloader/object_store.py`'s way);
- signer+urllib3: the same signer over a bare `urllib3.PoolManager`;
- minio: minio-py's `put_object` (it hashes the body itself for its signature);
- signer+asyncio: the same signer, HTTP/1.1 written by hand on asyncio streams, one event
  loop (the shape of downloader/fetch/http/, which only GETs): the floor of what Python pays.

Each candidate runs in a child process of its own; its CPU (user + system from getrusage)
divided by the objects put is its client CPU per object; the cluster's CPU over the same
interval (all its weed processes, from /proc) is reported beside it. Runs alternate between
candidates; medians and ratios against boto3 are printed at the end.

    .venv/bin/python bench/s3_clients.py [--objects 2000] [--repeat 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import hashlib
import importlib.util
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from lab.processes.seaweedfs import Cluster
    from lab.processes.seaweedfs_s3 import WritableBucket

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CANDIDATES = ("boto3", "signer+requests", "signer+urllib3", "minio", "signer+asyncio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", nargs="*", choices=CANDIDATES, default=list(CANDIDATES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, json.loads(Path(args.spec).read_text()))))
        return
    args.only = installed(args.only)
    from lab.processes.seaweedfs import start_cluster
    from lab.processes.seaweedfs_s3 import writable_bucket

    with tempfile.TemporaryDirectory(prefix="s3-clients-") as scratch:
        files = write_files(Path(scratch) / "files", args.objects)
        with start_cluster(Path(scratch) / "seaweedfs") as cluster:
            results = compare(args, writable_bucket(cluster), files)
    report(results, args)


def write_files(root: Path, count: int) -> list[dict]:
    rng = random.Random(19)
    files = []
    for n in range(count):
        body = rng.randbytes(rng.randint(5 * 1024, 20 * 1024))
        path = root / f"{n:02d}"[-2:] / f"{n}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        files.append({"path": str(path), "name": f"{n}.jpg", "sha256": sha256_hex(body)})
    return files


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def compare(
    args: argparse.Namespace, bucket: WritableBucket, files: list[dict]
) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {name: [] for name in args.only}
    setting = bucket.storage_setting()
    for run in range(args.repeat):
        for name in args.only:
            spec = {
                "endpoint": setting["endpoint"],
                "bucket": setting["bucket"],
                "region": setting["region"],
                "key": [setting["access_key"], setting["secret_key"]],
                "prefix": f"bench/{name.replace('+', '-')}/{run}",
                "concurrency": args.concurrency,
                "files": files,
            }
            spec_path = Path(files[0]["path"]).parent.parent.parent / "spec.json"
            spec_path.write_text(json.dumps(spec))
            server_before = cluster_cpu(bucket.cluster)
            done = subprocess.run(
                [sys.executable, __file__, "--child", name, "--spec", str(spec_path)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout)
            result["server_ms"] = (cluster_cpu(bucket.cluster) - server_before) * 1000
            results[name].append(result)
            print(
                f"run {run + 1} {name:16} {result['puts_per_s']:7.0f} PUT/s  client "
                f"{result['cpu_ms'] / result['objects']:.3f} ms/object  server "
                f"{result['server_ms'] / result['objects']:.3f} ms/object",
                flush=True,
            )
    return results


def cluster_cpu(cluster: Cluster) -> float:
    """User + system seconds of every weed process of the cluster."""
    return sum(process_cpu(process.process.pid) for process in cluster.processes())


def process_cpu(pid: int) -> float:
    """User + system seconds of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print(
        f"\n{args.objects} objects of 5-20 KB, concurrency {args.concurrency}, "
        f"{args.repeat} runs, medians"
    )
    base = "boto3" if "boto3" in results else next(iter(results))
    base_rate, base_cpu = median(base, "puts_per_s"), median(base, "cpu_ms") / args.objects
    for name in results:
        rate, cpu = median(name, "puts_per_s"), median(name, "cpu_ms") / args.objects
        server = median(name, "server_ms") / args.objects
        print(
            f"{name:16} {rate:7.0f} PUT/s ({rate / base_rate:4.2f}x {base})  client "
            f"{cpu:.3f} ms/object ({cpu / base_cpu:4.2f}x)  server {server:.3f} ms/object"
        )


# --- the children: one candidate each ------------------------------------------------------


def run_child(name: str, spec: dict) -> dict:
    put_all = {
        "boto3": put_boto3,
        "signer+requests": put_signer_requests,
        "signer+urllib3": put_signer_urllib3,
        "minio": put_minio,
        "signer+asyncio": put_signer_asyncio,
    }[name]
    import_all(name)  # not counted: a daemon imports once
    before = cpu_seconds()
    started = time.monotonic()
    put_all(spec)
    seconds = time.monotonic() - started
    objects = len(spec["files"])
    return {
        "objects": objects,
        "seconds": seconds,
        "puts_per_s": objects / seconds,
        "cpu_ms": (cpu_seconds() - before) * 1000,
    }


def import_all(name: str) -> None:
    import boto3  # noqa: F401
    import botocore.auth  # noqa: F401
    import botocore.awsrequest  # noqa: F401
    import requests  # noqa: F401
    import urllib3  # noqa: F401

    if name == "minio":
        import minio  # noqa: F401


def installed(candidates: list[str]) -> list[str]:
    """minio-py is no dependency of the project: measured when it is installed."""
    if "minio" in candidates and importlib.util.find_spec("minio") is None:
        print("minio is not installed (pip install minio): left out", file=sys.stderr)
        return [name for name in candidates if name != "minio"]
    return candidates


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def checksum_b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def in_threads(spec: dict, put_one) -> None:
    with concurrent.futures.ThreadPoolExecutor(spec["concurrency"]) as pool:
        for _ in pool.map(put_one, spec["files"]):
            pass


def put_boto3(spec: dict) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=spec["endpoint"],
        region_name=spec["region"],
        aws_access_key_id=spec["key"][0],
        aws_secret_access_key=spec["key"][1],
        config=Config(max_pool_connections=spec["concurrency"], s3={"addressing_style": "path"}),
    )

    def put_one(file: dict) -> None:
        with open(file["path"], "rb") as body:
            client.put_object(
                Bucket=spec["bucket"],
                Key=f"{spec['prefix']}/{file['name']}",
                Body=body.read(),
                ChecksumSHA256=checksum_b64(file["sha256"]),
            )

    in_threads(spec, put_one)


def signed_headers(spec: dict, signer, file: dict, body: bytes) -> tuple[str, dict]:
    from botocore.awsrequest import AWSRequest

    url = f"{spec['endpoint']}/{spec['bucket']}/{spec['prefix']}/{file['name']}"
    request = AWSRequest(
        method="PUT",
        url=url,
        data=body,
        headers={"x-amz-checksum-sha256": checksum_b64(file["sha256"])},
    )
    request.context["payload_sha256"] = file["sha256"]
    signer.add_auth(request)
    return url, dict(request.headers.items())


def known_digest_signer(spec: dict):
    from botocore.auth import S3SigV4Auth
    from botocore.credentials import Credentials

    class KnownDigestSigner(S3SigV4Auth):
        def payload(self, request) -> str:
            return request.context["payload_sha256"]

    return KnownDigestSigner(Credentials(*spec["key"]), "s3", spec["region"])


def put_signer_requests(spec: dict) -> None:
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=spec["concurrency"])
    session.mount("http://", adapter)
    signer = known_digest_signer(spec)

    def put_one(file: dict) -> None:
        body = Path(file["path"]).read_bytes()
        url, headers = signed_headers(spec, signer, file, body)
        response = session.put(url, data=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code} {response.text[:200]}")

    in_threads(spec, put_one)


def put_signer_urllib3(spec: dict) -> None:
    import urllib3

    pool = urllib3.PoolManager(maxsize=spec["concurrency"], block=True)
    signer = known_digest_signer(spec)

    def put_one(file: dict) -> None:
        body = Path(file["path"]).read_bytes()
        url, headers = signed_headers(spec, signer, file, body)
        response = pool.request("PUT", url, body=body, headers=headers)
        if response.status != 200:
            raise RuntimeError(f"{response.status} {response.data[:200]!r}")

    in_threads(spec, put_one)


def put_minio(spec: dict) -> None:
    import io

    import urllib3
    from minio import Minio

    parts = urlsplit(spec["endpoint"])
    client = Minio(
        parts.netloc,
        access_key=spec["key"][0],
        secret_key=spec["key"][1],
        secure=False,
        region=spec["region"],
        http_client=urllib3.PoolManager(maxsize=spec["concurrency"], block=True),
    )

    def put_one(file: dict) -> None:
        body = Path(file["path"]).read_bytes()
        client.put_object(
            spec["bucket"],
            f"{spec['prefix']}/{file['name']}",
            io.BytesIO(body),
            len(body),
            metadata={"x-amz-checksum-sha256": checksum_b64(file["sha256"])},
        )

    in_threads(spec, put_one)


def put_signer_asyncio(spec: dict) -> None:
    asyncio.run(_put_asyncio(spec))


async def _put_asyncio(spec: dict) -> None:
    parts = urlsplit(spec["endpoint"])
    signer = known_digest_signer(spec)
    queue: asyncio.Queue = asyncio.Queue()
    for file in spec["files"]:
        queue.put_nowait(file)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        while not queue.empty():
            file = queue.get_nowait()
            body = Path(file["path"]).read_bytes()
            url, headers = signed_headers(spec, signer, file, body)
            path = urlsplit(url).path
            head = [f"PUT {path} HTTP/1.1", f"Host: {parts.netloc}"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            head.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            if b" 200 " not in status_line:
                raise RuntimeError(status_line.decode())
        writer.close()

    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))


if __name__ == "__main__":
    main()
