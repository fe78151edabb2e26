"""`metrics.listen` as the settings read it (ccmirror_common/metrics_server.py), and the batch
jobs' textfile (ccmirror_common/job_textfile.py)."""

from __future__ import annotations

import pytest

from ccmirror_common.job_textfile import record_if_set, record_success
from ccmirror_common.settings import ConfigError
from downloader.config import load_settings as downloader_settings
from harvester.config import load_settings as harvester_settings


@pytest.mark.parametrize(
    ("given", "kept"),
    [("", ""), ("10.0.0.5:9712", "10.0.0.5:9712"), (" [::1]:9711 ", "[::1]:9711")],
)
def test_a_listen_address_is_host_and_port_or_nothing(given, kept):
    env = {"CCMIRROR_METRICS_LISTEN": given}
    assert downloader_settings("/dev/null", environ=env).metrics.listen == kept
    assert harvester_settings("/dev/null", environ=env).metrics.listen == kept


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("9712", "must be host:port"),
        (":9712", "must be host:port"),
        ("10.0.0.5:0", "the port must be 1 to 65535"),
        ("10.0.0.5:http", "the port must be 1 to 65535"),
        ("::1:9711", "an IPv6 address goes in brackets"),
        ("[nonsense]:9711", "brackets hold an IPv6 address"),
    ],
)
def test_a_bad_listen_address_is_one_error_naming_the_setting(tmp_path, given, error):
    path = tmp_path / "downloader.yaml"
    path.write_text(f"metrics: {{listen: '{given}'}}\n")
    with pytest.raises(ConfigError, match=error) as raised:
        downloader_settings(path, environ={})
    assert f"{path}: metrics: 'listen'" in str(raised.value)


def test_a_jobs_textfile_is_its_success_time_and_nothing_else(tmp_path):
    path = record_success("catalog_backup", tmp_path, 1700000000.5)
    assert path == tmp_path / "ccmirror_catalog_backup.prom"
    assert 'ccmirror_job_last_success_timestamp_seconds{job="catalog_backup"} 1.7000000005e+09' in (
        path.read_text()
    )
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    with pytest.raises(ValueError, match="a job name is"):
        record_success("../audit", tmp_path, 1.0)
    assert record_if_set("audit", "") is None  # no directory set: nothing written
