"""The fetcher's pure checks: magic bytes, content types, status classes, Retry-After, the
placeholder's hash, per-domain limits and URL lists."""

from __future__ import annotations

import hashlib
from email.utils import formatdate
from pathlib import Path

import pytest

from downloader.fetch import BadInput, FetchSettings, HostLimit, read_url_list
from downloader.verify import (
    PLACEHOLDER_SHA256,
    content_type_ok,
    is_placeholder_url,
    retry_after_seconds,
    sniff_ext,
    status_outcome,
)
from lab.image_host import gif_bytes, jpeg_bytes, placeholder_png, png_bytes, webp_bytes


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
    [(404, "gone"), (410, "gone"), (403, "retry"), (429, "retry"), (500, "retry")]
    + [(503, "retry"), (400, "bad"), (401, "bad"), (206, "bad"), (304, "bad")],
)
def test_status_classes(status, outcome):
    assert status_outcome(status)[0] == outcome


def test_retry_after_as_seconds_or_a_date():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(formatdate(1_000_030, usegmt=True), now=1_000_000) == 30.0
    assert retry_after_seconds(formatdate(999_000, usegmt=True), now=1_000_000) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


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
