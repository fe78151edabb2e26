"""How many bytes of a filer's leveldb2 store one stored photo costs (README, capacity plan).

A SeaweedFS cluster (`lab/processes/seaweedfs.py`: one master, one volume server, `--filers`
filers each with its own leveldb2 store, replication 000) gets `--objects` small objects PUT
through its S3 gateway into the object-locked, versioned images bucket under storage-layout
keys (`images/<aa>/<bb>/<id>.jpg`), as the downloaders put photos: each object is a
`<key>.versions/` directory entry and one version entry with its chunk, retention and
checksum. Each filer's store directory is measured (bytes on disk, `du`) once every filer
lists every object, then again after the filers restart (leveldb compacts its log on open);
the empty bucket's store is subtracted. A photo of a few MB is still one or two chunks: the
entry, not the body, is what the store holds.

    .venv/bin/python bench/filer_store.py [--objects 100000] [--filers 3] [--threads 32]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from lab.processes import seaweedfs_s3 as s3
from lab.processes.seaweedfs import Cluster, ClusterSettings, start_cluster, wait

BUCKET = s3.IMAGES_BUCKET


def store_bytes(cluster: Cluster, index: int) -> int:
    """Bytes on disk of filer `index`'s leveldb2 store."""
    store = cluster.filers[index].cwd / "store"
    out = subprocess.run(["du", "-sb", str(store)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def key_of(number: int) -> str:
    digest = hashlib.md5(str(number).encode()).hexdigest()
    return f"images/{digest[:2]}/{digest[2:4]}/{number}.jpg"


def versions_listed(cluster: Cluster, index: int, key: str) -> bool:
    url = f"http://{cluster.filers[index].address}/buckets/{BUCKET}/{key}.versions/"
    try:
        response = requests.get(url, timeout=5, headers={"Accept": "application/json"})
        return response.ok and len(response.json().get("Entries") or []) == 1
    except (requests.RequestException, ValueError):
        return False


def measure(cluster: Cluster, count: int, threads: int) -> None:
    admin = s3.admin_client(cluster)
    s3.create_images_bucket(admin)
    empty = [store_bytes(cluster, i) for i in range(len(cluster.filers))]
    clients = [s3.client(cluster.gateway_url(i), s3.admin_key(cluster), pool=threads)
               for i in range(len(cluster.gateways))]  # fmt: skip
    body = b"x" * 1000
    started = time.monotonic()

    def put(number: int) -> None:
        client = clients[number % len(clients)]  # every filer takes writes, as in the fleet
        client.put_object(Bucket=BUCKET, Key=key_of(number), Body=body)

    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(put, range(count)):
            pass
    took = time.monotonic() - started
    print(f"{count} PUTs in {took:.0f}s ({count / took:.0f}/s) through {len(clients)} gateways")
    last = key_of(count - 1)
    for index in range(len(cluster.filers)):
        wait(lambda i=index: versions_listed(cluster, i, last), 600, f"filer {index + 1}")
    time.sleep(5)  # no assertion rides on it: lets leveldb write out its memtable first
    report("synced", cluster, empty, count)
    for index in range(len(cluster.filers)):
        cluster.restart_filer(index=index)
    report("after a restart (compacted)", cluster, empty, count)


def report(when: str, cluster: Cluster, empty: list[int], count: int) -> None:
    for index in range(len(cluster.filers)):
        used = store_bytes(cluster, index) - empty[index]
        print(f"  {when}: filer {index + 1}: {used / 1e6:.1f} MB, {used / count:.0f} B/object")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--filers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=32)
    options = parser.parse_args()
    settings = ClusterSettings(
        replication="000", volume_servers=1, volume_max=100, volume_size_limit_mb=1024,
        filers=options.filers, stop_timeout=10.0,
    )  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="filer-store-") as base,
        start_cluster(Path(base), settings) as cluster,
    ):
        measure(cluster, options.objects, options.threads)


if __name__ == "__main__":
    main()
