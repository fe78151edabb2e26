"""The backup target's walk over a managed S3's listing (harvester/backup/target.py
walk_keys): Spaces lists the copies' keys, which no S3 here does (a SeaweedFS gateway hides
keys under `*.versions/`; tests/integration/test_photo_backup.py walks its filer), so the
listing's pages are given as ListObjectsV2 would send them."""

from __future__ import annotations

from harvester.backup.target import walk_keys
from harvester.config import BackupTargetSettings


class Listing:
    """A client whose ListObjectsV2 paginator sends `pages` (lists of keys) in order."""

    def __init__(self, pages: list[list[str]]) -> None:
        self.pages, self.asked = pages, []

    def get_paginator(self, name: str):
        assert name == "list_objects_v2"
        return self

    def paginate(self, **kwargs):
        self.asked.append(kwargs)
        for keys in self.pages:
            yield {"Contents": [{"Key": key} for key in keys]}


def copy(key: str, version: str, directory: str = "") -> str:
    return f"{directory}{key}.versions/v_{version}"


A, B, C = "images/01/00/1.jpg", "images/02/00/2.jpg", "images/03/00/3.jpg"


def test_a_key_whose_copies_are_split_between_pages_is_walked_once():
    pages = [[copy(A, "1"), copy(B, "1")], [copy(B, "2"), copy(C, "1")], [copy(C, "2")]]
    assert list(walk_keys(Listing(pages), BackupTargetSettings(bucket="b"))) == [[A], [B], [C]]


def test_a_page_of_one_keys_copies_only_walks_it_once():
    pages = [[copy(A, "1")], [copy(A, "2")], [copy(A, "3"), copy(B, "1")]]
    assert list(walk_keys(Listing(pages), BackupTargetSettings(bucket="b"))) == [[A], [B]]


def test_the_walk_lists_under_the_sinks_directory_and_skips_what_is_no_copy():
    listing = Listing([[copy(A, "1", "mirror/"), "mirror/images/stray.txt"]])
    settings = BackupTargetSettings(bucket="b", directory="/mirror/")
    assert list(walk_keys(listing, settings)) == [[A]]
    assert listing.asked[0]["Prefix"] == "mirror/images/" and listing.asked[0]["Bucket"] == "b"


def test_an_empty_backup_walks_nothing():
    assert list(walk_keys(Listing([[]]), BackupTargetSettings(bucket="b"))) == []
