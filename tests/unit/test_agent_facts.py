"""What an agent start costs: the FQDN fact is what ``socket.getfqdn()`` says without importing the idna
codec or socket.py; facts are gathered only when asked for; sha256 loads OpenSSL only past the first MiB."""

from __future__ import annotations

import _socket
import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from driftctl import ship
from driftctl.agent import _core
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


def _agent_imports(tmp_path: Path, request: dict[str, Any], types: tuple[str, ...] = ("exec",)
                   ) -> tuple[list[dict[str, Any]], set[str]]:
    """Run the agent program as a controller does (the modules of ``types``); its records (the final
    answer last) and every module it imported (``-X importtime``)."""
    modules = ship.modules_for(list(types))
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


def file_item(path: Path) -> dict[str, Any]:
    return {"id": f"file:{path}", "type": "file",
            "params": {"path": str(path), "ensure": "file", "content_sha256": None, "_want_content": False}}


@pytest.mark.parametrize("sizes", [[1000, 200_000, 0], [600_000, 600_000, 5]])
def test_sha256_is_hashlib_s_and_loads_openssl_only_past_the_first_mib(tmp_path: Path, sizes: list[int]) -> None:
    files = []
    for i, size in enumerate(sizes):
        files.append(tmp_path / f"f{i}")
        files[-1].write_bytes(os.urandom(size))
    records, imported = _agent_imports(tmp_path, {"op": "probe", "facts": False,
                                                  "resources": [file_item(f) for f in files]}, ("file",))
    got = records[-1]["resources"]
    assert [got[f"file:{f}"]["observed"]["content_sha256"] for f in files] == [
        hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert ("_hashlib" in imported) == (sum(sizes) > 1 << 20)


def test_new_sha256_spends_its_budget_then_hands_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_core, "SHA256_OWN_LEFT", [100])
    first = _core.new_sha256(b"x" * 60)
    second = _core.new_sha256(size=60)  # past the budget: hashlib's
    second.update(b"y" * 60)
    assert first.hexdigest() == hashlib.sha256(b"x" * 60).hexdigest()
    assert second.hexdigest() == hashlib.sha256(b"y" * 60).hexdigest()
    assert type(first) is not type(second) and _core.SHA256_OWN_LEFT == [40]
