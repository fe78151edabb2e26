"""Every orchestration in salt/orch/ renders as `salt-run state.orchestrate orch.<name>`
would render it: with the master's own minion (`salt.minion.MasterMinion`, as the
`state.orchestrate_show_sls` runner does, all cases in one Salt process), file_roots on
this checkout's salt/, and the pillar given on the command line. Each case has zero render
errors, its steps in the order they run (each requires the one before), and every runner,
execution function and state it names exists. What the steps do against minions belongs
to the lab test."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.salt.conftest import ROOT

RENDER = r"""
import json, sys
import salt.config, salt.loader, salt.minion, salt.utils.yaml
opts = salt.config.master_config(sys.argv[1])
opts["file_client"] = "local"
minion = salt.minion.MasterMinion(opts)
cases = json.loads(sys.argv[2])
rendered = {
    key: minion.functions["state.show_sls"](name, pillar=salt.utils.yaml.safe_load(pillar))
    for key, (name, pillar) in cases.items()
}
runners = salt.loader.runner(opts)
print(json.dumps({
    "rendered": rendered,
    "runners": sorted(runners),
    "functions": sorted(minion.functions),
    "states": sorted(salt.loader.states(opts, minion.functions, minion.utils, {})),
}, default=str))
"""
CASES = {
    "harvest": ("orch.harvest", "harvest: {kind: timeslices, start: 2004-01-01, end: 2005-01-01}"),
    "harvest-queries": (
        "orch.harvest",
        "harvest: {kind: queries, file: /t.txt, timeout: 60, notify_every: 0}",
    ),
    "harvest-resume": ("orch.harvest", "{}"),
    "harvest-yfcc": ("orch.harvest", "harvest: {yfcc: [/srv/a.bz2, /srv/b.tsv]}"),
    "download": ("orch.download", "{download: {count: 3, keep: 1, size: s-1vcpu-1gb}}"),
    "download-all-kept": ("orch.download", "{download: {count: 2, keep: 2}}"),
    "maintenance-on": ("orch.maintenance", "{maintenance: on}"),
    "maintenance-wait": ("orch.maintenance", "{maintenance: {mode: on, wait: 600}}"),
    "maintenance-off": ("orch.maintenance", "{maintenance: off}"),
    "maintenance-bad": ("orch.maintenance", "{maintenance: sideways}"),
    "rotate-storage": ("orch.rotate", "{rotate: {what: storage_key}}"),
    "rotate-tokens": ("orch.rotate", "{rotate: {what: queue_tokens}}"),
    "rotate-backup": ("orch.rotate", "{rotate: {what: backup_keys}}"),
    "rotate-db": ("orch.rotate", "{rotate: {what: db_passwords}}"),
    "rotate-bad": ("orch.rotate", "{rotate: {what: everything}}"),
    "deploy": ("orch.deploy", "{deploy: {batch: 25%, wait: 600}}"),
    "deploy-default": ("orch.deploy", "{}"),
}


@pytest.fixture(scope="module")
def orch(salt_call_bin, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("orch")
    (tmp / "root" / "var" / "cache" / "salt" / "master" / "proc").mkdir(parents=True)
    (tmp / "pillar").mkdir()
    config = tmp / "master"
    config.write_text(
        yaml.safe_dump(
            {
                "root_dir": str(tmp / "root"),
                "file_roots": {"base": [str(ROOT / "salt")]},
                "pillar_roots": {"base": [str(tmp / "pillar")]},
                "runner_dirs": [str(ROOT / "_runners")],
                "module_dirs": [str(ROOT / "_modules")],
                "utils_dirs": [str(ROOT / "_utils")],  # as salt://_utils/ gives a droplet
                "log_level": "quiet",
            }
        )
    )
    result = subprocess.run(
        [str(salt_call_bin.parent / "python"), "-c", RENDER, str(config), json.dumps(CASES)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def steps(orch: dict, case: str) -> list[tuple[str, str, dict]]:
    """(state id, module.function, arguments) in the order they run."""
    rendered = orch["rendered"][case]
    assert isinstance(rendered, dict), f"{case} did not render: {rendered}"
    found = []
    for state_id, body in rendered.items():
        (module,) = [key for key in body if not key.startswith("__")]
        args = {}
        function = None
        for item in body[module]:
            if isinstance(item, str):
                function = item
            else:
                args.update(item)
        found.append((args.pop("order"), state_id, f"{module}.{function}", args))
    return [(state_id, function, args) for _, state_id, function, args in sorted(found)]


def test_every_orchestration_renders_and_names_what_exists(orch):
    names = {path.stem for path in (ROOT / "salt" / "orch").glob("*.sls")}
    assert names == {"harvest", "download", "maintenance", "rotate", "deploy"}
    assert {name.split(".")[1] for name, _ in CASES.values()} == names
    for case in CASES:
        for state_id, function, args in steps(orch, case):
            assert state_id.startswith("orch-"), state_id
            if function == "salt.runner":
                assert args["name"] in orch["runners"], (case, args["name"])
            elif function == "salt.function":
                assert args["name"] in orch["functions"], (case, args["name"])
            elif function == "salt.state":
                for sls in args["sls"]:
                    assert (ROOT / "salt" / sls / "init.sls").exists(), (case, sls)
            else:
                assert function in orch["states"], (case, function)


def test_harvest_seeds_waits_and_reconciles(orch):
    seen = steps(orch, "harvest")
    assert [s[0] for s in seen] == [
        "orch-harvest-seed-salt-runner",
        "orch-harvest-workers-salt-function",
        "orch-harvest-wait-salt-runner",
        "orch-harvest-reconcile-salt-runner",
    ]
    seed = seen[0][2]
    assert (seed["name"], seed["kind"], seed["start"], seed["end"]) == (
        "batch.seed",
        "timeslices",
        "2004-01-01",
        "2005-01-01",
    )
    assert seen[2][2]["until"] == "harvested"
    assert steps(orch, "harvest-queries")[0][2]["file"] == "/t.txt"
    assert steps(orch, "harvest-queries")[2][2]["timeout"] == 60
    # The webhook's progress lines: every 15 minutes unless the pillar says (0: none between).
    assert (seen[2][2]["notify_every"], steps(orch, "harvest-queries")[2][2]["notify_every"]) == (
        900,
        0,
    )
    assert [s[0] for s in steps(orch, "harvest-resume")][0] == "orch-harvest-workers-salt-function"


def test_harvest_imports_yfcc_files_before_the_reconcile(orch):
    seen = steps(orch, "harvest-yfcc")
    names = [s[0] for s in seen]
    assert names.index("orch-harvest-yfcc-salt-runner") < names.index(
        "orch-harvest-reconcile-salt-runner"
    )
    (yfcc,) = [s[2] for s in seen if s[0] == "orch-harvest-yfcc-salt-runner"]
    assert (yfcc["name"], yfcc["paths"]) == ("batch.import_yfcc", ["/srv/a.bz2", "/srv/b.tsv"])


def test_download_scales_up_waits_then_down(orch):
    seen = steps(orch, "download")
    counts = [(s[1], s[2].get("name") or s[2]["tgt"], s[2].get("count")) for s in seen]
    assert counts == [
        ("salt.runner", "fleet.up", 3),
        ("salt.runner", "batch.wait", None),
        ("salt.runner", "fleet.down", None),
        ("salt.state", "db-*", None),  # the removed ones' tokens and keys revoked
        ("salt.state", "st-*", None),
    ]
    # Down to one of the three, however many are left by then (not "take two away").
    assert seen[2][2]["keep"] == 1
    assert seen[0][2]["size"] == "s-1vcpu-1gb" and seen[1][2]["until"] == "downloaded"
    assert seen[1][2]["notify_every"] == 900
    assert seen[2][2]["require"] == [{"salt": seen[1][0]}]
    assert [s[2]["name"] for s in steps(orch, "download-all-kept")] == ["fleet.up", "batch.wait"]


def test_maintenance_on_off_and_a_bad_switch(orch):
    on = steps(orch, "maintenance-on")
    assert [s[2]["name"] for s in on] == ["maintenance.on", "maintenance.status"]
    assert steps(orch, "maintenance-wait")[0][2]["wait"] == 600
    assert [s[2]["name"] for s in steps(orch, "maintenance-off")][0] == "maintenance.off"
    bad = steps(orch, "maintenance-bad")
    assert bad[0][1] == "test.fail_without_changes" and "sideways" in bad[0][2]["comment"]


def test_rotate_applies_states_between_steps_and_checks_storage(orch):
    seen = steps(orch, "rotate-storage")
    assert [(s[1], s[2].get("step") or s[2].get("tgt")) for s in seen] == [
        ("salt.runner", "start"),
        ("salt.state", "st-*"),
        ("salt.runner", "switch"),
        ("salt.state", "dl-*"),
        ("salt.state", "db-*"),  # db-1's catalog backup key switches too
        ("salt.function", "dl-*"),
        ("salt.runner", "retire"),
        ("salt.state", "st-*"),
        ("salt.function", "dl-*"),
    ]
    for before, after in zip(seen, seen[1:], strict=False):
        assert after[2]["require"] == [{"salt": before[0]}], after
    assert seen[5][2]["name"] == "ccmirror.check_storage"
    tokens = steps(orch, "rotate-tokens")
    assert [s[2].get("tgt") for s in tokens if s[1] == "salt.state"] == ["db-*", "dl-*", "db-*"]
    db = steps(orch, "rotate-db")
    assert [(s[2].get("tgt"), s[2].get("sls")) for s in db if s[1] == "salt.state"] == [
        ("db-*", ["db", "queue"]),
        ("hv-*", ["harvester"]),
    ]
    bad = steps(orch, "rotate-bad")
    assert len(bad) == 1 and "everything" in bad[0][2]["comment"]


def test_rotating_the_backup_keys_applies_bk_and_db_and_checks_db_reads_and_writes_it(orch):
    seen = steps(orch, "rotate-backup")
    assert [(s[1], s[2].get("step") or s[2].get("tgt")) for s in seen] == [
        ("salt.runner", "start"),
        ("salt.state", "bk-*"),
        ("salt.runner", "switch"),
        ("salt.state", "bk-*"),
        ("salt.state", "db-*"),  # the reader key: backup lag and restores
        ("salt.function", "db-*"),
        ("salt.runner", "retire"),
        ("salt.state", "bk-*"),
        ("salt.function", "db-*"),
    ]
    for before, after in zip(seen, seen[1:], strict=False):
        assert after[2]["require"] == [{"salt": before[0]}], after
    checks = [s[2] for s in seen if s[1] == "salt.function"]
    assert [(c["name"], c["kwarg"]) for c in checks] == [
        ("ccmirror_audit_s3.backup_lag", {"probe_sink": True}),  # the sink's key writes too
    ] * 2


def test_deploy_releases_in_batches(orch):
    seen = steps(orch, "deploy")
    assert seen[0][2]["name"] == "deploy.release"
    assert (seen[0][2]["batch"], seen[0][2]["wait"]) == ("25%", 600)
    assert steps(orch, "deploy-default")[0][2]["batch"] == "10%"
