"""One agent from the probe to the apply (D50): the agent's side of a session, run for real.

A probe request with ``then`` keeps the agent after its answer; it answers pings, leaves on bye, end of
input or a lapsed lease, and takes one next request: an apply with its frames, after which it leaves.
The controller's side (ship.Session) is driven through the local transport, which runs the agent as a
child process exactly as the SSH transport's channel runs it on a host.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from driftctl import ship
from driftctl.content import blob_of
from driftctl.inventory import load_inventory
from driftctl.model import Host
from driftctl.transport.local import LocalTransport

pytestmark = pytest.mark.applies_here  # its host lock is this machine's (tests/conftest.py)


def file_item(path: Path, text: str, changes: bool = False) -> dict[str, Any]:


    data = text.encode()
    params = {"path": str(path), "ensure": "present", "content_sha256": hashlib.sha256(data).hexdigest(),
              "content_size": len(data), "_want_content": True, "_sensitive": False}
    item: dict[str, Any] = {"id": f"file:{path}", "type": "file", "params": params}
    if changes:
        item.update(changes=["content"], depends=[], notify=[])
    return item


class Agent:
    """The agent program, fed by hand (stdin held open, as a controller holds it)."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.modules = ship.modules_for(["file"])
        self.proc = subprocess.Popen(ship.command(sys.executable, self.modules, cache=False), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.write(ship.program_bytes(self.modules) + ship._payload(request))

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        doc = ship._parse(self.proc.stdout.readline())
        assert isinstance(doc, dict), doc
        return doc

    def ends_within(self, seconds: float) -> int:
        return self.proc.wait(timeout=seconds)


def probe(path: Path, **extra: Any) -> dict[str, Any]:
    return {"op": "probe", "facts": False, "resources": [file_item(path, "new\n")], **extra}


def test_a_probe_that_stays_answers_pings_and_leaves_on_bye(tmp_path: Path) -> None:
    agent = Agent(probe(tmp_path / "f", then=True))
    answer = agent.line()
    assert answer["ok"] and answer["resources"][f"file:{tmp_path / 'f'}"]["observed"]["ensure"] == "absent"
    assert agent.proc.poll() is None  # it waits for the next request
    agent.write(b'{"ping":1}\n')
    assert agent.line() == {"pong": 1}
    agent.write(b'{"bye":true}\n')
    assert agent.ends_within(10) == 0


def test_a_probe_without_then_leaves_after_its_answer(tmp_path: Path) -> None:
    agent = Agent(probe(tmp_path / "f"))
    assert agent.line()["ok"]
    assert agent.ends_within(10) == 0


@pytest.mark.parametrize("leave", [b"", b'{"cancel":"aborted"}\n'], ids=["end of input", "cancel"])
def test_a_waiting_agent_leaves_at_end_of_input_or_a_cancel(tmp_path: Path, leave: bytes) -> None:
    agent = Agent(probe(tmp_path / "f", then=True))
    assert agent.line()["ok"]
    if leave:
        agent.write(leave)
    else:
        assert agent.proc.stdin is not None
        agent.proc.stdin.close()
    assert agent.ends_within(10) == 0


def test_a_waiting_agent_leaves_when_its_lease_runs_out(tmp_path: Path) -> None:
    """A silent link: no byte, no end of input. The agent leaves after its lease, as an apply's does."""
    agent = Agent(probe(tmp_path / "f", then=True, lease=1))
    assert agent.line()["ok"]
    started = time.monotonic()
    assert agent.ends_within(15) == 0
    assert time.monotonic() - started >= 0.9


def test_the_next_request_is_an_apply_with_its_frames_and_the_agent_leaves_after_it(tmp_path: Path) -> None:
    target = tmp_path / "f"
    agent = Agent(probe(target, then=True))
    assert agent.line()["ok"]
    request = {"op": "apply", "resources": [file_item(target, "new\n", changes=True)],
               "lock_dir": str(tmp_path / "lock")}
    feed_done = threading.Event()
    feed_done.set()  # no pings after the end frame: the test reads the answer itself
    frames = ship._frames(request, [(f"file:{target}", blob_of(b"new\n"))], _Feed(feed_done), program=False)  # type: ignore[arg-type]
    agent.write(b"".join(frames))
    records: list[dict[str, Any]] = []
    while "v" not in (records or [{}])[-1]:
        records.append(agent.line())
    assert records[0] == {"begin": f"file:{target}"}
    assert records[-1]["ok"] and records[1]["result"]["status"] == "changed"
    assert target.read_text() == "new\n"
    assert agent.ends_within(10) == 0  # an apply never stays


class _Feed:
    def __init__(self, done: threading.Event) -> None:
        self.done = done
        self.abort = None


# ---- the controller's side


class Leased(LocalTransport):
    """The local transport with a lease, as a link that can go silent has (the agent is told of it)."""

    lease: float | None = None

    @property
    def link_timeout(self) -> float | None:
        return self.lease


def local_host(tmp_path: Path) -> Host:
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "hosts.yaml").write_text("all:\n  hosts:\n    ctl:\n      driftctl_transport: local\n")
    return load_inventory(tmp_path / "inv").select(None)[0]


def test_a_session_probes_and_applies_with_one_agent(tmp_path: Path) -> None:
    target = tmp_path / "f"
    transport = Leased(local_host(tmp_path))
    started: list[list[str]] = []
    real = transport.stream

    def stream(argv: Any, **kw: Any) -> Any:
        started.append(list(argv))
        return real(argv, **kw)

    transport.stream = stream  # type: ignore[method-assign]
    with ship.Session(transport) as session:
        answer = session.call(probe(target))
        assert answer["resources"][f"file:{target}"]["observed"]["ensure"] == "absent"
        assert session.open
        request = {"op": "apply", "resources": [file_item(target, "new\n", changes=True)],
                   "lock_dir": str(tmp_path / "lock")}
        applied = session.apply(request, [(f"file:{target}", blob_of(b"new\n"))])
    assert applied is not None and applied.cut is None, applied
    assert applied.begun == [f"file:{target}"] and applied.done[f"file:{target}"]["status"] == "changed"
    assert target.read_text() == "new\n"
    assert len(started) == 1  # one agent
    assert not session.open


def test_a_closed_session_leaves_no_agent_behind(tmp_path: Path) -> None:
    transport = Leased(local_host(tmp_path))
    session = ship.Session(transport)
    session.call(probe(tmp_path / "f"))
    assert session._stream is not None
    thread = session._stream.thread
    assert thread is not None and thread.is_alive()
    session.close()
    assert not thread.is_alive()  # the stream ended: the agent left on bye


def test_an_agent_that_left_while_the_controller_planned_is_replaced_for_the_apply(tmp_path: Path) -> None:
    """No ping reached the agent within its lease (a controller starved while it plans): it left. The
    apply is not sent to it (None: the caller starts an agent of its own); nothing was written."""
    transport = Leased(local_host(tmp_path))
    transport.lease = 1.0
    target = tmp_path / "f"
    with ship.Session(transport) as session:
        session.ping_every = 60.0
        session.call(probe(target))
        deadline = time.monotonic() + 15
        while session.open and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not session.open
        request = {"op": "apply", "resources": [file_item(target, "new\n", changes=True)],
                   "lock_dir": str(tmp_path / "lock")}
        assert session.apply(request, [(f"file:{target}", blob_of(b"new\n"))]) is None
    assert not target.exists()


def test_pings_keep_a_waiting_agent_past_its_lease(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ship, "SESSION_PING", 0.2)
    transport = Leased(local_host(tmp_path))
    transport.lease = 1.0
    with ship.Session(transport) as session:
        session.call(probe(tmp_path / "f"))
        time.sleep(2.5)  # past the lease twice: only the pings kept it
        assert session.open
        assert session.call(probe(tmp_path / "g"))["ok"]  # and it still answers


def test_a_request_the_session_cannot_carry_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    """A request for a type whose module the running program lacks, or that may be silent longer than
    the session's limit, is not sent to it (None)."""
    transport = Leased(local_host(tmp_path))
    with ship.Session(transport, timeout=30) as session:
        session.call(probe(tmp_path / "f"))
        other = {"op": "apply", "resources": [{"id": "exec:x", "type": "exec", "changes": ["state"],
                                               "depends": [], "notify": [], "params": {"command": ["true"]}}]}
        assert session.apply(other, []) is None
        mine = {"op": "apply", "resources": [file_item(tmp_path / "f", "new\n", changes=True)]}
        assert session.apply(mine, [], timeout=31) is None
        assert session.open


def _forget_cached(key: str) -> None:
    """This machine's agent cache (the local transport's host) loses the program named ``key``."""
    import os

    home = Path("/var/cache") if os.geteuid() == 0 else Path.home() / ".cache"
    for cached in (home / "driftctl").glob(f"{key}.*"):
        cached.unlink()


@pytest.mark.parametrize("read_only", [False, True], ids=["sent again", "read only: NotCached"])
def test_a_host_that_lost_the_program_is_sent_it_or_the_read_only_probe_gives_up(tmp_path: Path,
                                                                                  read_only: bool) -> None:
    from driftctl.agentcache import HostPrograms

    transport = Leased(local_host(tmp_path))
    programs = HostPrograms(tmp_path / "programs")
    key = ship.program_key(ship.modules_for(["file"]))
    programs.remember(transport.host, key)  # the controller believes the host holds it
    _forget_cached(key)
    sent: list[str] = []
    real = transport.stream

    def stream(argv: Any, **kw: Any) -> Any:
        sent.append(str(argv[list(argv).index(ship.LAUNCHER) + 1]))  # bytes of program that follow
        return real(argv, **kw)

    transport.stream = stream  # type: ignore[method-assign]
    with ship.Session(transport, programs) as session:
        if read_only:
            with pytest.raises(ship.NotCached):
                session.call(probe(tmp_path / "f"), read_only=True)
            assert sent == ["0"] and not session.open
            return
        assert session.call(probe(tmp_path / "f"))["ok"]
        assert sent[0] == "0" and int(sent[1]) > 0 and len(sent) == 2  # need_program, then sent
        assert session.open


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_ends_the_wait_at_once(tmp_path: Path, sig: str) -> None:
    """No lease, no input: only the signal can end the wait (a blocking read is not left to finish)."""
    import signal

    agent = Agent(probe(tmp_path / "f", then=True))
    assert agent.line()["ok"]
    time.sleep(0.2)  # in its read
    agent.proc.send_signal(getattr(signal, sig))
    assert agent.ends_within(5) == 0


def _left(session: ship.Session, timeout: float = 15) -> None:
    """Wait until the session's agent is gone (its stream ended)."""
    stream = session._stream
    assert stream is not None and stream.thread is not None
    stream.thread.join(timeout)
    assert not stream.thread.is_alive()


def test_an_apply_queued_as_the_stream_ended_is_not_sent_and_reads_not_sent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: the session looked open when the apply was queued, but its stream had ended. The frames
    never reached the agent: None (a fresh agent takes the apply), not a "may have started" report."""
    target = tmp_path / "f"
    transport = Leased(local_host(tmp_path))
    with ship.Session(transport) as session:
        session.call(probe(target))
        assert session._stream is not None
        session._stream.requests.put(None)  # bye: the agent leaves, the session does not know yet
        _left(session)
        monkeypatch.setattr(ship._Stream, "open", property(lambda self: True))
        request = {"op": "apply", "resources": [file_item(target, "new\n", changes=True)],
                   "lock_dir": str(tmp_path / "lock")}
        assert session.apply(request, [(f"file:{target}", blob_of(b"new\n"))]) is None
    assert not target.exists()


def test_a_second_probe_to_an_agent_that_just_left_starts_a_new_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transport = Leased(local_host(tmp_path))
    transport.lease = 1.0
    with ship.Session(transport) as session:
        session.ping_every = 60.0  # unpinged, it leaves after its lease
        session.call(probe(tmp_path / "f"))
        first = session._stream
        _left(session)
        monkeypatch.setattr(ship._Stream, "open", property(lambda self: self is first))  # it looks open
        assert session.call(probe(tmp_path / "g"))["ok"]
        assert session._stream is not first
