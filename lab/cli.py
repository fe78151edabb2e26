"""`lab` command line: the whole mirror on one machine.

`lab up`, `status`, `shell` and `down` manage the lab's droplets (namespaces on a private
bridge, see `lab.fleet.droplets`; root only). `lab harvest-demo` runs the first stage for real:
a private MariaDB, the Flickr simulator on loopback, `harvester migrate`, `seed`, several
`harvester work` processes, and a check of what they stored against the simulator's truth.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from ccmirror_common import cli
from lab import CHECKOUT
from lab.fleet import core, droplets, salt_master
from lab.fleet import lifecycle as fleet
from lab.mission import stages as mission
from lab.mission.yfcc_from_universe import write_yfcc_sample
from lab.processes.mariadb import LocalMariaDB
from lab.sims.flickr.process import RunningSim, spawn
from lab.sims.flickr.universe import Universe

LAB_DIR = Path(os.environ.get("LAB_DIR", CHECKOUT / ".lab"))
BIN = Path(sys.executable).parent
DEMO_QUERIES = ("sunset", "river bridge", "portrait", "cat")
HOT_WINDOW_EVERY, HOT_SECOND_EVERY = 70, 100  # ten-minute buckets: about twice a day


# What a command may fail with, each reported as one line; a step of `harvest-demo` that
# fails has said why on its own stderr already.
FAILURES = (core.LabError, subprocess.CalledProcessError)
LEFT_FOR_A_LOOK = "lab: what was built stays for a look (lab status); lab down removes it"


def build_parser() -> cli.Parser:
    parser, commands = cli.new_parser("lab", __doc__.splitlines()[0])
    demo = commands.add_parser("harvest-demo", help="harvest a simulated range end to end")
    demo.add_argument("--day", default="2013-06-01", help="UTC day to harvest (2013-06-01)")
    demo.add_argument("--days", type=int, default=int(os.environ.get("LAB_DAYS", "1")))
    demo.add_argument("--workers", type=int, default=int(os.environ.get("LAB_HARVESTERS", "2")))
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--stride", type=int, default=int(os.environ.get("LAB_STRIDE", "7200")))
    commands.add_parser(
        "mission",
        help="the whole mirror through Salt (root): LAB_DOWNLOADERS, LAB_HARVESTERS, LAB_PHOTOS",
    )
    add_droplet_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run("lab", lambda: dispatch(args), FAILURES)


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "harvest-demo":
        return harvest_demo(args)
    if args.command == "mission":
        return lab_mission()
    try:
        return DROPLET_COMMANDS[args.command](args, core.LabConfig.from_env())
    except core.LabError:
        if args.command in ("up", "add"):
            print(LEFT_FOR_A_LOOK)
        raise


def add_droplet_commands(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser("up", help="build the lab's droplets (root; tears down any old lab)")
    up.add_argument(
        "--droplets",
        default=",".join(droplets.DEFAULT_DROPLETS),
        help="comma-separated droplet ids, also their hostnames and minion ids (%(default)s)",
    )
    up.add_argument("--no-salt", action="store_true", help="droplets only: no master, no minions")
    up.add_argument("--highstate", action="store_true", help="then apply highstate to them all")
    highstate = commands.add_parser("highstate", help="apply highstate, progress state by state")
    highstate.add_argument("ids", nargs="?", help="comma-separated droplet ids (default: all)")
    infra = commands.add_parser("infra", help="run tests/infra from the master (testinfra)")
    infra.add_argument("args", nargs=argparse.REMAINDER, help="-- PYTEST ARGS...")
    add = commands.add_parser("add", help="more droplets in the running lab")
    add.add_argument("ids", help="comma-separated droplet ids")
    add.add_argument("--no-salt", action="store_true", help="no minion in the new droplets")
    remove = commands.add_parser("remove", help="take droplets out of the running lab")
    remove.add_argument("ids", help="comma-separated droplet ids")
    commands.add_parser("down", help="remove every droplet, mount, link and process of the lab")
    status = commands.add_parser("status", help="droplets, addresses, PID 1 alive and answering")
    cli.add_json_option(status, "print the droplets as JSON")
    shell = commands.add_parser("shell", help="a shell (or CMD) inside a droplet")
    shell.add_argument("id")
    shell.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS... (default bash)")
    for tool in SALT_TOOLS:
        salt = commands.add_parser(tool, help=f"{tool} against the lab's master")
        salt.add_argument("args", nargs=argparse.REMAINDER, help=f"-- {tool.upper()} ARGS...")


def lab_mission() -> int:
    try:
        droplets.require_root()
        return mission.run(core.LabConfig.from_env(), mission.Options.from_env())
    except core.LabError:
        print(LEFT_FOR_A_LOOK)
        raise


def lab_up(args: argparse.Namespace, config: core.LabConfig) -> int:
    ids = droplets.parse_ids(args.droplets)
    step(f"lab up: bridge {config.bridge} {config.host_address}/24, droplets {', '.join(ids)}")

    def progress(text: str) -> None:
        print(f"  {text}", flush=True)

    if args.no_salt:
        droplets.up(config, ids, progress=progress)
        return lab_status(argparse.Namespace(json=False), config)
    fleet.up(config, ids, progress)
    healthy = lab_status(argparse.Namespace(json=False), config)
    if args.highstate:
        return lab_highstate(argparse.Namespace(ids=None), config) or healthy
    return healthy


def lab_highstate(args: argparse.Namespace, config: core.LabConfig) -> int:
    droplets.require_root()
    ids = droplets.parse_ids(args.ids) if args.ids else None
    step(f"highstate on {', '.join(ids) if ids else 'every droplet'}")
    started = time.monotonic()
    outcomes = fleet.highstate(config, ids, progress=print)
    step(f"highstate: {time.monotonic() - started:.0f}s")
    return 0 if fleet.report(outcomes) else 1


def lab_infra(args: argparse.Namespace, config: core.LabConfig) -> int:
    droplets.require_root()
    if core.load_state(config) is None:
        raise core.LabError("the lab is down: `lab up` first")
    rest = args.args[1:] if args.args[:1] == ["--"] else args.args
    return fleet.run_infra(config, rest)


def lab_add(args: argparse.Namespace, config: core.LabConfig) -> int:
    """New droplets get a minion when the lab runs a salt master (unless --no-salt)."""
    ids = droplets.parse_ids(args.ids)
    fleet.add(config, ids, progress=indented, with_minion=not args.no_salt)
    return lab_status(argparse.Namespace(json=False), config)


def indented(text: str) -> None:
    print(f"  {text}", flush=True)


def lab_remove(args: argparse.Namespace, config: core.LabConfig) -> int:
    for droplet_id in droplets.parse_ids(args.ids):
        fleet.remove(config, droplet_id, progress=lambda text: print(f"  {text}"))
    return 0


def lab_down(args: argparse.Namespace, config: core.LabConfig) -> int:
    removed = droplets.down(config)
    print("lab down: removed the lab" if removed else "lab down: nothing to remove")
    return 0


def lab_status(args: argparse.Namespace, config: core.LabConfig) -> int:
    """Exit 0 only when the lab is up, every droplet answers and, with Salt, every minion."""
    droplets.require_root()
    rows = droplets.status(config)
    state = core.load_state(config)
    master = state.services.get("salt-master") if state else None
    if master:
        pinged = salt_master.ping(config) if rows else {}
        for row in rows:
            row["minion"] = pinged.get(row["id"], False)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("lab status: no droplets (lab down)")
    else:
        print_status(rows, config, master)
    healthy = all(row["answers"] and row.get("minion", True) for row in rows)
    return 0 if rows and healthy else 1


def print_status(rows: list[dict], config: core.LabConfig, master: int | None) -> None:
    minions = f" {'minion':<6}" if master else ""
    header = f"{'droplet':<12} {'address':<15} {'pid':>8}  {'PID 1':<6} {'answers':<7}{minions}"
    print(header.rstrip())
    for row in rows:
        minion = f" {'yes' if row['minion'] else 'no':<6}" if master else ""
        line = (
            f"{row['id']:<12} {row['address']:<15} {row['pid']:>8}"
            f"  {'alive' if row['alive'] else 'dead':<6} {'yes' if row['answers'] else 'no':<7}"
            f"{minion}"
        )
        print(line.rstrip())
    if master:
        print(f"salt-master  {config.host_address:<15} {master:>8}", end="")
        print(f"  (lab salt -- '*' test.ping; config {salt_master.config_dir(config)})")


def lab_shell(args: argparse.Namespace, config: core.LabConfig) -> int:
    droplets.require_root()
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    droplet = core.find_droplet(config, args.id)
    argv = core.enter_command(droplet, command or ["/bin/bash", "-l"])
    os.execvp(argv[0], argv)  # the terminal and the exit code pass straight through


def lab_salt(args: argparse.Namespace, config: core.LabConfig) -> int:
    droplets.require_root()
    if core.load_state(config) is None:
        raise core.LabError("the lab is down: `lab up` first")
    rest = args.args[1:] if args.args[:1] == ["--"] else args.args
    argv = salt_master.salt_command(config, args.command, rest)
    os.execv(argv[0], argv)


SALT_TOOLS = ("salt", "salt-run", "salt-key", "salt-cp")
DROPLET_COMMANDS = {
    "up": lab_up,
    "add": lab_add,
    "remove": lab_remove,
    "highstate": lab_highstate,
    "infra": lab_infra,
    "down": lab_down,
    "status": lab_status,
    "shell": lab_shell,
}
DROPLET_COMMANDS.update({tool: lab_salt for tool in SALT_TOOLS})


def harvest_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    start = int(datetime.fromisoformat(args.day).replace(tzinfo=UTC).timestamp())
    end = start + args.days * 86400
    logs = LAB_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    step("MariaDB (private instance under .lab/mariadb, port 13307)")
    db = LocalMariaDB(LAB_DIR / "mariadb", port=13307)
    db.ensure_running()
    db.fresh_database("ccmirror_lab")

    key = "lab-" + secrets.token_hex(8)  # a throw-away key, never written anywhere
    step("Flickr simulator on 127.0.0.1 (the 3,600 calls/hour per key lifted for the demo)")
    sim = spawn(*sim_options(args), "--rate-limit", "0", key=key)
    try:
        env = dict(
            os.environ,
            CCMIRROR_DB_URL=db.url("ccmirror_lab"),
            CCMIRROR_FLICKR_API_URL=sim.api_url,
            CCMIRROR_FLICKR_API_KEY=key,
            CCMIRROR_FLICKR_RATE_LIMIT="0",
        )
        return run_harvest(args, env, sim, start, end, logs, started)
    finally:
        sim.stop()


def sim_options(args: argparse.Namespace) -> list[str]:
    """The simulated universe: hot windows and hot seconds every day or so."""
    return [
        "--seed",
        str(args.seed),
        "--start",
        "2004-01-01",
        "--hot-window-every",
        str(HOT_WINDOW_EVERY),
        "--hot-second-every",
        str(HOT_SECOND_EVERY),
    ]


def universe(args: argparse.Namespace) -> Universe:
    """The simulator's universe, in this process (for the YFCC100M sample)."""
    return Universe(
        seed=args.seed, hot_window_every=HOT_WINDOW_EVERY, hot_second_every=HOT_SECOND_EVERY
    )


def run_harvest(args, env, sim: RunningSim, start, end, logs, started) -> int:
    harvester = str(BIN / "harvester")
    subprocess.run([harvester, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    day, last = iso(start), iso(end)
    # The old system's order: the 2014 snapshot first, then the API harvest over it.
    sample = LAB_DIR / "yfcc100m-sample.tsv"
    lines = write_yfcc_sample(universe(args), start - 86400, end - 1, sample)
    step(
        f"YFCC100M sample: {lines['lines']:,} lines of {iso(start - 86400)} .. {iso(end)},"
        f" {lines['older_license']:,} with the license of 2014"
    )
    subprocess.run([harvester, "import-yfcc", str(sample)], env=env, check=True)
    reconcile_step(harvester, env)

    step(f"seeding time slices {day} .. {last} and {len(DEMO_QUERIES)} search texts")
    subprocess.run(
        [
            harvester,
            "seed",
            "timeslices",
            "--start",
            day,
            "--end",
            last,
            "--stride",
            str(args.stride),
        ],
        env=env,
        check=True,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as queries:
        queries.write("\n".join(DEMO_QUERIES) + "\n")
    subprocess.run(
        [harvester, "seed", "queries", queries.name, "--start", day, "--end", last],
        env=env,
        check=True,
    )
    os.unlink(queries.name)

    step(f"{args.workers} harvester workers (logs in {logs})")
    workers = [
        subprocess.Popen(
            [harvester, "work", "--worker", f"hv-{n}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(logs / f"hv-{n}.log", "w"),  # noqa: SIM115 - the worker's own log
        )
        for n in range(1, args.workers + 1)
    ]
    shown = 0.0
    while any(w.poll() is None for w in workers):
        # Redrawn in place on a terminal; a line every 10 s in a log.
        if sys.stdout.isatty() or time.monotonic() - shown >= 10:
            show_progress(harvester, env)
            shown = time.monotonic()
        time.sleep(1)
    show_progress(harvester, env)
    print()
    failed = [w.args[3] for w in workers if w.returncode != 0]
    reconcile_step(harvester, env)

    status = json.loads(
        subprocess.run(
            [harvester, "status", "--json"], env=env, check=True, capture_output=True, text=True
        ).stdout
    )
    truth = sim.truth(start, end - 1)
    return summary(status, truth, env, failed, time.monotonic() - started)


def reconcile_step(harvester: str, env: dict) -> None:
    step("reconcile: every source into the images catalog")
    subprocess.run([harvester, "reconcile"], env=env, check=True)


def show_progress(harvester: str, env: dict) -> None:
    result = subprocess.run(
        [harvester, "status", "--json"], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        return
    status = json.loads(result.stdout)
    tasks = status["tasks"]
    total = sum(tasks.values())
    finished = tasks["done"] + tasks["failed"]
    photos = sum(status["photos"].values())
    sys.stdout.write(
        ("\r" if sys.stdout.isatty() else "\n")
        + f"  tasks {finished}/{total} done, {tasks['running']} running,"
        f" {photos:,} photos, {status['calls_per_second']} calls/s   "
    )
    sys.stdout.flush()


def summary(status: dict, truth: set[int], env: dict, failed: list, seconds: float) -> int:
    from harvester.db import connect

    conn = connect(env["CCMIRROR_DB_URL"])
    with conn.cursor() as cur:
        cur.execute("SELECT photo_id FROM flickr_timeslice_photos")
        stored = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT photo_id FROM flickr_query_photos")
        unique = stored | {row[0] for row in cur.fetchall()}
        cur.execute("SELECT sources, COUNT(*) FROM images GROUP BY sources ORDER BY 2 DESC")
        by_sources = ", ".join(f"{k} {n:,}" for k, n in cur.fetchall())
        cur.execute("SELECT COUNT(*) FROM image_license_changes")
        license_changes = cur.fetchone()[0]
    conn.close()
    exact = stored == truth
    tasks = status["tasks"]
    ideal = max(1, -(-len(unique) // 500))
    photos = ", ".join(f"{source} {n:,}" for source, n in status["photos"].items())
    print("\n== harvest summary ==")
    print(f"  photos by source:  {photos} ({len(unique):,} unique)")
    print(f"  search tasks:      {tasks['done']:,} done, {tasks['failed']:,} failed")
    print(
        f"  API calls:         {status['api_calls']:,}, {status['api_calls'] / ideal:.2f}x"
        f" the ideal ceil(n/500) = {ideal:,}"
    )
    print(
        f"  ground truth:      {len(truth):,} CC photos in the range; time slices stored"
        f" {len(stored):,}: {'EXACT' if exact else 'MISMATCH'}"
    )
    images = ", ".join(f"{state} {n:,}" for state, n in status["images"].items())
    print(f"  catalog:           {images}; {license_changes:,} license changes recorded")
    print(f"  seen by:           {by_sources}")
    print(f"  time:              {seconds:.1f}s")
    if failed:
        print(f"  workers failed:    {failed} (see {LAB_DIR / 'logs'})")
    return 0 if exact and not failed and tasks["failed"] == 0 else 1


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")
