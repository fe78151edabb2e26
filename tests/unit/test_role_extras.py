"""Each role's droplet installs `ccmirror[<its extra>]` only (salt/ccmirror/install.sls), while
the tests run with every extra: a module a role's daemon imports from a distribution its extra
does not name works here and dies on the droplet (#22's metrics did, caught by the e2e only).
So each role's command modules are imported in a child Python that refuses every third-party
module outside the role's requirements and what they require in turn."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT

# The modules a role's units run (`harvester work|recheck|seed increment|takedown`, `downloader
# run`), their commands' modules included (the CLIs import those lazily).
ROLE_MODULES = {
    "harvester": [
        "harvester.cli", "harvester.search.worker", "harvester.recheck.cli",
        "harvester.recheck.run", "harvester.search.increment_cli", "harvester.takedown.cli",
    ],
    "downloader": ["downloader.cli", "downloader.run_command", "downloader.daemon"],
}  # fmt: skip

CHILD = r"""
import importlib, importlib.abc, importlib.metadata as md, json, re, sys

allowed_dists, modules = set(json.loads(sys.argv[1])), json.loads(sys.argv[2])
def name(requirement):
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
def requires(dist):
    try:
        return md.requires(dist) or []
    except md.PackageNotFoundError:  # an optional one not installed: nothing can import it
        return []
todo = list(allowed_dists)
while todo:  # what the role's requirements require; their own extras are not installed
    for requirement in requires(todo.pop()):
        if "extra ==" in requirement:
            continue
        if name(requirement) not in allowed_dists:
            allowed_dists.add(name(requirement))
            todo.append(name(requirement))
providers = md.packages_distributions()

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        top = fullname.split(".")[0]
        dists = {d.lower().replace("_", "-") for d in providers.get(top, [])}
        if dists and "ccmirror" not in dists and not dists & allowed_dists:
            raise ModuleNotFoundError(f"{fullname} ({sorted(dists)}) is not in the role's extra")
        return None

sys.meta_path.insert(0, Refuse())
for module in modules:
    importlib.import_module(module)
print("ok")
"""


def role_requirements(role: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"][role]
    return sorted({r.split(">")[0].split("=")[0].split("[")[0].lower() for r in requirements})


@pytest.mark.parametrize("role", sorted(ROLE_MODULES))
def test_a_roles_modules_need_nothing_beyond_its_extra(role: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(role_requirements(role)),
         json.dumps(ROLE_MODULES[role])],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_refusal_works() -> None:
    """The queue's web stack is not the downloader's: importing it there is refused."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(role_requirements("downloader")),
         json.dumps(["fastapi"])],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0 and "is not in the role's extra" in done.stderr
