"""One command-line skeleton for `harvester`, `downloader` and `lab` (standard library only:
every role imports it).

The rules each program keeps:
- `--help` on the program and on every subcommand prints help and exits 0;
- a usage error (no command, an unknown command, a bad option or value) is one line on
  stderr, the problem and the usage, and exit 2;
- a failure of the command (each program names its error types) is one line
  `<prog>: <message>` on stderr and exit 1, never a traceback;
- Ctrl-C is one line and exit 130. A daemon that stops cleanly on SIGTERM or SIGINT keeps
  its own handlers and exit codes;
- a command that prints state takes `--json`; the human text stays the default.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

FAILURE = 1
USAGE = 2
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a program stopped by Ctrl-C

Failures = tuple[type[BaseException], ...]


class CommandError(RuntimeError):
    """A failure of the command, reported as one line."""


class Interrupted(Exception):
    """Ctrl-C, with more to say than "interrupted" (what was kept, how to go on)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors; subparsers made from it are Parsers too."""

    commands: argparse._SubParsersAction | None = None  # a program's subcommands

    def parse_args(  # type: ignore[override]  # typeshed overloads it by namespace type
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        parsed = super().parse_args(args, namespace)
        if self.commands is not None and getattr(parsed, self.commands.dest) is None:
            self.error("no command given; one of: " + ", ".join(self.commands.choices))
        return parsed

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split())  # one line, whatever the terminal width
        self.exit(USAGE, f"{self.prog}: error: {message} ({usage}; see --help)\n")


def new_parser(prog: str, description: str) -> tuple[Parser, argparse._SubParsersAction]:
    """The program's parser and its subcommands; no command is a usage error (`parse_args`
    says which there are: argparse's own message names only the metavar)."""
    parser = Parser(prog=prog, description=description)
    parser.commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, parser.commands


def add_json_option(parser: argparse.ArgumentParser, what: str = "print JSON") -> None:
    parser.add_argument("--json", action="store_true", help=what)


def print_state(args: argparse.Namespace, state: Any, human: Callable[[Any], str]) -> None:
    """`state` as indented JSON with --json, else as `human` writes it (nothing: no line)."""
    text = json.dumps(state, indent=2) if args.json else human(state)
    if text:
        print(text)


def run(
    prog: str,
    command: Callable[[], int],
    failures: Failures = (),
    describe: Callable[[BaseException], str] = str,
) -> int:
    """Run `command`: its exit code, or 1 for a failure in `failures`, 130 for Ctrl-C."""
    try:
        return command()
    except (CommandError, *failures) as exc:
        return say(prog, describe(exc), FAILURE)
    except Interrupted as exc:
        return say(prog, str(exc), INTERRUPTED)
    except KeyboardInterrupt:
        return say(prog, "interrupted", INTERRUPTED)


def say(prog: str, message: str, code: int) -> int:
    """`<prog>: <message>` as one line on stderr (a YAML error spans lines); returns `code`."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"{prog}: {line}", file=sys.stderr)
    return code


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, not {text!r}")
    return value


def non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {text!r}")
    return value
