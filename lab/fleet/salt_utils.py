"""The master's `_utils/` modules the lab runs in its own Python: the plain layers Salt's
runners reach as `__utils__[...]` (the private pillar's writer, the wheelhouse builder), so the
lab and a real master write the same files and build the same wheelhouse. `_utils/` is no
package (Salt loads it from the master's `utils_dirs`): each file is loaded by path, once.
Only files with no Salt import can be loaded this way."""

from __future__ import annotations

import importlib.util
from functools import cache
from types import ModuleType

from lab import CHECKOUT


@cache
def plain_util(name: str) -> ModuleType:
    """`_utils/<name>.py` as a module of its own."""
    path = CHECKOUT / "_utils" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"ccmirror_utils_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
