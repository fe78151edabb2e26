"""The lab's Flickr keys that sign (#21): `flickr_service.configure` gives the simulator the
credentials of the keys issued with an access token (0600), and none when no key signs (what
the lab does by default); the simulator's desk verifies a call signed with them and refuses
one signed with anything else."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from oauthlib.oauth1 import Client

from lab.fleet.core import LabConfig
from lab.sims.flickr import service
from lab.sims.flickr.oauth import Credentials, HttpRequest, OAuthDesk
from lab.sims.flickr.wire import ApiError

URL = "http://10.213.0.1:8600/services/rest/"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
BODY = "method=flickr.photos.search&safe_search=3&format=json"


def signed_call(key: dict[str, str], **override: str) -> HttpRequest:
    """A POST signed as requests-oauthlib signs the harvester's calls (oauthlib's Client)."""
    client = Client(
        key["key"],
        client_secret=override.get("secret", key["secret"]),
        resource_owner_key=override.get("oauth_token", key["oauth_token"]),
        resource_owner_secret=key["oauth_token_secret"],
    )
    uri, headers, body = client.sign(URL, "POST", BODY, FORM)
    return HttpRequest("POST", uri, headers, body)


@pytest.fixture
def config(tmp_path: Path) -> LabConfig:
    (tmp_path / "lab").mkdir()
    return LabConfig(root=tmp_path / "lab")


def test_by_default_no_key_signs_and_the_simulator_gets_no_credentials(config):
    keys = [service.new_key(), service.new_key()]
    service.configure(config, [], [k["key"] for k in keys], keys)

    assert all(sorted(k) == ["key", "secret"] for k in keys)
    assert not (config.root / service.CREDENTIALS_FILE).exists()


def test_a_signing_key_reaches_the_simulator_which_checks_its_signatures(config):
    signing, plain = service.new_key(signed=True), service.new_key()
    service.configure(config, [], [signing["key"], plain["key"]], [signing, plain])
    path = config.root / service.CREDENTIALS_FILE

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    desk = OAuthDesk(Credentials.load(path))
    assert desk.check_call(signed_call(signing)).consumer_key == signing["key"]
    assert desk.check_call(HttpRequest("POST", URL, FORM, BODY)) is None  # unsigned
    with pytest.raises(ApiError) as bad:
        desk.check_call(signed_call(signing, secret="0" * 16))
    assert (bad.value.code, bad.value.message) == (96, "Invalid signature")
    with pytest.raises(ApiError) as unknown:
        desk.check_call(signed_call(signing, oauth_token="1" * 17 + "-" + "2" * 16))
    assert (unknown.value.code, unknown.value.message) == (98, "Invalid auth token")

    service.configure(config, [], [plain["key"]], [plain])  # no key signs any more
    assert not path.exists()
