"""The downloader's push, S3 against rsync: photos/s and CPU per photo, the same files, one run.

N generated files of 5-20 KB at their storage-layout paths (images/<aa>/<bb>/<id>.jpg and
a manifest) in a spool tree are pushed, each run to fresh keys/directories, by:

- s3: `downloader.s3.push.push_objects` (botocore's signer over urllib3, `--concurrency`
  PUTs in flight, each with its SHA-256 known beforehand as the journal knows it) into a
  private SeaweedFS cluster shaped as the lab's (`lab/processes/seaweedfs.py`: a master, two
  volume servers with replication 001, a filer, the S3 gateway; the images bucket with object
  lock and its default retention, through a writer identity with Write on it alone);
- rsync: `downloader.push.push_tree` (rsync over SSH, one stream) into a private sshd +
  rrsync write-only storage (`lab/processes/storage.py`; needs root, as the tests do).

Each push runs in a child process; its CPU is user + system of the child and everything it
waited for (ssh and rsync included, from getrusage), per photo. The servers' CPU is not
counted for either. Runs alternate; medians and the ratio s3/rsync are printed at the end.

    .venv/bin/python bench/s3_push.py [--photos 5000] [--repeat 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ccmirror_common.layout import image_path  # noqa: E402

BENCH_ROOT = Path("/var/lib/ccmirror-bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, json.loads(Path(args.spec).read_text()))))
        return
    from lab.processes.seaweedfs import start_cluster
    from lab.processes.seaweedfs_s3 import writable_bucket
    from lab.processes.storage import start_storage

    # sshd's StrictModes walk refuses an authorized_keys below a world-writable directory
    # such as /tmp or /var/tmp: a root-owned 0755 one, as the tests' storage has.
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(BENCH_ROOT, 0o755)
    scratch = Path(tempfile.mkdtemp(prefix="s3-push-", dir=BENCH_ROOT))
    os.chmod(scratch, 0o755)
    cluster = storage = None
    try:
        cluster = start_cluster(scratch / "seaweedfs")
        bucket = writable_bucket(cluster)
        storage = start_storage(scratch / "rsync")
        results: dict[str, list[dict]] = {"s3": [], "rsync": []}
        for run in range(args.repeat):
            for name in results:
                tree = write_tree(scratch / f"tree-{name}-{run}", args.photos, seed=run)
                spec = {
                    "tree": str(tree),
                    "concurrency": args.concurrency,
                    "s3": bucket.storage_setting(),
                    "rsync": {
                        "spec": storage.target.rstrip(":"),
                        "port": storage.port,
                        "key": str(storage.key_path),
                        "known_hosts": str(storage.known_hosts_path),
                    },
                }
                results[name].append(child(name, spec, scratch / "spec.json"))
                last = results[name][-1]
                print(
                    f"run {run + 1} {name:6} {last['photos_per_s']:7.0f} photos/s  "
                    f"{last['cpu_ms_per_photo']:.3f} CPU ms/photo",
                    flush=True,
                )
        report(results, args)
    finally:
        if cluster is not None:
            cluster.stop()
        if storage is not None:
            storage.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def write_tree(root: Path, photos: int, seed: int) -> Path:
    """Photos with ids unique to the run (so every run writes new keys) and one manifest."""
    rng = random.Random(seed)
    base = 10_000_000 * (seed + 1) + rng.randrange(1_000_000)
    lines = []
    for n in range(photos):
        rel = image_path(base + n, "jpg")
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(5 * 1024, 20 * 1024)))
        lines.append(json.dumps({"photo_id": base + n, "path": rel}) + "\n")
    manifest = root / f"manifests/2026/12/05/{base}.jsonl"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("".join(lines))
    return root


def child(name: str, spec: dict, spec_path: Path) -> dict:
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, __file__, "--child", name, "--spec", str(spec_path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def run_child(name: str, spec: dict) -> dict:
    import hashlib

    from downloader.push import StorageTarget, push_tree
    from downloader.s3.push import push_objects
    from downloader.s3.target import S3Target

    tree = Path(spec["tree"])
    paths = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())
    # The journal knows each photo's digest from the fetch: not counted, as in the daemon.
    digests = {p: hashlib.sha256((tree / p).read_bytes()).hexdigest() for p in paths}
    before = cpu_seconds()
    started = time.monotonic()
    if name == "s3":
        result = push_objects(
            tree,
            paths,
            S3Target.from_mapping(spec["s3"]),
            concurrency=spec["concurrency"],
            digests=digests,
        )
    else:
        rsync = spec["rsync"]
        target = StorageTarget.from_spec(
            rsync["spec"], port=rsync["port"], key_path=rsync["key"],
            known_hosts_path=rsync["known_hosts"],
        )  # fmt: skip
        result = push_tree(tree, paths, target)
    seconds = time.monotonic() - started
    cpu = cpu_seconds() - before
    assert result.files_transferred == len(paths), result
    photos = len(paths) - 1
    return {"photos_per_s": photos / seconds, "cpu_ms_per_photo": cpu * 1000 / photos}


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def report(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print(f"\n{args.photos} photos of 5-20 KB, {args.repeat} runs, medians")
    for name in results:
        print(
            f"{name:6} {median(name, 'photos_per_s'):7.0f} photos/s  "
            f"{median(name, 'cpu_ms_per_photo'):.3f} CPU ms/photo"
        )
    rate = median("s3", "photos_per_s") / median("rsync", "photos_per_s")
    cpu = median("s3", "cpu_ms_per_photo") / median("rsync", "cpu_ms_per_photo")
    print(f"s3/rsync: {rate:.2f}x the photos/s, {cpu:.2f}x the CPU per photo")


if __name__ == "__main__":
    main()
