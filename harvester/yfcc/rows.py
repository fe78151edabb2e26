"""One YFCC100M line -> the row `yfcc_photos` keeps, or the reason the line is left out.

Pure functions, no database; `harvester.yfcc.load` streams files through them.

A line is 23 tab-separated fields (the 2014 `yfcc100m_dataset-N` files) or 25: the 2016
single-file release puts a line number in front and the photo hash after the photo id;
a hash-before-id order (line number, hash, id, ...) is read too. The form is detected per
line, so concatenated files of both kinds import alike.

Checks run cheapest and most structural first, so every line gets exactly one reason:
field count, photo id, owner, upload date, marker (a video is skipped), license (not CC is
skipped), then the two text fields kept (owner nickname and title) are URL-decoded, and the
image URLs are built. Only the fields attribution needs are decoded at all: descriptions,
tags and geo are never touched, which is most of what keeps this fast.

What a row holds:
- image_url: the original, `https://farm{farm}.staticflickr.com/{server}/{id}_{secret
  original}_o.{ext}`, image_size 'o'; fallback_url: the dataset's download URL (500 px),
  as https on Flickr's image hosts. A line without the original's parts (empty or odd
  secret original, extension, farm or server) has the download URL as image_url with
  image_size 'm' (the API's name for 500 px, as in harvester.search.photos) and no fallback; a
  line with neither is `bad_url`; one whose image or fallback URL is not on a host of
  `fetch.allow_hosts` (ccmirror_common/hosts.py; by name, no DNS) is `host_not_allowed`.
- page_url: the dataset's page URL as https, rebuilt from owner and id when missing.
- owner_name, title: URL-decoded (`+`, `%XX` as UTF-8), cut to their columns' widths.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import unquote_plus

from ccmirror_common.hosts import DEFAULT_POLICY, HostPolicy

# Why a line is not imported. Skips are lines that are fine but not wanted; corrupt lines
# are reported with their file and line number.
SKIP_REASONS = ("video", "not_cc")
CORRUPT_REASONS = (
    "field_count",
    "bad_encoding",
    "bad_id",
    "bad_owner",
    "bad_upload_date",
    "bad_marker",
    "bad_url",
    "host_not_allowed",  # an image or fallback URL on a host the allow-list does not name
    "line_too_long",  # from the importer: no newline within MAX_LINE_BYTES
)

# Flickr's license ids by CC URL without scheme and trailing slash (YFCC100M has no id
# column). Ids as `flickr.photos.licenses.getInfo` gives them in 2025; the `licenses` table,
# when filled, takes precedence (see LicenseMap.with_table).
BUILTIN_LICENSES: dict[str, int] = {
    "creativecommons.org/licenses/by-nc-sa/2.0": 1,
    "creativecommons.org/licenses/by-nc/2.0": 2,
    "creativecommons.org/licenses/by-nc-nd/2.0": 3,
    "creativecommons.org/licenses/by/2.0": 4,
    "creativecommons.org/licenses/by-sa/2.0": 5,
    "creativecommons.org/licenses/by-nd/2.0": 6,
    "creativecommons.org/publicdomain/zero/1.0": 9,
    "creativecommons.org/publicdomain/mark/1.0": 10,
    "creativecommons.org/licenses/by/4.0": 11,
    "creativecommons.org/licenses/by-sa/4.0": 12,
    "creativecommons.org/licenses/by-nd/4.0": 13,
    "creativecommons.org/licenses/by-nc/4.0": 14,
    "creativecommons.org/licenses/by-nc-sa/4.0": 15,
    "creativecommons.org/licenses/by-nc-nd/4.0": 16,
}

# Column widths of yfcc_photos (migration 0002): longer text is cut, a longer URL rejected.
OWNER_MAX = 64
OWNER_NAME_MAX = 255
TITLE_MAX = 1024
PAGE_URL_MAX = 255
IMAGE_URL_MAX = 512
UPLOADED_MAX = 4_102_444_800  # 2100-01-01: later is not a date YFCC100M can hold
PHOTO_ID_MAX = (1 << 64) - 1  # BIGINT UNSIGNED
NAMES_CACHED = 100_000  # decoded owner nicknames remembered (a few MB at most)
_NAMES: dict[str, str] = {}

# The dataset's download URL is Flickr's 500 px size, which the API calls `url_m`
# (harvester.search.photos.SIZES_BY_PREFERENCE): the size recorded when it is the image URL.
ORIGINAL_SIZE = "o"
DOWNLOAD_SIZE = "m"

# LOAD DATA's default escaping (FIELDS ESCAPED BY '\\'): `\N` is NULL.
TSV_NULL = "\\N"
TSV_COLUMNS = (
    "photo_id",
    "owner",
    "owner_name",
    "title",
    "license_id",
    "page_url",
    "image_url",
    "image_size",
    "fallback_url",
    "uploaded_at",
)


class YfccRow(NamedTuple):
    photo_id: int
    owner: str
    owner_name: str
    title: str
    license_id: int
    page_url: str
    image_url: str
    image_size: str
    fallback_url: str | None
    uploaded_at: int


def license_key(url: str) -> str:
    """A license URL without scheme, `www.` and trailing slash, lower case."""
    key = url.strip().lower()
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    if key.startswith("www."):
        key = key[4:]
    return key.rstrip("/")


class LicenseMap:
    """License URL -> Flickr license id, for CC licenses only.

    The hot path is one dict lookup of the URL exactly as the dataset spells it: every
    canonical URL is entered with http and https, with and without trailing slash. Other
    spellings are normalised once and remembered (up to `CACHE_MAX` of them, so a file full
    of garbage URLs cannot grow memory).
    """

    CACHE_MAX = 10_000

    def __init__(self, ids_by_key: dict[str, int]) -> None:
        self.ids_by_key = dict(ids_by_key)
        # CC URLs only: a miss (None from .get) goes to `get`, which also remembers misses.
        self.exact: dict[str, int] = {}
        for key, license_id in self.ids_by_key.items():
            for scheme in ("http://", "https://"):
                self.exact[scheme + key] = license_id
                self.exact[scheme + key + "/"] = license_id
        self._seen: dict[str, int | None] = {}

    @classmethod
    def builtin(cls) -> LicenseMap:
        return cls(BUILTIN_LICENSES)

    @classmethod
    def with_table(cls, rows: Iterable[tuple[int, str, bool]]) -> LicenseMap:
        """The built-in map, overridden by rows (id, url, is_cc) of the `licenses` table.

        Flickr's own table wins: a URL it maps to another id takes that id, and a URL it
        lists as not CC is dropped. URLs it does not list keep their built-in id (a table
        read in 2015 has no 4.0 licenses, yet such a line is still CC).
        """
        ids = dict(BUILTIN_LICENSES)
        for license_id, url, is_cc in rows:
            key = license_key(url or "")
            if not key:
                continue
            if is_cc:
                ids[key] = int(license_id)
            else:
                ids.pop(key, None)
        return cls(ids)

    def get(self, url: str) -> int | None:
        """The id for `url` as written in a line; None when it is not a CC license."""
        license_id = self.exact.get(url)
        if license_id is not None:
            return license_id
        try:
            return self._seen[url]
        except KeyError:
            pass
        license_id = self.ids_by_key.get(license_key(url))
        if len(self._seen) < self.CACHE_MAX:
            self._seen[url] = license_id
        return license_id


def parse_line(
    line: str, licenses: LicenseMap, hosts: HostPolicy = DEFAULT_POLICY
) -> YfccRow | str:
    """The row for one line (without its line end), or the reason it is left out."""
    result = parse_fields(line, licenses, hosts)
    return result if type(result) is str else YfccRow._make(result)


def parse_fields(
    line: str, licenses: LicenseMap, hosts: HostPolicy = DEFAULT_POLICY
) -> tuple | str:
    """`parse_line` as a plain tuple in YfccRow's order: the importer's hot path.

    Written for speed (every YFCC100M line passes here): one split, C-level string checks,
    no helper calls for the common case.
    """
    fields = line.split("\t")
    count = len(fields)
    if count == 25:
        # 2016 release: line number, id, hash, ...; tolerate line number, hash, id, ...
        fields = fields[2:] if len(fields[1]) == 32 else [fields[1], *fields[3:]]
    elif count != 23:
        return "field_count"
    (
        id_text,
        owner,
        nickname,
        _taken,
        uploaded_text,
        _device,
        title,
        _description,
        _user_tags,
        _machine_tags,
        _longitude,
        _latitude,
        _accuracy,
        page_url,
        download_url,
        _license_name,
        license_url,
        server,
        farm,
        _secret,
        secret_original,
        extension,
        marker,
    ) = fields

    # One scan of the whole line: most lines are ASCII without a backslash (YFCC100M
    # URL-encodes its text), which spares each field its own checks below.
    plain = line.isascii() and "\\" not in line
    if not (id_text.isdigit() and (plain or id_text.isascii())):
        return "bad_id"
    photo_id = int(id_text)
    if not 0 < photo_id <= PHOTO_ID_MAX:
        return "bad_id"
    if not owner or len(owner) > OWNER_MAX or "@" not in owner or not (plain or _clean(owner)):
        return "bad_owner"
    if not (uploaded_text.isdigit() and (plain or uploaded_text.isascii())):
        return "bad_upload_date"
    uploaded_at = int(uploaded_text)
    if not 0 < uploaded_at < UPLOADED_MAX:
        return "bad_upload_date"

    if marker != "0":
        marker = marker.rstrip("\r")  # a file with CRLF line ends
        if marker == "1":
            return "video"
        if marker != "0":
            return "bad_marker"

    license_id = licenses.exact.get(license_url)
    if license_id is None:
        license_id = licenses.get(license_url)
        if license_id is None:
            return "not_cc"

    try:
        # An owner's photos come in runs and share a nickname: decode it once.
        owner_name = _NAMES.get(nickname)
        if owner_name is None:
            owner_name = url_decode(nickname)[:OWNER_NAME_MAX]
            if len(_NAMES) >= NAMES_CACHED:
                _NAMES.clear()
            _NAMES[nickname] = owner_name
        title = url_decode(title)[:TITLE_MAX]
    except UnicodeDecodeError:
        return "bad_encoding"

    # The dataset's download URL (500 px) is the fallback; the original is the image.
    # Flickr's image hosts answer https (the dataset says http); others are kept as given.
    if download_url.startswith("http://") and ".staticflickr.com/" in download_url:
        fallback_url = "https://" + download_url[7:]
    elif download_url.startswith(("http://", "https://")):
        fallback_url = download_url
    else:
        fallback_url = None
    if fallback_url is not None and (
        len(fallback_url) > IMAGE_URL_MAX or not (plain or _clean(fallback_url))
    ):
        fallback_url = None
    image_size = ORIGINAL_SIZE
    if farm.isdigit() and server.isdigit() and secret_original.isalnum() and extension.isalnum():
        image_url = (
            f"https://farm{farm}.staticflickr.com/{server}/"
            f"{photo_id}_{secret_original}_o.{extension}"
        )
        if len(image_url) > IMAGE_URL_MAX or not (plain or _clean(image_url)):
            image_url = None
    else:
        image_url = None
    if image_url is None:
        if fallback_url is None:
            return "bad_url"
        image_url, image_size, fallback_url = fallback_url, DOWNLOAD_SIZE, None
    # Both URLs on allowed hosts, or the line is refused: a dataset row pointing elsewhere
    # would send the downloaders there. Decisions are cached per host: a dict lookup.
    if not hosts.allows_url(image_url) or (fallback_url and not hosts.allows_url(fallback_url)):
        return "host_not_allowed"

    if page_url.startswith("http://"):
        page_url = "https://" + page_url[7:]
    elif not page_url.startswith("https://"):
        page_url = ""
    if not page_url or len(page_url) > PAGE_URL_MAX or not (plain or _clean(page_url)):
        page_url = f"https://www.flickr.com/photos/{owner}/{photo_id}/"
    return (
        photo_id,
        owner,
        owner_name,
        title,
        license_id,
        page_url,
        image_url,
        image_size,
        fallback_url,
        uploaded_at,
    )


def url_decode(text: str) -> str:
    """`unquote_plus` that raises UnicodeDecodeError on bytes that are not UTF-8.

    urllib's version is pure Python and was most of the parse time; the common case
    (ASCII, no backslash, well-formed escapes) goes through C codecs: each `%XX` becomes a `\\xXX`
    escape, `unicode_escape` turns it into the byte's latin-1 character, and latin-1 -> bytes
    -> UTF-8 yields the text. Anything else takes urllib's road, with the same result.
    """
    if "%" not in text:
        return text.replace("+", " ")
    if text.isascii() and "\\" not in text:
        try:
            raw = text.replace("+", " ").replace("%", "\\x").encode("ascii")
            return raw.decode("unicode_escape").encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            pass  # a malformed escape, or not UTF-8: urllib decides which
    return unquote_plus(text, errors="strict")


def original_url(photo_id: int, farm: str, server: str, secret: str, extension: str) -> str | None:
    """The original's URL, or None when the line lacks a part of it."""
    if not (farm.isdigit() and server.isdigit() and secret.isalnum() and extension.isalnum()):
        return None
    url = f"https://farm{farm}.staticflickr.com/{server}/{photo_id}_{secret}_o.{extension}"
    return url if len(url) <= IMAGE_URL_MAX and _clean(url) else None


def _clean(text: str) -> bool:
    # ASCII (isdigit/isalnum also accept other scripts' digits and letters), and no
    # backslash, which LOAD DATA would read as an escape. Raw fields never need either.
    return text.isascii() and "\\" not in text


def tsv_line(row: tuple) -> str:
    """A row (YfccRow or parse_fields' tuple) as one LOAD DATA line: TSV_COLUMNS order,
    default escaping (backslash, tab, newline, NUL in the decoded text), newline end."""
    photo_id, owner, owner_name, title, license_id, page, image, size, fallback, uploaded = row
    if "\\" in owner_name or "\t" in owner_name or "\n" in owner_name or "\x00" in owner_name:
        owner_name = _escape(owner_name)
    if "\\" in title or "\t" in title or "\n" in title or "\x00" in title:
        title = _escape(title)
    if fallback is None:
        fallback = TSV_NULL
    return (
        f"{photo_id}\t{owner}\t{owner_name}\t{title}\t{license_id}\t{page}\t{image}\t"
        f"{size}\t{fallback}\t{uploaded}\n"
    )


def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\x00", "\\0")
    )


def parse_raw(
    raw: bytes, licenses: LicenseMap, hosts: HostPolicy = DEFAULT_POLICY
) -> YfccRow | str:
    """`parse_line` for undecoded bytes: a line that is not UTF-8 is `bad_encoding`."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bad_encoding"
    return parse_line(line.rstrip("\n"), licenses, hosts)
