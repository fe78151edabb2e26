"""`python -m ccmirror_common.installed VERSION EXTRAS...`, the `unless` of Salt's install
state: exit 0 only when ccmirror is at VERSION with every requirement of EXTRAS installed, so
a version bump or a new role's extra reinstalls and nothing else does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

METADATA = """\
Metadata-Version: 2.1
Name: ccmirror
Version: 0.4.2
Requires-Dist: PyYAML>=6.0
Provides-Extra: harvester
Requires-Dist: PyMySQL>=1.1; extra == "harvester"
Provides-Extra: queue
Requires-Dist: no-such-distribution-here>=1; extra == "queue"
Provides-Extra: downloader
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A path entry holding an installed ccmirror 0.4.2 (its metadata alone), found before
    the checkout's own editable install."""
    info = tmp_path / "ccmirror-0.4.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(METADATA)
    return tmp_path


def installed(site: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ccmirror_common.installed", *args],
        env={"PYTHONPATH": f"{site}:{ROOT}"},
        cwd=site,  # not the checkout: its own ccmirror.egg-info would be found first
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_version_with_its_extras_requirements_is_installed(site: Path) -> None:
    done = installed(site, "0.4.2", "harvester", "downloader")
    assert (done.returncode, done.stderr) == (0, "")


def test_another_version_is_not(site: Path) -> None:
    done = installed(site, "0.4.3", "harvester")
    assert done.returncode == 1
    assert done.stderr.strip() == "not installed: ccmirror==0.4.3 (installed: 0.4.2)"


def test_an_extra_whose_requirement_is_missing_is_not(site: Path) -> None:
    done = installed(site, "0.4.2", "harvester", "queue")
    assert done.returncode == 1
    assert done.stderr.strip() == "not installed: no-such-distribution-here"


def test_an_extra_the_wheel_does_not_have_is_not(site: Path) -> None:
    done = installed(site, "0.4.2", "queu")
    assert done.returncode == 1
    assert "ccmirror has no extra queu" in done.stderr


def test_no_version_is_a_usage_error(site: Path) -> None:
    assert installed(site).returncode == 2
