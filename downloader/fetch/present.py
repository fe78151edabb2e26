"""What an earlier run already stored: a fetcher hashes such a file from disk instead of
fetching it again (`present=`). `OnDisk` asks the disk per item (a daemon's spool);
`scan_present` walks the tree once (a whole URL list)."""

from __future__ import annotations

import os
from collections.abc import Container
from pathlib import Path


class OnDisk(Container[str]):
    """`present` for a daemon resuming a spool: a name is present when its file exists."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (self.root / name).is_file()


def scan_present(root: Path) -> set[str]:
    """The name of every file in `root` (the fetcher writes flat, fetcher.local_name), but
    a fetch's temp files: one directory read instead of a stat per item, for a URL list."""
    try:
        with os.scandir(root) as entries:
            return {e.name for e in entries if e.is_file() and not e.name.endswith(".part")}
    except FileNotFoundError:
        return set()
