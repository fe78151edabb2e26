"""Settings: YAML file, environment overrides, clear errors, secrets out of repr."""

from __future__ import annotations

import argparse
from secrets import token_hex

import pytest

from harvester.config import ConfigError, load_settings
from harvester.db import DatabaseError, parse_db_url
from harvester.search.seed_cli import parse_time


def test_file_then_environment(tmp_path):
    path = tmp_path / "harvester.yaml"
    path.write_text(
        "db_url: mysql://u:p@db:3306/ccmirror\n"
        "flickr:\n  api_key: file-key\n  rate_limit_per_hour: 1800\n"
        "worker:\n  lease_seconds: 60\n"
    )
    settings = load_settings(path, environ={"CCMIRROR_FLICKR_API_KEY": "env-key"})
    assert settings.db_url == "mysql://u:p@db:3306/ccmirror"
    assert settings.flickr.api_key == "env-key"
    assert settings.flickr.rate_limit_per_hour == 1800.0
    assert settings.worker.lease_seconds == 60
    assert "env-key" not in repr(settings) and "u:p" not in repr(settings)


@pytest.mark.parametrize(
    "text, message",
    [
        ("flickr:\n  api_kee: x\n", "unknown setting 'api_kee'"),
        ("worker:\n  lease_seconds: soon\n", "'lease_seconds' must be a int"),
        ("- a list\n", "must be a mapping"),
        ("flickr: [\n", "not valid YAML"),
    ],
)
def test_bad_file_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, environ={})


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_db_url_forms():
    url = parse_db_url("mysql://ccm:p%40ss@10.0.0.5:3307/catalog")
    assert (url.host, url.port, url.user, url.password, url.database) == (
        "10.0.0.5",
        3307,
        "ccm",
        "p@ss",
        "catalog",
    )
    sock = parse_db_url("mysql://ccm@localhost/catalog?unix_socket=/run/mysqld/mysqld.sock")
    assert sock.unix_socket == "/run/mysqld/mysqld.sock" and "p@ss" not in url.where
    for bad in ("", "postgres://x@y/z", "mysql://x@y/"):
        with pytest.raises(DatabaseError):
            parse_db_url(bad)


def test_dates_are_utc():
    assert parse_time("2004-01-01") == 1072915200
    assert parse_time("2004-01-01T00:10:00Z") == 1072915800
    assert parse_time("1072915200") == 1072915200
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time("2024-13-01")


# Made per run: nothing that looks like a credential sits in git (test_no_secrets_in_git).
SIGNING_ENV = {
    "CCMIRROR_FLICKR_API_SECRET": token_hex(8),
    "CCMIRROR_FLICKR_OAUTH_TOKEN": f"72157{token_hex(6)}-{token_hex(8)}",
    "CCMIRROR_FLICKR_OAUTH_TOKEN_SECRET": token_hex(8),
}


def from_environment(tmp_path, environ: dict[str, str]):
    """The flickr: settings from `environ` over an empty file (never the machine's own)."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    return load_settings(empty, environ=environ).flickr


def test_signing_credentials_from_file_or_environment_and_out_of_repr(tmp_path):
    path = tmp_path / "harvester.yaml"
    path.write_text(
        "flickr:\n  api_key: k\n  api_secret: fsecret\n  oauth_token: ftoken\n"
        "  oauth_token_secret: ftsecret\n"
    )
    from_file = load_settings(path, environ={}).flickr
    from_env = from_environment(tmp_path, {"CCMIRROR_FLICKR_API_KEY": "k", **SIGNING_ENV})

    assert from_file.signed and from_file.oauth_token == "ftoken"
    assert from_env.signed
    assert from_env.oauth_token_secret == SIGNING_ENV["CCMIRROR_FLICKR_OAUTH_TOKEN_SECRET"]
    from_env.check_signing()
    for secret in ("fsecret", "ftoken", "ftsecret"):
        assert secret not in repr(from_file)
    for secret in SIGNING_ENV.values():
        assert secret not in repr(from_env)


def test_no_signing_credentials_is_an_unsigned_key(tmp_path):
    flickr = from_environment(tmp_path, {"CCMIRROR_FLICKR_API_KEY": "k"})
    flickr.check_signing()
    assert not flickr.signed


@pytest.mark.parametrize("left_out", sorted(SIGNING_ENV))
def test_a_partial_signing_set_is_one_clear_error_naming_what_is_missing(tmp_path, left_out):
    environ = {name: value for name, value in SIGNING_ENV.items() if name != left_out}
    flickr = from_environment(tmp_path, environ)
    missing = "flickr." + left_out.removeprefix("CCMIRROR_FLICKR_").lower()

    assert not flickr.signed
    with pytest.raises(ConfigError) as refused:
        flickr.check_signing()
    assert str(refused.value).endswith(f": {missing} missing")
    for secret in SIGNING_ENV.values():
        assert secret not in str(refused.value)
