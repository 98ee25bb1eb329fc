"""paramiko without invoke and importlib.metadata at import: each is imported when used.

paramiko imports ``invoke`` at its own import only to run ssh_config's ``Match exec`` commands, which
few configs have (~50 ms, a sixth of a command's start). While paramiko is being imported (and only
then), ``import invoke`` gives it a stand-in module that imports the real invoke the first time
paramiko uses it; any other import of invoke, before or after, gets the real module. Installed by
driftctl/transport/__init__.py, before anything can import paramiko; a process that imported paramiko
or invoke already is left as it is.

paramiko 5 also imports ``importlib.metadata`` (~25-60 ms: email, zipfile, csv...) for one call,
``metadata.version("paramiko")``, its ``__version__``. While paramiko is being imported, that import
gives it a stand-in whose ``version`` reads the ``Version:`` line of the ``METADATA`` file in the
distribution's ``.dist-info`` directory beside the package (what importlib.metadata reads for an
installed distribution); anything else, or a layout it does not know, goes to the real module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
from collections.abc import Sequence
from typing import Any


class _StandIn(types.ModuleType):
    """Stands in for the module of its name inside paramiko: the real module's attributes, imported when
    first asked."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system probing (__path__, __file__...): not a package
            raise AttributeError(name)
        return getattr(self._real(), name)

    def _real(self) -> Any:
        if sys.modules.get(self.__name__) is self:  # asked while paramiko is still being imported
            del sys.modules[self.__name__]
        return importlib.import_module(self.__name__)


class _Invoke(_StandIn):
    """invoke, for ssh_config's ``Match exec``."""


class _Metadata(_StandIn):
    """importlib.metadata: ``version`` of an installed distribution whose package sits beside its
    .dist-info directory; anything else from the real module."""

    def __init__(self, site: str) -> None:
        super().__init__("importlib.metadata")
        self._site = site

    def version(self, name: str) -> str:
        try:
            [info] = [e for e in os.listdir(self._site)
                      if e.endswith(".dist-info") and e.split("-", 1)[0].lower() == name.lower()]
            with open(os.path.join(self._site, info, "METADATA"), encoding="utf-8") as f:
                for line in f:
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
                    if not line.strip():
                        break  # the headers end at the first blank line
        except (OSError, ValueError, UnicodeDecodeError):
            pass
        return str(self._real().version(name))


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

        site = os.path.dirname(os.path.dirname(spec.origin or ""))
        stand_ins: list[_StandIn] = [_Invoke("invoke")]
        if "importlib.metadata" not in sys.modules and site:
            stand_ins.append(_Metadata(site))

        def exec_module(module: types.ModuleType) -> None:
            for stand_in in stand_ins:
                sys.modules[stand_in.__name__] = stand_in
            try:
                real_exec(module)
            finally:
                for stand_in in stand_ins:
                    if sys.modules.get(stand_in.__name__) is stand_in:
                        del sys.modules[stand_in.__name__]

        loader.exec_module = exec_module  # type: ignore[method-assign]  # this spec's own loader only
        return spec


def install() -> None:
    """Defer invoke in the coming import of paramiko (nothing when paramiko is imported already)."""
    if "paramiko" not in sys.modules and not any(isinstance(f, _ParamikoFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _ParamikoFinder())
