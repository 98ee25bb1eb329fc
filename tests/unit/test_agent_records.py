"""Writes between the controller and an apply's agent: records and frames share writes.

One write per record (agent -> controller) and two per file (controller -> agent) made an SSH packet
each, encrypted, sent and read on its own on both sides. The agent's records are now written
together, at most ``FLUSH_AFTER`` after each was made (a thread writes them while a resource runs),
and the controller gathers the frames into writes of up to ``FRAME_BATCH`` bytes. What arrives, and
in what order, does not change.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from driftctl import ship
from driftctl.agent import _core, _main
from driftctl.agent.spawn import run
from driftctl.content import blob_of, file_content
from driftctl.transport.base import Feed


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[_main._Channel, int, list[int]]]:
    """An agent channel writing into a pipe: (channel, the pipe's read end, the size of each write)."""
    r, w = os.pipe()
    writes: list[int] = []
    real_write = os.write

    def counted(fd: int, data: Any) -> int:
        n = real_write(fd, data)
        if fd == w:
            writes.append(n)
        return n

    monkeypatch.setattr(_main.os, "write", counted)
    yield _main._Channel(out_fd=w), r, writes
    os.close(r)
    os.close(w)


def read_lines(fd: int, timeout: float) -> list[dict[str, Any]]:
    """Every line readable from ``fd`` within ``timeout`` seconds of silence, parsed."""
    data = b""
    while select.select([fd], [], [], timeout)[0]:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        data += chunk
        timeout = 0.05
    return [json.loads(line) for line in data.splitlines()]


def test_records_made_together_leave_in_one_write_before_the_answer(
        channel: tuple[_main._Channel, int, list[int]], monkeypatch: pytest.MonkeyPatch) -> None:
    chan, r, writes = channel
    monkeypatch.setattr(_main, "FLUSH_AFTER", 3600.0)  # a slow machine's pause must not split them
    for i in range(50):
        chan.record({"begin": f"file:/f{i}"})
        chan.record({"done": f"file:/f{i}", "result": {"status": "changed"}})
    chan.send({"v": 2, "ok": True})
    lines = read_lines(r, 5)
    assert lines[:4] == [{"begin": "file:/f0"}, {"done": "file:/f0", "result": {"status": "changed"}},
                         {"begin": "file:/f1"}, {"done": "file:/f1", "result": {"status": "changed"}}]
    assert len(lines) == 101 and lines[-1] == {"v": 2, "ok": True}
    assert [x.get("begin") or x.get("done") for x in lines[:-1]] == [f"file:/f{i // 2}" for i in range(100)]
    first = len(json.dumps({"begin": "file:/f0"}, separators=(",", ":"))) + 1
    assert writes[0] == first and len(writes) == 2, writes  # was 101: one per record


def test_the_first_record_goes_out_at_once(channel: tuple[_main._Channel, int, list[int]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A controller that heard nothing from a run that died (killed, out of memory) knows it changed
    nothing; one that heard a record knows it had begun, and reports what it did not hear as "may have
    started": so the first record is never held."""
    chan, r, writes = channel
    monkeypatch.setattr(_main, "FLUSH_AFTER", 3600.0)
    chan.record({"begin": "file:/first"})
    assert read_lines(r, 5) == [{"begin": "file:/first"}]
    chan.record({"done": "file:/first", "result": {"status": "changed"}})
    assert read_lines(r, 0.3) == [] and len(writes) == 1  # the next ones wait for company


def test_an_apply_after_a_probe_that_stayed_sends_its_first_record_at_once(
        channel: tuple[_main._Channel, int, list[int]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's answer was written on this channel (D50): the apply's first record still goes out
    at once, so that "heard nothing of the apply" keeps meaning "nothing of it ran"."""
    chan, r, writes = channel
    monkeypatch.setattr(_main, "FLUSH_AFTER", 3600.0)
    chan.send({"v": 2, "ok": True, "resources": {}})
    assert read_lines(r, 5) == [{"v": 2, "ok": True, "resources": {}}]
    chan.reset()
    chan.record({"begin": "file:/first"})
    assert read_lines(r, 5) == [{"begin": "file:/first"}]
    chan.record({"done": "file:/first", "result": {"status": "changed"}})
    assert read_lines(r, 0.3) == [] and len(writes) == 2


def test_each_request_starts_on_a_reset_channel(channel: tuple[_main._Channel, int, list[int]]) -> None:
    """``_serve`` resets the channel for every request, the second of a session's included (D50)."""
    chan, r, _ = channel
    chan._wrote, chan.frames_done, chan.pending = True, True, {"blob": "x", "size": 1}
    assert _main._serve(chan, b'{"v":2,"op":"probe","facts":false,"resources":[],"then":true}') is True
    assert chan.frames_done is False and chan.pending is None
    assert read_lines(r, 5)[0]["ok"] is True


def test_a_record_is_written_while_the_agent_is_busy_with_the_next_resource(
        channel: tuple[_main._Channel, int, list[int]]) -> None:
    """Nothing else is sent after the record (a long resource runs): the flusher thread writes it."""
    chan, r, writes = channel
    chan.record({"begin": "exec:long"})
    assert read_lines(r, 10) == [{"begin": "exec:long"}]
    chan.record({"done": "exec:long", "result": {"status": "changed"}})
    assert read_lines(r, 10) == [{"done": "exec:long", "result": {"status": "changed"}}]
    assert len(writes) == 2


def test_without_a_flusher_thread_records_are_written_at_once(channel: tuple[_main._Channel, int, list[int]],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """No thread to be had (a full pids cgroup): nothing may wait for a thread that does not exist."""
    chan, r, writes = channel

    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)  # the agent imports threading when it needs it
    for i in range(3):
        chan.record({"done": f"file:/f{i}", "result": {"status": "ok"}})
    assert [x["done"] for x in read_lines(r, 5)] == ["file:/f0", "file:/f1", "file:/f2"] and len(writes) == 3


def test_records_wait_for_no_command_or_input(channel: tuple[_main._Channel, int, list[int]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the agent starts a command (or waits for the controller's next bytes), what it holds is
    written: the controller knows what began before it waits on something that can take long."""
    chan, r, writes = channel
    monkeypatch.setattr(_main, "FLUSH_AFTER", 3600.0)  # only the waits can write them
    monkeypatch.setattr(_core, "BEFORE_COMMAND", [chan.flush])
    monkeypatch.setattr(_main, "BEFORE_COMMAND", _core.BEFORE_COMMAND)
    seen: list[list[dict[str, Any]]] = []
    chan.record({"done": "file:/before", "result": {"status": "ok"}})  # the first record: at once
    assert read_lines(r, 5) == [{"done": "file:/before", "result": {"status": "ok"}}]
    chan.record({"begin": "exec:slow"})
    rc, _, _ = run(["/bin/sh", "-c", "sleep 0.3"])  # the record is out while this runs
    seen.append(read_lines(r, 0.05))
    chan.record({"done": "exec:slow", "result": {"status": "changed"}})
    inp_r, inp_w = os.pipe()
    chan.input = _main._Input(inp_r)
    chan.input.before_wait = chan.flush
    feeder = threading.Timer(0.3, lambda: os.write(inp_w, b'{"end":true}\n'))
    feeder.start()
    try:
        assert chan.input.readline() == b'{"end":true}'
    finally:
        feeder.join()
        os.close(inp_r)
        os.close(inp_w)
    seen.append(read_lines(r, 0.05))
    assert rc == 0 and seen == [[{"begin": "exec:slow"}], [{"done": "exec:slow", "result": {"status": "changed"}}]]
    assert len(writes) == 3


def test_many_waiting_bytes_are_written_at_once(channel: tuple[_main._Channel, int, list[int]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    chan, r, writes = channel
    monkeypatch.setattr(_main, "FLUSH_AFTER", 3600.0)  # the thread would wait an hour
    big = "x" * (_main.FLUSH_BYTES // 4)
    for i in range(5):  # the first goes out at once, the other four together
        chan.record({"done": f"file:/big{i}", "result": {"diff": big}})
    assert [x["done"] for x in read_lines(r, 10)] == [f"file:/big{i}" for i in range(5)]
    assert len(writes) == 2


def stream_of(pieces: list[bytes]) -> bytes:
    return b"".join(pieces)


def test_frames_are_gathered_into_few_writes_and_say_the_same() -> None:
    small = [(f"file:/srv/f{i}", blob_of(f"line {i}\n" * 300)) for i in range(60)]  # ~2.4 KB each
    large = ("file:/srv/big", blob_of(b"\0" * (300 << 10)))
    blobs = [*small[:30], large, *small[30:]]
    request = {"op": "apply", "resources": []}
    feed = Feed([])
    feed.done.set()  # the agent answered at once: no pings
    writes = list(ship._frames(request, blobs, feed))
    expected = [ship.program_bytes(ship._modules_of(request)) + ship._payload({**request, "frames": True})]
    for rid, blob in blobs:
        expected.append(json.dumps({"blob": blob.sha256, "size": blob.size, "for": rid}).encode() + b"\n")
        expected.extend(blob.chunks())
    expected.append(b'{"end":true}\n')
    assert stream_of(writes) == stream_of(expected)
    assert len(expected) == 124 and len(writes) <= 6, [len(w) for w in writes]
    assert max(len(w) for w in writes if w != b"\0" * (300 << 10)) <= ship.FRAME_BATCH


def test_an_abort_stops_the_frames_at_the_next_file() -> None:
    blobs = [(f"file:/srv/f{i}", blob_of(f"{i}\n" * 1000)) for i in range(100)]
    feed = Feed([], abort=threading.Event())
    frames = ship._frames({"op": "apply", "resources": []}, blobs, feed)
    first = next(frames)
    feed.abort.set()  # type: ignore[union-attr]
    rest = list(frames)
    sent = stream_of([first, *rest])
    assert sent.count(b'"blob"') < 100 and sent.endswith(b'{"cancel":"the run was aborted on the controller"}\n')


def test_the_program_and_request_go_out_without_waiting_for_content() -> None:
    """An apply without content: the request and the end frame make the first write."""
    feed = Feed([])
    feed.done.set()
    writes = list(ship._frames({"op": "apply", "resources": []}, [], feed))
    assert len(writes) == 1 and writes[0].endswith(b'{"end":true}\n')


def parse_frames(stream: bytes, prefix: int) -> list[tuple[dict[str, Any], bytes]]:
    """The frames after the program and request (``prefix`` bytes): (header, body) each, up to the end frame."""
    frames = []
    at = prefix
    while True:
        nl = stream.index(b"\n", at)
        header = json.loads(stream[at:nl])
        at = nl + 1
        if header.get("end"):
            assert at == len(stream), "bytes after the end frame"
            return frames
        frames.append((header, stream[at:at + header["size"]]))
        at += header["size"]


@pytest.mark.parametrize("change", ["shrunk", "grown", "same size", "gone"])
def test_a_source_that_changed_on_the_controller_keeps_the_frames_in_step(tmp_path: Path, change: str) -> None:
    """A source file hashed at compile time and changed before it was sent: its frame still carries
    exactly the size announced (zeros where it fell short), so the agent refuses it by its checksum and
    reads every later frame right; the resource is named with the reason."""
    source = tmp_path / "logo.bin"
    source.write_bytes(b"A" * 100_000)
    blobs = [("file:/srv/a", blob_of("first\n")), ("file:/srv/logo", blob_of(file_content(source))),
             ("file:/srv/z", blob_of("last\n"))]
    if change == "shrunk":
        source.write_bytes(b"A" * 10)
    elif change == "grown":
        source.write_bytes(b"A" * 300_000)
    elif change == "same size":
        source.write_bytes(b"B" * 100_000)
    else:
        source.unlink()
    request = {"op": "apply", "resources": []}
    feed = Feed([])
    feed.done.set()
    unsent: dict[str, str] = {}
    stream = b"".join(ship._frames(request, blobs, feed, unsent=unsent))
    prefix = len(ship.program_bytes(ship._modules_of(request)) + ship._payload({**request, "frames": True}))
    frames = parse_frames(stream, prefix)
    assert [h["for"] for h, _ in frames] == ["file:/srv/a", "file:/srv/logo", "file:/srv/z"]
    assert [body for _, body in frames][::2] == [b"first\n", b"last\n"]
    header, body = frames[1]
    assert len(body) == header["size"] == 100_000 and sha256(body).hexdigest() != header["blob"]
    reason = "cannot read" if change == "gone" else "changed on the controller during the run: not sent"
    assert list(unsent) == ["file:/srv/logo"] and reason in unsent["file:/srv/logo"] and str(source) in unsent[
        "file:/srv/logo"]


def test_a_directory_fsync_that_fails_stops_the_run_and_says_so(
        channel: tuple[_main._Channel, int, list[int]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The directories' fsyncs wait for the next write to the controller (D52), so one that fails (EIO)
    can no longer fail its own resource: found at that write, it stops the run, and the answer names
    the directory and why. The files written are in place (their renames were done)."""
    import errno
    import stat as stat_mod

    import driftctl.agent.file  # noqa: F401  (registers the type, as the shipped program defines it)

    chan, r, _ = channel
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        if stat_mod.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    monkeypatch.setattr(_main, "FLUSH_AFTER", 3600.0)  # the records wait for the end of the run
    target = tmp_path / "target"
    target.mkdir()
    items = []
    for name in ("first", "second"):
        data = f"{name}\n".encode()
        items.append({"id": f"file:{target}/{name}", "type": "file", "changes": ["content"],
                      "params": {"path": f"{target}/{name}", "ensure": "present",
                                 "content_sha256": sha256(data).hexdigest(), "content_size": len(data)}})
    blobs = {sha256(f"{n}\n".encode()).hexdigest(): base64.b64encode(f"{n}\n".encode()).decode()
             for n in ("first", "second")}
    request = {"v": 2, "op": "apply", "resources": items, "blobs": blobs,
               "lock_dir": str(tmp_path / "lock"), "backup_dir": str(tmp_path / "backup")}
    _main._serve(chan, json.dumps(request).encode())
    lines = read_lines(r, 5)
    answer = lines[-1]
    assert "cancelled" in answer, lines
    assert answer["ok"] is True and f"fsync of {target} failed: Input/output error" in answer["cancelled"]
    done = {x["done"]: x["result"]["status"] for x in lines if "done" in x}
    assert done == {f"file:{target}/first": "changed", f"file:{target}/second": "changed"}
    assert (target / "first").read_text() == "first\n" and (target / "second").read_text() == "second\n"


def test_a_signal_during_the_directory_syncs_leaves_no_descriptor_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal's exception raised inside one fsync still lets flush close every duplicate descriptor it
    held (the agent is leaving; it must not leak them on the way), then goes on up."""
    dirs = [tmp_path / name for name in ("a", "b", "c")]
    fds = []
    for d in dirs:
        d.mkdir()
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        fds.append(fd)
        _core.DIR_SYNC.later(fd)
    held = list(_core.DIR_SYNC._dirs.values())
    assert len(held) == 3
    calls = []

    def interrupted(fd: int) -> None:
        calls.append(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _core.DIR_SYNC.flush()
    monkeypatch.undo()
    assert len(calls) == 1  # no more syncs after the signal
    for fd in held:
        with pytest.raises(OSError):
            os.fstat(fd)  # closed
    assert _core.DIR_SYNC._dirs == {}
    for fd in fds:
        os.close(fd)


def test_a_lock_directory_that_is_a_planted_link_is_refused(tmp_path: Path) -> None:
    """The lock directory is opened without following a link: a link planted where it should be is
    refused, and nothing is created where it points."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "lock").symlink_to(elsewhere)
    request = {"v": 2, "op": "apply", "resources": [], "lock_dir": str(tmp_path / "lock")}
    proc = subprocess.run(ship.command(sys.executable), input=ship.program_bytes() + json.dumps(request).encode()
                          + b"\n", capture_output=True, check=True)
    answer = json.loads(proc.stdout.splitlines()[-1])
    assert answer["ok"] is False and "refusing the lock directory" in answer["error"], answer
    assert list(elsewhere.iterdir()) == []
