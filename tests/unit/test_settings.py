"""The one settings loader (ccmirror_common/settings.py) as both programs use it: their own
fields and defaults, the same file format, environment overrides and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccmirror_common.hosts import DEFAULT_POLICY, HostPolicy
from downloader import config as downloader_config
from harvester import config as harvester_config

PROGRAMS = [harvester_config, downloader_config]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return path


def test_both_programs_raise_the_one_config_error():
    assert harvester_config.ConfigError is downloader_config.ConfigError
    assert issubclass(harvester_config.ConfigError, ValueError)


def test_the_downloader_reads_its_file_then_the_environment(tmp_path):
    path = write(
        tmp_path,
        "queue_url: http://10.0.0.2:8700\nqueue_token: file-token\nbatch_size: 100\n"
        "fetch:\n  concurrency: 8\n  hosts: {staticflickr.com: {connections: 4}}\n"
        "push:\n  timeout: 30\n",
    )
    settings = downloader_config.load_settings(
        path, environ={"CCMIRROR_QUEUE_TOKEN": "env-token", "CCMIRROR_FETCH_TIMEOUT": "9.5"}
    )
    assert settings.queue_url == "http://10.0.0.2:8700"
    assert settings.queue_token == "env-token" and "env-token" not in repr(settings)
    assert (settings.batch_size, settings.fetch.concurrency, settings.push.timeout) == (100, 8, 30)
    assert settings.fetch.hosts == {"staticflickr.com": {"connections": 4}}
    assert settings.fetch.timeout == 9.5
    assert settings.spool == "/var/spool/ccmirror"  # its own default, untouched


def test_config_path_from_the_environment(tmp_path):
    path = write(tmp_path, "spool: /srv/spool\n")
    settings = downloader_config.load_settings(environ={"CCMIRROR_CONFIG": str(path)})
    assert settings.spool == "/srv/spool"


def test_lists_from_yaml_or_comma_separated_environment(tmp_path):
    path = write(tmp_path, "queue:\n  status_allow: [10.0.0.1, ' 10.0.0.0/24 ']\n")
    from_file = harvester_config.load_settings(path, environ={})
    assert from_file.queue.status_allow == ["10.0.0.1", "10.0.0.0/24"]
    from_env = harvester_config.load_settings(
        environ={"CCMIRROR_QUEUE_STATUS_ALLOW": "10.0.0.9, ,::1"}
    )
    assert from_env.queue.status_allow == ["10.0.0.9", "::1"]


@pytest.mark.parametrize("program", PROGRAMS, ids=["harvester", "downloader"])
def test_allow_hosts_the_same_way_in_both(program, tmp_path):
    assert program.load_settings(environ={}).fetch.allow_hosts == DEFAULT_POLICY
    path = write(tmp_path, "fetch:\n  allow_hosts: ['*.example.org']\n")
    assert program.load_settings(path, environ={}).fetch.allow_hosts == HostPolicy(
        ["*.example.org"]
    )
    env = {"CCMIRROR_FETCH_ALLOW_HOSTS": "img.example.org,10.0.0.7"}
    assert program.load_settings(environ=env).fetch.allow_hosts == HostPolicy(
        ["img.example.org", "10.0.0.7"]
    )
    with pytest.raises(program.ConfigError, match="'allow_hosts' must be a list of hosts"):
        program.load_settings(write(tmp_path, "fetch:\n  allow_hosts: 5\n"), environ={})
    with pytest.raises(program.ConfigError, match="CCMIRROR_FETCH_ALLOW_HOSTS: 'allow_hosts'"):
        program.load_settings(environ={"CCMIRROR_FETCH_ALLOW_HOSTS": " , "})


@pytest.mark.parametrize("program", PROGRAMS, ids=["harvester", "downloader"])
@pytest.mark.parametrize(
    "text, message",
    [
        ("nonsense: 1\n", "unknown setting 'nonsense'"),
        ("fetch: 3\n", "'fetch' must be a mapping"),
        ("fetch:\n  fetch: {}\n", "unknown setting 'fetch'"),
        ("fetch:\n  max_bytesz: 1\n", "fetch: unknown setting 'max_bytesz'"),
        ("- a list\n", "must be a mapping"),
        ("fetch: [\n", "not valid YAML"),
    ],
)
def test_bad_files_are_one_clear_error_in_both(program, tmp_path, text, message):
    with pytest.raises(program.ConfigError, match=message):
        program.load_settings(write(tmp_path, text), environ={})


@pytest.mark.parametrize(
    "program, variable",
    [(harvester_config, "CCMIRROR_QUEUE_PORT"), (downloader_config, "CCMIRROR_BATCH_SIZE")],
    ids=["harvester", "downloader"],
)
def test_a_bad_environment_value_names_the_variable(program, variable):
    with pytest.raises(program.ConfigError, match=f"{variable}: .* must be a int, not 'many'"):
        program.load_settings(environ={variable: "many"})
