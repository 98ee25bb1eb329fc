"""Libraries the bundle leaves out (driftctl/bundle/build.py), for a host whose python3 lacks them too.

``cryptography`` is compiled, so it is not in the bundle; a host whose own python3 has it (Debian's
python3-cryptography) decrypts vaulted values with it. On a host without it, modules that import it at
load time would stop every command, vault or not. ``install(["cryptography"])`` puts a finder at the
*end* of ``sys.meta_path``: the host's real library, when present, is always found first; otherwise
the import succeeds with stand-ins, and the first use of any of them (decrypting a vaulted value)
raises a ConfigError that says what to install. Nothing else changes.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

_HINT = {
    "cryptography": ("vaulted values need the cryptography library in this host's python3",
                     "apt-get install python3-cryptography (or pip install cryptography), or keep vaulted values "
                     "out of this host's inventory and manifests"),
}


def _refuse(top: str) -> NoReturn:
    from driftctl.errors import ConfigError

    what, hint = _HINT.get(top, (f"this needs the {top} library, which this host's python3 does not have",
                                 f"install {top} for {sys.executable}"))
    raise ConfigError(what, None, hint)


class _Absent(type):
    """A stand-in: a class (so ``except Absent`` and ``isinstance`` work) whose attributes are stand-ins
    too, and which refuses to be called."""

    _top: str

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return stand_in(cls._top, name)

    def __call__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(cls._top)


def stand_in(top: str, name: str) -> Any:
    return _Absent(name, (Exception,), {"_top": top})


class _AbsentModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return stand_in(self.__name__.split(".")[0], name)


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _AbsentModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []  # a package: its submodules are stand-ins too


class AbsentFinder(importlib.abc.MetaPathFinder):
    """Finds stand-ins for ``names`` (and their submodules); last on ``sys.meta_path``."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = set(names)

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=True)


def install(names: Iterable[str]) -> None:
    """Stand-ins for ``names`` where the host has no such library (see the module docstring)."""
    for finder in sys.meta_path:
        if isinstance(finder, AbsentFinder):
            finder.names.update(names)
            return
    sys.meta_path.append(AbsentFinder(names))
