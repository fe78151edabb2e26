"""Three SeaweedFS masters (raft), as salt/storage/seaweedfs runs them on a site with three
storage droplets or more: the leader lost, the others elect one and the store goes on."""

from __future__ import annotations

from collections.abc import Callable

import requests

from lab.processes import seaweedfs_s3 as s3
from lab.processes.seaweedfs import Cluster
from tests.conftest import wait_for
from tests.integration.test_object_store import put_photos, read


def leader(alive: list) -> str | None:
    """The HTTP address of the leader the live masters agree on; None while they do not."""
    seen = set()
    for master in alive:
        try:
            status = requests.get(f"http://{master.address}/cluster/status", timeout=2).json()
        except (requests.RequestException, ValueError):
            return None
        named = str(status.get("Leader") or "")  # "host:port.grpcport", as weed names one
        seen.add(named.rsplit(".", 1)[0] if ":" in named else "")
    return seen.pop() if len(seen) == 1 and "" not in seen else None


def test_the_leader_lost_the_other_masters_elect_one_and_nothing_is_lost(
    seaweedfs_factory: Callable[..., Cluster],
) -> None:
    cluster = seaweedfs_factory(masters=3)
    admin = s3.admin_client(cluster)
    before = put_photos(admin, 5)
    first = wait_for(lambda: leader(cluster.masters), 60, "a raft leader")
    (lost,) = [master for master in cluster.masters if master.address == first]
    lost.kill()
    alive = [master for master in cluster.masters if master is not lost]
    # The two left name the lost one until their election timeout: wait for another.
    second = wait_for(
        lambda: (named := leader(alive)) != first and named, 120, "a new leader of the two left"
    )
    assert second in {master.address for master in alive}
    after = wait_for(lambda: try_put(admin), 120, "a write under the new leader")
    for key, body in {**before, **after}.items():
        assert read(admin, key) == body


def try_put(admin) -> dict[str, bytes] | None:
    try:
        return put_photos(admin, 3)
    except Exception:  # the gateway's master client is still finding the new leader
        return None
