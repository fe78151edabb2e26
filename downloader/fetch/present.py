"""What an earlier run already stored: a fetcher hashes such a file from disk instead of
fetching it again (`present=`). `OnDisk` asks the disk per item (a daemon's spool);
`scan_present` walks the tree once (a whole URL list)."""

from __future__ import annotations

import os
from collections.abc import Container
from pathlib import Path


class OnDisk(Container[str]):
    """`present` for a daemon resuming a spool: a path is present when its file exists."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __contains__(self, relpath: object) -> bool:
        return isinstance(relpath, str) and (self.root / relpath).is_file()


def scan_present(root: Path) -> set[str]:
    """Every image file under `root/images`, as relative paths: one walk instead of a stat
    per item, for a whole URL list."""
    found: set[str] = set()
    base = root / "images"
    for directory, _, files in os.walk(base):
        rel = Path(directory).relative_to(root).as_posix()
        found.update(f"{rel}/{name}" for name in files if not name.endswith(".part"))
    return found
