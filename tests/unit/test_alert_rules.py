"""The alert rules Salt installs on the master (salt/prometheus/files/rules/ccmirror.rules.yml)
pass `promtool check rules`, and `promtool test rules` with alert_rules_test.yml and
alert_rules_jobs_test.yml beside this file: each alert fires once its `for:` has passed, is
quiet just before, and stays quiet on the healthy series beside the failing one. promtool
comes from Debian's `prometheus` package (the Makefile's DEBIAN_PACKAGES): without it these
tests fail, they do not skip."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

RULES = ROOT / "salt" / "prometheus" / "files" / "rules" / "ccmirror.rules.yml"
UNIT_TESTS = [
    Path(__file__).with_name("alert_rules_test.yml"),
    Path(__file__).with_name("alert_rules_jobs_test.yml"),
]
SEVERITIES = {"warning", "critical"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: install Debian's prometheus package (make deps, as root)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def duration_seconds(text: str) -> int:
    """A Prometheus duration such as `1h30m` in seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)([smhd])", text)
    assert parts and "".join(f"{n}{u}" for n, u in parts) == text, text
    return sum(int(number) * units[unit] for number, unit in parts)


def test_promtool_checks_the_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    result = promtool("test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS), result.stdout


def test_every_alert_has_for_a_severity_and_words_an_operator_can_act_on():
    for rule in alert_rules():
        assert duration_seconds(rule["for"]) > 0, rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]


def test_every_alert_is_tested_quiet_before_its_for_and_firing_after():
    """Each alert has, in one test group, an evaluation with no alert before one where it
    fires, no further apart than the evaluation interval; the firing one expects exactly
    the alerts of the failing series (promtool compares the whole list), so the healthy
    series beside it must stay quiet."""
    proven: set[str] = set()
    for path in UNIT_TESTS:
        suite = yaml.safe_load(path.read_text())
        assert suite["rule_files"] == [str(Path("../..") / RULES.relative_to(ROOT))]
        step = duration_seconds(suite["evaluation_interval"])
        for group in suite["tests"]:
            checks = group["alert_rule_test"]
            for firing in (c for c in checks if c["exp_alerts"]):
                fired_at = duration_seconds(firing["eval_time"])
                quiet = [
                    c
                    for c in checks
                    if c["alertname"] == firing["alertname"]
                    and not c["exp_alerts"]
                    and duration_seconds(c["eval_time"]) == fired_at - step
                ]
                if quiet:
                    proven.add(firing["alertname"])
    assert sorted(proven) == sorted(rule["alert"] for rule in alert_rules())


@pytest.mark.parametrize("broken", ["for: 2m", "0.85"])
def test_the_unit_tests_catch_a_changed_rule(tmp_path, broken):
    """The tests pin the rules: a shorter `for:` (the downloader's) or another storage
    threshold fails them."""
    text = RULES.read_text()
    assert broken in text
    changed = text.replace(broken, {"for: 2m": "for: 1m", "0.85": "0.95"}[broken], 1)
    rules = tmp_path / "salt" / "prometheus" / "files" / "rules" / RULES.name
    rules.parent.mkdir(parents=True)
    rules.write_text(changed)
    suite = tmp_path / "tests" / "unit" / UNIT_TESTS[0].name
    suite.parent.mkdir(parents=True)
    suite.write_text(UNIT_TESTS[0].read_text())
    result = promtool("test", "rules", str(suite))
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "FAILED" in output, output
