"""`_runners/deploy.py` and `_runners/wheelhouse.py` (its builder `_utils/wheelhouse_builder.py`)
through Salt's own runner loader.

The wheelhouse really builds (pip, from a copy of this checkout, with the lab's cache of
dependency wheels: offline after the machine's first build), is complete enough for
`pip install --no-index` to resolve ccmirror and every dependency, rebuilds nothing when
nothing changed, and a new version replaces the old wheel in place. The rollout's pure
parts (batches, waves, state failures, the upgrade check, version comparison) are checked
on sample returns; the rollout against real minions belongs to the lab test."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from lab.fleet.wheelhouse import dependency_cache
from tests.salt.conftest import ROOT, runner_master_config

LOAD_AND_CHECK = r"""
import json, sys
import salt.config, salt.loader
opts = salt.config.master_config(sys.argv[1])
utils = salt.loader.utils(opts)
runners = salt.loader.runner(opts, utils=utils)  # as salt-run loads them
names = sorted(n for n in runners if n.split(".")[0] in ("deploy", "wheelhouse"))
g = runners["deploy.release"].__globals__
error = g["ReleaseError"]
def refused(spec):
    try:
        g["parse_batch"](spec)
    except error as exc:
        return str(exc)
minions = ["dl-%d" % i for i in range(1, 13)] + ["hv-1", "hv-2", "db-1", "st-1", "master"]
applied_ok = {"cmd_|-a_|-a_|-run": {"result": True, "__id__": "a", "comment": ""}}
applied_bad = {"cmd_|-a_|-a_|-run": {"result": True, "__id__": "a"},
               "service_|-b_|-b_|-running": {"result": False, "comment": "unit failed",
                                             "__id__": "downloader-service-running"}}
up = {"version": "0.2.0", "service": {"name": "ccmirror-downloader", "state": "active"}}
g["__context__"] = {}
bad_release = runners["deploy.release"](batch="ten")
nothing_served = runners["deploy.release"](build=False)
served_wheelhouse = utils["wheelhouse_builder.served_wheelhouse"]
def served(roots):
    try:
        return str(served_wheelhouse({"file_roots": {"base": roots}}))
    except served_wheelhouse.__globals__["WheelhouseError"] as exc:
        return "error: " + str(exc)
print(json.dumps({
    "names": names,
    "docs": {n: runners[n].__doc__ for n in names},
    "specs": [g["parse_batch"](s) for s in ("10%", "2", " 25 % ", 3)],
    "refused": [refused(s) for s in ("0", "ten", "150%", "-1", "")],
    "waves": g["plan_waves"](minions),
    "batches10": g["batches"](g["plan_waves"](minions)[1], (10, True)),
    "batches5": g["batches"](["dl-1", "dl-2", "dl-3"], (5, False)),
    "roles": g["by_role"](["db-1", "dl-2", "hv-1", "dl-1"]),
    "ok": g["state_failures"](applied_ok),
    "bad": g["state_failures"](applied_bad),
    "render": g["state_failures"](["Rendering SLS 'base:downloader.service' failed"]),
    "absent": g["state_failures"]("Minion did not return"),
    "up": g["upgrade_problem"](up, "0.2.0"),
    "old": g["upgrade_problem"](up, "0.3.0"),
    "down": g["upgrade_problem"](dict(up, service={"name": "ccmirror-downloader",
                                                  "state": "failed"}), "0.2.0"),
    "changes": [g["change"](a, b) for a, b in (("0.1.0", "0.2.0"), ("0.10.0", "0.9.1"),
                ("0.2.0", "0.2.0"), (None, "0.2.0"), ("0.2.0rc1", "0.2.0"))],
    "pins": g["pin_mismatches"]({"dl-1": {"ccmirror:version": "0.1.0"},
                                 "dl-2": {"ccmirror:version": "0.2.0"},
                                 "hv-1": "Minion did not return"}, ["dl-1", "dl-2", "hv-1"],
                                "0.2.0"),
    "failed_returns": g["failed_returns"]({"dl-1": {"result": True}, "dl-2": {"result": False}},
                                          ["dl-1", "dl-2", "dl-3"]),
    "bad_release": bad_release,
    "nothing_served": nothing_served,
    "served": [served([sys.argv[2], sys.argv[3]]), served([sys.argv[3]]), served([])],
}))
"""
BUILD = r"""
import json, sys
import salt.config, salt.loader
opts = salt.config.master_config(sys.argv[1])
runners = salt.loader.runner(opts, utils=salt.loader.utils(opts))  # as salt-run loads them
print(json.dumps(runners["wheelhouse.build"]()))
"""


def salt_python(salt_call_bin: Path, script: str, *args: str) -> dict:
    result = subprocess.run(
        [str(salt_call_bin.parent / "python"), "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_deploy_runner_loads_and_plans_batches(salt_call_bin, tmp_path):
    (tmp_path / "with" / "wheelhouse").mkdir(parents=True)  # a root that serves one
    (tmp_path / "empty").mkdir()
    config = runner_master_config(tmp_path, file_roots={"base": [str(tmp_path / "empty")]})
    seen = salt_python(salt_call_bin, LOAD_AND_CHECK, config, tmp_path / "with", tmp_path / "empty")
    assert seen["names"] == ["deploy.release", "wheelhouse.build"]
    for name, doc in seen["docs"].items():
        assert "CLI Example::" in doc and f"salt-run {name}" in doc, name
    assert seen["specs"] == [[10, True], [2, False], [25, True], [3, False]]
    assert all(seen["refused"]), seen["refused"]
    assert "not '150%'" in seen["refused"][2]
    workers = [f"dl-{i}" for i in range(1, 13)] + ["hv-1", "hv-2"]
    assert seen["waves"] == [["db-1"], sorted(workers)]  # no st-1, no master
    assert [len(b) for b in seen["batches10"]] == [2] * 7  # 10% of 14, rounded up
    assert sum(seen["batches10"], []) == sorted(workers)
    assert seen["batches5"] == [["dl-1", "dl-2", "dl-3"]]
    assert seen["roles"] == {"db": ["db-1"], "downloader": ["dl-2", "dl-1"], "harvester": ["hv-1"]}
    assert seen["ok"] == []
    assert seen["bad"] == ["downloader-service-running: unit failed"]
    assert seen["render"] == ["Rendering SLS 'base:downloader.service' failed"]
    assert seen["absent"][0].startswith("no answer")
    assert seen["up"] is None
    assert seen["old"] == "runs ccmirror 0.2.0, not 0.3.0"
    assert seen["down"] == "ccmirror-downloader is failed"
    assert seen["changes"] == ["upgrade", "downgrade", "same", "install", "upgrade"]
    assert seen["pins"] == {"dl-1": "0.1.0", "hv-1": "no answer (Minion did not return)"}
    assert seen["failed_returns"] == ["dl-2", "dl-3"]
    assert seen["bad_release"]["result"] is False and seen["bad_release"]["retcode"] == 1
    assert "batch must be a count or a percentage" in seen["bad_release"]["error"]
    assert "no ccmirror wheel in" in seen["nothing_served"]["error"]
    assert seen["served"] == [
        str(tmp_path / "with" / "wheelhouse"),
        str(tmp_path / "empty" / "wheelhouse"),
        "error: no file_roots:base in the master's config to serve a wheelhouse",
    ]


def copy_checkout(target: Path) -> Path:
    """What the wheel is built from (pyproject, README, the packages): a checkout whose
    version the test may move on."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in sorted({name.split(".")[0] for name in packages["packages"]}):
        shutil.copytree(
            ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return target


def resolve_offline(wheelhouse: Path, requirement: str) -> set[str]:
    """The distributions pip would install for `requirement` from `wheelhouse` alone."""
    resolved = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        + ["--no-index", "--find-links", str(wheelhouse), "--report", "-", requirement],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resolved.returncode == 0, resolved.stderr
    return {item["metadata"]["name"].lower() for item in json.loads(resolved.stdout)["install"]}


def test_wheelhouse_builds_complete_and_only_when_changed(salt_call_bin, tmp_path):
    checkout = copy_checkout(tmp_path / "checkout")
    served = tmp_path / "dist" / "wheelhouse"
    served.mkdir(parents=True)
    config = runner_master_config(
        tmp_path,
        ccmirror_checkout=str(checkout),
        file_roots={"base": [str(ROOT / "salt"), str(tmp_path / "dist")]},
        ccmirror_wheel_cache=str(dependency_cache()),
        ccmirror_build_python=sys.executable,  # the project's venv: CPython 3.11 as minions
    )
    first = salt_python(salt_call_bin, BUILD, config)
    assert first["result"] is True and first["built"] is True, first
    assert first["path"] == str(served) and first["version"] == "0.1.0"
    assert first["wheel"].startswith("ccmirror-0.1.0-")
    pins = (served / "requirements.txt").read_text().split()
    assert "ccmirror==0.1.0" in pins and len(pins) == len(list(served.glob("*.whl")))
    # Complete: pip resolves each role's install from it alone, and a downloader's has
    # none of the database's or the queue's dependencies.
    database = resolve_offline(served, "ccmirror[harvester,queue]==0.1.0")
    assert {"ccmirror", "pymysql", "fastapi", "uvicorn", "jinja2"} <= database
    downloader = resolve_offline(served, "ccmirror[downloader]==0.1.0")
    assert {"ccmirror", "requests", "pyyaml"} <= downloader
    assert not {"pymysql", "fastapi", "uvicorn", "jinja2", "aiohttp", "botocore"} & downloader

    wheel = served / first["wheel"]
    mtime = wheel.stat().st_mtime_ns
    again = salt_python(salt_call_bin, BUILD, config)
    assert again["built"] is False and wheel.stat().st_mtime_ns == mtime

    # A release: the checkout's version moves on; the old wheel goes, the pins follow.
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'version = "0.2.0"', 1))
    bumped = salt_python(salt_call_bin, BUILD, config)
    assert bumped["built"] is True and bumped["version"] == "0.2.0"
    assert [p.name for p in served.glob("ccmirror-*.whl")] == [bumped["wheel"]]
    assert "ccmirror==0.2.0" in (served / "requirements.txt").read_text().split()
