"""The Flickr simulator's requests and answers as Flickr writes them: parameters read
leniently (dates as unix seconds or MySQL datetimes), JSON compact with ``\\/`` escapes and
wrapped in ``jsonFlickrApi(...)`` unless ``nojsoncallback=1``, XML for ``format=rest``,
``stat:fail`` errors with HTTP 200, and the plain JSON of the ``/_sim/`` pages."""

from __future__ import annotations

import calendar
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from xml.sax.saxutils import quoteattr

JSON_OK = "application/json"
JSON_FAIL = "text/plain; charset=utf-8"
XML_TYPE = "text/xml; charset=utf-8"
_CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$.]{0,63}")


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = JSON_OK
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """A Flickr ``stat:fail`` answer (HTTP 200)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def flickr_json(obj: object) -> str:
    """JSON the way Flickr writes it: compact, ``\\uXXXX`` escapes and ``\\/``."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/")


def plain_json(status: int, obj: object) -> Reply:
    return Reply(status, json.dumps(obj, separators=(",", ":")).encode(), JSON_OK)


def parse_date(value: str | None) -> int | None:
    """Unix seconds, or a MySQL datetime/date in UTC; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return calendar.timegm(datetime.strptime(value, fmt).timetuple())
        except ValueError:
            continue
    return None


def parse_int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def ok_reply(params: dict[str, str], fmt: str, payload: dict) -> Reply:
    if fmt == "rest":
        return Reply(200, xml_ok(payload), XML_TYPE)
    return Reply(200, wrap_json(params, flickr_json({**payload, "stat": "ok"})), JSON_OK)


def fail_reply(params: dict[str, str], fmt: str, err: ApiError) -> Reply:
    if fmt != "json":
        return Reply(200, xml_fail(err), XML_TYPE)
    body = flickr_json({"stat": "fail", "code": err.code, "message": err.message})
    return Reply(200, wrap_json(params, body), JSON_FAIL)


def wrap_json(params: dict[str, str], body: str) -> bytes:
    if params.get("nojsoncallback") == "1":
        return body.encode("ascii")
    callback = params.get("jsoncallback", "")
    name = callback if _CALLBACK.fullmatch(callback) else "jsonFlickrApi"
    return f"{name}({body})".encode("ascii")


# ---------------------------------------------------------------------------- XML (format=rest)
def _xml_attrs(d: dict) -> str:
    return "".join(
        f" {k}={quoteattr(str(v))}"
        for k, v in d.items()
        if not isinstance(v, dict) and v is not None
    )


def xml_ok(payload: dict) -> bytes:
    head = '<?xml version="1.0" encoding="utf-8" ?>\n<rsp stat="ok">\n'
    if "licenses" in payload:
        rows = "".join(f"\t<license{_xml_attrs(r)} />\n" for r in payload["licenses"]["license"])
        inner = f"<licenses>\n{rows}</licenses>\n"
    elif "photo" in payload:  # getInfo: the photo's attributes (its child elements left out)
        inner = f"<photo{_xml_attrs(payload['photo'])} />\n"
    else:
        photos = payload["photos"]
        attrs = _xml_attrs({k: v for k, v in photos.items() if k != "photo"})
        rows = "".join(_xml_photo(p) for p in photos["photo"])
        inner = f"<photos{attrs}>\n{rows}</photos>\n"
    return (head + inner + "</rsp>\n").encode()


def _xml_photo(p: dict) -> str:
    desc = p.get("description")
    if desc is None:
        return f"\t<photo{_xml_attrs(p)} />\n"
    text = desc["_content"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"\t<photo{_xml_attrs(p)}>\n\t\t<description>{text}</description>\n\t</photo>\n"


def xml_fail(err: ApiError) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8" ?>\n<rsp stat="fail">\n'
        f"\t<err code={quoteattr(str(err.code))} msg={quoteattr(err.message)} />\n</rsp>\n"
    ).encode()
