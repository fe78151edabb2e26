"""The private pillar root's file helpers (private_pillar.py's, loaded by path beside it):
atomic writes with the mode set before a file is visible, the one-writer lock, YAML with
private keys as blocks, and ssh-keygen in a private directory. Plain Python and yaml only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

LOCK_FILE = ".secrets.lock"
HEADER = "# written by the secrets runner (_runners/secrets.py) from secrets.json: do not edit\n"


def sls(data: dict[str, Any]) -> str:
    return HEADER + yaml.dump(data, Dumper=_BlockDumper, default_flow_style=False, sort_keys=True)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (private keys) as `|` blocks, as a person would write them."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def write_if_changed(path: Path, text: str, mode: int) -> bool:
    """Atomically, with its mode set before it is visible: no reader sees half a file, and
    no secret is ever world-readable, whatever the umask. An equal file is left alone (its
    mode corrected), so a second run changes nothing."""
    try:
        same = path.read_text(encoding="utf-8") == text
    except FileNotFoundError:
        same = False
    if same:
        if path.stat().st_mode & 0o777 == mode:
            return False
        os.chmod(path, mode)
        return True
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return True


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """The root made (0700) and held by one writer at a time: two runners started together
    must not each save a record without the other's secrets."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ssh_keygen(comment: str) -> tuple[str, str]:
    """A new ed25519 key pair (private, public), made in a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="ccmirror-secrets-") as tmp:
        path = Path(tmp) / "key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
        )
        return path.read_text(), path.with_suffix(".pub").read_text().strip()
