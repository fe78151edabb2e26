"""The one CLI skeleton (ccmirror_common/cli.py), through the installed `harvester`,
`downloader` and `lab` programs run as real processes: help, usage errors, failures,
Ctrl-C and `--json`. Nothing here needs a database or starts a lab."""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ccmirror_common import cli
from downloader.cli import build_parser as downloader_parser
from harvester.cli import build_parser as harvester_parser
from lab.cli import build_parser as lab_parser

BIN = Path(sys.executable).parent
PROGRAMS = {"harvester": harvester_parser, "downloader": downloader_parser, "lab": lab_parser}


def command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list:
    """Every command and subcommand of `parser`, as the words that name it."""
    paths = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += command_paths(sub, (*path, name))
    return paths


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No operator settings leak in; a lab root and a spool that exist nowhere else."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CCMIRROR_", "LAB_"))}
    return clean | {
        "CCMIRROR_LAB_ROOT": str(tmp_path / "no-lab"),
        "CCMIRROR_SPOOL": str(tmp_path / "spool"),
        "CCMIRROR_QUEUE_TOKENS_FILE": str(tmp_path / "tokens.yaml"),
    }


def run(program: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / program), *args], env=env, capture_output=True, text=True, timeout=60
    )


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("program", PROGRAMS)
def test_help_of_every_command_exits_0(program, env):
    def help_of(path: tuple[str, ...]) -> str | None:
        """What is wrong with `program *path --help`, or None."""
        result = run(program, *path, "--help", env=env)
        usage = f"usage: {' '.join((program, *path))}"
        if result.returncode == 0 and result.stdout.startswith(usage) and not result.stderr:
            return None
        return f"{program} {' '.join(path)} --help: exit {result.returncode} {result.stderr}"

    paths = command_paths(PROGRAMS[program]())
    assert len(paths) > 5
    with ThreadPoolExecutor(8) as pool:  # a process per command; at once, to keep it quick
        assert [wrong for wrong in pool.map(help_of, paths) if wrong] == []


@pytest.mark.parametrize("program", PROGRAMS)
def test_no_command_is_a_usage_error_naming_the_commands(program, env):
    result = run(program, env=env)
    line = one_line(result.stderr)
    assert result.returncode == 2 and result.stdout == ""
    assert line.startswith(f"{program}: error: no command given; one of: ")
    assert "status" in line and f"usage: {program} " in line


@pytest.mark.parametrize(
    ("program", "args", "message"),
    [
        ("harvester", ["bogus"], "invalid choice: 'bogus'"),
        ("downloader", ["bogus"], "invalid choice: 'bogus'"),
        ("lab", ["bogus"], "invalid choice: 'bogus'"),
        ("harvester", ["status", "--bogus"], "unrecognized arguments: --bogus"),
        ("downloader", ["status", "--bogus"], "unrecognized arguments: --bogus"),
        ("lab", ["status", "--bogus"], "unrecognized arguments: --bogus"),
        ("harvester", ["seed"], "required: kind"),
        ("harvester", ["reconcile", "--batch-size", "0"], "must be a positive whole number"),
        ("downloader", ["drain", "--wait", "-1"], "must be 0 or more seconds"),
        ("downloader", ["fetch", "--urls", "u", "--out", "o", "--concurrency", "0"], "positive"),
        ("lab", ["harvest-demo", "--days", "x"], "invalid int value"),
    ],
)
def test_usage_errors_exit_2_with_one_line(program, args, message, env):
    result = run(program, *args, env=env)
    line = one_line(result.stderr)
    assert result.returncode == 2 and message in line and "usage: " in line, line
    assert result.stdout == ""


@pytest.mark.parametrize("program", ["harvester", "downloader"])
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read config {path}: No such file or directory"),
        ("fetch:\n  allow_hostz: []\n", "{path}: fetch: unknown setting 'allow_hostz'"),
        ("fetch: [\n", "config {path} is not valid YAML: "),  # a message of several lines
    ],
)
def test_a_bad_config_is_one_line_and_exit_1(program, text, message, env, tmp_path):
    path = tmp_path / "settings.yaml"
    if text is not None:
        path.write_text(text)
    result = run(program, "--config", str(path), "status", env=env)
    assert result.returncode == 1 and result.stdout == ""
    assert one_line(result.stderr).startswith(f"{program}: " + message.format(path=path))


def test_a_lab_failure_is_one_line_and_exit_1(env):
    result = run("lab", "status", env=env | {"CCMIRROR_LAB_BRIDGE": "Not-A-Bridge"})
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("lab: bridge name 'Not-A-Bridge'")


def test_a_failed_drain_is_one_line_and_exit_1(env, tmp_path):
    result = run("downloader", "drain", env=env)
    assert result.returncode == 1
    assert one_line(result.stderr) == f"downloader: the spool {tmp_path / 'spool'} does not exist"


def test_downloader_state_as_json(env, tmp_path):
    result = run("downloader", "status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["phase"] == "never ran"
    human = run("downloader", "status", env=env)
    assert human.stdout.startswith("downloader: never ran (spool ")

    storage = run("downloader", "check-storage", "--json", env=env)
    assert storage.returncode == 1 and storage.stderr == ""
    assert json.loads(storage.stdout)["ok"] is False


def test_harvester_tokens_as_json(env):
    assert run("harvester", "token", "add", "dl-2", env=env).returncode == 0
    assert run("harvester", "token", "add", "dl-1", env=env).returncode == 0
    listed = run("harvester", "token", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == ["dl-1", "dl-2"]
    assert run("harvester", "token", "list", env=env).stdout == "dl-1\ndl-2\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="`lab status` needs root")
def test_lab_status_as_json_with_no_lab(env):
    result = run("lab", "status", "--json", env=env)
    assert result.returncode == 1 and json.loads(result.stdout) == []  # down is not healthy


@pytest.mark.parametrize("program", ["harvester", "downloader"])
def test_ctrl_c_is_one_line_and_exit_130(program, env, tmp_path):
    """The settings file is a FIFO nobody writes: the program waits in its read, as it
    would in any long step, until Ctrl-C (SIGINT) reaches it."""
    fifo = tmp_path / "settings.yaml"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [str(BIN / program), "--config", str(fifo), "status"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Once the FIFO is open for reading, the program is inside its settings load: no wait.
    writer = open_writer_when_read(fifo, proc)
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        os.close(writer)
    assert proc.returncode == 130
    assert one_line(err) == f"{program}: interrupted" and out == ""


def open_writer_when_read(fifo: Path, proc: subprocess.Popen) -> int:
    """The FIFO's write end, once `proc` has it open for reading (ENXIO until then). The
    deadline is generous: on a loaded machine the program's start alone once took over 30 s."""
    deadline = time.monotonic() + 180
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.02)


def test_a_command_that_says_more_about_ctrl_c(capsys):
    def interrupted() -> int:
        raise cli.Interrupted("import-yfcc interrupted: the chunks loaded so far are kept")

    assert cli.run("harvester", interrupted) == 130
    assert capsys.readouterr().err == (
        "harvester: import-yfcc interrupted: the chunks loaded so far are kept\n"
    )


def test_an_unnamed_error_is_a_bug_and_keeps_its_traceback():
    def broken() -> int:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        cli.run("harvester", broken, failures=(ValueError,))
