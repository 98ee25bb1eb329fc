"""The one driver of the resource types' fixture cases: data files, one per case, in tests/unit/data/<type>/.

Like pyinfra's tests/facts/*/ and tests/operations/*/, a case is data and this module is the only code
that reads them. Four kinds, by where the file is and what it holds:

- ``changes/*.json``, the write side: ``{"params", "observed", "sensitive"?, "changes"}``. The manifest's
  params are validated by the type, and the type's own desired() and diff() must give exactly
  ``changes`` (each ``{"field", "before", "after", "diff"? (lines), "describe"?}``) for that observation.
- ``observe/*.json``, the read side of types that look at the file system or run a guard:
  ``{"tree", "params", "sensitive"?, "managed"?, "observed"}``. The tree is made under a temporary
  root (``$ROOT`` in params and expectations; ``$USER``/``$GROUP`` are whoever runs the tests) and the
  type's agent module observes it as the engine would ask; its public answer must be ``observed``.
- ``*.json`` with ``"parser"``: captured output (``"output"``, lines) or the named arguments, through
  that function of the type's agent module, must give ``"expected"``.
- other ``*.json``: a text edit, ``edit_<type>(**case)`` of the agent module, must give
  ``expected``/``action``/``old`` (or raise ``error``) and converge in one step.
"""

from __future__ import annotations

import grp
import importlib
import inspect
import json
import os
import pwd
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from driftctl.agent._core import TYPES as AGENT_TYPES
from driftctl.agent._core import Ctx
from driftctl.errors import Location
from driftctl.resources.base import ResourceType, all_types

DATA = Path(__file__).parent / "data"
LOC = Location("manifests/site.yaml", 1)
RTYPES = all_types()


def _cases(kind: str) -> list[Any]:
    found = []
    for name in sorted(RTYPES):
        folder = DATA / name / kind if kind in ("changes", "observe") else DATA / name
        for path in sorted(folder.glob("*.json")):
            case = json.loads(path.read_text())
            if kind in ("changes", "observe") or ("parser" in case) == (kind == "parser"):
                found.append(pytest.param(RTYPES[name], case, id=f"{name}/{path.stem}"))
    return found


def _agent(rtype: type[ResourceType]) -> ModuleType:
    return importlib.import_module(f"driftctl.agent.{rtype.agent_module}")


def _called(fn: Any, case: dict[str, Any]) -> Any:
    """``fn`` with the case's values for its parameters, by name."""
    names = [n for n in inspect.signature(fn).parameters if n in case]
    return fn(**{n: case[n] for n in names})


# ---- write side: params + observed -> changes


@pytest.mark.parametrize(("rtype", "case"), _cases("changes"))
def test_changes(rtype: type[ResourceType], case: dict[str, Any]) -> None:
    params = rtype.validate(case["params"], LOC)
    sensitive = bool(case.get("sensitive"))
    changes = rtype.diff(rtype.desired(params), case["observed"], sensitive=sensitive, params=params)
    got = [(c.field, c.before, c.after) for c in changes]
    assert got == [(c["field"], c["before"], c["after"]) for c in case["changes"]]
    for change, want in zip(changes, case["changes"], strict=True):
        assert change.diff == ("".join(want["diff"]) if "diff" in want else None), change.field
        if "describe" in want:
            assert rtype.describe(change) == want["describe"]
    if sensitive:
        assert all(c.diff is None for c in changes)


# ---- read side: a real tree -> what the agent observes


def _placed(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, real in names.items():
            value = value.replace(key, real)
        return value
    if isinstance(value, list):
        return [_placed(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _placed(v, names) for k, v in value.items()}
    return value


def _make_tree(root: Path, tree: list[dict[str, Any]]) -> None:
    for entry in tree:
        path = root / entry["path"]
        if "link" in entry:
            path.symlink_to(entry["link"])
            continue
        if entry.get("dir"):
            path.mkdir()
        else:
            path.write_text(entry.get("content", ""))
        os.chmod(path, int(entry.get("mode", "0644"), 8))


@pytest.mark.parametrize(("rtype", "case"), _cases("observe"))
def test_observe(rtype: type[ResourceType], case: dict[str, Any], tmp_path: Path) -> None:
    names = {"$ROOT": str(tmp_path), "$USER": pwd.getpwuid(os.getuid()).pw_name,
             "$GROUP": grp.getgrgid(os.getgid()).gr_name}
    _make_tree(tmp_path, case["tree"])
    params = rtype.validate(_placed(case["params"], names), LOC)
    sensitive = bool(case.get("sensitive"))
    # as the engine asks (engine.probe_item)
    request = {**rtype.agent_params(params), "_want_content": not sensitive, "_sensitive": sensitive}
    if "managed" in case:
        request["_managed"] = _placed(case["managed"], names)
    module = _agent(rtype)  # importing it registers its observe
    handler = AGENT_TYPES[rtype.name]
    assert handler.observe.__module__ == module.__name__
    observed = handler.observe(request, Ctx())
    public = {k: v for k, v in observed.items() if not k.startswith("_")}
    want = _placed(case["observed"], names)
    if public.get("ensure") == "directory" and "size" not in want:
        public.pop("size", None)  # a directory's size is the file system's business
    assert public == want


# ---- read side: captured output -> parsed


@pytest.mark.parametrize(("rtype", "case"), _cases("parser"))
def test_parser(rtype: type[ResourceType], case: dict[str, Any]) -> None:
    parser = getattr(_agent(rtype), case["parser"])
    if "output" in case:
        got = parser("".join(line + "\n" for line in case["output"]))
    else:
        got = _called(parser, case)
    assert got == case["expected"]


# ---- text edits: text + wanted -> edited text


@pytest.mark.parametrize(("rtype", "case"), _cases("edit"))
def test_edit(rtype: type[ResourceType], case: dict[str, Any]) -> None:
    edit = getattr(_agent(rtype), f"edit_{rtype.name}")
    if "error" in case:
        with pytest.raises(ValueError, match=case["error"]):
            _called(edit, case)
        return
    done = _called(edit, case)
    assert (done.text, done.action, done.old) == (case["expected"], case["action"], case["old"])
    # an edit converges in one step: the same edit of its result changes nothing
    again = _called(edit, {**case, "text": done.text})
    assert again.action is None and again.text == done.text


def test_every_type_has_write_cases() -> None:
    assert {n for n in RTYPES if list((DATA / n / "changes").glob("*.json"))} == set(RTYPES)
    observed = {p.parent.parent.name for p in DATA.glob("*/observe/*.json")}
    assert {"file", "directory", "symlink", "exec"} <= observed
