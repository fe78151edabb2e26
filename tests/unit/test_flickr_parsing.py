"""Parsers against real Flickr answers from ../shared/fixtures/flickr/."""

from __future__ import annotations

import json

import pytest
import yaml

from harvester.search.flickr_api import MalformedPage, parse_search_page
from harvester.search.licenses import is_cc_url, parse_licenses
from harvester.search.photos import photo_row
from tests.conftest import FIXTURES

FLICKR = FIXTURES / "flickr"


def load(name: str) -> dict:
    return json.loads((FLICKR / name).read_text())


def licenses_2025() -> dict:
    """The 2025 table from the XML cassette, as getInfo's JSON shape."""
    import xml.etree.ElementTree as ET

    cassette = yaml.safe_load((FLICKR / "xml_cassettes/licenses_getinfo_2025.yml").read_text())
    body = cassette["interactions"][0]["response"]["body"]["string"]
    entries = [dict(e.attrib) for e in ET.fromstring(body).iter("license")]
    return {"licenses": {"license": entries}, "stat": "ok"}


def test_2015_table_cc_ids_are_1_to_6_only():
    licenses = parse_licenses(load("licenses_getinfo_2015.json"))
    assert sorted(lic.id for lic in licenses if lic.is_cc) == [1, 2, 3, 4, 5, 6]


def test_2012_table_with_http_urls_is_read_the_same():
    licenses = parse_licenses(load("licenses_getinfo_2012.json"))
    assert sorted(lic.id for lic in licenses if lic.is_cc) == [1, 2, 3, 4, 5, 6]


def test_2025_table_adds_cc0_pdm_and_cc4_but_not_7_8():
    licenses = parse_licenses(licenses_2025())
    cc = sorted(lic.id for lic in licenses if lic.is_cc)
    assert cc == [1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16]


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://creativecommons.org/licenses/by/4.0/", True),
        ("http://creativecommons.org/licenses/by-nc-sa/2.0/", True),
        ("https://creativecommons.org/publicdomain/zero/1.0/", True),
        ("https://creativecommons.org/publicdomain/mark/1.0/", True),
        ("https://www.flickr.com/commons/usage/", False),
        ("https://www.usa.gov/government-copyright", False),
        ("", False),
        ("https://creativecommons.org.evil.example/licenses/by/4.0/", False),
    ],
)
def test_is_cc_decided_by_url(url, expected):
    assert is_cc_url(url) is expected


def test_getinfo_without_the_shape_is_refused():
    with pytest.raises(ValueError):
        parse_licenses({"stat": "ok"})


def test_search_page_with_url_o_takes_the_original():
    page = parse_search_page(load("getrecent_allextras_page1of10.json"))
    assert (page.page, page.pages, page.per_page, page.total) == (1, 10, 100, 1000)
    rows = [photo_row(p) for p in page.photos]
    first = rows[0]
    assert first.photo_id == 10101747234 and first.owner == "103492244@N04"
    assert first.image_size == "o" and first.image_url.endswith("_o.jpg")
    assert first.page_url == "https://www.flickr.com/photos/103492244@N04/10101747234/"
    assert first.owner_name == "Thibaut Blancheteau" and first.uploaded_at == 1380989214
    # The fixture's 10 CC photos all offer url_o.
    cc = [r for r in rows if r and r.license_id in (1, 2, 3, 4, 5, 6)]
    assert len(cc) == 10 and all(r.image_size == "o" for r in cc)


def test_search_page_without_url_o_falls_back_to_the_largest():
    page = parse_search_page(load("search_openverse_30photos_extras.json"))
    assert page.total == 30 and len(page.photos) == 30
    rows = [photo_row(p) for p in page.photos]
    sizes = {r.image_size for r in rows}
    assert "o" not in sizes and "l" in sizes
    warsy = rows[0]
    assert warsy.title == "Warsy (\u00e9glise) \u2022 7433"
    assert warsy.image_size == "l" and (warsy.width, warsy.height) == (660, 1024)
    assert warsy.image_url == "https://live.staticflickr.com/65535/49514337848_bbdbb5f761_b.jpg"


def test_search_page_without_extras_is_malformed_for_a_harvest():
    # A page without license/dateupload cannot be stored: it is retried, never half-stored.
    with pytest.raises(MalformedPage):
        parse_search_page(load("search_user_noextras_1photo.json"))


def test_error_body_is_not_a_page():
    with pytest.raises(MalformedPage):
        parse_search_page(load("error_100_invalid_api_key.json"))
