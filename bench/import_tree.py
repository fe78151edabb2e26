"""`harvester import-tree`: files/s and CPU per file of adopting an old tree, against the
downloader's bare push of the same photos, one run.

A catalog of N photos (lab/mission/catalog_images.py) in a private MariaDB, and a tree of N
files in both old layouts (lab/mission/old_tree.py: tiny valid JPEGs, half under the old
system's Flickr names, half in the rsync layout; `--faults` percent of them not images or
truncated), imported into a private SeaweedFS cluster shaped as the lab's (a master, two
volume servers with replication 001, a filer, the S3 gateway; a versioned bucket with object
lock) by:

- import: `harvester import-tree DIR --json` as a process (walk, match by id, image checks,
  SHA-256 and MD5, the catalog lookups, `push_objects`, the catalog marked stored);
- again: the same command a second time (every file skipped: a re-run's cost);
- push: `downloader.s3.push.push_objects` of the same good files to a fresh bucket in a
  process of its own, digests known (what a downloader does with a fetched lease): the peer.

CPU is user + system of the child process (getrusage), per file; the servers' is not counted.
Each run has a fresh catalog and fresh buckets; medians and ratios are printed at the end.

    .venv/bin/python bench/import_tree.py [--files 10000] [--repeat 3] [--faults 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harvester.db import connect  # noqa: E402
from harvester.migrate import migrate  # noqa: E402
from lab.mission import old_tree  # noqa: E402
from lab.mission.catalog_images import fill_images  # noqa: E402
from lab.processes import seaweedfs_s3 as s3  # noqa: E402
from lab.processes.child import free_port  # noqa: E402
from lab.processes.mariadb import LocalMariaDB  # noqa: E402
from lab.processes.seaweedfs import ClusterSettings, start_cluster  # noqa: E402

VENV_BIN = Path(sys.executable).parent
KINDS = ("import", "again", "push")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--faults", type=int, default=10, help="percent of bad files (10)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--db-port", type=int, default=0, help="a free one (0)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(push_child(json.loads(Path(args.child).read_text()))))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))  # the servers stopped too
    scratch = Path(tempfile.mkdtemp(prefix="import-tree-"))
    db = LocalMariaDB(scratch / "mariadb", port=args.db_port or free_port())
    cluster = None
    try:
        db.ensure_running()
        # Each bucket takes six volumes on each server at its first PUT: two buckets a run.
        settings = ClusterSettings(volume_max=20 * args.repeat)  # room to spare, as weed grows
        cluster = start_cluster(scratch / "seaweedfs", settings)
        results: dict[str, list[dict]] = {kind: [] for kind in KINDS}
        for run in range(args.repeat):
            for kind, figures in one_run(db, cluster, scratch / f"run-{run}", run, args).items():
                results[kind].append(figures)
                print(f"run {run + 1} {kind:6} {figures['files_per_s']:7.0f} files/s"
                      f"  {figures['cpu_ms_per_file']:.3f} CPU ms/file", flush=True)  # fmt: skip
        report(results, args)
    finally:
        if cluster is not None:
            cluster.stop()
        db.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def one_run(db: LocalMariaDB, cluster, base: Path, run: int, args) -> dict[str, dict]:
    url = db.fresh_database(f"ccmirror_bench_import_{run}")
    conn = connect(url)
    migrate(conn)
    fill_images(conn, args.files)
    conn.close()
    tree = old_tree.OldTree(base / "tree")
    bad = args.files * args.faults // 100
    half = (args.files - bad) // 2
    old_tree.write_good(tree, range(1, half + 1), "old")
    old_tree.write_good(tree, range(half + 1, args.files - bad + 1), "rsync")
    old_tree.write_faults(tree, range(args.files - bad + 1, args.files - bad // 2 + 1), "text")
    old_tree.write_faults(tree, range(args.files - bad // 2 + 1, args.files + 1), "truncated")
    bucket = s3.writable_bucket(cluster, f"import-{run}")
    auditor = s3.new_key()
    s3.add_identity(cluster, f"auditor-import-{run}", auditor, bucket.name, s3.AUDITOR_ACTIONS)
    s3.wait_known(cluster, auditor, bucket.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCMIRROR_")}
    env |= {"CCMIRROR_DB_URL": url, "CCMIRROR_STORAGE_ENDPOINT": cluster.s3_url,
            "CCMIRROR_STORAGE_BUCKET": bucket.name,
            "CCMIRROR_STORAGE_ACCESS_KEY": auditor.access_key,
            "CCMIRROR_STORAGE_SECRET_KEY": auditor.secret_key}  # fmt: skip
    figures = {}
    for kind, uploads in (("import", len(tree.good)), ("again", 0)):
        figures[kind], result = timed(
            [str(VENV_BIN / "harvester"), "import-tree", str(tree.root), "--json",
             "--concurrency", str(args.concurrency)], env, tree.files)  # fmt: skip
        if json.loads(result)["uploaded"] != uploads:
            sys.exit(f"{kind}: uploaded {json.loads(result)['uploaded']}, not {uploads}")
    peer = s3.writable_bucket(cluster, f"push-{run}")
    spec = base / "push.json"
    files = [str(p.relative_to(tree.root)) for p in tree.good.values()]
    spec.write_text(json.dumps({"root": str(tree.root), "concurrency": args.concurrency,
                                "files": files, "target": peer.storage_setting()}))  # fmt: skip
    figures["push"], _ = timed(
        [sys.executable, __file__, "--child", str(spec)], env, len(tree.good)
    )
    db.drop_database(f"ccmirror_bench_import_{run}")
    shutil.rmtree(base, ignore_errors=True)
    return figures


def timed(argv: list[str], env: dict, files: int) -> tuple[dict, str]:
    before = children_cpu()
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{argv[1]} failed:\n{done.stderr[-3000:]}")
    cpu = children_cpu() - before
    return {"files_per_s": files / seconds, "cpu_ms_per_file": cpu * 1000 / files}, done.stdout


def push_child(spec: dict) -> dict:
    import hashlib

    from downloader.s3.push import push_objects
    from downloader.s3.target import S3Target

    root = Path(spec["root"])
    keys = {f"images/{n}.jpg": path for n, path in enumerate(spec["files"])}
    # The journal knows each photo's digest from the fetch: as in the daemon.
    digests = {key: hashlib.sha256((root / p).read_bytes()).hexdigest() for key, p in keys.items()}
    result = push_objects(root, keys, S3Target.from_mapping(spec["target"]), digests=digests,
                          concurrency=spec["concurrency"], retry_seconds=60)  # fmt: skip
    return {"files": result.files_transferred}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report(results: dict[str, list[dict]], args) -> None:
    def median(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in results[kind])

    print(f"\n{args.files:,} files ({args.faults}% bad), {args.repeat} runs, medians")
    for kind in KINDS:
        print(f"{kind:6} {median(kind, 'files_per_s'):7.0f} files/s"
              f"  {median(kind, 'cpu_ms_per_file'):.3f} CPU ms/file")  # fmt: skip
    rate = median("import", "files_per_s") / median("push", "files_per_s")
    cpu = median("import", "cpu_ms_per_file") / median("push", "cpu_ms_per_file")
    print(f"import/push: {rate:.2f}x the files/s, {cpu:.2f}x the CPU per file")


if __name__ == "__main__":
    main()
