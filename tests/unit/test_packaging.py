"""The wheels' package lists follow the tree: the tests import from the checkout
(`pythonpath = ["."]`), so a subpackage missing from `[tool.setuptools] packages`, or a data
file no `package-data` glob takes, would pass here and be absent where the wheel is installed.
Two distributions: `ccmirror` (pyproject.toml, what the fleet installs) and `ccmirror-lab`
(lab/pyproject.toml, whose directory is the `lab` package itself)."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from tests.conftest import ROOT

DISTRIBUTIONS = {
    "ccmirror": ROOT / "pyproject.toml",
    "ccmirror-lab": ROOT / "lab" / "pyproject.toml",
}


def setuptools_table(distribution: str) -> dict:
    return tomllib.loads(DISTRIBUTIONS[distribution].read_text())["tool"]["setuptools"]


def shipped_files(top: str) -> list[Path]:
    """Every file under a top-level package a wheel is built from: caches, an editable
    install's egg-info and the lab's own pyproject.toml left out."""
    return [
        path
        for path in sorted((ROOT / top).rglob("*"))
        if path.is_file()
        and not any(part == "__pycache__" or part.endswith(".egg-info") for part in path.parts)
        and path.suffix != ".pyc"
        and path.name != "pyproject.toml"
    ]


def package_name(directory: Path) -> str:
    return ".".join(directory.relative_to(ROOT).parts)


def tops(distribution: str) -> set[str]:
    return {name.split(".")[0] for name in setuptools_table(distribution)["packages"]}


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_every_directory_with_files_is_a_listed_package(distribution: str) -> None:
    listed = set(setuptools_table(distribution)["packages"])
    in_tree = {
        package_name(path.parent) for top in tops(distribution) for path in shipped_files(top)
    }
    assert sorted(in_tree - listed) == [], "directories the wheel would leave out"
    assert sorted(listed - in_tree) == [], "packages listed that hold no file"


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_every_data_file_is_taken_by_a_package_data_glob(distribution: str) -> None:
    globs = setuptools_table(distribution).get("package-data", {})
    left_out = [
        str(path.relative_to(ROOT))
        for top in tops(distribution)
        for path in shipped_files(top)
        if path.suffix != ".py"
        and not any(fnmatch(path.name, glob) for glob in globs.get(package_name(path.parent), []))
    ]
    assert left_out == []


def test_the_fleets_wheel_holds_no_lab_and_the_lab_is_its_own() -> None:
    """The fleet's wheel is built from what its package list names: the lab is never in it
    (nor its dependencies in the fleet's wheelhouse: tests/lab/test_wheelhouse.py)."""
    assert "lab" not in tops("ccmirror")
    assert tops("ccmirror-lab") == {"lab"}
    assert setuptools_table("ccmirror-lab")["package-dir"] == {"lab": "."}
