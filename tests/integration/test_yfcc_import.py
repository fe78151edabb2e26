"""`harvester import-yfcc` end to end: real files (plain, .gz, .bz2), real MariaDB, real
processes, including one killed with SIGKILL midway."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pymysql
import pytest

from harvester.db import connect
from harvester.migrate import migrate
from lab.mission.yfcc_sample import SampleStats, write_sample
from tests.conftest import FIXTURES, ROOT, VENV_BIN, harvester_env, run_harvester, wait_for

REAL_FILE = FIXTURES / "yfcc100m" / "yfcc100m_dataset_2014_23fields_4lines.tsv"
DATA_COLUMNS = (
    "photo_id, owner, owner_name, title, license_id, page_url, image_url, image_size,"
    " COALESCE(fallback_url, '<NULL>'), COALESCE(width, -1), COALESCE(height, -1), uploaded_at"
)
MEMORY_LIMIT_KB = 200 * 1024
# Two chunks of the default 200,000 rows: every phase of the pipeline at full
# size, in ~15 s. bench/yfcc_import.py checks peak RSS on 1,000,000 lines.
MEMORY_LINES = 400_000


def import_yfcc(env: dict[str, str], *args: str) -> tuple[dict, subprocess.CompletedProcess]:
    result = run_harvester("import-yfcc", *map(str, args), "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result


def digest(url: str, *, with_times: bool = False) -> tuple[int, str]:
    """(row count, an order-independent digest of the table's content)."""
    columns = DATA_COLUMNS + (", first_seen, last_seen" if with_times else "")
    conn = connect(url, autocommit=True)
    try:
        with conn.cursor() as cur:
            half = "COALESCE(BIT_XOR(CAST(CONV({}(h, 16), 16, 10) AS UNSIGNED)), 0)"
            cur.execute(
                f"SELECT COUNT(*), {half.format('LEFT')}, {half.format('RIGHT')}"
                f" FROM (SELECT MD5(CONCAT_WS(0x1f, {columns})) AS h FROM yfcc_photos) AS t"
            )
            count, left, right = cur.fetchone()
    finally:
        conn.close()
    return int(count), f"{int(left):016x}{int(right):016x}"


def photo_ids(sql) -> set[int]:
    return {row[0] for row in sql("SELECT photo_id FROM yfcc_photos")}


@pytest.fixture
def other_db(mariadb):
    """A second migrated database, for an import to compare against."""
    name = f"ccm_test_{secrets.token_hex(4)}"
    with mariadb.root_connection() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    url = mariadb.url(name)
    conn = connect(url)
    migrate(conn)
    conn.close()
    yield url
    with mariadb.root_connection() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> tuple[Path, SampleStats]:
    path = tmp_path_factory.mktemp("yfcc") / "yfcc_200k.tsv"
    return path, write_sample(path, 200_000, seed=11)


def test_the_real_rows_import_with_their_licenses_urls_and_decoded_text(db_url, sql):
    env = harvester_env(db_url)
    summary, result = import_yfcc(env, REAL_FILE)
    assert (summary["lines"], summary["imported"], summary["new"]) == (4, 4, 4)
    assert summary["skipped"] == {} and summary["corrupt"] == {}
    rows = sql(
        "SELECT photo_id, owner, owner_name, title, license_id, page_url, image_url,"
        " image_size, fallback_url, width, height, uploaded_at FROM yfcc_photos ORDER BY photo_id"
    )
    assert rows == [
        (
            7088065,
            "30302697@N00",
            "jhf",
            "Gnome",
            2,
            "https://www.flickr.com/photos/30302697@N00/7088065/",
            "https://farm1.staticflickr.com/8/7088065_65c9d45e09_o.jpg",
            "o",
            "https://farm1.staticflickr.com/8/7088065_65c9d45e09.jpg",
            None,
            None,
            1111467388,
        ),
        (
            343224206,
            "17143211@N00",
            "MDG26",
            "Team Muppet Show",
            4,
            "https://www.flickr.com/photos/17143211@N00/343224206/",
            "https://farm1.staticflickr.com/141/343224206_0f11b3c88a_o.jpg",
            "o",
            "https://farm1.staticflickr.com/141/343224206_0f11b3c88a.jpg",
            None,
            None,
            1167783247,
        ),
        (
            6325727670,
            "61048402@N08",
            "Indigo Skies Photography",
            "Sunlight through the morning fog",
            3,
            "https://www.flickr.com/photos/61048402@N08/6325727670/",
            "https://farm7.staticflickr.com/6097/6325727670_8ed1387833_o.jpg",
            "o",
            "https://farm7.staticflickr.com/6097/6325727670_5192fe3be9.jpg",
            None,
            None,
            1320751886,
        ),
        (
            10642543105,
            "93003266@N04",
            "GSofV",
            "0601 Young man",
            4,
            "https://www.flickr.com/photos/93003266@N04/10642543105/",
            "https://farm3.staticflickr.com/2823/10642543105_c5f065a6a5_o.jpg",
            "o",
            "https://farm3.staticflickr.com/2823/10642543105_129f2fbe19.jpg",
            None,
            None,
            1383473251,
        ),
    ]
    status = run_harvester("status", "--json", env=env)
    assert json.loads(status.stdout)["photos"]["yfcc"] == 4


def _variant(tmp_path: Path, form: str) -> Path:
    lines = REAL_FILE.read_bytes().splitlines(keepends=True)
    if form.startswith("25"):
        wide = []
        for number, line in enumerate(lines):
            photo_id, rest = line.split(b"\t", 1)
            md5 = hashlib.md5(photo_id).hexdigest().encode()
            front = [md5, photo_id] if form == "25-hash-first" else [photo_id, md5]
            wide.append(b"\t".join([str(number).encode(), *front, rest]))
        lines = wide
    data = b"".join(lines)
    if form in ("gz", "25-gz"):
        return _write(tmp_path / "yfcc.tsv.gz", gzip.compress(data))
    if form == "bz2":
        return _write(tmp_path / "yfcc.tsv.bz2", bz2.compress(data))
    if form == "gz-no-suffix":  # told by its magic bytes, not its name
        return _write(tmp_path / "yfcc.tsv", gzip.compress(data))
    if form == "crlf-bom":  # saved by a Windows editor
        return _write(tmp_path / "yfcc.tsv", b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"))
    return _write(tmp_path / "yfcc.tsv", data)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "form", ["25", "25-hash-first", "gz", "bz2", "25-gz", "gz-no-suffix", "crlf-bom"]
)
def test_other_forms_of_the_file_give_the_same_rows(db_url, tmp_path, form):
    env = harvester_env(db_url)
    import_yfcc(env, REAL_FILE)
    before = digest(db_url, with_times=True)
    summary, _ = import_yfcc(env, _variant(tmp_path, form))
    # Same rows: the upsert finds all four unchanged and writes nothing.
    assert (summary["lines"], summary["imported"]) == (4, 4)
    assert (summary["new"], summary["changed"], summary["unchanged"]) == (0, 0, 4)
    assert digest(db_url, with_times=True) == before


def test_bad_lines_are_counted_by_reason_and_listed_with_file_and_line(db_url, sql, tmp_path):
    path = tmp_path / "mixed.tsv"
    stats = write_sample(path, 4000, seed=2, bad_every=25, keep_ids=True)
    assert len(stats.corrupt) == 4 and set(stats.skipped) == {"video", "not_cc"}
    summary, result = import_yfcc(harvester_env(db_url), path)
    assert summary["lines"] == 4000
    assert summary["skipped"] == dict(stats.skipped)
    assert summary["corrupt"] == dict(stats.corrupt)
    assert summary["imported"] == summary["new"] == stats.good
    listed = [line for line in result.stderr.splitlines() if ": corrupt line: " in line]
    assert len(listed) == 20
    for line, (number, reason) in zip(listed, stats.bad_lines, strict=False):
        assert line.startswith(f"{path}:{number}: corrupt line: {reason}")
    assert "further corrupt lines are counted" in listed[-1]
    assert photo_ids(sql) == set(stats.good_ids)


def test_a_line_too_long_to_be_yfcc_is_counted_and_skipped(db_url, sql, tmp_path):
    lines = REAL_FILE.read_bytes().splitlines(keepends=True)
    path = _write(tmp_path / "long.tsv", lines[0] + b"x" * (17 << 20) + b"\n" + lines[1])
    summary, result = import_yfcc(harvester_env(db_url), path)
    assert summary["corrupt"] == {"line_too_long": 1}
    assert (summary["lines"], summary["imported"]) == (3, 2)
    assert f"{path}:2: corrupt line: line_too_long" in result.stderr
    assert photo_ids(sql) == {7088065, 343224206}


def test_a_row_whose_image_urls_are_off_the_allow_list_is_refused_and_counted(
    db_url, sql, tmp_path
):
    lines = [line.split(b"\t") for line in REAL_FILE.read_bytes().splitlines()]
    # Line 2: its 500 px download URL (the fallback) elsewhere; line 3: no original's
    # secret, so the download URL, on a private address, would be the image URL.
    lines[1][14] = b"http://images.example.net/141/343224206_0f11b3c88a.jpg"
    lines[2][14] = b"http://10.0.0.5/6097/6325727670_5192fe3be9.jpg"
    lines[2][20] = b""
    path = _write(tmp_path / "foreign.tsv", b"".join(b"\t".join(f) + b"\n" for f in lines))

    summary, result = import_yfcc(harvester_env(db_url), path)

    assert summary["corrupt"] == {"host_not_allowed": 2}
    assert (summary["lines"], summary["imported"]) == (4, 2)
    assert f"{path}:2: corrupt line: host_not_allowed" in result.stderr
    assert f"{path}:3: corrupt line: host_not_allowed" in result.stderr
    assert photo_ids(sql) == {7088065, 10642543105}

    # The hosts the site's list names are imported (the lab names its image host).
    allow = "*.staticflickr.com,images.example.net,10.0.0.5"
    env = harvester_env(db_url, CCMIRROR_FETCH_ALLOW_HOSTS=allow)
    summary, _ = import_yfcc(env, path)
    assert (summary["imported"], summary["corrupt"]) == (4, {})
    assert photo_ids(sql) == {7088065, 343224206, 6325727670, 10642543105}


def test_running_the_same_file_again_changes_nothing(db_url, tmp_path):
    path = tmp_path / "again.tsv.gz"
    stats = write_sample(path, 20_000, seed=3, bad_every=97)
    env = harvester_env(db_url)
    first, _ = import_yfcc(env, path, "--chunk-lines", "3000")
    before = digest(db_url, with_times=True)
    again, _ = import_yfcc(env, path, "--chunk-lines", "7000")
    assert before[0] == stats.good == first["new"]
    assert (again["new"], again["changed"], again["unchanged"]) == (0, 0, stats.good)
    assert digest(db_url, with_times=True) == before


def test_an_import_killed_midway_and_run_again_ends_like_an_uninterrupted_one(
    db_url, other_db, sql, big_file, tmp_path
):
    path, stats = big_file
    env = harvester_env(db_url, TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        [str(VENV_BIN / "harvester"), "import-yfcc", str(path), "--chunk-lines", "20000"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        wait_for(lambda: sql("SELECT COUNT(*) FROM yfcc_photos")[0][0] > 0, 60, "first rows")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    partial = sql("SELECT COUNT(*) FROM yfcc_photos")[0][0]
    assert 0 < partial < stats.good, "the kill came after the import had finished"
    assert not list(tmp_path.iterdir()), "the killed import left chunk files behind"

    resumed, _ = import_yfcc(env, path, "--chunk-lines", "20000")
    assert (resumed["new"], resumed["unchanged"]) == (stats.good - partial, partial)
    import_yfcc(harvester_env(other_db), path)  # uninterrupted, default chunk size
    assert digest(db_url) == digest(other_db)
    assert digest(db_url)[0] == stats.good


def test_parallel_imports_do_not_collide(db_url, sql, tmp_path):
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    stats_a = write_sample(a, 30_000, seed=21)
    stats_b = write_sample(b, 30_000, seed=22)
    env = harvester_env(db_url)
    procs = [
        subprocess.Popen(
            [str(VENV_BIN / "harvester"), "import-yfcc", str(path), "--chunk-lines", "5000"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for path in (a, b, a)  # a twice: the same photos loaded at the same time
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert sql("SELECT COUNT(*) FROM yfcc_photos")[0][0] == stats_a.good + stats_b.good


def test_a_truncated_gz_keeps_the_rows_before_the_break_and_fails(db_url, sql, tmp_path):
    path = tmp_path / "cut.tsv.gz"
    stats = write_sample(path, 30_000, seed=4)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    result = run_harvester("import-yfcc", str(path), "--json", env=harvester_env(db_url))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("harvester: 1 file(s) ended early")
    summary = json.loads(result.stdout)
    assert len(summary["broken_files"]) == 1 and str(path) in summary["broken_files"][0]
    stored = sql("SELECT COUNT(*) FROM yfcc_photos")[0][0]
    assert 0 < stored == summary["imported"] < stats.good


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["/nonexistent/yfcc.tsv"], 1, "cannot read /nonexistent/yfcc.tsv"),
        (["{dir}"], 1, "is a directory"),
        (["{good}", "/nonexistent/yfcc.tsv"], 1, "cannot read /nonexistent/yfcc.tsv"),
        (["--bogus", "{good}"], 2, "unrecognized arguments: --bogus"),
        (["{good}", "--chunk-lines", "0"], 2, "must be a positive whole number"),
        ([], 2, "the following arguments are required: files"),
    ],
)
def test_bad_arguments_fail_with_one_line_and_write_nothing(
    db_url, sql, tmp_path, args, code, message
):
    good = _write(tmp_path / "good.tsv", REAL_FILE.read_bytes())
    args = [a.format(dir=tmp_path, good=good) for a in args]
    result = run_harvester("import-yfcc", *args, env=harvester_env(db_url))
    assert result.returncode == code
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    assert sql("SELECT COUNT(*) FROM yfcc_photos") == [(0,)]


def test_an_unmigrated_database_is_refused(database):
    result = run_harvester("import-yfcc", str(REAL_FILE), env=harvester_env(database))
    assert result.returncode == 1
    assert "harvester migrate" in result.stderr


MEASURE_PEAK_RSS = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], stderr=sys.stderr);"
    " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr);"
    " sys.exit(done.returncode)"
)


def test_memory_stays_flat_on_a_large_gz_file(db_url, tmp_path):
    path = tmp_path / "yfcc_400k.tsv.gz"
    stats = write_sample(path, MEMORY_LINES, seed=7)
    # Started from a small wrapper: a child's peak RSS counts from its parent's size at
    # fork, and by now pytest itself may hold more than the limit.
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            MEASURE_PEAK_RSS,
            str(VENV_BIN / "harvester"),
            "import-yfcc",
            str(path),
            "--json",
        ],
        env=harvester_env(db_url),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["new"] == stats.good
    peak_kb = int(proc.stderr.split()[-1])
    assert peak_kb <= MEMORY_LIMIT_KB, f"peak RSS {peak_kb / 1024:.0f} MB"


def test_only_the_importers_connection_may_send_a_local_file(db_url, sql, tmp_path):
    """`LOAD DATA LOCAL INFILE` has the client send whatever file the server's answer names:
    every connection but the importer's (and the storage audit's) refuses it, so a SQL
    injection or a hostile server there cannot read this machine's files."""
    private = _write(tmp_path / "private.tsv", b"1\tnot for the server\n")
    sql("CREATE TABLE leaked (id INT, line TEXT)")
    conn = connect(db_url)
    try:
        with conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError, match="local infile"):
            cur.execute("LOAD DATA LOCAL INFILE %s INTO TABLE leaked", (str(private),))
    finally:
        conn.close()
    assert sql("SELECT COUNT(*) FROM leaked") == [(0,)]

    summary, _ = import_yfcc(harvester_env(db_url), REAL_FILE)  # its own chunks still load
    assert (summary["imported"], summary["new"]) == (4, 4)
    assert len(photo_ids(sql)) == 4
