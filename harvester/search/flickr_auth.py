"""Flickr's OAuth 1.0a flow, run once per harvester key by an operator (`harvester
flickr-auth`): a request token, the URL where the key's Flickr user approves it, the verifier
Flickr shows, and the access token it is exchanged for. The result is a 0600 YAML token file
(`key`, `secret`, `oauth_token`, `oauth_token_secret`), the file `salt-run
secrets.set_flickr_key minion=hv-N from_file=...` takes. requests-oauthlib's `OAuth1Session`
signs each step; nothing here signs by hand.

Secrets stay out of every message: errors name the step and the HTTP status, never a token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests
import yaml
from requests_oauthlib import OAuth1Session
from requests_oauthlib.oauth1_session import TokenMissing, TokenRequestDenied

from ccmirror_common.cli import CommandError

PERMS = "read"  # searching needs no more than read
TIMEOUT = 30.0


class AuthError(CommandError):
    """A step of the flow failed; the message says which and why, with no secret in it."""


@dataclass(frozen=True)
class Consumer:
    key: str
    secret: str

    def __repr__(self) -> str:
        return f"Consumer(key={self.key[:4]}…)"


@dataclass(frozen=True)
class RequestToken:
    token: str
    secret: str

    def __repr__(self) -> str:
        return "RequestToken(…)"


def oauth_url(api_url: str, step: str) -> str:
    """Flickr's flow endpoint `step` beside its REST endpoint (www.flickr.com for the real
    API, the same host for a simulator): .../services/rest/ -> .../services/oauth/<step>."""
    parts = urlsplit(api_url)
    host = "www.flickr.com" if parts.netloc == "api.flickr.com" else parts.netloc
    base = parts.path.split("/services/", 1)[0]
    return urlunsplit((parts.scheme, host, f"{base}/services/oauth/{step}", "", ""))


def start(api_url: str, consumer: Consumer) -> tuple[RequestToken, str]:
    """A request token (out-of-band: Flickr shows the verifier) and the URL to approve it."""
    session = OAuth1Session(consumer.key, client_secret=consumer.secret, callback_uri="oob")
    answer = _step(
        "request token",
        lambda: session.fetch_request_token(oauth_url(api_url, "request_token"), timeout=TIMEOUT),
    )
    request = RequestToken(answer["oauth_token"], answer["oauth_token_secret"])
    url = session.authorization_url(oauth_url(api_url, "authorize"), perms=PERMS)
    return request, url


def finish(api_url: str, consumer: Consumer, request: RequestToken, verifier: str) -> dict:
    """The access token for an approved request token: the token file's four fields."""
    session = OAuth1Session(
        consumer.key,
        client_secret=consumer.secret,
        resource_owner_key=request.token,
        resource_owner_secret=request.secret,
        verifier=verifier.strip(),
    )
    answer = _step(
        "access token",
        lambda: session.fetch_access_token(oauth_url(api_url, "access_token"), timeout=TIMEOUT),
    )
    return {
        "key": consumer.key,
        "secret": consumer.secret,
        "oauth_token": answer["oauth_token"],
        "oauth_token_secret": answer["oauth_token_secret"],
    }


def _step(what: str, call):
    try:
        answer = call()
    except TokenRequestDenied as exc:
        raise AuthError(f"Flickr refused the {what} (HTTP {exc.status_code})") from None
    except TokenMissing:
        raise AuthError(f"Flickr's {what} answer has no token") from None
    except requests.RequestException as exc:
        raise AuthError(f"cannot reach Flickr for the {what}: {type(exc).__name__}") from None
    if not answer.get("oauth_token") or not answer.get("oauth_token_secret"):
        raise AuthError(f"Flickr's {what} answer has no token")
    return answer


def read_consumer(path: Path) -> Consumer:
    """The consumer key and secret from a YAML file `{key: ..., secret: ...}` that only its
    owner may read (the same file `secrets.set_flickr_key from_file=` takes)."""
    data = read_private_yaml(path)
    key, secret = data.get("key"), data.get("secret")
    if not isinstance(key, str) or not key or not isinstance(secret, str) or not secret:
        raise AuthError(f"{path} must be YAML with `key:` and `secret:`")
    return Consumer(key, secret)


def read_private_yaml(path: Path) -> dict:
    try:
        if path.stat().st_mode & 0o077:
            raise AuthError(f"{path} is readable by others: chmod 600 it first")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise AuthError(f"cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise AuthError(f"{path} must be a YAML mapping")
    return data


def write_private_yaml(path: Path, data: dict, *, force: bool) -> None:
    """`data` as YAML in a file only its owner reads, created 0600 (never widened for a
    moment); an existing file is refused unless `force`, then replaced whole."""
    if path.exists() and not force:
        raise AuthError(f"{path} exists: pass --force to replace it")
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yaml.safe_dump(data, out, default_flow_style=False)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise AuthError(f"cannot write {path}: {exc.strerror}") from None
