"""The wheelhouse the Salt fileserver serves as `salt://wheelhouse/`: the ccmirror wheel and a
wheel of every dependency, so minions install the code with `pip --no-index` and need no
network (the lab's droplets have none; a real fleet pins one version this way).

The ccmirror wheel is rebuilt when what goes into it changes (a digest of the packaged files,
kept beside it); the states reinstall it when the served file changes, so an unchanged
checkout builds nothing and changes nothing on the minions. Dependency wheels come from PyPI
through pip's cache once per set of requirements and are kept in a cache outside any lab
(`lab down` removes the lab's directory; the next `lab up` copies them back in seconds).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

from lab.droplets import LabConfig, LabError

CHECKOUT = Path(__file__).resolve().parent.parent
DEPENDENCY_CACHE = Path(os.environ.get("CCMIRROR_WHEEL_CACHE", "/var/cache/ccmirror-lab/wheels"))
REQUIREMENTS = "requirements.txt"  # exact pins of every wheel here: what the states install
STAMP = ".source-digest"
SOURCE_FILES = ("pyproject.toml", "README.md")
WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


def fileserver_root(config: LabConfig) -> Path:
    """The master's second `file_roots` entry: `salt://wheelhouse/` lives below it."""
    return config.root / "fileserver"


def wheelhouse_dir(config: LabConfig) -> Path:
    return fileserver_root(config) / "wheelhouse"


def build(
    config: LabConfig, checkout: Path = CHECKOUT, progress: Callable[[str], None] = print
) -> Path:
    """Fill the lab's wheelhouse from `checkout`; nothing is rebuilt that has not changed."""
    target = wheelhouse_dir(config)
    target.mkdir(parents=True, exist_ok=True)
    digest = source_digest(checkout)
    stamp = target / STAMP
    if stamp.exists() and stamp.read_text() == digest:
        return target
    dependencies = dependency_wheels(checkout, progress)
    for old in target.glob("*.whl"):
        old.unlink()
    for wheel in dependencies.glob("*.whl"):
        shutil.copy2(wheel, target)
    progress(f"wheelhouse: building ccmirror {project(checkout)['version']}")
    build_project_wheel(checkout, target)
    (target / REQUIREMENTS).write_text(requirements(target))
    stamp.write_text(digest)
    return target


def project(checkout: Path) -> dict:
    return tomllib.loads((checkout / "pyproject.toml").read_text())["project"]


def packaged_files(checkout: Path) -> Iterator[Path]:
    """What the ccmirror wheel is built from: pyproject, the readme and the packages it
    lists (sources and package data, no caches)."""
    for name in SOURCE_FILES:
        yield checkout / name
    packages = tomllib.loads((checkout / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    for top in sorted({package.split(".")[0] for package in packages}):
        for path in sorted((checkout / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                yield path


def source_digest(checkout: Path) -> str:
    digest = hashlib.sha256()
    for path in packaged_files(checkout):
        digest.update(str(path.relative_to(checkout)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def dependency_wheels(checkout: Path, progress: Callable[[str], None]) -> Path:
    """A directory of wheels for every requirement of the project, made once per list of
    requirements (keyed by its digest) with pip and its cache."""
    wanted = "\n".join(sorted(project(checkout)["dependencies"])) + "\n"
    key = hashlib.sha256(wanted.encode()).hexdigest()[:16]
    directory = DEPENDENCY_CACHE / key
    if (directory / REQUIREMENTS).exists():
        return directory
    progress("wheelhouse: dependency wheels from PyPI (once per set of requirements)")
    partial = DEPENDENCY_CACHE / f"{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    requirements_in = partial / "requirements.in"
    requirements_in.write_text(wanted)
    pip(["wheel", "--wheel-dir", str(partial), "-r", str(requirements_in)])
    requirements_in.unlink()
    (partial / REQUIREMENTS).write_text(requirements(partial))
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    return directory


def build_project_wheel(checkout: Path, target: Path) -> None:
    """The ccmirror wheel alone, built from a copy of the packaged files (pip would leave a
    build/ directory in the checkout, and other work in progress there is not packaged)."""
    for old in target.glob("ccmirror-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="ccmirror-wheel-") as tmp:
        source = Path(tmp) / "src"
        for path in packaged_files(checkout):
            copy = source / path.relative_to(checkout)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
        pip(["wheel", "--no-deps", "--wheel-dir", str(target), str(source)])


def pip(args: list[str]) -> None:
    """pip of the interpreter running the lab (the project's venv: CPython 3.11, like the
    droplets' Debian python3), quiet unless it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise LabError(f"pip {args[0]} failed:\n{(result.stdout + result.stderr)[-3000:]}")


def requirements(directory: Path) -> str:
    """`name==version` for every wheel in `directory`, sorted: `pip install --no-index
    --find-links DIR -r requirements.txt` then installs exactly these."""
    pins = []
    for wheel in sorted(directory.glob("*.whl")):
        match = WHEEL_NAME.match(wheel.name)
        if match is None:
            raise LabError(f"not a wheel file name: {wheel.name}")
        pins.append(f"{match['name']}=={match['version']}")
    return "\n".join(sorted(pins, key=str.lower)) + "\n"
