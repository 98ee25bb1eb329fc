"""The one table of resource types: each type's class names its halves, every list is derived.

A type is its controller class (driftctl/resources/), its agent module (driftctl/agent/, registering
the same name), its bake writer or an explicit "needs a build container", and its fixture folder
(tests/unit/data/<type>/). The shipped agent program is every agent module, each after the modules
it imports: this checks that the imports say everything the order has to know.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import symtable
from pathlib import Path

import pytest

from driftctl import ship as agent
from driftctl.agent import _core
from driftctl.bake import build, writers
from driftctl.resources.base import ResourceType, all_types, type_modules

TYPES = all_types()
AGENT_DIR = Path(_core.__file__).parent
DATA = Path(__file__).parent / "data"
SHIPPED = sorted(p.stem for p in AGENT_DIR.glob("*.py") if p.name != "__init__.py")

# the hand-kept list the program was assembled from before it was derived (commit 1397546)
OLD_AGENT_MODULES = ["_core", "facts", "file", "directory", "symlink", "line", "block", "cron", "sysctl", "user",
                     "group", "authorized_key", "package", "service", "exec", "watch", "_main"]
OLD_PHASES = {"package": 0, "exec": 0, "group": 1, "user": 2, "directory": 3, "file": 4, "symlink": 4,
              "line": 5, "block": 5, "cron": 5, "sysctl": 5, "authorized_key": 6, "service": 7}


def _imports(module: str) -> set[str]:
    tree = ast.parse((AGENT_DIR / f"{module}.py").read_text())
    return {n.module.rsplit(".", 1)[1] for n in tree.body
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("driftctl.agent.")}


def test_every_type_module_holds_its_type() -> None:
    assert type_modules() == sorted(t.__module__.rsplit(".", 1)[1] for t in TYPES.values())
    assert set(OLD_PHASES) <= set(TYPES)


@pytest.mark.parametrize("name", sorted(TYPES))
def test_type_has_all_its_halves(name: str) -> None:
    rtype: type[ResourceType] = TYPES[name]
    # the agent half: a module of driftctl/agent/ that registers observe/apply under the same name
    module = importlib.import_module(f"driftctl.agent.{rtype.agent_module}")
    assert rtype.agent_module in agent.AGENT_MODULES
    handler = _core.TYPES[name]
    assert handler.observe.__module__ == module.__name__ and handler.apply.__module__ == module.__name__
    assert bool(handler.refresh) == rtype.refreshable, "notify means something exactly when the agent refreshes"
    # the bake half: a writer taking (Baker, Resource), or an explicit "needs a build container"
    assert "bake_phase" in rtype.__dict__, f"{name} says nothing about its bake phase"
    assert (rtype.bake_writer is None) == rtype.bake_in_container, f"{name}: a bake writer or a build container"
    if rtype.bake_writer is not None:
        fn = writers.writers()[name]
        assert list(inspect.signature(fn).parameters) == ["b", "r"]
    # the fixtures: a folder of cases, write side ("params + observed -> changes") included
    assert list((DATA / name / "changes").glob("*.json")), f"tests/unit/data/{name}/changes/ has no case"


def test_bake_tables_are_derived_as_they_were() -> None:
    assert {n: build._phase(n) for n in OLD_PHASES} == OLD_PHASES
    assert {n for n in OLD_PHASES if build._in_container(n)} == {"package", "exec"}
    assert set(writers.writers()) == {n for n in TYPES if not build._in_container(n)}


def test_agent_modules_are_every_module_each_after_its_imports() -> None:
    order = agent.AGENT_MODULES
    assert sorted(order) == SHIPPED and set(OLD_AGENT_MODULES) <= set(order)
    assert order[0] == "_core" and order[-1] == "_main"  # _main runs the program: everything is defined
    for i, module in enumerate(order):
        assert _imports(module) <= set(order[:i]), f"{module} is shipped before a module it imports"


def test_agent_imports_say_all_the_order_must_know() -> None:
    # every global name a module uses is its own, imported, or a builtin: so ordering by the imports
    # defines every name before use, as the hand-kept order did
    for module in SHIPPED:
        source = (AGENT_DIR / f"{module}.py").read_text()
        top = symtable.symtable(source, f"{module}.py", "exec")
        defined = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
        used: set[str] = set()
        stack = [top]
        while stack:
            table = stack.pop()
            stack.extend(table.get_children())
            used |= {s.get_name() for s in table.get_symbols()
                     if s.is_referenced() and (s.is_global() or table is top)}
        unknown = used - defined - set(dir(builtins)) - {"__name__", "__file__"}
        assert not unknown, f"agent/{module}.py uses {sorted(unknown)} without importing them"
    # and no two modules define one top-level name (the later would win: the order would matter)
    seen: dict[str, str] = {}
    for module in SHIPPED:
        table = symtable.symtable((AGENT_DIR / f"{module}.py").read_text(), module, "exec")
        for s in table.get_symbols():
            name = s.get_name()
            if s.is_assigned() and not s.is_imported():
                assert seen.setdefault(name, module) == module, f"{name} is defined by {seen[name]} and {module}"


def test_shipped_program_defines_names_before_use() -> None:
    source = agent.program_source()
    code = compile(source, "driftctl-agent", "exec")
    namespace: dict[str, object] = {"__name__": "driftctl_agent_under_test"}  # everything but running main()
    exec(code, namespace)
    assert sorted(namespace["TYPES"]) == sorted(TYPES)  # type: ignore[call-overload]
    assert all(f"# ---- {m}.py\n" in source for m in agent.AGENT_MODULES)


def test_controller_imports_agent_modules_visibly() -> None:
    for path in Path(importlib.import_module("driftctl.resources").__path__[0]).glob("*.py"):
        assert "importlib" not in path.read_text() or path.name == "base.py", path
    text = Path(writers.__file__).read_text()
    assert 'agent_module("' not in text, "bake writers import the agent modules they use"


def test_shipped_modules_import_only_the_standard_library_and_each_other() -> None:
    """What ships to hosts needs nothing but the host's python3: every import of every agent module (at
    any depth, also inside functions) is the standard library or another agent module; the package's
    __init__ imports nothing (the shipper lives in driftctl/ship.py)."""
    import sys

    # the standard library of newer pythons than the one running the tests: _sha2 (3.12, was _sha256)
    stdlib = {*sys.stdlib_module_names, "_sha2"}
    bad = []
    for path in sorted(AGENT_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if name.startswith("driftctl.agent.") or (top in stdlib and top != "driftctl"):
                    if path.name == "__init__.py":
                        bad.append(f"{path.name}: imports {name}")
                    continue
                bad.append(f"{path.name}: imports {name}")
    assert not bad, "\n".join(bad)


def test_a_request_ships_only_the_modules_its_types_need() -> None:
    file_only = agent.modules_for(["file"])
    assert file_only == ("_core", "file", "facts", "watch", "_main")
    assert agent.modules_for(None) == tuple(agent.AGENT_MODULES)
    # a type's module brings what it imports: line edits through file's helpers
    assert {"file", "line"} <= set(agent.modules_for(["line"]))
    assert agent._modules_of({"op": "facts"}) == tuple(agent.AGENT_MODULES)
    assert agent._modules_of({"op": "probe", "resources": [{"type": "file"}]}) == file_only
    assert len(agent.program_bytes(file_only)) < len(agent.program_bytes()) / 2


def test_the_shipped_program_is_the_same_program_without_docstrings_and_comments() -> None:
    source = agent.program_source()
    shipped = agent.compact(source)
    ast.parse(shipped, feature_version=(3, 8))
    assert "# ---- " not in shipped and '"""' not in shipped
    defined = {n.name for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert {n.name for n in ast.parse(shipped).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))} == defined


def test_threads_asking_for_types_at_once_all_see_the_whole_table() -> None:
    """The first get_type imports every type module; threads asking meanwhile (a worker's, one per host)
    wait for the whole table. It used to be marked loaded before the imports ended: another thread then
    saw a half-filled registry ("unknown resource type 'directory'"). Imports are slowed here so the
    window is wide on any machine."""
    import subprocess
    import sys

    code = (
        "import importlib, threading, time\n"
        "real = importlib.import_module\n"
        "def slow(name, *a, **k):\n"
        "    if name.startswith('driftctl.resources.'):\n"
        "        time.sleep(0.02)\n"
        "    return real(name, *a, **k)\n"
        "importlib.import_module = slow\n"
        "from driftctl.resources.base import get_type, type_modules\n"
        "go = threading.Barrier(8)\n"
        "missing = []\n"
        "def ask():\n"
        "    go.wait()\n"
        "    for name in ('file', 'directory', 'user', 'unit', 'sysctl'):\n"
        "        if get_type(name) is None:\n"
        "            missing.append(name)\n"
        "threads = [threading.Thread(target=ask) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print('missing', sorted(set(missing)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.strip() == "missing []", out
