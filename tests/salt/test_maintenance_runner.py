"""`_runners/maintenance.py` through Salt's own runner loader (a master config with
runner_dirs on this checkout). `on`/`off`/`status` talk to minions through a running master,
which this test does not start: it checks that the loader finds every function with its
`CLI Example::`, and the pure parts that turn minions' returns into the runner's answer.
The run against a real master and minions belongs to the lab test (tests/e2e)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.salt.conftest import runner_master_config

ROOT = Path(__file__).resolve().parent.parent.parent
LOAD_AND_CHECK = r"""
import json, sys
import salt.config, salt.loader
opts = salt.config.master_config(sys.argv[1])
runners = salt.loader.runner(opts, utils=salt.loader.utils(opts))  # as salt-run loads them
names = sorted(name for name in runners if name.startswith("maintenance."))
g = runners["maintenance.status"].__globals__
downloader = {
    "id": "dl-1", "role": "downloader", "installed": True, "version": "0.1.0",
    "service": {"name": "ccmirror-downloader", "state": "active"},
    "work": {"phase": "drained", "lease": None, "drain_requested": True},
}
busy = dict(downloader, work={"phase": "fetching", "drain_requested": True,
                              "lease": {"lease_id": 7, "items": 12, "fetched": 3}})
harvester = {"id": "hv-1", "role": "harvester", "installed": True, "version": "0.1.0",
             "service": {}, "work": {"drain_requested": False, "tasks": []}}
working = dict(harvester, work={"drain_requested": False, "tasks": [{"id": 4, "page": 9}]})
print(json.dumps({
    "names": names,
    "docs": {n: runners[n].__doc__ for n in names},
    "drained": g["_describe_status"](downloader),
    "busy": g["_describe_status"](busy),
    "paused": g["_describe_status"](harvester, True),
    "working": g["_describe_status"](working, True),
    "absent": g["_describe_status"]("Minion did not return. [No response]"),
    "not_installed": g["_describe_status"]({"role": "downloader", "installed": False}),
    "switched": g["_switched"]({"db-1": {"result": True, "maintenance": True}}, True),
    "switch_unanswered": g["_switched"]({"db-1": "Minion did not return"}, True),
    "switch_none": g["_switched"]({}, True),
    "all_ok": g["_all_ok"]({"dl-1": {"result": True}, "dl-2": {"result": False}}),
}))
"""


def test_runner_loads_through_salt_with_docs_and_describes_minions(salt_call_bin, tmp_path):
    config = runner_master_config(tmp_path)
    python = salt_call_bin.parent / "python"
    result = subprocess.run(
        [str(python), "-c", LOAD_AND_CHECK, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["names"] == ["maintenance.off", "maintenance.on", "maintenance.status"]
    for name, doc in seen["docs"].items():
        assert "CLI Example::" in doc and f"salt-run {name}" in doc, name
    assert seen["drained"] == "downloader 0.1.0, ccmirror-downloader active: drained"
    assert seen["busy"].endswith("fetching, lease 7: 3 of 12 fetched (drain requested)")
    assert seen["paused"].endswith(": paused (maintenance)")
    assert seen["working"].endswith("task 4 page 9 (pausing after this page: maintenance)")
    assert seen["absent"].startswith("no answer:")
    assert seen["not_installed"] == "downloader: ccmirror is not installed"
    assert seen["switched"] is True
    assert seen["switch_unanswered"] is False and seen["switch_none"] is False
    assert seen["all_ok"] is False
