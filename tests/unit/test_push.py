"""downloader.push without a server: which failures are retried, what the error says, and
the rsync and ssh command lines (stderr samples as rsync 3.5.0 and OpenSSH 9.2 print them)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from downloader.push import (
    StorageTarget,
    backoff_delay,
    checked_paths,
    classify,
    link_tree,
    push_tree,
    rsync_command,
    ssh_command,
)

REFUSED = "ssh: connect to host 127.0.0.1 port 2222: Connection refused\r\n"
DROPPED = (
    "rsync: connection unexpectedly closed (1736704 bytes received so far) [sender]\n"
    "rsync error: error in rsync protocol data stream (code 12) at io.c(285) [sender=3.5.0]\n"
)
HOST_KEY_CHANGED = (
    "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
    "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
    "It is also possible that a host key has just been changed.\n"
    "Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.\n"
    "Host key verification failed.\n"
    "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"
)
UNKNOWN_HOST = (
    "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict "
    "checking.\nHost key verification failed.\n"
)
BAD_KEY = "ccmirror-storage@127.0.0.1: Permission denied (publickey).\r\n"
REFUSED_OPTION = (
    "/usr/bin/rrsync error: option --delete has been disabled on this server.\n" + DROPPED
)
LOCKED = (
    "/usr/bin/rrsync error: Another instance of rrsync is already accessing this directory.\n"
    + DROPPED
)


@pytest.mark.parametrize(
    ("code", "stderr", "transient", "says"),
    [
        (255, REFUSED, True, "Connection refused"),
        (12, DROPPED, True, "connection unexpectedly closed"),
        (30, "rsync error: timeout in data send/receive (code 30)\n", True, "timeout"),
        (12, LOCKED, True, "storage refused: Another instance of rrsync"),
        (255, HOST_KEY_CHANGED, False, "has changed and you have requested strict checking"),
        (255, UNKNOWN_HOST, False, "No ED25519 host key is known"),
        (255, BAD_KEY, False, "Permission denied (publickey)"),
        (12, REFUSED_OPTION, False, "storage refused: option --delete has been disabled"),
        (11, "rsync: [receiver] write failed: No space left on device (28)\n", False, "No space"),
        (
            23,
            'rsync: [sender] link_stat "/x" failed: No such file or directory (2)\n',
            False,
            "link_stat",
        ),
        (3, "", False, "rsync exited with 3"),
    ],
)
def test_classify(code: int, stderr: str, transient: bool, says: str):
    got_transient, error = classify(code, stderr)
    assert got_transient is transient
    assert says in error
    assert "\n" not in error


def test_backoff_grows_with_jitter_and_a_cap():
    for attempt in range(1, 12):
        step = min(30.0, 0.5 * 2 ** (attempt - 1))
        delays = {backoff_delay(attempt, 0.5, 30.0) for _ in range(50)}
        assert all(step / 2 <= d <= step for d in delays)
        assert len(delays) > 1  # jittered


def test_target_from_the_storage_setting():
    target = StorageTarget.from_spec(
        "ccmirror-storage@10.0.0.3", port=2222, key_path="/k", known_hosts_path="/kh"
    )
    assert target.destination == "ccmirror-storage@10.0.0.3:"
    assert target.port == 2222
    v6 = StorageTarget.from_spec("st@[fd00::3]:sub", port=22, key_path="/k", known_hosts_path="/h")
    assert (v6.host, v6.root, v6.destination) == ("fd00::3", "sub", "st@[fd00::3]:sub")
    for bad in ("10.0.0.3", "@10.0.0.3", "user@"):
        with pytest.raises(ValueError):
            StorageTarget.from_spec(bad, port=22, key_path="/k", known_hosts_path="/kh")


def test_nothing_to_push_does_not_reach_storage(tmp_path: Path):
    nowhere = StorageTarget("st", "127.0.0.1", 1, tmp_path / "no-key", tmp_path / "no-kh")
    assert push_tree(tmp_path, [], nowhere).attempts == 0


def test_paths_must_be_relative_files_under_the_spool(tmp_path: Path):
    (tmp_path / "images/00/01").mkdir(parents=True)
    (tmp_path / "images/00/01/256.jpg").write_bytes(b"x")
    assert checked_paths(tmp_path, ["images/00/01/256.jpg"]) == ["images/00/01/256.jpg"]
    for bad in ("/etc/passwd", "../x.jpg", "images/../../x", ""):
        with pytest.raises(ValueError):
            checked_paths(tmp_path, [bad])
    with pytest.raises(FileNotFoundError):
        checked_paths(tmp_path, ["images/00/01/257.jpg"])


def test_the_rsync_layout_is_hard_links_and_a_second_laying_out_finishes_the_first(
    tmp_path: Path,
):
    files, layout = tmp_path / "files", tmp_path / "layout"
    files.mkdir()
    sources = {f"images/{n:02x}/00/{n}.jpg": f"{n}.jpg" for n in range(1, 4)}
    sources["manifests/2026/12/05/7.jsonl"] = "manifest.jsonl"
    for name in sources.values():
        (files / name).write_text(name)
    # A first laying out killed midway: one link made, one path taken by a torn leftover.
    (layout / "images/01/00").mkdir(parents=True)
    (layout / "images/01/00/1.jpg").hardlink_to(files / "1.jpg")
    (layout / "images/02/00").mkdir(parents=True)
    (layout / "images/02/00/2.jpg").write_text("torn")

    assert link_tree(files, sources, layout) == list(sources)
    for key, name in sources.items():
        assert (layout / key).samefile(files / name), key  # the spool's file, not a copy
    with pytest.raises(ValueError):
        link_tree(files, {"../escape.jpg": "1.jpg"}, layout)


def test_command_pins_the_host_key_and_the_one_key(tmp_path: Path):
    target = StorageTarget("st", "10.0.0.3", 2222, Path("/etc/cc key"), Path("/etc/cc/kh"))
    argv = rsync_command(tmp_path, target, files_from=tmp_path / "list", timeout=60)
    assert argv[-2:] == [f"{tmp_path}/", "st@10.0.0.3:"]
    assert "--delay-updates" in argv and "--partial" in argv
    assert "--timeout=60" in argv and f"--files-from={tmp_path / 'list'}" in argv
    assert not any(a.startswith(("--owner", "--group", "-a", "--partial-dir")) for a in argv)
    ssh = shlex.split(ssh_command(target))
    assert ssh[ssh.index("-i") + 1] == "/etc/cc key"  # quoted: a path may hold a space
    for option in (
        "UserKnownHostsFile=/etc/cc/kh",
        "StrictHostKeyChecking=yes",
        "IdentitiesOnly=yes",
        "BatchMode=yes",
    ):
        assert option in ssh
