"""`deploy.release` of a new version mid-download, as a release commit makes it."""

from __future__ import annotations

import re

from lab.mission import stages as mission


def release_new_version(m: mission.Mission) -> dict:
    """A new patch version in the lab's checkout (pyproject.toml and the pillar's pin move
    together, as in a release commit), rolled out by `deploy.release`."""
    checkout = m.checkout
    pyproject = checkout / "pyproject.toml"
    old = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.MULTILINE)[1]
    major, minor, patch = old.split(".")
    new = f"{major}.{minor}.{int(patch) + 1}"
    for path in (pyproject, checkout / "pillar" / "ccmirror.sls"):
        path.write_text(path.read_text().replace(old, new, 1))
    ret = m.salt_run("deploy.release", "batch=1", "wait=120")
    return {"old": old, "new": new, "ret": ret}
