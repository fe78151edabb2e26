"""A harvester's signing credentials reach its config only all together (#21): with an access
token set by `secrets.set_flickr_key`, hv-1's rendered config loads as signed settings with
its own key, secret and token; without one (the lab's default), it holds the key alone and
the harvester is unsigned."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.fleet.lab_secrets import write_lab_secrets, writer
from tests.salt.conftest import MINIONS, ROOT, SITE, make_salt_call
from tests.salt.test_fetch_allow_hosts import CONFIGS
from tests.salt.test_render import args

TOKEN = ("72157600000000001-0123456789abcdef", "tokensecret0123")


def harvester_settings(salt_call, tmp_path: Path):
    from harvester.config import load_settings

    minion, state_id = CONFIGS["harvester"]
    path = tmp_path / "harvester.yaml"
    path.write_text(args(salt_call(minion, "state.show_highstate")[state_id])["contents"])
    return load_settings(path, environ={}).flickr


@pytest.fixture(scope="module")
def signed_call(salt_call_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    private = tmp_path_factory.mktemp("salt-signed") / "private"
    write_lab_secrets(private, MINIONS, SITE)
    writer().store_flickr_key(private, "hv-1", "0123abcd0123abcd", "89ef89ef", TOKEN)
    config_dir = tmp_path_factory.mktemp("salt-signed-minion")
    return make_salt_call(salt_call_bin, config_dir, [ROOT / "pillar", private])


def test_a_harvester_with_a_token_gets_a_signed_config(signed_call, tmp_path):
    flickr = harvester_settings(signed_call, tmp_path)

    flickr.check_signing()
    assert flickr.signed
    assert (flickr.api_key, flickr.api_secret) == ("0123abcd0123abcd", "89ef89ef")
    assert (flickr.oauth_token, flickr.oauth_token_secret) == TOKEN


def test_a_harvester_without_a_token_gets_its_key_alone(salt_call, tmp_path):
    flickr = harvester_settings(salt_call, tmp_path)

    assert flickr.api_key and not flickr.signed
    assert (flickr.api_secret, flickr.oauth_token, flickr.oauth_token_secret) == ("", "", "")
