"""Fetch benchmark: `downloader fetch` against img2dataset on the same local nginx, where the
files land on disk (ext4) and on tmpfs, one run.

What it measures: how fast, and at what CPU and memory, each tool turns a URL list into
verified files, and how much of that the filesystem under the output costs. The downloader's
`fetch` writes exactly as the daemon writes its spool, so its figures on disk are the
droplet's; tmpfs shows what is left when the filesystem costs (almost) nothing.

A private nginx (its own config, a loopback port) serves 20,000 generated JPEGs of 20-100 KB
(`--kb 5-20` for small ones, as in the issue's first measurement)
at Flickr-shaped paths. Both tools fetch the same URL list, compute sha256 and write files:

- `downloader fetch --concurrency 64` (one process, one event loop, downloader/fetch/http/);
- img2dataset with processes_count=2, thread_count=64, output_format=files, resize_mode=no,
  compute_hash=sha256, otherwise its defaults (`--peer-lean` adds disable_all_reencoding and
  no EXIF, its cheapest mode).

Each round runs both tools on each filesystem: `--disk` (default /var/tmp/ccmirror-bench-fetch,
refused if it is not on a disk) and `--tmpfs` (as root: a tmpfs mounted for the run in a mount
namespace of the benchmark's own, so it goes when the benchmark ends however it ends; else a
directory on /dev/shm). Every run writes into a directory of its own, and all outputs are
removed only after the last run: deleting 20,000 files and their directories leaves the
filesystem work (journal, discards) that slowed whichever run came next, by up to twice its
system time.

Each is a child process; its CPU seconds (user + system, its reaped children included) and
peak RSS come from wait4(), and the whole process tree's RSS is sampled from /proc too. It
prints images/s, CPU-ms per image (and the kernel's share), peak RSS and the directories the
output holds per run, then per filesystem the medians, spreads and ratios against the
targets: >= 3x img2dataset's images/s, <= 0.25x its CPU per image, <= 100 MB; and the
downloader's own disk/tmpfs ratio.

As root the benchmark re-runs itself in a network namespace of its own (`unshare --net`,
loopback only), so nothing can reach the internet; otherwise it relies on the URL list.

    .venv/bin/python bench/fetch.py [--images 20000] [--repeat 3] [--kb 5-20] [--peer-lean]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lab.processes.child import free_port
from lab.sims.image_host.server import jpeg_bytes

BIN = Path(sys.executable).parent
WORK = Path(tempfile.gettempdir()) / "ccmirror-bench-fetch"
TARGET_RATE = 3.0
TARGET_CPU = 0.25
TARGET_RSS_MB = 100
IMAGE_SUFFIXES = (".jpg", ".png", ".gif", ".webp")
NAMESPACE_MARK = "CCMIRROR_BENCH_NETNS"
# /var/tmp: kept across reboots, so on a disk where /tmp is a tmpfs.
DISK_DEFAULT = Path("/var/tmp/ccmirror-bench-fetch")


@dataclass
class Run:
    tool: str
    images: int  # stored and accounted for
    seconds: float
    cpu_seconds: float
    sys_seconds: float  # the kernel's share of cpu_seconds: sockets, page cache, file creation
    peak_rss_mb: float  # the largest process's high-water mark (VmHWM)
    tree_rss_mb: float  # the most the whole process tree held at once (sum of VmRSS)
    directories: int  # under the output, itself included: what the filesystem had to make

    @property
    def rate(self) -> float:
        return self.images / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_seconds / max(self.images, 1)

    def line(self) -> str:
        return (
            f"{self.tool:12} {self.images:>7,} images in {self.seconds:6.2f}s  "
            f"{self.rate:7,.0f} images/s  {self.cpu_ms:5.2f} CPU-ms/image "
            f"({1000 * self.sys_seconds / max(self.images, 1):4.2f} sys)  "
            f"peak RSS {self.peak_rss_mb:4.0f} MB (tree {self.tree_rss_mb:4.0f} MB)  "
            f"{self.directories:,} dirs"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--peer-lean", action="store_true", help="img2dataset's cheapest mode")
    parser.add_argument("--kb", default="20-100", help="JPEG sizes in KB, MIN-MAX (20-100)")
    parser.add_argument("--disk", type=Path, default=DISK_DEFAULT, help="outputs on a disk")
    parser.add_argument("--tmpfs", type=Path, help="outputs on tmpfs (default: one mounted)")
    args = parser.parse_args()
    kb = tuple(int(x) for x in args.kb.split("-", 1))
    isolate()
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx_bin).exists():
        sys.exit("bench/fetch.py: nginx is missing (apt-get install nginx-light)")
    # find_spec, not import: img2dataset's imports would grow this process, and its children's
    # wait4 peak RSS starts from their parent's.
    if importlib.util.find_spec("img2dataset") is None:
        sys.exit("bench/fetch.py: img2dataset is missing (.venv/bin/pip install -e '.[bench]')")
    places = {"disk": disk_place(args.disk), "tmpfs": tmpfs_place(args.tmpfs)}

    www = generate_images(WORK / "www", args.images, kb)
    for old in ("out", "out-dl", "out-i2d"):  # where earlier versions of this benchmark wrote
        shutil.rmtree(WORK / old, ignore_errors=True)
    for place in places.values():
        shutil.rmtree(place, ignore_errors=True)  # an interrupted earlier run's
    os.sync()
    port = free_port()
    nginx = start_nginx(nginx_bin, WORK, www, port)
    try:
        urls = write_url_list(WORK / "urls.txt", args.images, port)
        print(
            f"{args.images:,} JPEGs ({dir_megabytes(www):,.0f} MB) from nginx on 127.0.0.1:{port};"
            f" {os.cpu_count()} cores (shared), load average {load_average()}; {network_note()}"
        )
        for name, place in places.items():
            print(f"{name:5}: {place} ({filesystem_of(place)})")
        runs: dict[str, dict[str, list[Run]]] = {
            name: {"downloader": [], "img2dataset": []} for name in places
        }
        for n in range(args.repeat):
            for name, place in places.items():
                one_round(runs[name], name, place, n, urls, args)
        print(f"\nload average at the end: {load_average()}")
        for name, place_runs in runs.items():
            summarize(name, place_runs)
        compare_places(runs)
    finally:
        nginx.terminate()
        nginx.wait(10)
        for place in places.values():
            shutil.rmtree(place, ignore_errors=True)
    return 0


def one_round(runs: dict[str, list[Run]], name: str, place: Path, n: int, urls: Path, args) -> None:
    dl = run_downloader(urls, place / f"dl-{n}", args.concurrency)
    runs["downloader"].append(dl)
    print(f"{name:5} {dl.line()}", flush=True)
    peer = run_img2dataset(urls, place / f"i2d-{n}", args.peer_lean)
    runs["img2dataset"].append(peer)
    print(f"{name:5} {peer.line()}", flush=True)


# ------------------------------------------------------------------ where the files land
def filesystem_of(path: Path) -> str:
    """The type of the filesystem `path` is (or would be) on: the longest mount point above
    it in /proc/mounts."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        point = fields[1].replace("\\040", " ")
        inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def disk_place(path: Path) -> Path:
    kind = filesystem_of(path)
    if kind in ("tmpfs", "ramfs"):
        sys.exit(f"bench/fetch.py: --disk {path} is on {kind}, not a disk")
    return path / "out"


def tmpfs_place(path: Path | None) -> Path:
    """`path` if given, else a tmpfs mounted for this run (root, in the benchmark's own mount
    namespace), else /dev/shm."""
    if path is None and os.environ.get(NAMESPACE_MARK) == "1":
        path = WORK / "tmpfs"
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "bench", str(path)], check=True)
    elif path is None:
        path = Path("/dev/shm/ccmirror-bench-fetch")
    if filesystem_of(path) != "tmpfs":
        sys.exit(f"bench/fetch.py: --tmpfs {path} is on {filesystem_of(path)}, not tmpfs")
    return path / "out"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ------------------------------------------------------------------ no internet, ever
def isolate() -> None:
    """Re-run in fresh network and mount namespaces (only `lo`; mounts private, so the tmpfs
    goes with the run) when root can make them."""
    if os.environ.get(NAMESPACE_MARK) == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return
    env = {**os.environ, NAMESPACE_MARK: "1"}
    command = ["unshare", "--net", "--mount", "--", sys.executable, *sys.argv]
    os.execvpe("unshare", command, env)


def network_note() -> str:
    if os.environ.get(NAMESPACE_MARK) == "1":
        return "private network namespace, loopback only"
    return "host network (not root: no private namespace)"


# ------------------------------------------------------------------ the served images
def image_size(photo_id: int, kb: tuple[int, int]) -> int:
    low, high = kb[0] * 1000, kb[1] * 1000
    return low + (photo_id * 7919) % max(high - low, 1)  # spread evenly over the range


def photo_ids(count: int) -> range:
    return range(50_000_000_000, 50_000_000_000 + count)


def generate_images(www: Path, count: int, kb: tuple[int, int]) -> Path:
    marker = www / f".complete-{count}-{kb[0]}-{kb[1]}kb"
    if marker.exists():
        return www
    shutil.rmtree(www, ignore_errors=True)
    folder = www / "65535"
    folder.mkdir(parents=True)
    started = time.monotonic()
    for photo_id in photo_ids(count):
        (folder / f"{photo_id}_{secret(photo_id)}_b.jpg").write_bytes(
            jpeg_bytes(photo_id, image_size(photo_id, kb))
        )
    os.chmod(WORK, 0o755)  # nginx's workers may run as nobody
    marker.touch()
    print(f"generated {count:,} JPEGs in {time.monotonic() - started:.0f}s")
    return www


def secret(photo_id: int) -> str:
    return f"{random.Random(photo_id).getrandbits(40):010x}"


def write_url_list(path: Path, count: int, port: int) -> Path:
    lines = (
        f"http://127.0.0.1:{port}/65535/{photo_id}_{secret(photo_id)}_b.jpg\n"
        for photo_id in photo_ids(count)
    )
    path.write_text("".join(lines))
    return path


def dir_megabytes(www: Path) -> float:
    return sum(f.stat().st_size for f in (www / "65535").iterdir()) / 1e6


def start_nginx(nginx_bin: str, work: Path, www: Path, port: int) -> subprocess.Popen:
    prefix = work / "nginx"
    prefix.mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 60;
    types {{ image/jpeg jpg; }}
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {www};
    }}
}}
"""
    )
    process = subprocess.Popen([nginx_bin, "-p", str(prefix), "-c", str(conf)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"bench/fetch.py: nginx exited {process.returncode}; see {prefix}/error.log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit("bench/fetch.py: nginx did not start listening")


# ------------------------------------------------------------------ measuring a child
class TreeRss:
    """Samples a process and its descendants from /proc: the largest VmHWM and the largest
    sum of VmRSS. Not wait4's ru_maxrss: a child's starts from its parent's size at fork."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self.hwm_kb = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            memory = [_memory_kb(p) for p in _tree(self.pid)]
            self.peak_kb = max(self.peak_kb, sum(rss for rss, _ in memory))
            self.hwm_kb = max([self.hwm_kb, *(hwm for _, hwm in memory)])

    def finish(self) -> tuple[float, float]:
        self.stop.set()
        self.thread.join()
        return self.hwm_kb / 1024, self.peak_kb / 1024


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return pids


def _memory_kb(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM of one process, in kB (0 once it is gone)."""
    found = {"VmRSS:": 0, "VmHWM:": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line[:6]
                if key in found:
                    found[key] = int(line.split()[1])
    except OSError:
        pass
    return found["VmRSS:"], found["VmHWM:"]


def measure(command: list[str], env: dict[str, str] | None = None) -> tuple[float, ...]:
    """Run `command`: wall seconds, CPU and system seconds (wait4), peak and tree RSS in MB
    (/proc)."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = TreeRss(process.pid)
    stderr_tail = _drain(process)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    peak_mb, tree_mb = sampler.finish()
    if process.returncode != 0:
        sys.exit(f"{command[0]} failed ({process.returncode}):\n{stderr_tail}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_stime, peak_mb, tree_mb


def _drain(process: subprocess.Popen) -> str:
    """Read stderr to its end without waiting for the child (wait4 must reap it)."""
    tail: list[bytes] = []
    for line in process.stderr:  # type: ignore[union-attr]
        tail = (tail + [line])[-20:]
    return b"".join(tail).decode(errors="replace")


def run_downloader(urls: Path, out: Path, concurrency: int) -> Run:
    command = [str(BIN / "downloader"), "fetch", "--urls", str(urls), "--out", str(out)]
    command += ["--concurrency", str(concurrency)]
    # nginx is on loopback: the allow-list must name it (the default names Flickr's hosts).
    env = {**os.environ, "CCMIRROR_CONFIG": "/dev/null", "CCMIRROR_FETCH_ALLOW_HOSTS": "127.0.0.1"}
    seconds, cpu, system, peak, tree = measure(command, env)
    stored, directories = count_output(out)
    return Run("downloader", stored, seconds, cpu, system, peak, tree, directories)


def count_output(out: Path) -> tuple[int, int]:
    """Image files (wherever the layout puts them; no temp files) and directories under `out`."""
    images = directories = 0
    for _, _, files in os.walk(out):
        directories += 1
        images += sum(1 for f in files if f.endswith(IMAGE_SUFFIXES) and not f.startswith("."))
    return images, directories


def run_img2dataset(urls: Path, out: Path, lean: bool) -> Run:
    options = dict(
        url_list=str(urls),
        output_folder=str(out),
        input_format="txt",
        output_format="files",
        processes_count=2,
        thread_count=64,
        resize_mode="no",
        compute_hash="sha256",
        retries=0,
        timeout=10,
        enable_wandb=False,
    )
    if lean:
        options.update(disable_all_reencoding=True, extract_exif=False)
    code = f"from img2dataset import download\ndownload(**{options!r})\n"
    # albumentations, imported by img2dataset, asks PyPI for updates unless told not to.
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    seconds, cpu, system, peak, tree = measure([sys.executable, "-c", code], env)
    stored = 0
    for stats in out.glob("*_stats.json"):
        stored += json.loads(stats.read_text())["successes"]
    return Run("img2dataset", stored, seconds, cpu, system, peak, tree, count_output(out)[1])


# ------------------------------------------------------------------ the verdict
def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], fmt: str) -> str:
    low, high = format(min(values), fmt), format(max(values), fmt)
    return f"{format(med(values), fmt)} (range {low}-{high})"


def summarize(place: str, runs: dict[str, list[Run]]) -> None:
    dl, peer = runs["downloader"], runs["img2dataset"]
    print(f"\non {place}:")
    for name, rs in runs.items():
        print(
            f"  {name:12} median {spread([r.rate for r in rs], ',.0f')} images/s, "
            f"{spread([r.cpu_ms for r in rs], '.2f')} CPU-ms/image "
            f"({med([1000 * r.sys_seconds / max(r.images, 1) for r in rs]):.2f} sys), "
            f"peak RSS {max(r.peak_rss_mb for r in rs):.0f} MB "
            f"(process tree {max(r.tree_rss_mb for r in rs):.0f} MB)"
        )
    rate_ratios = [d.rate / p.rate for d, p in zip(dl, peer, strict=True)]
    cpu_ratios = [d.cpu_ms / p.cpu_ms for d, p in zip(dl, peer, strict=True)]
    rss = max(r.peak_rss_mb for r in dl)
    print(
        f"  rate ratio {spread(rate_ratios, '.2f')}x (target >= {TARGET_RATE}x): "
        f"{'met' if med(rate_ratios) >= TARGET_RATE else 'NOT met'}"
    )
    print(
        f"  CPU ratio  {spread(cpu_ratios, '.3f')}x (target <= {TARGET_CPU}x): "
        f"{'met' if med(cpu_ratios) <= TARGET_CPU else 'NOT met'}"
    )
    print(
        f"  downloader peak RSS {rss:.0f} MB (target <= {TARGET_RSS_MB} MB): "
        f"{'met' if rss <= TARGET_RSS_MB else 'NOT met'}"
    )


def compare_places(runs: dict[str, dict[str, list[Run]]]) -> None:
    """What the disk costs each tool: its rate on disk over its rate on tmpfs, run by run."""
    if not {"disk", "tmpfs"} <= set(runs):
        return
    print()
    for tool in ("downloader", "img2dataset"):
        disk, ram = runs["disk"][tool], runs["tmpfs"][tool]
        ratios = [d.rate / t.rate for d, t in zip(disk, ram, strict=True)]
        extra_sys = [
            1000 * (d.sys_seconds - t.sys_seconds) / max(d.images, 1)
            for d, t in zip(disk, ram, strict=True)
        ]
        print(
            f"{tool:12} disk/tmpfs rate {spread(ratios, '.2f')}x, "
            f"system CPU-ms/image more on disk {spread(extra_sys, '.2f')}"
        )


if __name__ == "__main__":
    sys.exit(main())
