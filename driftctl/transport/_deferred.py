"""paramiko without invoke at import: invoke (~50 ms, a sixth of a command's start) is imported when used.

paramiko imports ``invoke`` at its own import only to run ssh_config's ``Match exec`` commands, which
few configs have. While paramiko is being imported (and only then), ``import invoke`` gives it a
stand-in module that imports the real invoke the first time paramiko uses it; any other import of
invoke, before or after, gets the real module. Installed by driftctl/transport/__init__.py, before
anything can import paramiko; a process that imported paramiko or invoke already is left as it is.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any


class _Invoke(types.ModuleType):
    """Stands in for invoke inside paramiko: the real module's attributes, imported when first asked."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system probing (__path__, __file__...): not a package
            raise AttributeError(name)
        if sys.modules.get("invoke") is self:  # asked while paramiko is still being imported
            del sys.modules["invoke"]
        return getattr(importlib.import_module("invoke"), name)


class _ParamikoFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None, target: types.ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if name != "paramiko":
            return None
        sys.meta_path.remove(self)  # once: the first import of paramiko
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        loader = spec.loader if spec is not None else None
        if spec is None or loader is None or "invoke" in sys.modules:
            return spec
        real_exec = loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            stand_in = _Invoke("invoke")
            sys.modules["invoke"] = stand_in
            try:
                real_exec(module)
            finally:
                if sys.modules.get("invoke") is stand_in:
                    del sys.modules["invoke"]

        loader.exec_module = exec_module  # type: ignore[method-assign]  # this spec's own loader only
        return spec


def install() -> None:
    """Defer invoke in the coming import of paramiko (nothing when paramiko is imported already)."""
    if "paramiko" not in sys.modules and not any(isinstance(f, _ParamikoFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _ParamikoFinder())
