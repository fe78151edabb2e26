"""The wheelhouse the lab's master serves as `salt://wheelhouse/`: the ccmirror wheel, a wheel
of every dependency and a `requirements.txt` of exact pins, so minions install the code with
`pip --no-index` and need no network (the lab's droplets have none).

The builder is the `wheelhouse` runner's (`_runners/wheelhouse.py`), loaded here by path as
lab/lab_secrets.py loads the secrets runner: the lab and a real master build the same way.
The ccmirror wheel is rebuilt only when a packaged file changed; dependency wheels and the
build backend come from PyPI through pip's cache once per set of requirements, into a cache
outside any lab (`lab down` removes the lab's directory; the next `lab up` copies them back
in seconds), and every build after that is offline.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from types import ModuleType

from lab.droplets import LabConfig, LabError

CHECKOUT = Path(__file__).resolve().parent.parent
BUILDER_FILE = CHECKOUT / "_runners" / "wheelhouse.py"
BUILDER_MODULE = "ccmirror_wheelhouse_runner"
DEPENDENCY_CACHE = "/var/cache/ccmirror-lab/wheels"  # $CCMIRROR_WHEEL_CACHE moves it


@cache
def builder() -> ModuleType:
    """_runners/wheelhouse.py as a plain module (its runner function stays unused here)."""
    spec = importlib.util.spec_from_file_location(BUILDER_MODULE, BUILDER_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fileserver_root(config: LabConfig) -> Path:
    """The master's second `file_roots` entry: `salt://wheelhouse/` lives below it."""
    return config.root / "fileserver"


def wheelhouse_dir(config: LabConfig) -> Path:
    return fileserver_root(config) / "wheelhouse"


def dependency_cache() -> Path:
    return Path(os.environ.get("CCMIRROR_WHEEL_CACHE", DEPENDENCY_CACHE))


def build(
    config: LabConfig, checkout: Path = CHECKOUT, progress: Callable[[str], None] = print
) -> Path:
    """Fill the lab's wheelhouse from `checkout` with the project venv's pip (CPython 3.11,
    like the droplets' python3); nothing is rebuilt that has not changed."""
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
