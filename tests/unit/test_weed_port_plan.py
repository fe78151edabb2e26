"""A cluster's ports are chosen before any server binds them, so a port that is another
chosen server's gRPC twin (port + 10000) looks free: the later server would die on start
("S3 API Server listener on ... error"), as a CI run's gateway once did."""

from __future__ import annotations

import pytest

from lab.processes import seaweedfs_process
from lab.processes.seaweedfs_process import GRPC_OFFSET, clashes, free_port_pair


def test_a_port_or_its_twin_on_a_chosen_ports_twin_clashes() -> None:
    taken = {15000}
    assert clashes(15000, taken)
    assert clashes(15000 + GRPC_OFFSET, taken)  # the chosen server's gRPC port
    assert clashes(15000 - GRPC_OFFSET, taken)  # its gRPC twin is the chosen port
    assert not clashes(15001, taken)


def test_the_plan_skips_a_port_that_clashes_with_one_chosen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws = iter([12000 + GRPC_OFFSET, 12000, 13000])
    monkeypatch.setattr(seaweedfs_process, "ephemeral_floor", lambda: 60000)
    monkeypatch.setattr(seaweedfs_process, "port_is_free", lambda port: True)
    monkeypatch.setattr(seaweedfs_process.random, "randint", lambda low, high: next(draws))
    assert free_port_pair({12000}) == 13000
