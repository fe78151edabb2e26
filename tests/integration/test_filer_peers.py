"""The main cluster's filers as the fleet runs them (#20): several filers, each with every name
in a leveldb2 store of its own, finding each other through the master and applying each other's
metadata changes; an S3 gateway on each asking all of them. No filer's store is the only copy
of a name: a filer whose store is wiped (a replaced droplet) serves every name again, including
the ones written while it was down."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable

import requests
from botocore.client import BaseClient

from lab.processes import seaweedfs_s3 as s3
from lab.processes.seaweedfs import Cluster
from tests.conftest import wait_for

BUCKET = s3.IMAGES_BUCKET
SYNC_TIMEOUT = 60.0  # seconds for a change to reach every filer (it takes about one)


def put_photos(client: BaseClient, count: int) -> dict[str, bytes]:
    photos = {f"images/{secrets.token_hex(1)}/{secrets.token_hex(6)}.jpg": os.urandom(3000)
              for _ in range(count)}  # fmt: skip
    for key, body in photos.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    return photos


def listed(client: BaseClient) -> set[str]:
    """Every key of the bucket, as one gateway lists it (paged)."""
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys |= {item["Key"] for item in page.get("Contents", [])}
    return keys


def served_by_filer(cluster: Cluster, index: int, photos: dict[str, bytes]) -> bool:
    """True when filer `index` itself (not a gateway that could ask another) has every photo's
    entry and reads back its bytes: its store names the needles on the volume servers."""
    filer = f"http://{cluster.filers[index].address}/buckets/{BUCKET}"
    try:
        for key, body in photos.items():
            response = requests.get(f"{filer}/{key}.versions/", timeout=5,
                                    headers={"Accept": "application/json"})  # fmt: skip
            entries = response.json().get("Entries") or [] if response.ok else []
            if len(entries) != 1:
                return False
            version = requests.get(f"http://{cluster.filers[index].address}"
                                   f"{entries[0]['FullPath']}", timeout=5)  # fmt: skip
            if version.content != body:
                return False
    except (requests.RequestException, ValueError):
        return False
    return True


def test_objects_put_through_one_filers_gateway_are_listed_through_anothers(
    seaweedfs_factory: Callable[..., Cluster],
) -> None:
    cluster = seaweedfs_factory(filers=3)
    on_a = s3.admin_client(cluster)
    on_b = s3.client(cluster.gateway_url(1), s3.admin_key(cluster))
    own_first = f"-filer={cluster.filers[1].address},"
    assert any(arg.startswith(own_first) for arg in cluster.gateways[1].args)  # B's own first
    photos = put_photos(on_a, 20)
    wait_for(lambda: set(photos) <= listed(on_b), SYNC_TIMEOUT, "gateway B to list A's puts")
    for key, body in photos.items():
        assert on_b.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    for index in (1, 2):
        wait_for(lambda i=index: served_by_filer(cluster, i, photos), SYNC_TIMEOUT,
                 f"filer {index + 1} to hold every name")  # fmt: skip


def test_a_filer_whose_store_is_wiped_serves_every_name_again(
    seaweedfs_factory: Callable[..., Cluster],
) -> None:
    """Filer B stopped, objects put through A's gateway while it is down, B's directory and
    store wiped and B started again: B itself serves every name, old and new."""
    cluster = seaweedfs_factory(filers=3)
    admin = s3.admin_client(cluster)
    before = put_photos(admin, 10)
    wait_for(lambda: served_by_filer(cluster, 1, before), SYNC_TIMEOUT, "filer B's names")
    cluster.stop_filer(1)
    during = put_photos(admin, 10)
    cluster.start_filer(1, wipe=True)
    everything = before | during
    wait_for(lambda: served_by_filer(cluster, 1, everything), SYNC_TIMEOUT,
             "the wiped filer to re-sync every name from its peers")  # fmt: skip
    on_b = s3.client(cluster.gateway_url(1), s3.admin_key(cluster))
    assert set(everything) <= listed(on_b)
