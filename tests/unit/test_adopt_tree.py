"""harvester/adopt/tree.py and the name matching of harvester/adopt/job.py: which photo a
file of an old layout claims to be, whether the catalog's URLs name that file, and whether its
bytes are a whole image of its format."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib

import pytest

from harvester.adopt.job import fits
from harvester.adopt.tree import (
    Claim,
    TreeError,
    checked_root,
    claim,
    examine,
    image_problem,
    walk,
)
from lab.sims.image_host.server import jpeg_bytes, placeholder_png

PHOTO = 5_000_000_001
URLS = (
    f"https://live.staticflickr.com/65535/{PHOTO}_a1b2c3_o.jpg",
    f"https://live.staticflickr.com/65535/{PHOTO}_d4e5f6_b.jpg",
)


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        (f"farm1/123/{PHOTO}_a1b2c3_o.jpg", Claim(f"farm1/123/{PHOTO}_a1b2c3_o.jpg", PHOTO,
                                                  "jpg", "flickr", "a1b2c3", "o")),
        (f"{PHOTO}_d4e5f6.JPEG", Claim(f"{PHOTO}_d4e5f6.JPEG", PHOTO, "jpg", "flickr",
                                       "d4e5f6", None)),
        ("images/01/f2/5000000001.jpg", Claim("images/01/f2/5000000001.jpg", PHOTO, "jpg",
                                              "ccmirror")),
        ("01/f2/5000000001.png", Claim("01/f2/5000000001.png", PHOTO, "png", "ccmirror")),
        ("images/f2/01/5000000001.jpg", None),  # another photo's directory
        ("5000000001.jpg", None),  # no <aa>/<bb>
        ("images/01/f2/5000000001.tif", None),
        (f"{PHOTO}_a1b2c3_o.txt", None),
        (f"{PHOTO}_SECRET_o.jpg", None),
        ("manifests/2016/03/01/7.jsonl", None),
        ("99999999999999999999999_ab_o.jpg", None),  # over BIGINT UNSIGNED
    ],
)  # fmt: skip
def test_a_file_claims_the_photo_its_layout_names(relative, expected):
    assert claim(relative) == expected


def test_an_old_system_file_fits_only_a_url_the_catalog_holds():
    assert fits(claim(f"x/{PHOTO}_a1b2c3_o.jpg"), URLS)
    assert fits(claim(f"x/{PHOTO}_d4e5f6_b.jpg"), URLS)  # the fallback size
    assert not fits(claim(f"x/{PHOTO}_a1b2c3_b.jpg"), URLS)  # the original's secret, size b
    assert not fits(claim(f"x/{PHOTO}_ffffff_o.jpg"), URLS)  # a secret of another upload
    assert not fits(claim(f"x/{PHOTO}_a1b2c3_o.png"), URLS)
    assert fits(claim("images/01/f2/5000000001.jpg"), URLS)
    assert not fits(claim("images/01/f2/5000000001.png"), URLS)  # not the catalog's format


def png(chunks_after_ihdr: bytes = b"") -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunks_after_ihdr
            + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))  # fmt: skip


def webp(payload: bytes) -> bytes:
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    ("data", "ext", "problem"),
    [
        (jpeg_bytes(1, 300), "jpg", None),
        (jpeg_bytes(1, 300) + b"\x00" * 8, "jpg", None),  # padding after EOI
        (jpeg_bytes(1, 300)[:-30], "jpg", "truncated: the jpg does not end as one does"),
        (png(), "png", None),
        (png()[:-4], "png", "truncated: the png does not end as one does"),
        (b"GIF89a" + b"\x00" * 20 + b";", "gif", None),
        (b"GIF89a" + b"\x00" * 20, "gif", "truncated: the gif does not end as one does"),
        (webp(b"\x00" * 30), "webp", None),
        (webp(b"\x00" * 30)[:-5], "webp", "truncated: the webp does not end as one does"),
        (placeholder_png(), "jpg", "a png image named .jpg"),
        (b"<html>404</html>", "jpg", "not an image (no JPEG, PNG, GIF or WebP signature)"),
        (b"", "jpg", "not an image (no JPEG, PNG, GIF or WebP signature)"),
    ],
)
def test_only_a_whole_image_of_its_names_format_passes(data, ext, problem):
    assert image_problem(data, ext) == problem


def test_examine_gives_digests_and_refuses_an_oversized_file_unread(tmp_path):
    path = tmp_path / "a.jpg"
    data = jpeg_bytes(7, 500)
    path.write_bytes(data)
    content = examine(path, "jpg", 10_000)
    assert (content.size, content.problem) == (len(data), None)
    assert content.sha256 == hashlib.sha256(data).hexdigest()
    assert content.md5 == hashlib.md5(data).hexdigest()
    big = examine(path, "jpg", 499)
    assert big.problem == f"{len(data)} bytes, over the 499 an image may have"
    assert big.sha256 == ""


def test_a_root_that_cannot_be_walked_is_one_tree_error(tmp_path):
    (tmp_path / "file").write_text("x")
    for given, said in [
        (tmp_path / "nowhere", "no such directory"),
        (tmp_path / "file", "not a directory"),
    ]:
        with pytest.raises(TreeError, match=said):
            checked_root(given)
    assert checked_root(tmp_path) == tmp_path.resolve()


def test_the_walk_is_sorted_and_names_what_it_cannot_take(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.jpg").write_bytes(b"x")
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b" / "1.jpg").symlink_to(tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "b" / "pipe")
    refused: list[tuple[str, str]] = []
    assert list(walk(tmp_path, lambda path, why: refused.append((path, why)))) == [
        "a.jpg",
        "b/2.jpg",
    ]
    assert refused == [
        ("b/1.jpg", "a symlink (only regular files are imported)"),
        ("b/pipe", "not a regular file"),
    ]
