"""Settings files, read the same way by the harvester and the downloader.

A program's settings are a dataclass whose fields are its defaults; a field holding another
dataclass is a section (`flickr:`, `fetch:`, ...). `load_into` fills one in from a YAML file
(rendered by Salt on real machines) and then from `CCMIRROR_*` environment variables, which
win, so a test or an operator can override one value without writing a file. An unknown key
or a value of the wrong type is one `ConfigError` naming the file (or variable) and the key,
never a half-read configuration. Standard library and PyYAML only: every role imports it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ccmirror_common.hosts import HostListError, HostPolicy

S = TypeVar("S")

# Environment variable -> (section, or None for the top level; setting name).
Environment = Mapping[str, tuple[str | None, str]]


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting and why."""


def load_into(
    settings: S,
    *,
    default_path: Path,
    environment: Environment,
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> S:
    """Read `path`, else $CCMIRROR_CONFIG, else `default_path` if present; then the env."""
    environ = os.environ if environ is None else environ
    config_path = path or environ.get("CCMIRROR_CONFIG")
    if config_path is None and default_path.exists():
        config_path = default_path
    if config_path is not None:
        apply_file(settings, Path(config_path))
    apply_environment(settings, environment, environ)
    return settings


def apply_file(settings: Any, path: Path) -> None:
    data = read_mapping(path)
    for key, value in data.items():
        if is_section(settings, key):
            if not isinstance(value, dict):
                raise ConfigError(f"config {path}: '{key}' must be a mapping")
            for sub_key, sub_value in value.items():
                assign(getattr(settings, key), sub_key, sub_value, source=f"{path}: {key}")
        else:
            assign(settings, key, value, source=str(path))


def read_mapping(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping")
    return data


def apply_environment(settings: Any, environment: Environment, environ: Mapping[str, str]) -> None:
    for name, (section, key) in environment.items():
        if name in environ:
            target = getattr(settings, section) if section else settings
            assign(target, key, environ[name], source=name)


def is_section(target: Any, key: str) -> bool:
    return key in {f.name for f in fields(target)} and is_dataclass(getattr(target, key))


def assign(target: Any, key: str, value: Any, source: str) -> None:
    """Set `target.key` from a YAML value or an environment string, as the default's type."""
    if key not in {f.name for f in fields(target)} or is_section(target, key):
        raise ConfigError(f"{source}: unknown setting '{key}'")
    # A setting of more than one shape (a string or a mapping) names its own parser, which
    # returns the value or raises ConfigError with a message that names no secret.
    parse = next(f.metadata.get("parse") for f in fields(target) if f.name == key)
    if parse is not None:
        setattr(target, key, parse(value, f"{source}: '{key}'"))
        return
    kind = type(getattr(target, key))
    if kind is HostPolicy:  # a YAML list, or a comma-separated string from the environment
        setattr(target, key, host_policy(key, value, source))
    elif kind is list:  # a YAML list, or a comma-separated string from the environment
        setattr(target, key, string_list(key, value, source))
    else:
        try:
            setattr(target, key, kind(value) if kind is not str else str(value))
        except (TypeError, ValueError):
            raise ConfigError(
                f"{source}: '{key}' must be a {kind.__name__}, not {value!r}"
            ) from None


def host_policy(key: str, value: Any, source: str) -> HostPolicy:
    if not isinstance(value, str | list):
        raise ConfigError(f"{source}: '{key}' must be a list of hosts, not {value!r}")
    try:
        return HostPolicy(value)
    except HostListError as exc:
        raise ConfigError(f"{source}: '{key}': {exc}") from None


def string_list(key: str, value: Any, source: str) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ConfigError(f"{source}: '{key}' must be a list, not {value!r}")
    return [str(item).strip() for item in items if str(item).strip()]
