"""The whole mirror on one machine, run through Salt as an operator runs it (`make lab`).

Stages, each timed and shown as it goes:

1. core: `lab up` of the static core (db-1, st-1, bk-1, and with `make lab` a droplet of the
   master role for Prometheus and Alertmanager; the salt master on the host), the Flickr
   simulator (a universe with hot spots, its image URLs on the lab's image host), the image
   host and the DigitalOcean simulator, all on the lab's bridge;
2. `salt-run secrets.init`, then highstate of the core;
3. harvesters: Flickr keys issued (the simulator accepts them), `fleet.up role=harvester`,
   `secrets.set_flickr_key` per harvester from a 0600 file, `fleet.up` again to configure
   them;
4. `orch.harvest` over a range of `photos` CC photos or so, plus a YFCC100M sample of the
   same range copied to the database droplet;
5. `orch.download`: downloaders up through the DigitalOcean simulator, the queue drained,
   downloaders down; some photos fault on the image host on purpose (gone, bad, retried);
6. `audit.storage`, `fleet.down` of the harvesters;
7. the check against the ground truth and a summary a person reads in ten seconds, with
   where the operator's page, Prometheus and Alertmanager are.

The e2e tests drive the same stages one by one and inject faults between them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pymysql
import yaml

from lab.fleet import lifecycle as fleet
from lab.fleet import salt_master, wheelhouse
from lab.fleet.core import LabConfig, LabError, LabState, lab_lock, load_state
from lab.mission import backup_watch, mirror_check
from lab.mission.background import beside, progress_lines
from lab.mission.coverage import coverage_line, lag_line, photos_by_source, recheck_line
from lab.mission.watch import watch_lines
from lab.mission.yfcc_from_universe import write_yfcc_sample
from lab.sims.digitalocean import service as do_fleet
from lab.sims.flickr import service as flickr_service
from lab.sims.flickr.universe import Universe
from lab.sims.image_host import service as image_service

CORE = ("db-1", "st-1", "bk-1")  # bk-1: the backup cluster (salt/backup)
BUCKET = 600  # the universe's ten-minute buckets
HOT_WINDOW_EVERY, HOT_SECOND_EVERY = 70, 100  # about twice a day, as in harvest-demo
YFCC_ON_DB = "/var/lib/ccmirror/yfcc-sample.tsv"
# What the image host does to one photo in `fault_every`, in turn (lab/mission/mirror_check.py
# knows how each must end: gone, failed as bad, stored after a retry).
FAULTS = ("404", "placeholder", "not_image", {"mode": "503", "times": 1}, "410", "html")
SALT_RUN_SECONDS = 1800
# Seconds between batch.wait's looks at the fleet. Each look is three jobs on db-1 and one on
# every worker, most starting a CLI there: one `batch.status` took 8.5 s in the e2e's busy
# lab. Every 3 s, the looks kept the lab's cores busy for the whole download, slowing each
# fault's highstate beside them.
HARVEST_WAIT_INTERVAL = 5  # the harvest lasts a minute or less
DOWNLOAD_WAIT_INTERVAL = 20


RECHECK = {"calls_per_hour": 1800}  # half of a lab key's 3,600 calls an hour


def download_pillar(count: int) -> dict:
    """orch.download's pillar for `count` downloaders, at the lab's pace."""
    return {"download": {"count": count, "interval": DOWNLOAD_WAIT_INTERVAL, "timeout": 1800}}


@dataclass
class Options:
    downloaders: int = 2
    harvesters: int = 2
    photos: int = 3000  # about: the range grows by ten minutes until it holds this many
    day: str = "2013-06-01"
    seed: int = 7
    fault_every: int = 40
    # Flickr's safety levels: unsigned calls see safe photos only, so a harvest that does not
    # sign its calls misses these shares and the mirror check says so (#21's universe).
    moderate_share: float = 0.10
    restricted_share: float = 0.05
    # The site's own pillar settings by role (the private root's settings/<role>.sls), e.g.
    # the e2e test's short leases; none by default: the roles' own defaults.
    settings: dict[str, dict] = field(default_factory=dict)
    # The static core's droplets; "master" adds a droplet of the master role (the lab's
    # own master is the host), so its states are applied and verified too.
    core: tuple[str, ...] = CORE
    watch_backup: bool = False  # the backup's lag sampled during the download (#20's figure)

    @classmethod
    def from_env(cls) -> Options:
        """`make lab`'s options: LAB_* sizes, the harvesters' background re-check on
        (pillar harvester:recheck, off by default in a real site's budget), and a droplet of
        the master role (Prometheus, Alertmanager), and the backup's lag watched."""
        settings = {"harvester": {"harvester": {"recheck": RECHECK}}}
        options = cls(settings=settings, core=("master", *CORE), watch_backup=True)
        for name, variable in (
            ("downloaders", "LAB_DOWNLOADERS"),
            ("harvesters", "LAB_HARVESTERS"),
            ("photos", "LAB_PHOTOS"),
        ):
            if os.environ.get(variable):
                value = int(os.environ[variable])
                if value < 1:
                    raise LabError(f"{variable} must be at least 1, not {value}")
                setattr(options, name, value)
        return options


@dataclass
class Mission:
    config: LabConfig
    options: Options
    show: Callable[[str], None] = print
    own_checkout: bool = False  # serve a copy of the checkout (a release edits it mid-run)
    stages: list[tuple[str, float]] = field(default_factory=list)
    # The universe's CC photos of the harvested range by safety level (set by `harvest`).
    truth_by_safety: dict[int, list[int]] = field(default_factory=dict)
    taken_down: set[int] = field(default_factory=set)  # photos a takedown withdrew
    start: int = 0  # the harvested range, unix seconds, end exclusive
    end: int = 0
    truth: list[int] = field(default_factory=list)  # the CC photo ids of the range
    faults: dict[int, str | dict] = field(default_factory=dict)  # what the image host does
    audit_result: dict | None = None
    storage_result: dict | None = None
    backup_lag: backup_watch.BackupLag | None = None
    flickr_keys: dict[str, dict[str, str]] = field(default_factory=dict)  # issued, by minion

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.show(f"==> {name}")
        started = time.monotonic()
        yield
        self.stages.append((name, time.monotonic() - started))
        self.show(f"    {name}: {time.monotonic() - started:.0f}s")

    def salt_run(self, *args: str, timeout: float = SALT_RUN_SECONDS, check: bool = True) -> dict:
        """`salt-run ARGS` with its progress events shown as they come; its return, or
        (`check`) LabError with what failed."""
        command = salt_master.salt_command(
            self.config, "salt-run", ["--out=json", "--out-indent=-1", *args]
        )
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        documents = []
        try:
            for line in process.stdout:
                document = _json_line(line)
                if document is None:
                    continue
                if isinstance(document, dict) and document.get("suffix") == "progress":
                    self.show(f"    {document['event'].get('message', '')}")
                else:
                    documents.append(document)
            stderr = process.stderr.read()
            rc = process.wait()
        finally:
            timer.cancel()
        ret = documents[-1] if documents else None
        if not isinstance(ret, dict):
            raise LabError(f"salt-run {' '.join(args)} returned nothing ({rc}): {stderr[-2000:]}")
        if check and (rc != 0 or ret.get("result") is False):
            raise LabError(f"salt-run {' '.join(args)} failed ({rc}): {ret or stderr[-2000:]}")
        return ret

    def orchestrate(self, sls: str, pillar: dict, timeout: float = SALT_RUN_SECONDS) -> dict:
        ret = self.salt_run(
            "state.orchestrate", sls, f"pillar={json.dumps(pillar)}", timeout=timeout, check=False
        )
        data = ret.get("data", ret)
        steps = next(iter(data.values()), {}) if isinstance(data, dict) else {}
        failed = [
            f"{step.get('__id__', key)}: {str(step.get('comment', ''))[:300]}"
            for key, step in (steps.items() if isinstance(steps, dict) else [])
            if isinstance(step, dict) and step.get("result") is False
        ]
        if failed or ret.get("retcode"):
            raise LabError(f"{sls} failed: " + "; ".join(failed or [str(ret)[:1000]]))
        return ret

    def catalog(self) -> pymysql.Connection:
        """The catalog on db-1, read from the host (MariaDB's root over its socket)."""
        return mirror_check.lab_catalog(self.config)

    @property
    def checkout(self) -> Path:
        """What the master serves and releases from."""
        return wheelhouse.served_checkout(self.config)

    def state(self) -> LabState:
        state = load_state(self.config)
        if state is None:
            raise LabError("the lab is down")
        return state

    # ------------------------------------------------------------------ stages
    def core(self) -> None:
        core = list(self.options.core)
        with self.stage(f"core: {', '.join(core)}, the salt master, the simulators"):
            # Tears down an earlier lab first: `make lab` twice in a row starts afresh.
            fleet.up(self.config, core, self._indented, own_checkout=self.own_checkout)
            self._simulators()

    def _simulators(self) -> None:
        universe_options = [
            "--seed", str(self.options.seed), "--start", "2004-01-01",
            "--hot-window-every", str(HOT_WINDOW_EVERY),
            "--hot-second-every", str(HOT_SECOND_EVERY),
            "--image-base", image_service.base_url(self.config),
            "--rate-limit", "0",
            "--moderate-share", str(self.options.moderate_share),
            "--restricted-share", str(self.options.restricted_share),
        ]  # fmt: skip
        harvesters = range(1, self.options.harvesters + 1)
        # Every harvester signs (an operator runs `harvester flickr-auth` once per key).
        self.flickr_keys = {f"hv-{n}": flickr_service.new_key(signed=True) for n in harvesters}
        issued = [pair["key"] for pair in self.flickr_keys.values()]
        flickr_service.configure(
            self.config, universe_options, issued, list(self.flickr_keys.values())
        )
        with lab_lock(self.config):
            state = self.state()
            flickr_service.restart(self.config, state, salt_master.private_pillar(self.config))
            image_service.ensure(self.config, state)
            sim = do_fleet.ensure_service(self.config, state)
            state.save(self.config.state_file)
        do_fleet.write_master_settings(self.config, sim)
        self.show(
            f"    Flickr simulator {flickr_service.api_url(self.config)}, image host"
            f" {image_service.base_url(self.config)}, DigitalOcean simulator {sim.end_point}"
        )

    def secrets_and_core_highstate(self) -> None:
        with self.stage("secrets.init, highstate of the core"):
            ret = self.salt_run("secrets.init")
            self.show(f"    secrets.init: {len(ret['minions'])} minions with secrets")
            self._write_settings()
            outcomes = fleet.highstate(
                self.config,
                list(self.options.core),
                progress=lambda line: None,
                prepare_first=False,
            )
            fleet.report(outcomes, self._indented)
            if not all(outcome.ok for outcome in outcomes.values()):
                raise LabError("highstate of the core failed")

    def _write_settings(self) -> None:
        """The site's settings/<role>.sls, as an operator writes them by hand (or none)."""
        root = salt_master.private_pillar(self.config)
        directory = root / "settings"
        shutil.rmtree(directory, ignore_errors=True)
        # The lab's own (storage's small volumes), unless the mission's name that role too.
        fleet.write_lab_settings(root)
        for role, settings in self.options.settings.items():
            directory.mkdir(exist_ok=True)
            (directory / f"{role}.sls").write_text(yaml.safe_dump(settings))
            shown = {key: "(secret)" if key == "monitoring" else value
                     for key, value in settings.items()}  # fmt: skip
            self.show(f"    site settings for {role}: {json.dumps(shown)}")

    def harvesters_up(self) -> None:
        count = self.options.harvesters
        with self.stage(f"fleet.up of {count} harvesters, each with its own Flickr key"):
            up = self.salt_run("fleet.up", "role=harvester", f"count={count}", "highstate=False")
            names = sorted([d["name"] for d in up["made"]] + up["kept"])
            for name in names:
                self._set_flickr_key(name)
            self.salt_run("fleet.up", "role=harvester", f"count={count}")

    def _set_flickr_key(self, minion: str) -> None:
        """As an operator does: the key in a root-only file, only its path on the command
        line (Salt records a runner's arguments in its job cache)."""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=self.config.root) as key_file:
            os.chmod(key_file.name, 0o600)
            yaml.safe_dump(self.flickr_keys[minion], key_file)
            key_file.flush()
            self.salt_run(
                "secrets.set_flickr_key", f"minion={minion}", f"from_file={key_file.name}"
            )

    def choose_range(self) -> Universe:
        """From `day` on, ten minutes at a time until the universe holds `photos` CC photos."""
        universe = Universe(
            seed=self.options.seed,
            hot_window_every=HOT_WINDOW_EVERY,
            hot_second_every=HOT_SECOND_EVERY,
            image_base=image_service.base_url(self.config),
            moderate_share=self.options.moderate_share,
            restricted_share=self.options.restricted_share,
        )
        self.start = int(datetime.fromisoformat(self.options.day).replace(tzinfo=UTC).timestamp())
        self.end = self.start + BUCKET
        while len(universe.truth(self.start, self.end - 1)) < self.options.photos:
            self.end += BUCKET
        return universe

    def harvest(self, during: Callable[[], None] | None = None) -> None:
        """`during` runs beside the orchestration (the e2e tests' faults)."""
        universe = self.choose_range()
        span = f"{_iso(self.start)} .. {_iso(self.end)}"
        with self.stage(f"orch.harvest of {span}, and a YFCC100M sample of it"):
            sample = self.config.root / "yfcc100m-sample.tsv"
            lines = write_yfcc_sample(universe, self.start, self.end - 1, sample)
            self.show(f"    YFCC100M sample: {lines['lines']:,} lines, salt-cp to db-1")
            copied = salt_master.salt_command(
                self.config, "salt-cp", ["--chunked", "db-1", str(sample), YFCC_ON_DB]
            )
            subprocess.run(copied, check=True, capture_output=True, timeout=300)
            pillar = {
                "harvest": {
                    "kind": "timeslices",
                    "start": self.start,
                    "end": self.end,
                    "stride": BUCKET,
                    "yfcc": [YFCC_ON_DB],
                    "interval": HARVEST_WAIT_INTERVAL,
                    "timeout": 1200,
                }
            }
            with progress_lines(self.show, self._harvest_line), beside(during):
                self.orchestrate("orch.harvest", pillar)
        self.truth_by_safety = universe.truth_by_safety(self.start, self.end - 1)
        self.plan_faults(universe.truth(self.start, self.end - 1))

    def plan_faults(self, truth: list[int]) -> None:
        """One photo in `fault_every` faults on the image host, the kinds in turn."""
        self.truth = sorted(truth)
        self.faults = {
            photo_id: FAULTS[n % len(FAULTS)]
            for n, photo_id in enumerate(self.truth[:: self.options.fault_every])
        }
        image_service.set_faults(self.config, self.faults)

    def download(self, during: Callable[[], None] | None = None) -> None:
        """`during` runs beside the orchestration (the e2e tests' faults)."""
        count = self.options.downloaders
        with self.stage(f"orch.download with {count} downloaders"):
            pillar = download_pillar(count)
            watch = (
                backup_watch.watching(self.config, self._stored)
                if self.options.watch_backup
                else contextlib.nullcontext()
            )
            with (
                progress_lines(self.show, self._download_line),
                beside(during),
                watch as self.backup_lag,
            ):
                self.orchestrate("orch.download", pillar)

    def audit(self) -> dict:
        with self.stage("storage audit"):
            self.audit_result = self.salt_run("audit.storage")
            return self.audit_result

    def storage_status(self) -> dict | None:
        """SeaweedFS on the storage droplets, as `salt-run storage.status` sees it."""
        with self.stage("storage status"):
            self.storage_result = self.salt_run("storage.status")
            return self.storage_result

    def check(self) -> mirror_check.MirrorReport:
        """The catalog and storage against the ground truth (no stage: it is the lab's look,
        not the operator's)."""
        truth = mirror_check.GroundTruth(
            self.truth, self.faults, image_service.IMAGE_SIZE, self.taken_down
        )
        with self.catalog() as conn:
            return mirror_check.check_mirror(conn, mirror_check.lab_storage(self.config), truth)

    def summary(self, report: mirror_check.MirrorReport, seconds: float) -> None:
        with self.catalog() as conn, conn.cursor() as cur:
            api, queries, yfcc = photos_by_source(cur)
        self.show(f"\n== the mirror, {_iso(self.start)} .. {_iso(self.end)} ==")
        self.show(f"  harvested:  time slices {api:,}, search texts {queries:,}, YFCC100M {yfcc:,}")
        if self.truth_by_safety:
            with self.catalog() as conn:
                self.show(f"  coverage:   {coverage_line(conn, self.truth_by_safety)}")
                self.show(f"  catalog:    {lag_line(conn)}")
                self.show(f"  {recheck_line(conn)}")
        for line in report.summary_lines():
            self.show(f"  {line}")
        if self.audit_result is not None:
            self.show(f"  audit:      {self.audit_result.get('comment')}")
        if self.storage_result is not None:
            self.show(f"  seaweedfs:  {self.storage_result.get('comment')}")
        if self.backup_lag and (self.backup_lag.samples or self.backup_lag.failures):
            self.show(f"  backup lag: {self.backup_lag.line()}")
        times = ", ".join(
            f"{name.split(':')[0].split(' of ')[0]} {t:.0f}s" for name, t in self.stages
        )
        self.show(f"  time:       {seconds:.0f}s ({times})")
        for line in watch_lines({i: d.address for i, d in self.state().droplets.items()}):
            self.show(f"  {line}")
        if not report.ok:
            self.show(report.problem_text())

    def harvesters_down(self) -> None:
        with self.stage("fleet.down of the harvesters"):
            count = self.options.harvesters
            self.salt_run("fleet.down", "role=harvester", f"count={count}")

    # ------------------------------------------------------------------ progress
    def _harvest_line(self) -> str:
        with self.catalog() as conn, conn.cursor() as cur:
            cur.execute("SELECT state, COUNT(*) FROM search_tasks GROUP BY state")
            tasks = dict(cur.fetchall())
            api, _, yfcc = photos_by_source(cur)
        done = tasks.get("done", 0) + tasks.get("failed", 0)
        return f"tasks {done}/{sum(tasks.values())} done; photos: API {api:,}, YFCC100M {yfcc:,}"

    def _download_line(self) -> str:
        with self.catalog() as conn, conn.cursor() as cur:
            cur.execute("SELECT state, COUNT(*) FROM images GROUP BY state")
            states = dict(cur.fetchall())
            cur.execute(
                "SELECT COUNT(*), COALESCE(SUM(items - reported), 0) FROM leases"
                " WHERE state = 'active'"
            )
            leases, in_flight = cur.fetchone()
        shown = ", ".join(f"{state} {n:,}" for state, n in sorted(states.items()))
        return f"catalog: {shown}; {leases} leases out, {in_flight:,} photos in them"

    def _stored(self) -> int:
        with self.catalog() as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM stored_images")
            return cur.fetchone()[0]

    def _indented(self, text: str) -> None:
        self.show(f"    {text}")


def _json_line(line: str) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def run(config: LabConfig, options: Options, show: Callable[[str], None] = print) -> int:
    """The whole mission; 0 when the mirror came out exactly as the ground truth says."""
    mission = Mission(config, options, show)
    started = time.monotonic()
    mission.core()
    mission.secrets_and_core_highstate()
    mission.harvesters_up()
    mission.harvest()
    mission.download()
    mission.audit()
    mission.storage_status()
    mission.harvesters_down()
    report = mission.check()
    mission.summary(report, time.monotonic() - started)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(run(LabConfig.from_env(), Options.from_env()))
