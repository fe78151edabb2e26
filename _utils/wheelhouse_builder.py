"""The fleet's wheelhouse builder: the ccmirror wheel, a wheel of every dependency and a
`requirements.txt` of exact pins, built on the master into the directory it serves as
`salt://wheelhouse/`, so minions install with `pip --no-index`. The `wheelhouse` and `deploy`
runners reach it as ``__utils__["wheelhouse_builder.*"]`` (the master's config has
``utils_dirs`` on this checkout's ``_utils/``); lab/fleet/wheelhouse.py builds with it too
(loading this file by path). Standard library only, no ``__opts__`` (the master's options
come in as an argument): Salt's own Python has neither `lab` nor the `ccmirror` packages.

Dependency wheels, and the build backend the ccmirror wheel is built with, come from PyPI
through pip once per set of requirements into a cache keyed by their digest (the lab's
layout: point `ccmirror_wheel_cache` at the lab's cache and a build reuses its wheels); every
build after that is offline. The ccmirror wheel is rebuilt only when a packaged file changed.
Files change in place, new ones first and stale ones last, so a minion copying the directory
mid-build still finds a complete set of the old or the new version, never an empty one.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHECKOUT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = "/var/cache/ccmirror/wheels"
DEFAULT_BUILD_VENV = "/opt/ccmirror/build-venv"  # salt/master's build_venv
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, as on the minions: the same wheel tags
BUILD_SYSTEM = "build-system"
REQUIREMENTS = "requirements.txt"
STAMP = ".source-digest"
SOURCE_FILES = ("pyproject.toml", "README.md")
WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")
PIP_TIMEOUT = 1800
DEVELOPMENT_EXTRAS = frozenset({"test", "bench"})  # never on a droplet


class WheelhouseError(RuntimeError):
    """The wheelhouse cannot be built; the message says why."""


def build_wheelhouse(
    checkout: Path,
    target: Path,
    cache: Path,
    python: str,
    progress: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """Fill `target` from `checkout` with `python`'s pip; nothing is rebuilt that has not
    changed. Returns {"version", "wheel", "built", "seconds", "path"}."""
    started = time.monotonic()
    checkout, target = Path(checkout), Path(target)
    version = project(checkout)["version"]
    target.mkdir(parents=True, exist_ok=True)
    digest = source_digest(checkout)
    stamp = target / STAMP
    built = not (stamp.exists() and stamp.read_text() == digest and project_wheel(target))
    if built:
        dependencies = dependency_wheels(checkout, Path(cache), python, progress)
        progress(f"wheelhouse: building ccmirror {version}")
        with tempfile.TemporaryDirectory(prefix="ccmirror-wheel-") as tmp:
            wheel = build_project_wheel(checkout, dependencies / BUILD_SYSTEM, Path(tmp), python)
            wanted = {path.name for path in dependencies.glob("*.whl")} | {wheel.name}
            for path in sorted(dependencies.glob("*.whl")):
                _install_file(path, target / path.name)
            _install_file(wheel, target / wheel.name)  # after its dependencies
        for stale in target.glob("*.whl"):
            if stale.name not in wanted:
                stale.unlink()
        _write_atomically(target / REQUIREMENTS, requirements(target))
        _write_atomically(stamp, digest)
    return {
        "version": version,
        "wheel": project_wheel(target).name,
        "built": built,
        "seconds": round(time.monotonic() - started, 1),
        "path": str(target),
    }


def pyproject(checkout: Path) -> dict:
    return tomllib.loads((Path(checkout) / "pyproject.toml").read_text())


def project(checkout: Path) -> dict:
    return pyproject(checkout)["project"]


def project_wheel(target: Path) -> Path | None:
    wheels = sorted(Path(target).glob("ccmirror-*.whl"))
    return wheels[-1] if wheels else None


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


def dependency_wheels(
    checkout: Path, cache: Path, python: str, progress: Callable[[str], None]
) -> Path:
    """A directory of wheels for every requirement of the project, and below it in
    `build-system/` what building the project needs, made once per list of requirements
    (keyed by its digest, as lab/fleet/wheelhouse.py keys it) with pip and its cache."""
    runtime = fleet_requirements(checkout)
    build_system = sorted(pyproject(checkout)["build-system"]["requires"])
    wanted = "\n".join([*runtime, "# build-system", *build_system]) + "\n"
    directory = cache / hashlib.sha256(wanted.encode()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two builds at once fetch once
        if not (directory / REQUIREMENTS).exists():
            progress("wheelhouse: dependency wheels from PyPI (once per set of requirements)")
            partial = directory.with_suffix(".partial")
            shutil.rmtree(partial, ignore_errors=True)
            (partial / BUILD_SYSTEM).mkdir(parents=True)
            if runtime:
                pip(python, ["wheel", "--wheel-dir", str(partial), *runtime])
            pip(python, ["wheel", "--wheel-dir", str(partial / BUILD_SYSTEM), *build_system])
            (partial / REQUIREMENTS).write_text(requirements(partial))
            shutil.rmtree(directory, ignore_errors=True)
            partial.rename(directory)  # complete or absent: a killed fetch starts over
    return directory


def fleet_requirements(checkout: Path) -> list[str]:
    """What any droplet may install: the project's dependencies and those of every role's
    extra (a minion installs `ccmirror[<its extras>]` from the same wheelhouse), without the
    development extras."""
    meta = project(checkout)
    wanted = set(meta.get("dependencies", []))
    for extra, requirements in meta.get("optional-dependencies", {}).items():
        if extra not in DEVELOPMENT_EXTRAS:
            wanted.update(requirements)
    return sorted(wanted)


def build_project_wheel(checkout: Path, build_system: Path, out: Path, python: str) -> Path:
    """The ccmirror wheel alone, built offline from a copy of the packaged files (pip would
    leave a build/ directory in the checkout)."""
    source = out / "src"
    for path in packaged_files(checkout):
        copy = source / path.relative_to(checkout)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
    wheels = out / "wheels"
    offline = ["--no-index", "--find-links", str(build_system)]
    pip(python, ["wheel", "--no-deps", *offline, "--wheel-dir", str(wheels), str(source)])
    (wheel,) = wheels.glob("ccmirror-*.whl")
    return wheel


def pip(python: str, args: list[str]) -> None:
    """`python -m pip ARGS`, quiet unless it fails."""
    try:
        result = subprocess.run(
            [python, "-m", "pip", "--disable-pip-version-check", "--quiet", *args],
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WheelhouseError(f"pip {args[0]} with {python}: {exc}") from None
    if result.returncode != 0:
        raise WheelhouseError(
            f"pip {args[0]} with {python} failed:\n{(result.stdout + result.stderr)[-3000:]}"
        )


def requirements(directory: Path) -> str:
    """`name==version` for every wheel in `directory`, sorted."""
    pins = []
    for wheel in sorted(Path(directory).glob("*.whl")):
        match = WHEEL_NAME.match(wheel.name)
        if match is None:
            raise WheelhouseError(f"not a wheel file name: {wheel.name}")
        pins.append(f"{match['name']}=={match['version']}")
    return "\n".join(sorted(pins, key=str.lower)) + "\n"


def build_python(venv: Path, system_python: str = SYSTEM_PYTHON) -> str:
    """The build venv's python, made with the system's python3 (the minions' interpreter, so
    binary wheels match them) on first use; the venv's bundled pip needs no network."""
    python = venv / "bin" / "python"
    if not python.exists():
        result = subprocess.run(
            [system_python, "-m", "venv", str(venv)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise WheelhouseError(f"cannot make the build venv {venv}: {result.stderr.strip()}")
    return str(python)


def _install_file(source: Path, destination: Path) -> None:
    """Copy unless the same file is there, through a temporary name: a reader sees the old
    file or the new one."""
    if (
        destination.exists()
        and destination.stat().st_size == source.stat().st_size
        and destination.read_bytes() == source.read_bytes()
    ):
        return
    temp = destination.with_name(f".{destination.name}.tmp")
    shutil.copy2(source, temp)
    os.chmod(temp, 0o644)
    os.replace(temp, destination)


def _write_atomically(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.chmod(temp, 0o644)
    os.replace(temp, path)


def build_for_master(opts: dict, progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """build_wheelhouse with the paths of the master's config (also deploy.release's)."""
    checkout = checkout_of(opts)
    python = opts.get("ccmirror_build_python") or build_python(
        Path(opts.get("ccmirror_build_venv") or DEFAULT_BUILD_VENV)
    )
    return build_wheelhouse(
        checkout,
        served_wheelhouse(opts),
        Path(opts.get("ccmirror_wheel_cache") or DEFAULT_CACHE),
        python,
        progress,
    )


def checkout_of(opts: dict) -> Path:
    """The checkout releases are built from: `ccmirror_checkout`, else this one."""
    checkout = Path(opts.get("ccmirror_checkout") or CHECKOUT)
    if not (checkout / "pyproject.toml").exists():
        raise WheelhouseError(f"no ccmirror checkout at {checkout} (ccmirror_checkout)")
    return checkout


def served_wheelhouse(opts: dict) -> Path:
    """Where `salt://wheelhouse/` lives: `ccmirror_wheelhouse`, else below the file root
    that has a wheelhouse, else below the last root (the master's dist root: the first is
    the checkout's salt/, in git)."""
    if opts.get("ccmirror_wheelhouse"):
        return Path(opts["ccmirror_wheelhouse"])
    roots = [Path(root) for root in (opts.get("file_roots") or {}).get("base") or []]
    if not roots:
        raise WheelhouseError("no file_roots:base in the master's config to serve a wheelhouse")
    for root in roots:
        if (root / "wheelhouse").is_dir():
            return root / "wheelhouse"
    return roots[-1] / "wheelhouse"


def wheel_version(name: str) -> str | None:
    """The version in a wheel's file name (None for a name that is not a wheel's)."""
    match = WHEEL_NAME.match(name)
    return match["version"] if match else None
