"""YFCC100M line parsing against the real dataset lines in ../shared/fixtures/yfcc100m/."""

from __future__ import annotations

import hashlib
from urllib.parse import unquote_plus

import pytest

from harvester.yfcc.rows import (
    CORRUPT_REASONS,
    SKIP_REASONS,
    LicenseMap,
    YfccRow,
    parse_line,
    parse_raw,
    tsv_line,
    url_decode,
)
from lab.mission.yfcc_sample import BAD_KINDS, sample_line
from tests.conftest import FIXTURES

REAL_LINES = (
    (FIXTURES / "yfcc100m" / "yfcc100m_dataset_2014_23fields_4lines.tsv")
    .read_text(encoding="utf-8")
    .splitlines()
)
LICENSES = LicenseMap.builtin()


def parse(line: str) -> YfccRow:
    row = parse_line(line, LICENSES)
    assert isinstance(row, YfccRow), f"not imported: {row}"
    return row


def as_25_fields(line: str, number: int, hash_first: bool = False) -> str:
    photo_id, rest = line.split("\t", 1)
    digest = hashlib.md5(photo_id.encode()).hexdigest()
    front = [str(number), digest, photo_id] if hash_first else [str(number), photo_id, digest]
    return "\t".join([*front, rest])


def test_the_four_real_lines():
    rows = [parse(line) for line in REAL_LINES]
    assert [r.photo_id for r in rows] == [7088065, 343224206, 6325727670, 10642543105]
    assert [r.license_id for r in rows] == [2, 4, 3, 4]  # by-nc, by, by-nc-nd, by
    assert [r.owner for r in rows] == [
        "30302697@N00",
        "17143211@N00",
        "61048402@N08",
        "93003266@N04",
    ]
    assert [r.owner_name for r in rows] == ["jhf", "MDG26", "Indigo Skies Photography", "GSofV"]
    assert [r.title for r in rows] == [
        "Gnome",
        "Team Muppet Show",
        "Sunlight through the morning fog",
        "0601 Young man",
    ]
    assert [r.uploaded_at for r in rows] == [1111467388, 1167783247, 1320751886, 1383473251]
    third = rows[2]
    # secret (5192fe3be9) and original secret (8ed1387833) differ on this line.
    assert third.image_url == "https://farm7.staticflickr.com/6097/6325727670_8ed1387833_o.jpg"
    assert third.image_size == "o"
    assert third.fallback_url == "https://farm7.staticflickr.com/6097/6325727670_5192fe3be9.jpg"
    assert third.page_url == "https://www.flickr.com/photos/61048402@N08/6325727670/"
    assert rows[3].image_url == ("https://farm3.staticflickr.com/2823/10642543105_c5f065a6a5_o.jpg")


@pytest.mark.parametrize("hash_first", [False, True], ids=["id-then-hash", "hash-then-id"])
def test_25_field_lines_give_the_same_rows(hash_first):
    plain = [parse(line) for line in REAL_LINES]
    wide = [parse(as_25_fields(line, n, hash_first)) for n, line in enumerate(REAL_LINES)]
    assert wide == plain


def test_crlf_line_ends_are_read():
    assert parse(REAL_LINES[0] + "\r") == parse(REAL_LINES[0])


def test_url_decoding_matches_unquote_plus():
    samples = [
        "B%26W+photo",
        "Couragent%2C+Inc.",
        "line%0Anext",
        "100%",
        "%zz",
        "a%0",
        "caf%C3%A9+Z%C3%BCrich",
        "%E6%9D%B1%E4%BA%AC",
        "back\\slash+%41",
        "raw+é+%41",
        "%09tab%5Cslash",
        "plus%2Bsign",
    ]
    for text in samples:
        assert url_decode(text) == unquote_plus(text, errors="strict"), text


@pytest.mark.parametrize("text", ["%FF", "Broken+%C3", "%ED%A0%80"])
def test_percent_sequences_that_are_not_utf8_are_bad_encoding(text):
    fields = REAL_LINES[0].split("\t")
    fields[6] = text
    assert parse_line("\t".join(fields), LICENSES) == "bad_encoding"


def test_a_raw_byte_that_is_not_utf8_is_bad_encoding():
    raw = REAL_LINES[0].encode().replace(b"SONY", b"SONY\xff")
    assert parse_raw(raw + b"\n", LICENSES) == "bad_encoding"


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_every_bad_kind_gets_its_reason(kind):
    for index in range(30):
        line = sample_line(index, seed=5, bad_kind=kind)
        assert parse_raw(line.text, LICENSES) == BAD_KINDS[kind]
    assert set(BAD_KINDS.values()) <= set(SKIP_REASONS) | set(CORRUPT_REASONS)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        (0, "", "bad_id"),
        (0, "0", "bad_id"),
        (0, "-5", "bad_id"),
        (0, "٣٤", "bad_id"),  # digits, but not ASCII ones
        (0, "99999999999999999999999", "bad_id"),
        (1, "", "bad_owner"),
        (1, "nobody", "bad_owner"),
        (4, "", "bad_upload_date"),
        (4, "2005-03-22", "bad_upload_date"),
        (4, "99999999999", "bad_upload_date"),
        (22, "2", "bad_marker"),
        (22, "1", "video"),
        (16, "", "not_cc"),
        (16, "https://www.flickr.com/commons/usage/", "not_cc"),
        (16, "http://creativecommons.org/licenses/by-nc/9.9/", "not_cc"),
    ],
)
def test_field_checks(field, value, reason):
    fields = REAL_LINES[0].split("\t")
    fields[field] = value
    assert parse_line("\t".join(fields), LICENSES) == reason


@pytest.mark.parametrize("count", [1, 22, 24, 26])
def test_wrong_field_count(count):
    fields = (REAL_LINES[0].split("\t") * 2)[:count]
    assert parse_line("\t".join(fields), LICENSES) == "field_count"


def test_without_original_parts_the_download_url_is_the_image():
    fields = REAL_LINES[2].split("\t")
    fields[20] = ""  # secret original
    row = parse("\t".join(fields))
    assert row.image_url == "https://farm7.staticflickr.com/6097/6325727670_5192fe3be9.jpg"
    assert (row.image_size, row.fallback_url) == ("m", None)
    fields[14] = ""  # and no download URL either
    assert parse_line("\t".join(fields), LICENSES) == "bad_url"


def test_a_missing_page_url_is_rebuilt():
    fields = REAL_LINES[0].split("\t")
    fields[13] = ""
    assert parse("\t".join(fields)).page_url == (
        "https://www.flickr.com/photos/30302697@N00/7088065/"
    )


def test_long_text_is_cut_to_its_column():
    fields = REAL_LINES[0].split("\t")
    fields[2], fields[6] = "n" * 300, "%C3%A9" * 2000
    row = parse("\t".join(fields))
    assert (len(row.owner_name), row.title) == (255, "é" * 1024)


@pytest.mark.parametrize(
    "url",
    [
        "http://creativecommons.org/licenses/by/2.0/",
        "https://creativecommons.org/licenses/by/2.0/",
        "https://creativecommons.org/licenses/by/2.0",
        "HTTP://www.CreativeCommons.org/licenses/by/2.0/",
        " http://creativecommons.org/licenses/by/2.0/ ",
    ],
)
def test_license_urls_match_ignoring_scheme_slash_and_case(url):
    assert LICENSES.get(url) == 4


def test_builtin_license_ids():
    ids = {
        "by-nc-sa/2.0": 1,
        "by-nc/2.0": 2,
        "by-nc-nd/2.0": 3,
        "by/2.0": 4,
        "by-sa/2.0": 5,
        "by-nd/2.0": 6,
        "by/4.0": 11,
        "by-sa/4.0": 12,
        "by-nd/4.0": 13,
        "by-nc/4.0": 14,
        "by-nc-sa/4.0": 15,
        "by-nc-nd/4.0": 16,
    }
    for path, license_id in ids.items():
        assert LICENSES.get(f"https://creativecommons.org/licenses/{path}/") == license_id
    assert LICENSES.get("https://creativecommons.org/publicdomain/zero/1.0/") == 9
    assert LICENSES.get("https://creativecommons.org/publicdomain/mark/1.0/") == 10
    assert LICENSES.get("https://www.flickr.com/commons/usage/") is None


def test_the_licenses_table_wins():
    table = LicenseMap.with_table(
        [
            (4, "https://creativecommons.org/licenses/by/2.0/", True),
            (42, "https://creativecommons.org/licenses/by/5.0/", True),
            (7, "https://www.flickr.com/commons/usage/", False),
            (6, "https://creativecommons.org/licenses/by-nd/2.0/", False),  # said not CC
        ]
    )
    assert table.get("http://creativecommons.org/licenses/by/5.0/") == 42
    assert table.get("http://creativecommons.org/licenses/by-nd/2.0/") is None
    assert table.get("http://creativecommons.org/licenses/by-nc/2.0/") == 2  # not listed
    assert table.get("https://www.flickr.com/commons/usage/") is None


def test_tsv_line_escapes_what_load_data_reads_specially():
    row = parse(REAL_LINES[0])._replace(owner_name="a\\b", title="x\ty\nz\x00")
    line = tsv_line(row)
    assert line.endswith("\n") and line.count("\n") == 1
    fields = line[:-1].split("\t")
    assert fields[2:4] == ["a\\\\b", "x\\ty\\nz\\0"]
    assert fields[8] == "https://farm1.staticflickr.com/8/7088065_65c9d45e09.jpg"
    assert tsv_line(row._replace(fallback_url=None)).split("\t")[8] == "\\N"


def test_generated_lines_parse_to_what_the_generator_says():
    for index in range(3000):
        for fields, hash_first in ((23, False), (25, False), (25, True)):
            line = sample_line(index, seed=9, fields=fields, hash_first=hash_first)
            row = parse_raw(line.text, LICENSES)
            if line.reason is not None:
                assert row == line.reason
                continue
            assert isinstance(row, YfccRow)
            assert (row.photo_id, row.owner, row.owner_name, row.title) == (
                line.photo_id,
                line.owner,
                line.owner_name,
                line.title,
            )
            assert (row.license_id, row.uploaded_at, row.page_url) == (
                line.license_id,
                line.uploaded_at,
                line.page_url,
            )
            assert (row.image_url, row.fallback_url) == (line.image_url, line.fallback_url)
