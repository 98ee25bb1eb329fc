"""exec: validation (argv splitting, shell), desired/diff (pure), change lines, and the agent's guards
and runs with real processes on this machine (no host needed)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from driftctl.agent import exec as agent_exec
from driftctl.agent._core import Ctx, Failure, run_set_deadline
from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import get_type

LOC = Location("manifests/deploy.yaml", 31)
Exec = get_type("exec")
assert Exec is not None


def validate(**raw: object) -> dict:
    assert Exec is not None
    return Exec.validate({"name": "migrate", **raw}, LOC)


def test_string_split_like_a_shell_without_one() -> None:
    p = validate(command="/usr/bin/env 'A B=1' printenv \"A B\"")
    assert p["command"] == ["/usr/bin/env", "A B=1", "printenv", "A B"]


def test_shell_true_wraps_in_sh_c_for_command_and_guards() -> None:
    p = validate(command="echo $HOME | wc -c", shell=True, unless="test -e /x && true")
    assert p["command"] == ["/bin/sh", "-c", "echo $HOME | wc -c"]
    assert p["unless"] == ["/bin/sh", "-c", "test -e /x && true"]


def test_list_kept_and_title_is_the_default_command() -> None:
    assert validate(command=["make", "-C", "/srv", "install"])["command"] == ["make", "-C", "/srv", "install"]
    assert validate()["command"] == ["migrate"]


def test_defaults() -> None:
    p = validate(command="true")
    assert (p["returns"], p["refreshonly"], p["shell"]) == ([0], False, False)
    assert validate(command="true", returns=2)["returns"] == [2]
    assert validate(command="true", environment={"N": 3})["environment"] == {"N": "3"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"command": "echo 'unclosed"}, "command cannot be split into words"),
        ({"command": ["ls"], "shell": True}, "command must be a string when shell is true"),
        ({"command": []}, "command must be a non-empty list of strings"),
        ({"command": "   "}, "command is empty"),
        ({"command": "true", "unless": "test 'x"}, "unless cannot be split into words"),
        ({"command": "true", "creates": "relative/path"}, "creates must be an absolute path"),
        ({"command": "true", "returns": [0, 256]}, "returns must be an exit code or a list"),
        ({"command": "true", "returns": True}, "returns must be int or list"),
        ({"command": "true", "timeout": 0}, "timeout must be a positive number"),
        ({"command": "true", "environment": {"A=B": "x"}}, "environment has a bad variable name"),
        ({"command": "true", "environment": {"A": ["x"]}}, "A must be a string or a number"),
        ({"command": "true", "user": "bad user"}, "user must be a user name or uid"),
        ({"command": "true", "refresh_only": True}, "did you mean 'refreshonly'?"),
    ],
)
def test_validation_errors_carry_location(raw: dict, message: str) -> None:
    with pytest.raises(ManifestError) as e:
        validate(**raw)
    assert message in str(e.value)
    assert e.value.location == LOC


def test_desired_diff_and_change_line() -> None:
    assert Exec is not None
    desired = Exec.desired(validate(command="true"))
    assert desired == {"state": "done"}
    assert Exec.diff(desired, {"state": "done", "why": "/x exists"}) == []
    changes = Exec.diff(desired, {"state": "pending", "why": "/x does not exist"})
    assert changes == [Change("state", "/x does not exist", "ran")]
    assert Exec.describe(changes[0]) == "ran (/x does not exist)"
    assert Exec.refreshable


def test_autorequire() -> None:
    assert Exec is not None
    assert Exec.autorequire(validate(command="true", user="www-data", cwd="/srv")) == [
        "user:www-data", "directory:/srv"]
    assert Exec.autorequire(validate(command="true", user=33)) == []


# ---- the agent, with real processes on this machine


def params(tmp_path: Path, **raw: object) -> dict:
    raw.setdefault("command", ["sh", "-c", f"echo ran >> {tmp_path}/log"])
    return validate(**raw)


def runs(tmp_path: Path) -> int:
    log = tmp_path / "log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_creates_guard(tmp_path: Path) -> None:
    marker = tmp_path / "done"
    p = params(tmp_path, command=["touch", str(marker)], creates=str(marker))
    assert agent_exec.exec_observe(p, Ctx()) == {"state": "pending", "why": f"{marker} does not exist"}
    agent_exec.exec_apply(p, ["state"], Ctx())
    assert agent_exec.exec_observe(p, Ctx()) == {"state": "done", "why": f"{marker} exists"}


def test_unless_and_onlyif_guards(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    unless = params(tmp_path, unless=["test", "-e", str(flag)])
    onlyif = params(tmp_path, onlyif=["test", "-e", str(flag)])
    assert agent_exec.exec_observe(unless, Ctx())["state"] == "pending"
    assert agent_exec.exec_observe(onlyif, Ctx()) == {"state": "done", "why": "onlyif exited 1"}
    flag.write_text("")
    assert agent_exec.exec_observe(unless, Ctx()) == {"state": "done", "why": "unless succeeded"}
    assert agent_exec.exec_observe(onlyif, Ctx()) == {"state": "pending", "why": "onlyif succeeded"}
    assert runs(tmp_path) == 0  # observing ran the guards only


def test_refreshonly_runs_only_on_refresh(tmp_path: Path) -> None:
    p = params(tmp_path, refreshonly=True)
    assert agent_exec.exec_observe(p, Ctx())["state"] == "done"
    assert runs(tmp_path) == 0
    agent_exec.exec_refresh(p, Ctx())
    assert runs(tmp_path) == 1


def test_refresh_respects_guards_and_does_not_rerun_what_just_ran(tmp_path: Path) -> None:
    marker = tmp_path / "m"
    guarded = params(tmp_path, refreshonly=True, creates=str(marker))
    marker.write_text("")
    agent_exec.exec_refresh(guarded, Ctx())
    assert runs(tmp_path) == 0
    plain = params(tmp_path)
    agent_exec.exec_apply(plain, ["state"], Ctx())
    agent_exec.exec_refresh(plain, Ctx())
    assert runs(tmp_path) == 1


def test_unexpected_exit_code_fails_with_the_tail_of_the_output(tmp_path: Path) -> None:
    script = "for i in $(seq 1 50); do echo line$i; done; echo oops >&2; exit 3"
    p = params(tmp_path, command=script, shell=True)
    with pytest.raises(Failure) as e:
        agent_exec.exec_apply(p, ["state"], Ctx())
    text = str(e.value)
    assert text.startswith("command exited 3 (expected 0)")
    assert "line50\noops" in text and "line1\n" not in text
    agent_exec.exec_apply(params(tmp_path, command=script, shell=True, returns=[0, 3]), ["state"], Ctx())


def test_cwd_environment_and_timeout(tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = params(tmp_path, command=f"pwd > {out}; echo $GREETING >> {out}", shell=True, cwd=str(tmp_path),
               environment={"GREETING": "hi there"})
    agent_exec.exec_apply(p, ["state"], Ctx())
    assert out.read_text() == f"{tmp_path}\nhi there\n"
    slow = params(tmp_path, command=[sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"],
                  timeout=0.5)
    with pytest.raises(Failure, match=r"timed out after 0.5s: started"):
        agent_exec.exec_apply(slow, ["state"], Ctx())


def test_missing_command_is_a_clear_failure(tmp_path: Path) -> None:
    with pytest.raises(Failure, match="command not found: /nonexistent/tool"):
        agent_exec.exec_apply(params(tmp_path, command="/nonexistent/tool --x"), ["state"], Ctx())


def alive(pid: int) -> bool:
    """Whether a process is running (a zombie waiting for init to reap it is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def test_timeout_ends_what_the_command_started_even_outside_its_process_group(tmp_path: Path) -> None:
    # a daemon started by the command, in a session of its own: killing the process group misses it
    pidfile = tmp_path / "daemon.pid"
    script = f"setsid sleep 300 >/dev/null 2>&1 </dev/null & echo $! > {pidfile}; echo started; sleep 300"
    p = params(tmp_path, command=script, shell=True, timeout=1)
    with pytest.raises(Failure) as e:
        agent_exec.exec_apply(p, ["state"], Ctx())
    assert str(e.value).startswith("/bin/sh -c setsid sleep 300")
    assert "timed out after 1s: started" in str(e.value)
    daemon = int(pidfile.read_text())
    try:
        assert not alive(daemon), "the command's daemon was left running"
    finally:
        if alive(daemon):
            os.kill(daemon, signal.SIGKILL)


def test_timeout_does_not_wait_for_output_a_survivor_holds_open(tmp_path: Path) -> None:
    # the daemon keeps the command's stdout open: waiting for end of output would wait for it
    pidfile = tmp_path / "daemon.pid"
    script = f"setsid sleep 120 & echo $! > {pidfile}; sleep 120"
    p = params(tmp_path, command=script, shell=True, timeout=1)
    outcome: list[BaseException] = []

    def apply() -> None:
        try:
            agent_exec.exec_apply(p, ["state"], Ctx())
        except BaseException as e:  # handed to the test thread
            outcome.append(e)

    worker = threading.Thread(target=apply, daemon=True)
    worker.start()
    worker.join(60)  # a hang detector, not a timing assertion: the command would take 120 s
    daemon = int(pidfile.read_text())
    try:
        assert not worker.is_alive(), "exec_run waited for the output of a process it started"
        assert isinstance(outcome[0], Failure) and "timed out after 1s" in str(outcome[0])
        assert not alive(daemon)
    finally:
        if alive(daemon):
            os.kill(daemon, signal.SIGKILL)


def test_without_a_timeout_the_resource_time_limit_ends_the_command(tmp_path: Path) -> None:
    p = params(tmp_path, command=["sleep", "30"])
    run_set_deadline(time.monotonic() + 1)
    try:
        with pytest.raises(Failure, match=r"^sleep 30 timed out after 1s \(the resource's time limit\)$"):
            agent_exec.exec_apply(p, ["state"], Ctx())
        # its own timeout, when shorter, is what ends it
        run_set_deadline(time.monotonic() + 60)
        with pytest.raises(Failure, match=r"^sleep 30 timed out after 0.2s$"):
            agent_exec.exec_apply(params(tmp_path, command=["sleep", "30"], timeout=0.2), ["state"], Ctx())
        run_set_deadline(time.monotonic() - 1)
        with pytest.raises(Failure, match="not started: the resource timed out"):
            agent_exec.exec_apply(params(tmp_path), ["state"], Ctx())
        assert runs(tmp_path) == 0
    finally:
        run_set_deadline(None)
