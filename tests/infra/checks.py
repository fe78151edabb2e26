"""Checks the infra tests share: listening sockets, secret files, units, the pillar."""

from __future__ import annotations

import json


def listening_tcp(host) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket; the wildcard is '0.0.0.0' or '::'."""
    found = set()
    for url in host.socket.get_listening_sockets():
        if url.startswith(("tcp://", "tcp6://")):
            address, port = url.split("://", 1)[1].rsplit(":", 1)
            found.add((address or "::", int(port)))
    return found


def assert_secret_file(host, path: str, user: str, group: str) -> None:
    """A file holding a secret: present, owned as said, readable by its owner only (0600) or
    by its group too (0640), never by others."""
    secret = host.file(path)
    assert secret.is_file, path
    assert (secret.user, secret.group) == (user, group), path
    assert secret.mode in (0o600, 0o640), f"{path}: mode {secret.mode:o}"


def running_and_enabled(host, unit: str) -> None:
    service = host.service(unit)
    assert service.is_enabled, f"{unit} is not enabled"
    assert service.is_running, f"{unit} is not running"


def nested_keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in nested_keys(item)}
    if isinstance(value, list):
        return {key for item in value for key in nested_keys(item)}
    return set()


def http_get(host, url: str) -> tuple[int, str]:
    """(status, body) of a GET made on the minion itself, with Debian's python3 (no curl
    needed on the machine)."""
    code = (
        "import json, sys, urllib.request, urllib.error\n"
        "try:\n"
        f"    r = urllib.request.urlopen({url!r}, timeout=10); c, b = r.status, r.read()\n"
        "except urllib.error.HTTPError as e:\n"
        "    c, b = e.code, e.read()\n"
        "print(json.dumps([c, b.decode(errors='replace')]))"
    )
    result = host.run("python3 -c %s", code)
    assert result.rc == 0, result.stderr
    status, body = json.loads(result.stdout)
    return status, body
