"""The agent's FQDN fact is what ``socket.getfqdn()`` says, without importing the idna codec or socket.py."""

from __future__ import annotations

import _socket
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from driftctl import ship
from driftctl.agent._core import Ctx
from driftctl.agent.facts import facts_fqdn


@pytest.mark.parametrize("name", [None, "localhost", "no-such-host.invalid", "hôte-ünïcode"])
def test_the_fqdn_is_what_getfqdn_says(name: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if name is not None:  # getfqdn() asks socket.gethostname(), facts_fqdn() _socket's: both see the same name
        monkeypatch.setattr(socket, "gethostname", lambda: name)
        monkeypatch.setattr(_socket, "gethostname", lambda: name)
    assert facts_fqdn() == socket.getfqdn()


def test_the_fqdn_needs_no_codec_nor_socket_py() -> None:
    code = ("import sys; from driftctl.agent.facts import facts_fqdn; f = facts_fqdn();"
            " print('encodings.idna' in sys.modules, 'socket' in sys.modules);"
            " import socket; print(f == socket.getfqdn())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False", "True"]


def _agent_imports(tmp_path: Path, request: dict[str, Any]) -> tuple[list[dict[str, Any]], set[str]]:
    """Run the agent program as a controller does (exec's modules); its records (the final answer last)
    and every module it imported (``-X importtime``)."""
    modules = ship.modules_for(["exec"])
    argv = ship.command(sys.executable, modules, cache=False)
    argv[1:1] = ["-X", "importtime"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(ship.program_bytes(modules) + ship._payload(request) + b'{"end":true}\n')
    proc.stdin.flush()  # and held open, as a controller does, until the final answer
    records = []
    for line in proc.stdout:
        records.append(ship._parse(line))
        if "v" in records[-1]:
            break
    proc.stdin.close()
    lines = proc.stderr.read().decode().splitlines()
    imported = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    assert proc.wait(timeout=60) == 0
    return records, imported


def test_an_apply_or_a_probe_gathers_facts_only_when_asked(tmp_path: Path) -> None:
    item = {"id": "exec:t", "type": "exec", "changes": ["state"], "depends": [], "notify": [],
            "params": {"command": ["/bin/true"]}}
    records, imported = _agent_imports(tmp_path, {"op": "apply", "resources": [item], "frames": True,
                                                  "lock_dir": str(tmp_path / "lock")})
    assert records[-1]["ok"], records
    assert [r["result"]["status"] for r in records if r.get("done") == "exec:t"] == ["changed"], records
    assert "_socket" not in imported  # exec asks no fact: the FQDN's lookup never ran
    records, imported = _agent_imports(tmp_path, {"op": "probe", "facts": False, "resources": [item]})
    assert records[-1]["ok"] and "facts" not in records[-1] and "exec:t" in records[-1]["resources"], records
    assert "_socket" not in imported  # a probe that wants no facts, of types that need none
    records, imported = _agent_imports(tmp_path, {"op": "probe", "facts": True, "resources": []})
    assert records[-1]["ok"] and records[-1]["facts"]["fqdn"], records
    assert "_socket" in imported and "socket" not in imported


def test_facts_given_as_a_function_are_gathered_once_when_first_asked() -> None:
    asked = []
    ctx = Ctx(facts=lambda: asked.append(1) or {"init": "systemd"})
    assert asked == []
    assert ctx.facts["init"] == "systemd" and ctx.facts.get("init") == "systemd"
    assert asked == [1]
    assert Ctx().facts == {} and Ctx(facts={"os": "linux"}).facts == {"os": "linux"}
