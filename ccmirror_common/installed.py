"""Whether this environment holds ccmirror at one version with every requirement of some of
its extras: the `unless` of Salt's install state (salt/ccmirror/install.sls), so a minion
reinstalls when the pillar's version moves or a role (an extra) is added, and not otherwise.

    python -m ccmirror_common.installed 0.1.2 harvester queue

Exit 0 when it does; 1 when something is missing or differs, named on stderr; 2 on a usage
error. Standard library only: it runs in whatever venv the minion has.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata

DISTRIBUTION = "ccmirror"
EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def missing(version: str, extras: set[str]) -> list[str]:
    """What is not installed as asked: the distribution at `version`, then any requirement of
    it or of one of `extras` (by name: the wheelhouse pins the versions)."""
    try:
        installed = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return [f"{DISTRIBUTION}=={version} (not installed)"]
    if installed != version:
        return [f"{DISTRIBUTION}=={version} (installed: {installed})"]
    known = set(metadata.metadata(DISTRIBUTION).get_all("Provides-Extra") or [])
    unknown = sorted(extras - known)
    if unknown:
        return [f"{DISTRIBUTION} has no extra {', '.join(unknown)}"]
    absent = []
    for requirement in metadata.requires(DISTRIBUTION) or []:
        spec, _, marker = requirement.partition(";")
        extra = EXTRA_MARKER.search(marker)
        if extra and extra.group(1) not in extras:
            continue  # another role's
        name = NAME.match(spec).group(1)
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            absent.append(name)
    return absent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ccmirror_common.installed",
        description="exit 0 when ccmirror VERSION and the requirements of EXTRAS are installed",
    )
    parser.add_argument("version")
    parser.add_argument("extras", nargs="*")
    args = parser.parse_args(argv)
    absent = missing(args.version, set(args.extras))
    if absent:
        print(f"not installed: {'; '.join(absent)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
