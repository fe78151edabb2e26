"""An S3 bucket to push to, from the `storage:` mapping of the downloader's settings.

    storage:
      endpoint: https://ams3.digitaloceanspaces.com   # or the lab's SeaweedFS S3 gateway
      bucket: images
      region: ams3
      access_key: KEY        # this droplet's own identity: write to the bucket, nothing else
      secret_key: SECRET     # never in a repr, a log line or an error message

Standard library only: the settings loader imports it on every droplet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

FIELDS = ("endpoint", "bucket", "region", "access_key", "secret_key")
SECRET_FIELDS = ("access_key", "secret_key")
# S3's rule for bucket names (no dots next to each other or hyphens, not an address).
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
KEY_TEXT = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: a header's token


class TargetError(ValueError):
    """The storage mapping cannot be used; the message names the field, never a secret."""


@dataclass(frozen=True)
class S3Target:
    endpoint: str  # scheme://host[:port], no path: objects are at endpoint/bucket/key
    bucket: str
    region: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)

    @classmethod
    def from_mapping(cls, value: Mapping) -> S3Target:
        """From the settings' mapping; TargetError names what is wrong."""
        if not isinstance(value, Mapping):
            raise TargetError("must be user@host (rsync) or a mapping of " + ", ".join(FIELDS))
        unknown = sorted(str(k) for k in value if k not in FIELDS)
        if unknown:
            raise TargetError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
        missing = [name for name in FIELDS if not _text(value.get(name))]
        if missing:
            raise TargetError(f"missing {', '.join(missing)}")
        target = cls(**{name: _text(value[name]) for name in FIELDS})
        target.check()
        return target

    def check(self) -> None:
        parts = urlsplit(self.endpoint)
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or parts.username
            or not port_ok
        ):
            raise TargetError(
                f"endpoint must be http(s)://host[:port] with nothing after it, "
                f"not {self.endpoint!r}"
            )
        if not BUCKET_NAME.match(self.bucket) or ".." in self.bucket:
            raise TargetError(f"bucket {self.bucket!r} is not an S3 bucket name")
        if not REGION_NAME.match(self.region):
            raise TargetError(f"region {self.region!r} is not a region name (us-east-1, ams3)")
        for name in SECRET_FIELDS:
            if not KEY_TEXT.match(getattr(self, name)):
                raise TargetError(f"{name} must be printable ASCII without spaces")

    @property
    def base_url(self) -> str:
        return self.endpoint.rstrip("/")

    @property
    def label(self) -> str:
        """For messages: where, never who (the access key is half a secret)."""
        return f"s3 {self.base_url}/{self.bucket}"


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""
