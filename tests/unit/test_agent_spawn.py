"""The agent's commands and its JSON without the modules that cost every agent's start: ``run`` spawns
with posix_spawn (subprocess only where that cannot start a session), and the codec is json's C half.

Each behaviour of ``run`` is checked both ways (posix_spawn and the subprocess fallback), against what
``subprocess.run`` did for it before."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from driftctl import ship
from driftctl.agent import _main
from driftctl.agent import spawn as agent_spawn
from driftctl.agent._core import Failure, run_set_deadline
from driftctl.agent.spawn import run

PY = sys.executable


@pytest.fixture(params=["posix_spawn", "subprocess"])
def spawn(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(agent_spawn, "SPAWN_POSIX", [request.param == "posix_spawn"])
    return str(request.param)


def test_exit_code_stdout_and_stderr(spawn: str) -> None:
    assert run(["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, "out\n", "err\n")
    assert run(["true"]) == (0, "", "")
    assert run(["sh", "-c", "kill -TERM $$"])[0] == -signal.SIGTERM  # as subprocess says a signal
    with pytest.raises(Failure, match=r"^sh exited 4: boom$"):
        run(["sh", "-c", "echo boom >&2; exit 4"], check=True)


def test_a_missing_command(spawn: str) -> None:
    assert run(["driftctl-no-such-command"]) == (127, "", "command not found: driftctl-no-such-command")
    with pytest.raises(Failure, match="command not found: driftctl-no-such-command"):
        run(["driftctl-no-such-command"], check=True)


def test_megabytes_both_ways_do_not_deadlock(spawn: str) -> None:
    data = os.urandom(3 << 20).hex()  # 6 MB in, 6 MB out and 6 MB on stderr: pipes hold 64 KB
    rc, out, err = run([PY, "-c", "import sys; d = sys.stdin.read(); sys.stdout.write(d); sys.stderr.write(d)"],
                       stdin=data)
    assert (rc, out == data, err == data) == (0, True, True)


def test_a_command_that_does_not_read_its_input(spawn: str) -> None:
    assert run(["true"], stdin="x" * (1 << 20)) == (0, "", "")  # a broken pipe is not an error


def test_the_child_gets_a_session_default_sigpipe_and_only_fds_0_to_2(spawn: str) -> None:
    r, w = os.pipe()
    os.set_inheritable(r, True)  # a descriptor the agent was given by its parent: not the child's
    try:
        code = "import os; print(os.getsid(0) == os.getpid(), sorted(int(f) for f in os.listdir('/proc/self/fd')))"
        rc, out, _ = run([PY, "-c", code])
        ignored = run(["grep", "^SigIgn:", "/proc/self/status"])[1].split()[1]  # python itself ignores SIGPIPE
    finally:
        os.close(r)
        os.close(w)
    assert (rc, out.split(maxsplit=1)) == (0, ["True", "[0, 1, 2, 3]\n"])  # 3: listdir's own
    assert int(ignored, 16) & (1 << (signal.SIGPIPE - 1)) == 0 and int(ignored, 16) & (1 << (signal.SIGXFSZ - 1)) == 0


def test_the_environment_given_or_ours(spawn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTCTL_SPAWN_TEST", "ours")
    code = "import os; print(os.environ.get('DRIFTCTL_SPAWN_TEST'))"
    assert run([PY, "-c", code])[1] == "ours\n"
    assert run([PY, "-c", code], env={"DRIFTCTL_SPAWN_TEST": "given"})[1] == "given\n"


def _left(marker: str) -> str:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout


def test_a_timeout_kills_the_whole_group(spawn: str) -> None:
    marker = f"driftctl-test-{uuid.uuid4().hex}"
    sleeper = f"{PY} -c 'import time; time.sleep(300)' {marker}"
    started = time.monotonic()
    with pytest.raises(Failure, match=r"^command timed out after 1s: sh -c"):
        run(["sh", "-c", f"{sleeper} & {sleeper}; wait"], timeout=1)
    assert time.monotonic() - started < 10 and _left(marker) == ""


def test_a_daemon_that_left_the_group_holding_the_pipes_is_not_waited_for(spawn: str) -> None:
    marker = f"driftctl-test-{uuid.uuid4().hex}"
    daemon = f"import os, time; os.setsid(); time.sleep(8)  # {marker}"
    started = time.monotonic()
    try:
        with pytest.raises(Failure, match="timed out after 1s"):
            run([PY, "-c", f"import subprocess, time; subprocess.Popen([{PY!r}, '-c', {daemon!r}]); time.sleep(300)"],
                timeout=1)
        assert time.monotonic() - started < 6  # 1 s, then at most 2 s for the pipes
    finally:
        subprocess.run(["pkill", "-f", marker])


def test_the_resource_deadline(spawn: str) -> None:
    run_set_deadline(time.monotonic() + 1)
    try:
        with pytest.raises(Failure, match=r"timed out after 1s \(the resource's time limit\)"):
            run(["sleep", "30"])
    finally:
        run_set_deadline(None)


def test_an_exception_while_waiting_kills_the_command(spawn: str) -> None:
    """A signal's exception (the agent cancelled) reaches the caller, and the command is gone."""
    marker = f"driftctl-test-{uuid.uuid4().hex}"

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            run([PY, "-c", "import time; time.sleep(300)", marker])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert _left(marker) == ""


def test_posix_spawn_without_sessions_falls_back_to_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    """A C library without POSIX_SPAWN_SETSID (glibc < 2.26): subprocess from then on, same answers."""
    monkeypatch.setattr(agent_spawn, "SPAWN_POSIX", [True])

    def no_setsid(*args: Any, **kwargs: Any) -> int:
        raise NotImplementedError

    monkeypatch.setattr(os, "posix_spawnp", no_setsid)
    assert run(["sh", "-c", "echo $$; exit 2"])[0] == 2
    assert agent_spawn.SPAWN_POSIX == [False]


def test_run_imports_neither_subprocess_nor_threading() -> None:
    code = ("import sys; before = set(sys.modules); from driftctl.agent.spawn import run;"
            " r = run(['sh', '-c', 'echo x; sleep 0.1'], timeout=5); new = set(sys.modules) - before;"
            " print(r, sorted(m for m in ('subprocess', 'threading', 're', 'enum', 'json', 'contextlib', 'signal')"
            " if m in new))")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "(0, 'x\\n', '') []"


# ---- the JSON codec

VALUES: list[Any] = [
    {"done": "file:/etc/motd", "result": {"status": "ok", "observed": {"mode": "0644", "size": 12}}},
    [], {}, "", 0, -1, 2**70, -(2**70), 1.5, -0.0, 1e300, 5e-324, 0.1 + 0.2, True, False, None,
    "é ü ß 中文 🙂 \u2028 \x00 \x1f \x7f \"quoted\" back\\slash /slash \t\n\r",
    "\ud800 lone surrogate", {"nested": [[[{"deep": [1, [2, [3]]]}]]]}, [1, "two", 3.0, None, {"k": []}],
    {"b": 1, "a": 2, "": 3}, (1, 2), {1: "int key", 2.5: "float key", False: "bool key", None: "none key"},
    math.inf, -math.inf,
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_dumps_writes_what_json_writes(value: Any) -> None:
    assert _main.json_dumps(value) == json.dumps(value, separators=(",", ":"))


def test_dumps_nan_and_what_json_cannot_write() -> None:
    assert _main.json_dumps([math.nan]) == "[NaN]"
    for bad in (b"bytes", {1, 2}, object(), {("tuple", "key"): 1}):
        with pytest.raises(TypeError):
            _main.json_dumps({"x": bad})


@pytest.mark.parametrize("value", [v for v in VALUES if not isinstance(v, (tuple, dict)) or isinstance(v, dict)],
                         ids=str)
def test_loads_reads_what_json_reads(value: Any) -> None:
    text = json.dumps(value)
    got, want = _main.json_loads(text), json.loads(text)
    assert json.dumps(got) == json.dumps(want) and type(got) is type(want)


@pytest.mark.parametrize("text", [' \n\t{"a": 1}\r\n ', "[1, 2]", '"s"', "3", "NaN", "-Infinity", "1e5", "-0"])
def test_loads_whitespace_and_constants(text: str) -> None:
    assert json.dumps(_main.json_loads(text)) == json.dumps(json.loads(text))


@pytest.mark.parametrize("text", ["", " ", "{", '{"a": 1} x', '{"a": 1}{}', "[1,]", "{'a': 1}", "nul", '"\x01"',
                                  '{"a" 1}', "01", "[1] ]"])
def test_loads_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        _main.json_loads(text)


def test_without_json_s_c_half_the_agent_uses_json() -> None:
    """An interpreter without ``_json`` (or with one unlike CPython's): json itself, the same text."""
    code = ("import sys; sys.modules['_json'] = None; from driftctl.agent import _main;"
            " print(_main.json_dumps({'a': [1, 'é']}), _main.json_loads('[true]'), 'json' in sys.modules)")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ['{"a":[1,"\\u00e9"]}', "[True]", "True"]


def test_a_probe_imports_none_of_what_it_does_not_need(tmp_path: Path) -> None:
    """The shipped program: a probe of files, directories and a symlink starts without re, enum, json,
    subprocess, threading or contextlib (~20 ms of a ~60-ms agent run on a small host)."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("hello\n")
    (tmp_path / "l").symlink_to(tmp_path / "d")
    items = [{"id": f"file:{tmp_path}/d/f", "type": "file",
              "params": {"path": f"{tmp_path}/d/f", "ensure": "file", "content_sha256": None, "_want_content": False}},
             {"id": f"directory:{tmp_path}/d", "type": "directory", "params": {"path": f"{tmp_path}/d"}},
             {"id": f"symlink:{tmp_path}/l", "type": "symlink",
              "params": {"path": f"{tmp_path}/l", "target": f"{tmp_path}/d"}}]
    modules = ship.modules_for(["file", "directory", "symlink"])
    argv = ship.command(PY, modules, cache=False)
    argv[1:1] = ["-X", "importtime"]
    request = ship.program_bytes(modules) + ship._payload({"op": "probe", "facts": False, "resources": items})
    proc = subprocess.run(argv, input=request, capture_output=True, timeout=60, cwd=tmp_path)
    answer = ship._parse(proc.stdout.splitlines()[-1])
    assert answer["ok"] and sorted(answer["resources"]) == sorted(i["id"] for i in items), answer
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert imported & {"re", "enum", "json", "subprocess", "threading", "contextlib", "signal", "collections"} == set()
