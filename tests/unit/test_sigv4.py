"""The push's own SigV4 signer (downloader/s3/sigv4.py) signs exactly as AWS and botocore do:
AWS's published example, and botocore's `S3SigV4Auth` header for header on the PUTs the
downloader makes (keys with every character class, endpoints with and without a port)."""

from __future__ import annotations

import calendar
import datetime
import hashlib

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from downloader.s3.client import ObjectWriter
from downloader.s3.sigv4 import Signer
from downloader.s3.target import S3Target

# AWS's example key pair, from the S3 API reference (not a secret)
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
WHEN = datetime.datetime(2026, 12, 4, 23, 59, 58)


def test_aws_published_put_object_example():
    """'Signature Calculations for the Authorization Header: Transferring Payload in a Single
    Chunk', example PUT Object, from the S3 API reference."""
    signer = Signer(ACCESS_KEY, SECRET_KEY, "us-east-1")
    headers = signer.sign(
        "PUT",
        "examplebucket.s3.amazonaws.com",
        "/test%24file.text",
        {"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
        now=calendar.timegm((2013, 5, 24, 0, 0, 0)),
    )
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
        "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    )
    assert headers["x-amz-date"] == "20130524T000000Z"


def botocore_headers(url: str, checksum: str, digest: str) -> dict[str, str]:
    """What botocore's signer makes of the same PUT at WHEN (its payload hash told, as the
    downloader signed before it had its own signer)."""

    class KnownDigest(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return digest

    request = AWSRequest(method="PUT", url=url, headers={"x-amz-checksum-sha256": checksum})
    KnownDigest(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "ams3").add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()}


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:8333", "https://ams3.digitaloceanspaces.com", "http://Store.Example:80"],
)
@pytest.mark.parametrize(
    "key",
    [
        "images/00/01/256.jpg",
        "manifests/2026/12/lease-7 (retry)+1.jsonl",
        "probes/dl-1/~tilde_%percent&amp=eq;semi,comma'quote",
        "images/é/ü/фото.jpg",
    ],
)
def test_the_push_signs_as_botocore_does(monkeypatch, endpoint, key):
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: WHEN)
    target = S3Target(endpoint, "images", "ams3", ACCESS_KEY, SECRET_KEY)
    digest = hashlib.sha256(key.encode()).hexdigest()
    writer = ObjectWriter(target)
    writer._signer.clock = lambda: calendar.timegm(WHEN.timetuple())
    url, ours = writer.signed_put(key, digest, 10)
    theirs = botocore_headers(url, ours["x-amz-checksum-sha256"], digest)
    assert ours["Authorization"] == theirs["authorization"]
    assert ours["x-amz-date"] == theirs["x-amz-date"]
    assert ours["x-amz-content-sha256"] == theirs["x-amz-content-sha256"] == digest


def test_a_new_day_derives_a_new_signing_key():
    """The key is kept for a day only: a signature made after midnight UTC verifies against
    that day's scope, not the one of the first request."""
    signer = Signer(ACCESS_KEY, SECRET_KEY, "ams3")
    before = calendar.timegm((2026, 12, 4, 23, 59, 59))
    first = signer.sign("PUT", "h", "/b/k", {}, "0" * 64, now=before)
    second = signer.sign("PUT", "h", "/b/k", {}, "0" * 64, now=before + 2)
    fresh = Signer(ACCESS_KEY, SECRET_KEY, "ams3").sign(
        "PUT", "h", "/b/k", {}, "0" * 64, now=before + 2
    )
    assert "/20261204/" in first["Authorization"]
    assert "/20261205/" in second["Authorization"]
    assert second == fresh
