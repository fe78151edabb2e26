"""`harvester recheck` as a service (#21): off by default (no unit); with pillar
harvester:recheck:calls_per_hour set, hv-1 gets a unit running it with that budget, and its
worker's config keeps the rest of the key's 3,600 calls an hour, so the two never exceed it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.salt.test_fetch_allow_hosts import CONFIGS
from tests.salt.test_render import args

UNIT = "harvester-recheck-unit-file-managed"


def rendered(salt_call, tmp_path: Path, pillar: dict | None = None) -> tuple[dict, dict]:
    """hv-1's harvester states, and its worker's flickr settings as the harvester loads them."""
    from harvester.config import load_settings

    extra = [f"pillar={json.dumps(pillar)}"] if pillar else []
    states = salt_call("hv-1", "state.show_sls", "harvester", *extra)
    minion, state_id = CONFIGS["harvester"]
    path = tmp_path / "harvester.yaml"
    path.write_text(args(states[state_id])["contents"])
    return states, load_settings(path, environ={}).flickr


def test_the_recheck_service_is_off_by_default(salt_call, tmp_path):
    states, flickr = rendered(salt_call, tmp_path)

    assert UNIT not in states and "harvester-recheck-service-running" not in states
    assert flickr.rate_limit_per_hour == 3600


def test_a_recheck_budget_gets_a_unit_and_leaves_the_worker_the_rest(salt_call, tmp_path):
    pillar = {"harvester": {"recheck": {"calls_per_hour": 600}}}
    states, flickr = rendered(salt_call, tmp_path, pillar)

    unit = args(states[UNIT])
    assert unit["name"] == "/etc/systemd/system/ccmirror-recheck.service"
    assert unit["context"]["harvester"]["calls_per_hour"] == 600
    assert args(states["harvester-recheck-service-running"])["name"] == "ccmirror-recheck"
    assert flickr.rate_limit_per_hour == 3000
