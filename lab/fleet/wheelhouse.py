"""The wheelhouse the lab's master serves as `salt://wheelhouse/`: the ccmirror wheel, a wheel
of every dependency and a `requirements.txt` of exact pins, so minions install the code with
`pip --no-index` and need no network (the lab's droplets have none).

The builder is the one the `wheelhouse` and `deploy` runners reach through `__utils__`
(`_utils/wheelhouse_builder.py`, loaded by lab/fleet/salt_utils.py): the lab and a real
master build the same way.
The ccmirror wheel is rebuilt only when a packaged file changed; dependency wheels and the
build backend come from PyPI through pip's cache once per set of requirements, into a cache
outside any lab (`lab down` removes the lab's directory; the next `lab up` copies them back
in seconds), and every build after that is offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

from lab import CHECKOUT
from lab.fleet.core import LabConfig, LabError
from lab.fleet.salt_utils import plain_util

DEPENDENCY_CACHE = "/var/cache/ccmirror-lab/wheels"  # $CCMIRROR_WHEEL_CACHE moves it


def builder() -> ModuleType:
    """The wheelhouse builder (_utils/wheelhouse_builder.py), as `deploy.release` reaches it."""
    return plain_util("wheelhouse_builder")


def fileserver_root(config: LabConfig) -> Path:
    """The master's second `file_roots` entry: `salt://wheelhouse/` lives below it."""
    return config.root / "fileserver"


def wheelhouse_dir(config: LabConfig) -> Path:
    return fileserver_root(config) / "wheelhouse"


def dependency_cache() -> Path:
    return Path(os.environ.get("CCMIRROR_WHEEL_CACHE", DEPENDENCY_CACHE))


def served_checkout(config: LabConfig) -> Path:
    """What the lab's master serves and releases from: the lab's own copy of this checkout
    (`<lab root>/checkout`, see `copy_checkout`) when it has one, else this checkout."""
    copy = config.root / "checkout"
    return copy if (copy / "pyproject.toml").exists() else CHECKOUT


def copy_checkout(config: LabConfig) -> Path:
    """A copy of this checkout's files (tracked, and new ones git does not ignore) for the
    lab's master to serve: a test then releases a new version by editing the copy, as an
    operator pulls a new commit on the master, while this checkout stays as it is."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=CHECKOUT,
        capture_output=True,
        check=True,
    ).stdout
    copy = config.root / "checkout"
    for name in filter(None, listed.decode().split("\0")):
        source = CHECKOUT / name
        if source.is_file():
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return copy


def build(
    config: LabConfig, checkout: Path | None = None, progress: Callable[[str], None] = print
) -> Path:
    """Fill the lab's wheelhouse from `checkout` (default: the one served) with the project
    venv's pip (CPython 3.11, like the droplets' python3); nothing is rebuilt that has not
    changed."""
    checkout = checkout or served_checkout(config)
    try:
        builder().build_wheelhouse(
            checkout, wheelhouse_dir(config), dependency_cache(), sys.executable, progress
        )
    except builder().WheelhouseError as error:
        raise LabError(str(error)) from None
    return wheelhouse_dir(config)


def packaged_files(checkout: Path) -> Iterator[Path]:
    """What the ccmirror wheel is built from (the builder's own list)."""
    return builder().packaged_files(checkout)


def project(checkout: Path) -> dict:
    return builder().project(checkout)
