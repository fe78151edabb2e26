"""The DigitalOcean simulator's checks on what a request asks, as DigitalOcean words its
refusals (422s): droplet names, tags, user data, regions, SSH public keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

from lab.sims.digitalocean import catalog
from lab.sims.digitalocean.records import unprocessable

MAX_NAMES = 10  # droplets in one create request
MAX_USER_DATA = 64 * 1024
NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$")
TAG = re.compile(r"^[A-Za-z0-9_:-]{1,255}$")
VPC_NAME = re.compile(r"^[A-Za-z0-9-]{1,255}$")
KEY_TYPES = (
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-ed25519",
)


def fingerprint(public_key: str) -> str:
    """The MD5 fingerprint DigitalOcean shows (aa:bb:...); ApiError for what is no key."""
    parts = public_key.split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise unprocessable(
            "Key invalid type, we support 'ssh-rsa', 'ssh-dss', 'ecdsa-sha2-nistp256',"
            " 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', or 'ssh-ed25519'"
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        kind = blob[4 : 4 + length].decode()
    except (binascii.Error, struct.error, UnicodeDecodeError):
        kind = ""
    if kind != parts[0]:
        raise unprocessable("Key invalid, key should be of the form 'type key [comment]'")
    digest = hashlib.md5(blob).hexdigest()  # noqa: S324 - the format DigitalOcean uses
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


def requested_names(body: dict) -> tuple[list[str], bool]:
    """The names of a create request (`name`: one, or `names`: up to ten), and whether it
    named one."""
    if body.get("names") is not None:
        names = body["names"]
        if not isinstance(names, list) or not names:
            raise unprocessable("names must be a list of one or more droplet names")
        if len(names) > MAX_NAMES:
            raise unprocessable(f"You may only create up to {MAX_NAMES} droplets at once.")
        single = False
    else:
        names, single = [body.get("name")], True
    for name in names:
        if not isinstance(name, str) or not NAME.match(name):
            raise unprocessable(
                "Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)"
            )
    return names, single


def checked_user_data(user_data: object) -> str | None:
    if user_data is not None and not isinstance(user_data, str):
        raise unprocessable("user_data must be a string")
    if user_data is not None and len(user_data.encode()) > MAX_USER_DATA:
        raise unprocessable("user_data is too long: 64 KiB at most")
    return user_data


def resolve_region(value: object, home_region: str) -> str:
    """A slug, a prefix such as `nyc` (any datacenter there), or nothing (the home region)."""
    if value is None or value == "":
        return home_region
    if isinstance(value, str):
        if value in catalog.REGIONS:
            return value
        matches = [slug for slug in catalog.REGIONS if slug.rstrip("0123456789") == value]
        if matches:
            return matches[-1]
    raise unprocessable("You specified an invalid region for Droplet creation.")


def checked_tags(tags: object) -> list[str]:
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise unprocessable("tags must be a list of strings")
    for tag in tags:
        if not TAG.match(tag):
            raise unprocessable(
                f"tag {tag!r}: tags may contain letters, numbers, colons, dashes,"
                " and underscores (255 at most)"
            )
    return list(dict.fromkeys(tags))
