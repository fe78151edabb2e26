"""The downloader's `storage` setting as an S3 bucket: file mapping, CCMIRROR_STORAGE_*
variables, one clear error for a bad value (never with the secret in it), secrets out of
repr; the rsync form unchanged; the journal of keys an S3 push already stored."""

from __future__ import annotations

import pytest

from downloader.config import ConfigError, load_settings
from downloader.s3.client import refusal
from downloader.s3.target import S3Target
from downloader.spool import Spool

SECRET = "-".join(
    ("s3cr3t", "value", "never", "shown")
)  # a throw-away, built so no scan takes it for one
S3_YAML = f"""storage:
  endpoint: https://ams3.digitaloceanspaces.com
  bucket: ccmirror-images
  region: ams3
  access_key: DO00KEY
  secret_key: {SECRET}
"""


def test_a_storage_mapping_is_an_s3_bucket_with_its_secrets_out_of_repr(tmp_path):
    path = tmp_path / "downloader.yaml"
    path.write_text(S3_YAML)
    settings = load_settings(path, environ={})
    assert settings.storage == S3Target(
        "https://ams3.digitaloceanspaces.com", "ccmirror-images", "ams3", "DO00KEY", SECRET
    )
    assert SECRET not in repr(settings) and "DO00KEY" not in repr(settings)
    assert settings.storage.label == "s3 https://ams3.digitaloceanspaces.com/ccmirror-images"


def test_the_rsync_form_is_unchanged(tmp_path):
    settings = load_settings("/dev/null", environ={"CCMIRROR_STORAGE": "st@10.0.0.3"})
    assert settings.storage == "st@10.0.0.3"


def test_environment_variables_name_a_bucket_field_by_field(tmp_path):
    path = tmp_path / "downloader.yaml"
    path.write_text(S3_YAML)
    env = {"CCMIRROR_STORAGE_SECRET_KEY": "rotated-secret", "CCMIRROR_STORAGE_BUCKET": "other"}
    settings = load_settings(path, environ=env)
    assert (settings.storage.bucket, settings.storage.secret_key) == ("other", "rotated-secret")
    assert settings.storage.region == "ams3"
    # Over an rsync string (or nothing), the variables alone make the bucket.
    alone = {
        "CCMIRROR_STORAGE": "st@10.0.0.3",
        "CCMIRROR_STORAGE_ENDPOINT": "http://10.0.0.3:8333",
        "CCMIRROR_STORAGE_BUCKET": "images",
        "CCMIRROR_STORAGE_REGION": "us-east-1",
        "CCMIRROR_STORAGE_ACCESS_KEY": "dl-1",
        "CCMIRROR_STORAGE_SECRET_KEY": SECRET,
    }
    assert load_settings("/dev/null", environ=alone).storage.endpoint == "http://10.0.0.3:8333"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("  endpoint: ftp://host\n", "endpoint must be http(s)://host[:port]"),
        ("  endpoint: https://host/path\n", "endpoint must be http(s)://host[:port]"),
        ("  endpoint: https://host:99999\n", "endpoint must be http(s)://host[:port]"),
        ("  bucket: Bad_Bucket\n", "is not an S3 bucket name"),
        ("  region: 'two words'\n", "is not a region name"),
        ("  secret_key: 'has space'\n", "secret_key must be printable ASCII"),
        ("  secret_key: ''\n", "missing secret_key"),
        ("  acess_key: typo\n", "unknown field(s) acess_key"),
    ],
)
def test_a_bad_bucket_setting_is_one_clear_error_without_the_secret(tmp_path, change, message):
    lines = [
        line for line in S3_YAML.splitlines(True) if line.split(":")[0] != change.split(":")[0]
    ]
    path = tmp_path / "downloader.yaml"
    path.write_text("".join(lines) + change)
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    assert message in str(error.value) and f"{path}: 'storage'" in str(error.value)
    assert SECRET not in str(error.value)


def test_a_bad_environment_value_is_one_clear_error(tmp_path):
    path = tmp_path / "downloader.yaml"
    path.write_text(S3_YAML)
    with pytest.raises(ConfigError, match="CCMIRROR_STORAGE_.*region 'AMS 3'"):
        load_settings(path, environ={"CCMIRROR_STORAGE_REGION": "AMS 3"})
    with pytest.raises(ConfigError, match="missing endpoint, bucket, region, access_key"):
        load_settings("/dev/null", environ={"CCMIRROR_STORAGE_SECRET_KEY": SECRET})
    with pytest.raises(ConfigError, match="'storage': must be user@host .rsync. or a mapping"):
        path.write_text("storage: [a, b]\n")
        load_settings(path, environ={})


def test_the_signed_payload_hash_is_the_known_digest():
    """The signature covers the photo's SHA-256 as the fetch computed it, not a re-hash."""
    from downloader.s3.client import ObjectWriter

    target = S3Target("http://127.0.0.1:8333", "images", "us-east-1", "AK", SECRET)
    digest = "ab" * 32
    url, headers = ObjectWriter(target).signed_put("images/00/01/256.jpg", digest, 10)
    assert url == "http://127.0.0.1:8333/images/images/00/01/256.jpg"
    assert headers["x-amz-content-sha256"] == digest
    assert headers["x-amz-checksum-sha256"] == "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="
    assert "x-amz-checksum-sha256" in headers["Authorization"]


@pytest.mark.parametrize(
    ("status", "body", "transient"),
    [
        (503, b"<Error><Code>SlowDown</Code></Error>", True),
        (500, b"", True),
        (400, b"<Error><Code>RequestTimeout</Code></Error>", True),
        (403, b"<Error><Code>InvalidAccessKeyId</Code></Error>", False),
        (403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>", False),
        (403, b"<Error><Code>AccessDenied</Code></Error>", False),
        (404, b"<Error><Code>NoSuchBucket</Code></Error>", False),
        (400, b"<Error><Code>BadDigest</Code><Message>no match</Message></Error>", False),
    ],
)
def test_what_the_store_says_is_transient_or_fatal(status, body, transient):
    error = refusal("images/00/00/1.jpg", status, body)
    assert error.transient is transient and str(status) in str(error)


def test_the_journal_keeps_keys_put_and_a_torn_line_is_no_key(tmp_path):
    journal = Spool(tmp_path).begin(3, "2030-01-01T00:00:00", [])
    assert journal.put_keys() == set()
    journal.record_put(["images/00/00/1.jpg", "images/00/00/2.jpg"])
    with open(journal.directory / "put.txt", "a") as out:
        out.write("images/00/00/3.j")  # killed mid-write
    assert Spool(tmp_path).current().put_keys() == {"images/00/00/1.jpg", "images/00/00/2.jpg"}
