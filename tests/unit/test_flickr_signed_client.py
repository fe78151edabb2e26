"""What the harvester's Flickr client sends (#21), caught by a server of the test's own: signed,
an OAuth 1.0a Authorization header whose signature covers the form body (the simulator's
oauthlib desk verifies it), `safe_search=3` and every content type, no secret anywhere on
the wire; unsigned, exactly today's request."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from secrets import token_hex
from urllib.parse import parse_qs

import pytest

from harvester.config import FlickrSettings
from harvester.search.flickr_api import FlickrClient
from lab.sims.flickr.oauth import Credentials, HttpRequest, OAuthDesk
from lab.sims.flickr.wire import ApiError
from tests.conftest import send_json, serving

PAGE = b'{"photos":{"page":1,"pages":0,"perpage":500,"total":"0","photo":[]},"stat":"ok"}'
KEY, SECRET, TOKEN, TOKEN_SECRET = token_hex(16), token_hex(8), token_hex(9), token_hex(8)


class Recorder(BaseHTTPRequestHandler):
    seen: list[HttpRequest] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        uri = f"http://{self.headers['Host']}{self.path}"
        self.seen.append(HttpRequest("POST", uri, dict(self.headers.items()), body))
        send_json(self, PAGE)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api_url() -> Iterator[str]:
    Recorder.seen = []
    for server in serving(ThreadingHTTPServer(("127.0.0.1", 0), Recorder)):
        yield f"http://127.0.0.1:{server.server_address[1]}/services/rest/"


def search(settings: FlickrSettings) -> HttpRequest:
    FlickrClient(settings).search(min_upload=0, max_upload=599, licenses=[4, 9], page=1)
    (request,) = Recorder.seen
    return request


def test_a_signed_search_is_signed_over_its_body_and_asks_for_every_safety_level(api_url):
    settings = FlickrSettings(
        api_url=api_url, api_key=KEY, api_secret=SECRET, oauth_token=TOKEN,
        oauth_token_secret=TOKEN_SECRET, rate_limit_per_hour=0,
    )  # fmt: skip
    request = search(settings)
    form = {k: v[0] for k, v in parse_qs(request.body).items()}

    assert form["safe_search"] == "3" and form["content_types"] == "0,1,2,3"
    assert request.headers["Authorization"].startswith("OAuth ")
    desk = OAuthDesk(Credentials({KEY: SECRET}, {TOKEN: (KEY, TOKEN_SECRET)}))
    assert desk.check_call(request).token == TOKEN  # the signature verifies, body included
    tampered = HttpRequest("POST", request.uri, request.headers, request.body + "&page=2")
    with pytest.raises(ApiError, match="Invalid signature"):
        desk.check_call(tampered)
    wire = request.body + repr(request.headers)
    assert SECRET not in wire and TOKEN_SECRET not in wire


def test_an_unsigned_search_is_todays_request(api_url):
    request = search(FlickrSettings(api_url=api_url, api_key=KEY, rate_limit_per_hour=0))
    form = parse_qs(request.body)

    assert "Authorization" not in request.headers
    assert "safe_search" not in form and "content_types" not in form
    assert form["api_key"] == [KEY] and form["method"] == ["flickr.photos.search"]
