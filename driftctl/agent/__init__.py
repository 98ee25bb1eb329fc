"""The agent: stdlib-only Python that runs on a host for one request and leaves nothing behind.

The program is assembled from the modules of this package (``AGENT_MODULES``, in order), compressed,
and sent over the SSH channel's stdin together with one JSON request; the host's python3 (>= 3.8)
decompresses and runs it, and it answers one JSON document on stdout.

Rules for agent modules (they are concatenated into one program):
- stdlib only, python >= 3.8 syntax; ``from __future__ import annotations`` is emitted once on top,
  so annotations are never evaluated on the host;
- imports of this package (``from driftctl.agent._core import ...``) are stripped when shipped:
  every module sees the names of the modules before it;
- a resource type registers itself with ``register(name, observe, apply, refresh=None)``.

Protocol (version 1). Request: ``{"v": 1, "op": "facts" | "probe" | "apply", ...}``; answer:
``{"v": 1, "ok": true, ...}`` or ``{"v": 1, "ok": false, "error": "..."}``. See docs/agent.md.
"""

from __future__ import annotations

import functools
import json
import re
import zlib
from importlib import resources
from typing import Any

from driftctl.errors import AgentError, HostLockedError
from driftctl.transport.base import Transport

PROTOCOL_VERSION = 1

AGENT_MODULES = [
    "_core",
    "facts",
    "file",
    "directory",
    "symlink",
    "line",
    "block",
    "cron",
    "sysctl",
    "user",
    "group",
    "authorized_key",
    "package",
    "service",
    "exec",
    "watch",
    "_main",
]

# Reads exactly the compressed program from stdin, leaves the JSON request there for the agent.
LAUNCHER = (
    "import sys,zlib;"
    "exec(compile(zlib.decompress(sys.stdin.buffer.read(int(sys.argv[1]))),'driftctl-agent','exec'))"
)

_LOCAL_IMPORT = re.compile(r"^(from (driftctl\.agent|\.)\S* import .*|from __future__ import .*)$")
# the same imports written over several lines: ``from driftctl.agent._core import (\n a,\n b,\n)``
_LOCAL_IMPORT_BLOCK = re.compile(r"^from (driftctl\.agent|\.)\S* import \([^)]*\)[ \t]*$", re.MULTILINE)


@functools.cache
def program_source() -> str:
    """The agent program as one Python source text."""
    parts = ["from __future__ import annotations\n"]
    pkg = resources.files(__package__)
    for name in AGENT_MODULES:
        path = pkg / f"{name}.py"
        if not path.is_file():
            continue
        text = _LOCAL_IMPORT_BLOCK.sub("", path.read_text(encoding="utf-8"))
        lines = [ln for ln in text.splitlines() if not _LOCAL_IMPORT.match(ln)]
        parts.append(f"# ---- {name}.py\n" + "\n".join(lines) + "\n")
    return "\n".join(parts)


@functools.cache
def program_bytes() -> bytes:
    return zlib.compress(program_source().encode("utf-8"), 9)


def command(python: str = "python3") -> list[str]:
    """The argv that runs the agent on a host."""
    return [python, "-c", LAUNCHER, str(len(program_bytes()))]


def call(transport: Transport, request: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Send one request to the agent on ``transport``'s host and return its answer (one round trip)."""
    host = transport.host.name
    payload = json.dumps({"v": PROTOCOL_VERSION, **request}, separators=(",", ":")).encode("utf-8")
    result = transport.run(
        command(transport.host.connection.python), stdin=program_bytes() + payload, timeout=timeout
    )
    try:
        answer = json.loads(result.stdout)
    except ValueError:
        tail = result.stderr_text.strip().splitlines()[-5:]
        raise AgentError(
            host, f"agent did not answer (exit {result.rc}): {' | '.join(tail) or 'no output'}"
        ) from None
    if not isinstance(answer, dict) or answer.get("v") != PROTOCOL_VERSION:
        raise AgentError(host, "agent answered in an unknown protocol")
    if not answer.get("ok"):
        if answer.get("locked"):
            raise HostLockedError(host, f"locked: {answer.get('error', 'another apply is running')}")
        raise AgentError(host, f"agent failed: {answer.get('error', 'no reason given')}")
    return answer
