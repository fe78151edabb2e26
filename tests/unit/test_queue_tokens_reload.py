"""The queue re-reads its tokens file as Salt writes it: Salt renames a root-owned 0600 file
into place and only then sets its owner and mode (salt.utils.files.copyfile). The queue
runs as its own user, so a check in between cannot read the file; the store must read it
again once the owner and mode allow, or a revoked worker's token stays good until the file
next changes. And `harvester token add|revoke`, run by root, leaves the file the service's."""

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

from harvester.queue.tokens import TokenError, TokenStore, add_token, read_tokens, revoke_token

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


@pytest.fixture
def store_workers(tokens_file: Path) -> Iterator:
    """Asks a TokenStore running as nobody on `tokens_file` which workers it accepts now."""
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    store = multiprocessing.get_context("fork").Process(
        target=store_as_nobody, args=(tokens_file, theirs), daemon=True
    )

    def workers() -> list[str]:
        if not store.is_alive():
            store.start()
        ours.send(True)
        assert ours.poll(30), "the store answers"
        return ours.recv()

    yield workers
    if store.is_alive():
        ours.send(False)
        store.join(30)


def test_a_file_unreadable_for_a_moment_is_read_once_its_mode_allows(
    tokens_file: Path, store_workers
) -> None:
    write_as_salt_does(tokens_file, ["dl-1", "dl-2"], 0o644)
    assert store_workers() == ["dl-1", "dl-2"]
    write_as_salt_does(tokens_file, ["dl-1"], 0o600)  # dl-2 revoked; not readable yet
    assert store_workers() == ["dl-1", "dl-2"]  # the last good tokens, kept
    os.chmod(tokens_file, 0o644)  # Salt's chmod: no new content, no new mtime
    assert store_workers() == ["dl-1"]


def test_root_adding_and_revoking_tokens_leaves_the_file_the_services(
    tokens_file: Path, store_workers
) -> None:
    nobody = pwd.getpwnam("nobody")
    write_as_salt_does(tokens_file, ["dl-1", "dl-2"], 0o640)
    os.chown(tokens_file, 0, nobody.pw_gid)  # as Salt leaves it: root, the service's group
    assert store_workers() == ["dl-1", "dl-2"]
    add_token(tokens_file, "dl-3")  # as root, whose group is not the service's
    assert (tokens_file.stat().st_uid, tokens_file.stat().st_gid) == (0, nobody.pw_gid)
    assert store_workers() == ["dl-1", "dl-2", "dl-3"]
    revoke_token(tokens_file, "dl-2")
    assert store_workers() == ["dl-1", "dl-3"]


def test_a_user_who_cannot_keep_the_owner_gets_one_error_and_nothing_changes(
    tokens_file: Path,
) -> None:
    write_as_salt_does(tokens_file, ["dl-1"], 0o640)
    os.chmod(tokens_file.parent, 0o777)  # nobody may create its temporary file beside it
    before = tokens_file.read_bytes()
    errors = multiprocessing.get_context("fork").Queue()

    def add_as_nobody() -> None:
        os.setgroups([])
        os.setgid(pwd.getpwnam("nobody").pw_gid)
        os.setuid(pwd.getpwnam("nobody").pw_uid)
        try:
            add_token(tokens_file, "dl-2")
            errors.put("added")
        except TokenError as exc:
            errors.put(str(exc))

    child = multiprocessing.get_context("fork").Process(target=add_as_nobody)
    os.chmod(tokens_file, 0o644)  # nobody may read it, not write it
    child.start()
    child.join(30)
    said = errors.get(timeout=30)
    assert "cannot keep its owner 0" in said and "nothing changed" in said, said
    assert tokens_file.read_bytes() == before
    assert sorted(read_tokens(tokens_file)) == ["dl-1"]
    assert [p.name for p in tokens_file.parent.iterdir()] == ["tokens.yml"]
