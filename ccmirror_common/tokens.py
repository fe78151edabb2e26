"""The queue's bearer tokens: their form and the hash the queue keeps instead of them.

One file for both sides: the queue service (harvester/queue/tokens.py) checks a token against
its hash, and the master's secrets runner (_utils/private_pillar.py, which loads this file by
path: Salt's own Python has no ccmirror installed) makes the tokens and writes their hashes
into the database minion's pillar. Standard library only.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "ccmq_"  # tells a queue token in a log or a leak scanner


def new_token() -> str:
    """A fresh bearer token: the prefix and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the queue stores and compares: `sha256:<hex>` of the token's UTF-8."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
