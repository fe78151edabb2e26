"""The `wheelhouse` runner: build the fleet's wheelhouse on the master, into the directory
the master serves as `salt://wheelhouse/` (the builder is _utils/wheelhouse_builder.py,
reached as ``__utils__["wheelhouse_builder.*"]``; `deploy.release` builds with it too).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# Salt loads only this as a runner function.
__load__ = ["build"]


def build() -> dict[str, Any]:
    """
    Build the wheelhouse the master serves as ``salt://wheelhouse/`` from the master's
    checkout (``ccmirror_checkout``, default the checkout this runner is in). Only what
    changed is rebuilt; minions install it at their next ``state.apply ccmirror`` (or with
    ``deploy.release``, which calls this first).

    Master options: ``ccmirror_wheelhouse`` (default: the ``wheelhouse/`` below the
    ``file_roots:base`` entry that has one, else below the last entry),
    ``ccmirror_wheel_cache`` (dependency wheels, default /var/cache/ccmirror/wheels),
    ``ccmirror_build_python`` (default: a venv of /usr/bin/python3 in
    /opt/ccmirror/build-venv, the minions' interpreter).

    CLI Example::

        salt-run wheelhouse.build
    """
    try:
        built = _builder("build_for_master")(__opts__)  # noqa: F821 (Salt injects it)
    except RuntimeError as error:  # the builder's WheelhouseError
        __context__["retcode"] = 1  # noqa: F821
        log.error("wheelhouse: %s", error)
        return {"result": False, "error": str(error), "retcode": 1}
    return {"result": True, **built}


def _builder(name: str) -> Any:
    """A function of _utils/wheelhouse_builder.py (the master's config needs utils_dirs)."""
    return __utils__[f"wheelhouse_builder.{name}"]  # noqa: F821 (Salt injects it)
