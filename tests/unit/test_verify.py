"""The fetcher's pure checks: magic bytes, content types, status classes, Retry-After, the
placeholder's hash, per-domain limits and URL lists."""

from __future__ import annotations

import hashlib
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from downloader import queue_client
from downloader.fetch import FetchItem, FetchResult, FetchSettings, HostLimit
from downloader.fetch.url_list import BadInput, read_url_list
from downloader.verify import (
    ERROR_CHARS,
    MAX_RETRY_AFTER,
    PLACEHOLDER_SHA256,
    content_type_ok,
    is_placeholder_url,
    printable,
    retry_after_seconds,
    sniff_ext,
    status_outcome,
)
from lab.sims.image_host.server import gif_bytes, jpeg_bytes, placeholder_png, png_bytes, webp_bytes


def test_magic_bytes_decide_the_extension():
    assert sniff_ext(jpeg_bytes(1)) == "jpg"
    assert sniff_ext(png_bytes(1)) == "png"
    assert sniff_ext(gif_bytes(1)) == "gif"
    assert sniff_ext(webp_bytes(1)) == "webp"
    assert sniff_ext(b"<!DOCTYPE html><html>") is None
    assert sniff_ext(b"RIFF\x00\x00\x00\x00WAVE") is None
    assert sniff_ext(b"") is None


def test_generated_jpegs_differ_per_photo_and_keep_their_size():
    assert jpeg_bytes(1, 5000) != jpeg_bytes(2, 5000)
    assert jpeg_bytes(1, 5000) == jpeg_bytes(1, 5000)
    assert abs(len(jpeg_bytes(3, 100_000)) - 100_000) < 16
    assert jpeg_bytes(4, 100_000).endswith(b"\xff\xd9")


def test_the_labs_placeholder_is_known_by_its_bytes():
    assert hashlib.sha256(placeholder_png()).hexdigest() in PLACEHOLDER_SHA256
    assert is_placeholder_url("https://s.yimg.com/pw/images/en-us/photo_unavailable.png")
    assert not is_placeholder_url("https://live.staticflickr.com/65535/1_a_b.jpg")


@pytest.mark.parametrize(
    "value, ok",
    [
        ("image/jpeg", True),
        ("IMAGE/PNG; charset=binary", True),
        ("application/octet-stream", True),
        (None, True),
        ("text/html; charset=utf-8", False),
        ("application/json", False),
    ],
)
def test_content_types(value, ok):
    assert content_type_ok(value) is ok


@pytest.mark.parametrize(
    "status, outcome",
    [(404, "gone"), (410, "gone"), (403, "gone"), (429, "retry"), (500, "retry")]
    + [(503, "retry"), (400, "bad"), (401, "bad"), (206, "bad"), (304, "bad")],
)
def test_status_classes(status, outcome):
    assert status_outcome(status)[0] == outcome


def test_a_403_with_retry_after_is_throttling_not_gone():
    assert status_outcome(403, "30") == ("retry", "HTTP 403 (throttled: Retry-After)")


def test_retry_after_as_seconds_or_a_date():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(formatdate(1_000_030, usegmt=True), now=1_000_000) == 30.0
    assert retry_after_seconds(formatdate(999_000, usegmt=True), now=1_000_000) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("120", 120.0),
        (" 7\t", 7.0),  # optional whitespace around the field value
        ("0", 0.0),
        ("00000000000000000007", 7.0),  # leading zeros are still delta-seconds
        ("\xb2", None),  # '²': str.isdigit() says yes, float() says no
        ("\u0663", None),  # an Arabic-Indic three: a Unicode digit, not an ASCII one
        ("-5", None),
        ("+5", None),
        ("1.5", None),
        ("1e3", None),
        ("inf", None),
        ("", None),
        ("9" * 20, 3600.0),  # huge: the cap
        ("9" * 5000, 3600.0),  # int() of over 4,300 digits raises; never reached
        ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),  # IMF-fixdate in the past: now, never negative
        ("Sunday, 06-Nov-94 08:49:37 GMT", 0.0),  # the obsolete RFC 850 form
        ("Fri, 31 Dec 9999 23:59:59 GMT", 3600.0),  # far future: the cap
        ("Sun, 06 Nov 99999 08:49:37 GMT", None),  # a year no date has
    ],
)
def test_retry_after_per_rfc_9110_is_ascii_digits_or_a_date_and_bounded(value, seconds):
    assert retry_after_seconds(value) == seconds


def test_retry_after_dates_are_gmt_and_the_cap_is_the_callers():
    now = 1_000_000
    asctime = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(now + 90))  # no zone: GMT
    assert retry_after_seconds(asctime, now=now) == 90.0
    assert retry_after_seconds(formatdate(now + 90, usegmt=True), now=now, cap=60) == 60.0
    assert retry_after_seconds("90", cap=60) == 60.0


def test_the_queue_client_reads_retry_after_with_the_same_parser():
    assert queue_client._seconds("\xb2", 5.0) == 5.0
    assert queue_client._seconds("12", 5.0) == 12.0
    assert queue_client._seconds("9" * 5000, 5.0) == MAX_RETRY_AFTER
    assert queue_client._seconds(None, 5.0) == 5.0


def test_errors_leave_the_fetcher_bounded_and_printable():
    item = FetchItem(1, "http://127.0.0.1/1_a_o.jpg")
    long = FetchResult(item, "gone", error="photo unavailable (redirected to /" + "a" * 5000)
    assert len(long.error) <= ERROR_CHARS and long.error.endswith("(5,034 chars)")
    hostile = FetchResult(item, "retry", error="HTTP 503 \x1b[2J\r\nRetry-After: \xb2\u2028")
    assert hostile.error == "HTTP 503 \\x1b[2J\\x0d\\x0aRetry-After: \\xb2\\u2028"
    assert hostile.error.isascii() and hostile.error.isprintable()
    assert printable("fine as it is") == "fine as it is"
    assert FetchResult(item, "stored", "images/x.jpg", "ab" * 32, 3).error is None


def test_per_domain_limits_match_subdomains():
    flickr = HostLimit(connections=8, per_second=50)
    settings = FetchSettings(
        hosts={"staticflickr.com": flickr, "live.staticflickr.com": HostLimit(4)}
    )
    assert settings.host_limit("farm3.staticflickr.com") == flickr
    assert settings.host_limit("staticflickr.com") == flickr
    assert settings.host_limit("live.staticflickr.com") == HostLimit(4)
    assert settings.host_limit("example.org") == settings.default_host
    assert settings.host_limit("notstaticflickr.com") == settings.default_host


def test_url_list_ids_come_from_flickr_names_else_line_numbers(tmp_path: Path):
    urls = tmp_path / "urls.txt"
    urls.write_text(
        "https://live.staticflickr.com/65535/52345678901_0a1b2c3d4e_o.jpg\n"
        "\n"
        "# a comment\n"
        "http://farm1.staticflickr.com/1/123_abc.jpg?x=1\n"
        "http://example.org/pictures/cat.jpg\n"
    )
    items = read_url_list(urls)
    assert [(i.photo_id, i.url.split("/")[2]) for i in items] == [
        (52345678901, "live.staticflickr.com"),
        (123, "farm1.staticflickr.com"),
        (5, "example.org"),
    ]


def test_url_list_rejects_a_non_url_with_its_line(tmp_path: Path):
    urls = tmp_path / "urls.txt"
    urls.write_text("http://example.org/1_a.jpg\n/just/a/path.jpg\n")
    with pytest.raises(BadInput, match=r"urls.txt:2: not an http\(s\) URL"):
        read_url_list(urls)
