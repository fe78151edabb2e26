"""`make lab` reports the backup's lag during its download (#20's figure): the worst sample
while photos were stored, the download's rate over the same samples, and how long after the
download bk-1 held every stored photo."""

from __future__ import annotations

from pathlib import Path

from lab.fleet.core import LabConfig
from lab.mission import backup_watch
from lab.mission.backup_watch import BackupLag, Sample, catch_up
from lab.mission.stages import Options


def test_make_lab_watches_the_backup_and_the_e2e_does_not(monkeypatch) -> None:
    for variable in ("LAB_DOWNLOADERS", "LAB_HARVESTERS", "LAB_PHOTOS"):
        monkeypatch.delenv(variable, raising=False)
    assert Options.from_env().watch_backup
    assert not Options().watch_backup


def test_the_line_gives_the_worst_lag_during_the_download_and_its_rate() -> None:
    lag = BackupLag(
        samples=[
            Sample(5.0, 120, 2.5, 1000),
            Sample(10.0, 900, 6.0, 1400),
            Sample(15.0, 300, 9.5, 2000),
            Sample(22.0, 0, 0.0, 2000),  # after the download: the catch-up
        ],
        download_seconds=16.0,
        caught_up_after=6.0,
    )
    assert lag.line() == (
        "at most 900 photos and 9.5 s behind while 1,000 photos were stored at 100/s"
        " (3 samples); caught up 6 s after the download"
    )


def test_a_watch_without_samples_says_why() -> None:
    assert BackupLag(failures=["db-1: exited 1: no backup_target"]).line() == (
        "not measured (db-1: exited 1: no backup_target)"
    )
    assert "not caught up" in BackupLag([Sample(1, 5, 1.0, 10)], 2.0).line()


def test_catch_up_waits_for_the_front_at_zero_and_then_the_exact_check(monkeypatch) -> None:
    """The front search at 0 is not enough: photos behind it may still be on their way,
    which only the exact check (a walk of the backup's keys) sees."""
    answers = iter([Sample(20.0, 40, 3.0, 500), None, Sample(24.0, 0, 0.0, 500),
                    Sample(25.0, 0, 0.0, 500)])  # fmt: skip
    checks = iter([None, 27.0])  # the first found photos missing
    lag = BackupLag(download_seconds=18.0)
    catch_up(lag, lambda: next(answers), every=0, exact=lambda: next(checks))
    assert lag.caught_up_after == 9.0


def test_a_lab_without_bk1_is_not_sampled(tmp_path: Path) -> None:
    config = LabConfig(root=tmp_path / "lab")
    with backup_watch.watching(config, lambda: 0, every=0.01) as lag:
        pass
    assert lag.samples == [] and lag.failures == []
