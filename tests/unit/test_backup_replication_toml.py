"""salt/backup/files/replication.toml.jinja, rendered as the backup droplet's Salt state and the
lab (lab/processes/seaweedfs_backup.py) render it: what `weed filer.backup` reads as its sink.
That it works against real clusters is tests/integration/test_photo_backup.py's."""

from __future__ import annotations

import tomllib

import pytest

from lab.processes.seaweedfs_backup import backup_command, render_replication_toml
from lab.processes.seaweedfs_process import StorageError

TARGET = {
    "endpoint": "https://ams3.digitaloceanspaces.com",
    "bucket": "ccmirror-backup",
    "region": "ams3",
    "access_key": "SINKKEY0123456789",
    "secret_key": "sink-secret",
}


def test_the_sink_is_s3_not_incremental_at_the_bucket_root():
    sink = tomllib.loads(render_replication_toml(TARGET))["sink"]
    assert list(sink) == ["s3"], "one sink: filer.backup takes the first enabled"
    s3 = sink["s3"]
    assert s3["enabled"] is True and s3["is_incremental"] is False
    assert (s3["endpoint"], s3["bucket"], s3["region"]) == (
        TARGET["endpoint"], TARGET["bucket"], TARGET["region"]
    )  # fmt: skip
    assert (s3["aws_access_key_id"], s3["aws_secret_access_key"]) == ("SINKKEY0123456789",
                                                                      "sink-secret")  # fmt: skip
    assert s3["directory"] == "/" and s3["s3_force_path_style"] is True


def test_a_directory_and_a_missing_region_take_their_defaults():
    text = render_replication_toml(TARGET | {"region": "", "directory": "/photos"})
    s3 = tomllib.loads(text)["sink"]["s3"]
    assert (s3["region"], s3["directory"]) == ("us-east-1", "/photos")


def test_a_target_without_its_key_is_refused():
    with pytest.raises(StorageError, match="secret_key"):
        render_replication_toml(TARGET | {"secret_key": ""})


def test_the_command_line_never_deletes_and_reads_through_the_filer():
    argv = backup_command("weed", "/etc/seaweedfs/backup", "10.0.0.3:8888", "images")
    assert argv[1:3] == ["-config_dir=/etc/seaweedfs/backup", "filer.backup"]
    assert "-doDeleteFiles=false" in argv and "-filerProxy" in argv
    assert "-filerPath=/buckets/images" in argv
    assert not any(arg.startswith(("-initialSnapshot", "-timeAgo")) for arg in argv)
