"""A batch job's success for node exporter's textfile collector: one file per job,
`<directory>/ccmirror_<job>.prom` with `ccmirror_job_last_success_timestamp_seconds{job=...}`,
written atomically (prometheus_client writes a temporary file and renames it), so that the
collector never reads half a file. Alert rules compare it with now: a job that stopped
succeeding is seen whether it failed, hung or was never scheduled."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

log = logging.getLogger("ccmirror.job_textfile")
METRIC = "ccmirror_job_last_success_timestamp_seconds"
JOB_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")  # also the file's name: no path in it


def textfile_path(job: str, directory: str | Path) -> Path:
    if not JOB_NAME.match(job):
        raise ValueError(f"a job name is lowercase letters, digits and _, not {job!r}")
    return Path(directory) / f"ccmirror_{job}.prom"


def record_success(job: str, directory: str | Path, now: float) -> Path:
    """Write `job`'s last success as `now` (unix seconds); the file written."""
    path = textfile_path(job, directory)
    registry = CollectorRegistry()
    gauge = Gauge(METRIC, "Unix time of the job's last successful run", ["job"], registry=registry)
    gauge.labels(job).set(now)
    write_to_textfile(str(path), registry)
    return path


def record_if_set(job: str, directory: str, now: float | None = None) -> Path | None:
    """`record_success` when the `metrics.textfile_dir` setting names a directory. The job
    has succeeded whatever happens here: a file that cannot be written is a warning (the
    alert on its age then says the job is not seen), not a failed job."""
    if not directory:
        return None
    try:
        return record_success(job, directory, time.time() if now is None else now)
    except OSError as exc:
        log.warning("%s succeeded, but %s is not written: %s", job, directory, exc)
        return None
