"""How the e2e's faults pace themselves: each line shown with the time (where the minutes
go), each fault waits until the downloaders fetch again, and a failed fault ends the image
host's slow phase so that the download ends in minutes and the failure is told."""

from __future__ import annotations

import time
from collections.abc import Callable

from lab.mission import stages as mission
from lab.sims.image_host import service as image_service
from tests.conftest import wait_for

FETCHED_AGAIN = 25  # image requests after a fault before the next one


def show(shown: list[str], line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)  # where the minutes go
    shown.append(line)


def fetching_again(m: mission.Mission, timeout: float = 240) -> None:
    """The downloaders fetch again after a fault: FETCHED_AGAIN more image requests. (A
    photo counts as stored only when its whole lease is pushed, minutes at this latency.)"""
    target = image_service.stats(m.config)["total"] + FETCHED_AGAIN
    wait_for(
        lambda: image_service.stats(m.config)["total"] >= target,
        timeout,
        "the downloaders to fetch again",
        1,
    )


def full_speed_on_failure(m: mission.Mission, faults: Callable[[], None]) -> Callable[[], None]:
    """`faults` whose failure also ends the image host's slow phase: the download then ends
    in minutes and the failure is told, instead of a crawl to the download's timeout."""

    def run() -> None:
        try:
            faults()
        except BaseException:
            image_service.set_latency(m.config, 0)
            raise

    return run
