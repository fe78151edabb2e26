"""OAuth 1.0a as Flickr does it, for the simulator: which consumer keys have which secret, the
access tokens issued (loaded from a credentials file or made by the flow), the check of a
signed REST call, and the three endpoints of Flickr's flow (request token, authorize, access
token). Signatures are checked with oauthlib's own server-side functions, HMAC-SHA1 only (the
one method Flickr takes). Nonces and timestamps are not checked: the lab replays nothing.

Credentials file (JSON, 0600: it holds the lab's throw-away secrets)::

    {"keys": {"KEY": "SECRET"}, "tokens": {"TOKEN": {"key": "KEY", "secret": "TOKEN SECRET"}}}
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from oauthlib.common import CaseInsensitiveDict, Request
from oauthlib.oauth1.rfc5849 import signature

from lab.sims.flickr.wire import ApiError, Reply

BAD_SIGNATURE = (96, "Invalid signature")
BAD_TOKEN = (98, "Invalid auth token")
FORM = "application/x-www-form-urlencoded"


@dataclass
class HttpRequest:
    """What a signature covers: method, the URL as the client named it, headers, form body."""

    method: str
    uri: str
    headers: dict[str, str]
    body: str = ""


@dataclass
class Signed:
    """A signed request's OAuth parameters, after its signature was found good."""

    consumer_key: str
    token: str
    params: dict[str, str]


@dataclass
class _Pending:
    """A request token between `request_token` and `access_token`."""

    consumer_key: str
    secret: str
    verifier: str = ""


@dataclass
class Credentials:
    """Consumer secrets by key; access tokens as (consumer key, token secret)."""

    secrets: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        data = json.loads(path.read_text())
        tokens = {t: (v["key"], v["secret"]) for t, v in data.get("tokens", {}).items()}
        return cls(dict(data.get("keys", {})), tokens)


class OAuthDesk:
    """Checks signed calls and runs the token flow; thread-safe (the server is threaded)."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def check_call(self, request: HttpRequest) -> Signed | None:
        """None for an unsigned call; a signed REST call's key and token when its signature
        verifies; else Flickr's error (98 for a token it never issued, 96 for a bad
        signature, 100 for a consumer key without a secret here)."""
        parsed = _parse(request)
        if parsed is None:
            return None
        oauth_request, oauth = parsed
        consumer_secret = self._consumer_secret(oauth)
        with self._lock:
            issued = self.credentials.tokens.get(oauth.get("oauth_token", ""))
        if issued is None or issued[0] != oauth["oauth_consumer_key"]:
            raise ApiError(*BAD_TOKEN)
        _verify(oauth_request, oauth, consumer_secret, issued[1])
        return Signed(oauth["oauth_consumer_key"], oauth["oauth_token"], oauth)

    def request_token(self, request: HttpRequest) -> Reply:
        """`/services/oauth/request_token`: signed by the consumer alone."""
        try:
            oauth_request, oauth = self._signed_flow_step(request)
            _verify(oauth_request, oauth, self._consumer_secret(oauth), "")
        except ApiError as err:
            return _problem(err)
        token, secret = _new_token(), secrets.token_hex(8)
        with self._lock:
            self._pending[token] = _Pending(oauth["oauth_consumer_key"], secret)
        return _form(
            {"oauth_callback_confirmed": "true", "oauth_token": token, "oauth_token_secret": secret}
        )

    def authorize(self, query: dict[str, str]) -> Reply:
        """`/services/oauth/authorize`: where Flickr asks the user; the simulator's user always
        says yes and, as for an out-of-band callback, is shown the verifier code."""
        with self._lock:
            pending = self._pending.get(query.get("oauth_token", ""))
            if pending is None:
                return Reply(404, b"oauth_problem=token_rejected", "text/plain; charset=utf-8")
            pending.verifier = pending.verifier or f"{secrets.randbelow(10**9):09d}"
            code = pending.verifier
        return Reply(200, f"oauth_verifier={code}".encode(), "text/plain; charset=utf-8")

    def access_token(self, request: HttpRequest) -> Reply:
        """`/services/oauth/access_token`: the request token, its secret and the verifier give
        an access token, which REST calls then sign with."""
        try:
            oauth_request, oauth = self._signed_flow_step(request)
            consumer_secret = self._consumer_secret(oauth)
            with self._lock:
                pending = self._pending.get(oauth.get("oauth_token", ""))
            if pending is None or pending.consumer_key != oauth["oauth_consumer_key"]:
                raise ApiError(*BAD_TOKEN)
            _verify(oauth_request, oauth, consumer_secret, pending.secret)
            if not pending.verifier or oauth.get("oauth_verifier") != pending.verifier:
                raise ApiError(98, "Invalid verifier")
        except ApiError as err:
            return _problem(err)
        token, secret = _new_token(), secrets.token_hex(8)
        with self._lock:
            self._pending.pop(oauth["oauth_token"], None)
            self.credentials.tokens[token] = (oauth["oauth_consumer_key"], secret)
        return _form(
            {
                "fullname": "Lab Operator",
                "oauth_token": token,
                "oauth_token_secret": secret,
                "user_nsid": "10000001@N00",
                "username": "lab-operator",
            }
        )

    def _signed_flow_step(self, request: HttpRequest) -> tuple[Request, dict[str, str]]:
        parsed = _parse(request)
        if parsed is None:
            raise ApiError(97, "Missing signature")
        return parsed

    def _consumer_secret(self, oauth: dict[str, str]) -> str:
        secret = self.credentials.secrets.get(oauth.get("oauth_consumer_key", ""))
        if secret is None:
            raise ApiError(100, "Invalid API Key (Key not found)")
        return secret


def _parse(request: HttpRequest) -> tuple[Request, dict[str, str]] | None:
    """oauthlib's view of a request (its parameters from the query, a form body and the
    Authorization header, the signature apart), and its oauth_* parameters; None unsigned."""
    # Most calls are unsigned (every benchmark's): they skip oauthlib's parsing.
    headers = CaseInsensitiveDict(request.headers)
    where = (headers.get("Authorization", ""), request.body, request.uri)
    if not any("oauth_signature" in text for text in where):
        return None
    form = FORM in headers.get("Content-Type", "").lower()
    oauth_request = Request(
        request.uri, request.method, request.body if form else "", request.headers
    )
    params = signature.collect_parameters(
        uri_query=oauth_request.uri_query,
        body=oauth_request.body,
        headers=oauth_request.headers,
        exclude_oauth_signature=False,
    )
    oauth = {k: v for k, v in params if k.startswith("oauth_")}
    if "oauth_signature" not in oauth:
        return None
    if "oauth_consumer_key" not in oauth:
        raise ApiError(*BAD_SIGNATURE)
    oauth_request.params = [(k, v) for k, v in params if k != "oauth_signature"]
    oauth_request.signature = oauth["oauth_signature"]
    return oauth_request, oauth


def _verify(request: Request, oauth: dict[str, str], consumer: str, token: str) -> None:
    if oauth.get("oauth_signature_method") != "HMAC-SHA1":
        raise ApiError(*BAD_SIGNATURE)
    if not signature.verify_hmac_sha1(request, consumer, token):
        raise ApiError(*BAD_SIGNATURE)


def _new_token() -> str:
    # Flickr's shape: 17 digits, a dash, 16 hex digits.
    return f"{secrets.randbelow(10**17):017d}-{secrets.token_hex(8)}"


def _form(values: dict[str, str]) -> Reply:
    return Reply(200, urlencode(values).encode(), "text/plain; charset=utf-8")


def _problem(err: ApiError) -> Reply:
    """The token endpoints answer a refusal as 401 with an oauth_problem, as Flickr does."""
    problem = "signature_invalid" if err.code == 96 else "token_rejected"
    if err.code == 100:
        problem = "consumer_key_unknown"
    return Reply(401, f"oauth_problem={problem}".encode(), "text/plain; charset=utf-8")
