"""The wheel's package list follows the tree: the tests import from the checkout
(`pythonpath = ["."]`), so a subpackage missing from `[tool.setuptools] packages`, or a data
file no `package-data` glob takes, would pass here and be absent on the fleet."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

from tests.conftest import ROOT


def setuptools_table() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def shipped_files(top: str) -> list[Path]:
    """Every file under a top-level package the wheel is built from, caches left out."""
    return [
        path
        for path in sorted((ROOT / top).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]


def package_name(directory: Path) -> str:
    return ".".join(directory.relative_to(ROOT).parts)


def test_every_directory_with_files_is_a_listed_package():
    listed = set(setuptools_table()["packages"])
    tops = {name.split(".")[0] for name in listed}
    in_tree = {package_name(path.parent) for top in tops for path in shipped_files(top)}
    assert sorted(in_tree - listed) == [], "directories the wheel would leave out"
    assert sorted(listed - in_tree) == [], "packages listed that hold no file"


def test_every_data_file_is_taken_by_a_package_data_glob():
    table = setuptools_table()
    globs = table.get("package-data", {})
    tops = {name.split(".")[0] for name in table["packages"]}
    left_out = [
        str(path.relative_to(ROOT))
        for top in tops
        for path in shipped_files(top)
        if path.suffix != ".py"
        and not any(fnmatch(path.name, glob) for glob in globs.get(package_name(path.parent), []))
    ]
    assert left_out == []
