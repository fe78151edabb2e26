"""The wheelhouse the Salt fileserver serves as `salt://wheelhouse/`: the ccmirror wheel and a
wheel of every dependency, so minions install the code with `pip --no-index` and need no
network (the lab's droplets have none; a real fleet pins one version this way).

The ccmirror wheel is rebuilt when what goes into it changes (a digest of the packaged files,
kept beside it); the states reinstall it when the served file changes, so an unchanged
checkout builds nothing and changes nothing on the minions. Dependency wheels, and the build
backend the project's wheel is built with, come from PyPI through pip's cache once per set of
requirements and are kept in a cache outside any lab (`lab down` removes the lab's directory;
the next `lab up` copies them back in seconds); every build after that is offline.
"""

from __future__ import annotations

import fcntl
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
DEPENDENCY_CACHE = "/var/cache/ccmirror-lab/wheels"  # $CCMIRROR_WHEEL_CACHE moves it
BUILD_SYSTEM = "build-system"  # setuptools and wheel, to build the project offline
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
    build_project_wheel(checkout, dependencies / BUILD_SYSTEM, target)
    (target / REQUIREMENTS).write_text(requirements(target))
    stamp.write_text(digest)
    return target


def pyproject(checkout: Path) -> dict:
    return tomllib.loads((checkout / "pyproject.toml").read_text())


def project(checkout: Path) -> dict:
    return pyproject(checkout)["project"]


def packaged_files(checkout: Path) -> Iterator[Path]:
    """What the ccmirror wheel is built from: pyproject, the readme and the packages it
    lists (sources and package data, no caches)."""
    for name in SOURCE_FILES:
        yield checkout / name
    packages = pyproject(checkout)["tool"]["setuptools"]["packages"]
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
    """A directory of wheels for every requirement of the project, and below it in
    `build-system/` what building the project needs, made once per list of requirements
    (keyed by its digest) with pip and its cache: after that, builds need no network."""
    runtime = sorted(project(checkout)["dependencies"])
    build_system = sorted(pyproject(checkout)["build-system"]["requires"])
    wanted = "\n".join([*runtime, "# build-system", *build_system]) + "\n"
    key = hashlib.sha256(wanted.encode()).hexdigest()[:16]
    directory = dependency_cache() / key
    dependency_cache().mkdir(parents=True, exist_ok=True)
    with open(dependency_cache() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two labs built at once fetch once
        if not (directory / REQUIREMENTS).exists():
            progress("wheelhouse: dependency wheels from PyPI (once per set of requirements)")
            fetch_dependency_wheels(runtime, build_system, directory)
            for stale in dependency_cache().iterdir():  # wheels of requirements of the past
                if stale.is_dir() and stale != directory:
                    shutil.rmtree(stale)
    return directory


def fetch_dependency_wheels(runtime: list[str], build_system: list[str], directory: Path) -> None:
    partial = directory.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / BUILD_SYSTEM).mkdir(parents=True)
    if runtime:
        pip(["wheel", "--wheel-dir", str(partial), *runtime])
    pip(["wheel", "--wheel-dir", str(partial / BUILD_SYSTEM), *build_system])
    (partial / REQUIREMENTS).write_text(requirements(partial))
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)  # complete or absent: a killed fetch is started over


def dependency_cache() -> Path:
    return Path(os.environ.get("CCMIRROR_WHEEL_CACHE", DEPENDENCY_CACHE))


def build_project_wheel(checkout: Path, build_system: Path, target: Path) -> None:
    """The ccmirror wheel alone, built offline (setuptools from `build_system`) from a copy of
    the packaged files: pip would leave a build/ directory in the checkout, and other work
    in progress there is not packaged."""
    for old in target.glob("ccmirror-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="ccmirror-wheel-") as tmp:
        source = Path(tmp) / "src"
        for path in packaged_files(checkout):
            copy = source / path.relative_to(checkout)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
        offline = ["--no-index", "--find-links", str(build_system)]
        pip(["wheel", "--no-deps", *offline, "--wheel-dir", str(target), str(source)])


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
