"""What runs beside a mission's long stage: a line of progress every few seconds, and the
e2e tests' faults in a thread whose failure is raised when the stage is done."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pymysql

from lab.fleet.core import LabError


@contextmanager
def progress_lines(
    show: Callable[[str], None], line: Callable[[], str], every: float = 5.0
) -> Iterator[None]:
    """`line()` shown every `every` seconds while the body runs, when it says something new
    (else once a minute)."""
    stop = threading.Event()

    def report() -> None:
        last, shown = "", 0.0
        while not stop.wait(every):
            # The database restarting: the next line will tell.
            with contextlib.suppress(pymysql.Error, OSError, LabError):
                text = line()
                if text != last or time.monotonic() - shown >= 60:  # news, or alive
                    show(f"    {text}")
                    last, shown = text, time.monotonic()

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def beside(work: Callable[[], None] | None) -> Iterator[None]:
    """`work` in a thread while the body runs; its exception, if any, is raised after."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            failure.append(error)

    thread = threading.Thread(target=run, daemon=True) if work else None
    if thread:
        thread.start()
    try:
        yield
    except BaseException as error:
        if thread:
            thread.join()
        if failure:  # often the cause: say it beside the body's own error
            error.add_note(f"and beside it: {failure[0]!r}")
        raise
    if thread:
        thread.join()
    if failure:
        raise failure[0]
