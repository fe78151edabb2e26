"""The wheelhouse the lab's master serves at salt://wheelhouse/: every wheel a minion needs to
install ccmirror with `pip --no-index`, exact pins, and a rebuild only when the code changed.
Built from a copy of the checkout (the test edits it); dependency wheels come from the lab's
cache, fetched from PyPI only on a machine's first build."""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from lab.fleet import wheelhouse
from lab.fleet.core import LabConfig

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and "CCMIRROR_WHEEL_CACHE" not in os.environ,
    reason="the lab's wheel cache is under /var/cache: root, or CCMIRROR_WHEEL_CACHE",
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def copy_checkout(target: Path) -> Path:
    for path in wheelhouse.packaged_files(wheelhouse.CHECKOUT):
        copy = target / path.relative_to(wheelhouse.CHECKOUT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
    return target


def test_wheelhouse_pins_every_wheel_and_rebuilds_only_what_changed(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "checkout")
    config = LabConfig(root=tmp_path / "lab")
    said: list[str] = []
    served = wheelhouse.build(config, checkout, progress=said.append)
    assert served == config.root / "fileserver" / "wheelhouse"

    pins = dict(line.split("==") for line in (served / "requirements.txt").read_text().split())
    names = {canonical(name) for name in pins}
    version = wheelhouse.project(checkout)["version"]
    assert pins["ccmirror"] == version
    meta = wheelhouse.project(checkout)
    extras = meta["optional-dependencies"]
    # Every role's extra installs from it; the development extras and the lab do not.
    for requirement in meta["dependencies"] + extras["harvester"] + extras["queue"]:
        assert canonical(Requirement(requirement).name) in names, requirement
    assert not {"pytest", "img2dataset", "aiohttp", "docker-systemctl-replacement"} & names
    assert len(list(served.glob("*.whl"))) == len(pins)  # a wheel per pin, nothing else
    assert not {"setuptools", "wheel"} & names  # the build backend is not the minions'

    wheel = served / f"ccmirror-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    assert "lab" not in tops and {"harvester", "downloader", "ccmirror_common"} <= tops
    built = wheel.stat().st_mtime_ns
    said.clear()
    wheelhouse.build(config, checkout, progress=said.append)
    assert said == [] and wheel.stat().st_mtime_ns == built  # unchanged: nothing rebuilt

    module = checkout / "downloader" / "__init__.py"
    module.write_text(module.read_text() + "\n# changed by test_wheelhouse\n")
    wheelhouse.build(config, checkout, progress=said.append)
    with zipfile.ZipFile(wheel) as archive:
        assert "# changed by test_wheelhouse" in archive.read("downloader/__init__.py").decode()
    assert not (checkout / "build").exists()  # the checkout is left as it was
