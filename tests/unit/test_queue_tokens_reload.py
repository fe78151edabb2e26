"""The queue re-reads its tokens file as Salt writes it: Salt renames a root-owned 0600 file
into place and only then sets its owner and mode (salt.utils.files.copyfile). The queue
runs as its own user, so a check in between cannot read the file; the store must read it
again once the owner and mode allow, or a revoked worker's token stays good until the file
next changes."""

from __future__ import annotations

import multiprocessing
import os
import pwd
import tempfile
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
import yaml

from harvester.queue.tokens import TokenStore

HASH = {worker: "sha256:" + digit * 64 for worker, digit in (("dl-1", "1"), ("dl-2", "2"))}


def write_as_salt_does(path: Path, workers: list[str], mode: int) -> None:
    """The tokens file replaced by a rename of a file with `mode` (Salt's: 0600 first)."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(yaml.safe_dump({"tokens": {w: HASH[w] for w in workers}}))
    os.chmod(temporary, mode)
    os.replace(temporary, path)


@pytest.fixture
def tokens_file() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the store runs as nobody and the file is root's")
    directory = Path(tempfile.mkdtemp(prefix="ccm-tokens-"))
    os.chmod(directory, 0o755)
    yield directory / "tokens.yml"
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()


def store_as_nobody(path: Path, requests: Connection) -> None:
    """The queue's TokenStore in a process of an unprivileged user (as the queue runs):
    each message asks for the workers it accepts now."""
    nobody = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)
    store = TokenStore(path, check_interval=0)
    while requests.recv():
        requests.send(store.workers())


def test_a_file_unreadable_for_a_moment_is_read_once_its_mode_allows(tokens_file: Path) -> None:
    write_as_salt_does(tokens_file, ["dl-1", "dl-2"], 0o644)
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    store = multiprocessing.get_context("fork").Process(
        target=store_as_nobody, args=(tokens_file, theirs), daemon=True
    )
    store.start()

    def workers() -> list[str]:
        ours.send(True)
        assert ours.poll(30), "the store answers"
        return ours.recv()

    try:
        assert workers() == ["dl-1", "dl-2"]
        write_as_salt_does(tokens_file, ["dl-1"], 0o600)  # dl-2 revoked; not readable yet
        assert workers() == ["dl-1", "dl-2"]  # the last good tokens, kept
        os.chmod(tokens_file, 0o644)  # Salt's chmod: no new content, no new mtime
        assert workers() == ["dl-1"]
    finally:
        ours.send(False)
        store.join(30)
