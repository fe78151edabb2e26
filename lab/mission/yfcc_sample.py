"""Deterministic synthetic YFCC100M lines, for tests, the benchmark and the lab.

Shaped like the real dataset (see ../shared/fixtures/yfcc100m/): 23 tab-separated fields,
URL-encoded free text (`+` for spaces, `%0A`, `%26`, UTF-8 percent sequences, the odd tab or
backslash), empty descriptions and geo on many lines, YFCC's six CC 2.0 license names and
http URLs in roughly the dataset's shares, originals' secrets that differ from the download
secret on half the lines, and ~1% videos. The 25-field form (line number, photo id, hash,
then the rest, as in the 2016 single-file release) and a hash-before-id variant are there too.

Line `i` of seed `s` is a pure function of `(s, i)`, so a test can ask for the expectation
of any one line (`sample_line`) without generating the file; photo ids are a bijection of
the line index, so they are unique within a seed. `bad_every=N` turns every Nth line into a
bad line of each kind in `BAD_KINDS` in turn, and `write_sample` returns exact counts.

    .venv/bin/python -m lab.mission.yfcc_sample OUT.tsv[.gz|.bz2] --lines 1000000 [--fields 25]
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

MASK = (1 << 64) - 1
ID_MULTIPLIER = 2_654_435_761  # odd and not a multiple of 5: a bijection modulo 10**10
ID_MODULUS = 10**10
ID_BASE = 1_000_000

# (license name, URL, Flickr id, share in per mille): the 2014 dataset's own spellings.
LICENSES = (
    ("Attribution-NonCommercial-ShareAlike License", "by-nc-sa", 1, 330),
    ("Attribution-NonCommercial License", "by-nc", 2, 160),
    ("Attribution-NonCommercial-NoDerivs License", "by-nc-nd", 3, 170),
    ("Attribution License", "by", 4, 170),
    ("Attribution-ShareAlike License", "by-sa", 5, 120),
    ("Attribution-NoDerivs License", "by-nd", 6, 50),
)
VIDEO_PER_MILLE = 10

# Each bad kind and the reason `harvester import-yfcc` must give it.
BAD_KINDS = {
    "field_count": "field_count",
    "bad_id": "bad_id",
    "bad_encoding": "bad_encoding",  # a percent sequence that is not UTF-8
    "raw_bytes": "bad_encoding",  # a raw byte that is not UTF-8
    "bad_upload_date": "bad_upload_date",
    "video": "video",
    "not_cc": "not_cc",  # Flickr Commons' "no known copyright restrictions"
    "unknown_license": "not_cc",
}
SKIP_REASONS = ("video", "not_cc")

_WORD_TEXT = (
    "sunset beach morning fog river bridge street market old church tower garden cat dog"
    " family wedding party concert festival snow mountain lake forest road train station"
    " harbour boat city night lights portrait flowers autumn spring summer winter museum"
    " statue castle ruins desert island cliffs waves sky clouds rain storm field farm"
    " café Zürich São Paulo Kraków Москва 東京 Ελλάδα naïve smörgåsbord"
)
_WORDS = tuple(_WORD_TEXT.split())
_PUNCTUATION = ("", "", "", "!", "?", " & co", " (1 of 3)", " #2", ": part 2", "'s", " 100%")
_DEVICES = (
    "Canon EOS 400D DIGITAL",
    "NIKON D90",
    "Canon PowerShot SD450",
    "SONY CLIE",
    "Apple iPhone 4",
    "Panasonic DMC-FZ8",
    "",
    "",
)
_EXTENSIONS = ("jpg",) * 95 + ("png",) * 4 + ("gif",)


def _mix(x: int) -> int:
    """splitmix64: a fast, well-spread hash of one integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _phrase(h: int, words: int) -> str:
    picked = [_WORDS[(h >> (6 * k)) % len(_WORDS)] for k in range(words)]
    return " ".join(picked).capitalize()


def _build_pools() -> dict[str, tuple]:
    """Pools of decoded text and its URL encoding, built once: per-line cost stays tiny."""
    titles, nicknames, descriptions, tags = [], [], [], []
    for n in range(4096):
        h = _mix(n + 17)
        title = _phrase(h, 1 + h % 6) + _PUNCTUATION[(h >> 40) % len(_PUNCTUATION)]
        if n % 97 == 0:
            title = title + "\n(second line)"  # %0A, kept as a newline
        if n % 211 == 0:
            title = title + "\tC:\\photos\\raw"  # a tab and backslashes to escape
        if n % 13 == 0:
            title = ""
        titles.append(title)
    for n in range(1024):
        h = _mix(n + 4242)
        nick = _phrase(h, 1 + h % 3).replace(" ", ("", "+", " ", "_")[(h >> 50) % 4])
        nicknames.append(nick[:40] or "x")
    for n in range(1024):
        h = _mix(n + 9999)
        if n % 2 == 0:
            descriptions.append("")
            continue
        sentences = [_phrase(_mix(h + k), 4 + (h >> k) % 12) + "." for k in range(1 + h % 6)]
        descriptions.append("\n\n".join(sentences))
    for n in range(1024):
        h = _mix(n + 31337)
        tags.append("" if n % 3 == 0 else ",".join(sorted(set(_phrase(h, 1 + h % 8).split()))))
    return {
        "titles": tuple((t, quote_plus(t)) for t in titles),
        "nicknames": tuple((t, quote_plus(t)) for t in nicknames),
        "descriptions": tuple(quote_plus(t) for t in descriptions),
        "tags": tuple(quote_plus(t, safe=",").lower() for t in tags),
        "devices": tuple(quote_plus(d) for d in _DEVICES),
    }


_POOLS = _build_pools()
_LICENSE_TABLE: list[tuple[str, str, int]] = []
for _name, _code, _id, _share in LICENSES:
    _LICENSE_TABLE += [(_name, f"http://creativecommons.org/licenses/{_code}/2.0/", _id)] * _share


@dataclass(frozen=True)
class SampleLine:
    """One generated line and what an import must make of it."""

    text: bytes
    reason: str | None  # None: imported
    photo_id: int
    owner: str
    owner_name: str
    title: str
    license_id: int
    uploaded_at: int
    image_url: str
    fallback_url: str
    page_url: str


def photo_id_of(index: int, seed: int = 0) -> int:
    """The photo id of line `index` (a bijection of the index: unique within a seed)."""
    return ID_BASE + ((index + seed * 7_919_113) * ID_MULTIPLIER) % ID_MODULUS


def sample_line(
    index: int,
    seed: int = 0,
    *,
    fields: int = 23,
    hash_first: bool = False,
    bad_kind: str | None = None,
) -> SampleLine:
    """Line `index` (0-based) of seed `seed`, optionally made bad in the way `bad_kind` says."""
    text, reason, photo_id, owner, license_id, uploaded, urls, user, title = _render(
        index, seed, fields, hash_first, bad_kind
    )
    farm, server, secret, secret_o, ext = urls
    return SampleLine(
        text=text.encode("utf-8", "surrogateescape"),
        reason=reason,
        photo_id=photo_id,
        owner=owner,
        owner_name=_USERS[user][1],
        title=title,
        license_id=license_id,
        uploaded_at=uploaded,
        image_url=f"https://farm{farm}.staticflickr.com/{server}/{photo_id}_{secret_o}_o.{ext}",
        fallback_url=f"https://farm{farm}.staticflickr.com/{server}/{photo_id}_{secret}.jpg",
        page_url=f"https://www.flickr.com/photos/{owner}/{photo_id}/",
    )


def _render(index: int, seed: int, fields: int, hash_first: bool, bad_kind: str | None) -> tuple:
    """The line's text and what `sample_line` reports about it; `write_sample` uses only
    the text and reason, so this stays lean (a million lines are written in seconds)."""
    h1 = _mix((seed << 40) ^ index)
    h2 = _mix(h1)
    photo_id = ID_BASE + ((index + seed * 7_919_113) * ID_MULTIPLIER) % ID_MODULUS
    user = h1 % len(_USERS)
    owner, _name, nick_enc = _USERS[user]
    title, title_enc = _TITLES[(h1 >> 10) % len(_TITLES)]
    uploaded = 1_104_537_600 + (h1 >> 20) % 283_996_800  # 2005 .. 2013
    taken = _TAKEN[h2 % len(_TAKEN)]
    device = _DEVICES_ENC[(h1 >> 50) % len(_DEVICES_ENC)]
    description = _DESCRIPTIONS[(h2 >> 8) % len(_DESCRIPTIONS)]
    tags = _TAGS[(h2 >> 18) % len(_TAGS)]
    lon, lat, accuracy = _GEO[(h2 >> 28) % len(_GEO)]
    farm = 1 + (h2 >> 40) % 9
    server = 1 + (h2 >> 44) % 9_999
    secret = f"{h2 & 0xFFFFFFFFFF:010x}"
    secret_o = secret if (h1 >> 60) % 2 else f"{h1 & 0xFFFFFFFFFF:010x}"
    ext = _EXTENSIONS[(h2 >> 58) % len(_EXTENSIONS)]
    license_name, license_url, license_id = _LICENSE_TABLE[(h1 >> 30) % len(_LICENSE_TABLE)]
    marker = "1" if (h1 >> 36) % 1000 < VIDEO_PER_MILLE else "0"
    reason = "video" if marker == "1" else None
    id_text, uploaded_text = str(photo_id), str(uploaded)

    if bad_kind is not None:
        reason = BAD_KINDS[bad_kind]
        marker = "0"  # a video would be skipped before most checks: keep one reason per line
        if bad_kind == "bad_id":
            id_text = id_text[:3] + "x" + id_text[4:]
        elif bad_kind == "bad_encoding":
            title_enc = "Broken+%FF%FE" + title_enc
        elif bad_kind == "raw_bytes":
            description = "\udcff" + description  # written as the raw byte 0xFF
        elif bad_kind == "bad_upload_date":
            uploaded_text = taken[:10]
        elif bad_kind == "video":
            marker = "1"
        elif bad_kind == "not_cc":
            license_name = "No known copyright restrictions"
            license_url = "https://www.flickr.com/commons/usage/"
        elif bad_kind == "unknown_license":
            license_name, license_url = "Some License", "http://example.org/licenses/mine/1.0/"

    values = [
        id_text,
        owner,
        nick_enc,
        taken,
        uploaded_text,
        device,
        title_enc,
        description,
        tags,
        "",
        lon,
        lat,
        accuracy,
        f"http://www.flickr.com/photos/{owner}/{photo_id}/",
        f"http://farm{farm}.staticflickr.com/{server}/{photo_id}_{secret}.jpg",
        license_name,
        license_url,
        str(server),
        str(farm),
        secret,
        secret_o,
        ext,
        marker,
    ]
    if bad_kind == "field_count":
        del values[9]  # one field short, as a cut or re-joined line is
    if fields == 25:
        digest = f"{_mix(photo_id):016x}{_mix(photo_id ^ MASK):016x}"
        front = [str(index), digest, id_text] if hash_first else [str(index), id_text, digest]
        values = front + values[1:]
    text = "\t".join(values) + "\n"
    urls = (farm, server, secret, secret_o, ext)
    return text, reason, photo_id, owner, license_id, uploaded, urls, user, title


def _taken(seconds: int) -> str:
    # Month and day are approximate: the importer never reads "date taken".
    days, rest = divmod(seconds, 86400)
    year, month, day = 1970 + days // 365, 1 + days % 365 // 31 % 12, 1 + days % 28
    clock = f"{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
    return f"{year}-{month:02d}-{day:02d} {clock}.0"


def _users() -> tuple[tuple[str, str, str], ...]:
    """(NSID, nickname, URL-encoded nickname) for the sample's owners."""
    users = []
    for user in range(997):
        owner = f"{10_000_000 + _mix(user) % 89_999_999}@N0{user % 9}"
        name, encoded = _POOLS["nicknames"][user % len(_POOLS["nicknames"])]
        users.append((owner, name, encoded))
    return tuple(users)


_USERS = _users()
_TITLES = _POOLS["titles"]
_DESCRIPTIONS = _POOLS["descriptions"]
_TAGS = _POOLS["tags"]
_DEVICES_ENC = _POOLS["devices"]
_TAKEN = tuple(_taken(1_100_000_000 + _mix(n) % 280_000_000) for n in range(4096))
_GEO = tuple(
    (f"{_mix(n) % 360_000 / 1000 - 180:.6f}", f"{_mix(~n & MASK) % 180_000 / 1000 - 90:.6f}", "15")
    if n % 2
    else ("", "", "")
    for n in range(1024)
)


def bad_kind_at(index: int, bad_every: int | None) -> str | None:
    """The bad kind line `index` gets: every `bad_every`th line, cycling through BAD_KINDS."""
    if not bad_every or index % bad_every != bad_every - 1:
        return None
    kinds = tuple(BAD_KINDS)
    return kinds[(index // bad_every) % len(kinds)]


@dataclass
class SampleStats:
    """What an import of the written file must report."""

    lines: int = 0
    good: int = 0
    skipped: Counter = field(default_factory=Counter)
    corrupt: Counter = field(default_factory=Counter)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (1-based line, reason)
    good_ids: list[int] = field(default_factory=list)
    bytes_written: int = 0

    BAD_LINES_KEPT = 10_000


def open_for_writing(path: Path):
    """Plain, gzip or bzip2 by the file's suffix; fast compression levels (test data)."""
    if path.suffix == ".gz":
        return gzip.open(path, "wb", compresslevel=1)
    if path.suffix == ".bz2":
        return bz2.open(path, "wb", compresslevel=1)
    return open(path, "wb")  # noqa: SIM115 - returned to the caller's with


def write_sample(
    path: str | Path,
    lines: int,
    *,
    seed: int = 0,
    fields: int = 23,
    hash_first: bool = False,
    bad_every: int | None = None,
    keep_ids: bool = False,
) -> SampleStats:
    """Write `lines` lines to `path` (compressed by suffix) and return what they hold."""
    path = Path(path)
    stats = SampleStats()
    batch: list[str] = []
    with open_for_writing(path) as out:
        for index in range(lines):
            bad = bad_kind_at(index, bad_every)
            text, reason, photo_id, *_ = _render(index, seed, fields, hash_first, bad)
            batch.append(text)
            stats.lines += 1
            if reason is None:
                stats.good += 1
                if keep_ids:
                    stats.good_ids.append(photo_id)
            else:
                _count_bad(stats, index, reason)
            if len(batch) >= 10_000:
                out.write("".join(batch).encode("utf-8", "surrogateescape"))
                batch.clear()
        out.write("".join(batch).encode("utf-8", "surrogateescape"))
    stats.bytes_written = path.stat().st_size
    return stats


def _count_bad(stats: SampleStats, index: int, reason: str) -> None:
    if reason in SKIP_REASONS:
        stats.skipped[reason] += 1
        return
    stats.corrupt[reason] += 1
    if len(stats.bad_lines) < SampleStats.BAD_LINES_KEPT:
        stats.bad_lines.append((index + 1, reason))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output file; .gz or .bz2 to compress")
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fields", type=int, choices=(23, 25), default=23)
    parser.add_argument("--bad-every", type=int, default=None, help="every Nth line is bad")
    args = parser.parse_args(argv)
    stats = write_sample(
        args.out, args.lines, seed=args.seed, fields=args.fields, bad_every=args.bad_every
    )
    print(
        f"{args.out}: {stats.lines:,} lines, {stats.good:,} good,"
        f" skipped {dict(stats.skipped)}, corrupt {dict(stats.corrupt)},"
        f" {stats.bytes_written:,} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
