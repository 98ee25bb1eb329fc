"""Dynamic inventories: an executable that speaks Ansible's inventory script protocol.

``SCRIPT --list`` prints one JSON object: ``{"web": {"hosts": [...], "vars": {...}, "children":
[...]}, ..., "_meta": {"hostvars": {"web1": {...}}}}``. Without ``_meta``, ``SCRIPT --host NAME`` is
run once per host for its variables (an empty answer is no variables). This is what Ansible's
``script`` inventory plugin (ansible-core 2.19) reads, and how it reads it: host names are taken as
written (no ``[1:3]`` ranges, no ``:port``), a group given as a list is its hosts, a group mapping
without ``hosts``/``vars``/``children`` is a host of that name with those variables (both with a
warning, as Ansible deprecates them), ``_meta`` without ``hostvars`` is an error, and a non-empty
standard error is shown (as a warning) even when the script succeeds.

A file is a script when it is a regular file we may execute that starts with ``#!`` (or is an ELF
binary): an executable ``hosts.yaml`` or ``hosts`` without ``#!`` is read as a static file, which is
where Ansible ends up too (running it fails, and the next plugin reads it).

Differences from Ansible, all on the side of safety: the script must not be writable by users other
than its owner, nor sit in a directory they can write, and must belong to you or root (it runs as
you, with your credentials), else it is refused; it is stopped after ``TIMEOUT`` seconds (Ansible
waits forever), or ``EXITED_GRACE`` seconds after it exited when a process it started keeps its output
open (Ansible waits for that one too); more than ``MAX_OUTPUT`` bytes of output stop it; its standard
input is /dev/null; every failure (an exit status other than 0, output
that is not JSON or not the protocol) is an error naming the script, where Ansible only warns that it
could not parse the source and goes on without its hosts.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from driftctl import fsperms
from driftctl.errors import InventoryError, Location
from driftctl.inventory.builder import Builder

TIMEOUT = 60.0  # seconds for one run of the script
_STDERR_SHOWN = 2000  # characters of a script's standard error that an error or warning quotes
_STDERR_KEPT = 64 * 1024  # bytes of standard error kept while reading (its tail)
MAX_OUTPUT = 256 << 20  # bytes of standard output: ~10x a 10,000-host inventory with all its hostvars
EXITED_GRACE = 5.0  # seconds the pipes may stay open after the script exited
_MAGIC = (b"#!", b"\x7fELF")


def is_script(path: Path) -> bool:
    """A regular file we may execute whose first bytes are ``#!`` (or an ELF header)."""
    try:
        if not path.is_file() or not os.access(path, os.X_OK):
            return False
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(_MAGIC)


def _untrusted(path: Path) -> str | None:
    """Why the script must not be run, or None: whoever can change it (or its directory) runs code as you."""
    real = path.resolve()
    for p in dict.fromkeys((real, real.parent, path.parent)):
        try:
            st = p.stat()
        except OSError as e:
            return f"cannot check {p}: {e.strerror}"
        if fsperms.writable_by_others(st):
            what = "it" if p == real else f"its directory {p}"
            return (f"{what} can be written by users other than its owner (mode {stat.S_IMODE(st.st_mode):04o}), "
                    "who could make it run anything as you")
    st = real.stat()
    if st.st_uid not in (os.geteuid(), 0):
        return f"it is owned by another user (uid {st.st_uid}), not by you or root"
    return None


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _STDERR_SHOWN else "..." + text[-_STDERR_SHOWN:]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the whole group: its children hold the pipes
        os.killpg(proc.pid, signal.SIGKILL)


def _collect(proc: subprocess.Popen[bytes], shown: str, where: Location, timeout: float) -> tuple[bytes, bytes]:
    """The script's standard output and error, read until both close. Bounded: ``timeout`` in all,
    MAX_OUTPUT bytes of output (more is an error, not a process using all memory), the last
    _STDERR_KEPT bytes of standard error, and EXITED_GRACE seconds for the pipes to close once the
    script has exited (a daemon it started that keeps them open would otherwise hold driftctl, as
    it holds Ansible, forever)."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    size = 0
    deadline = time.monotonic() + timeout
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        while sel.get_map():
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > EXITED_GRACE:
                _kill(proc)
                raise InventoryError(f"the inventory script '{shown}' exited, but a process it started still holds "
                                     "its standard output open", where,
                                     "a background process it starts must not inherit its output (>/dev/null 2>&1)")
            if now > deadline:
                _kill(proc)
                proc.wait()
                raise InventoryError(f"the inventory script '{shown}' did not finish in {timeout:g} s, so it was "
                                     "stopped", where)
            for key, _ in sel.select(timeout=min(0.2, max(0.0, deadline - now))):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if key.data is out:
                    size += len(chunk)
                    if size > MAX_OUTPUT:
                        _kill(proc)
                        proc.wait()
                        raise InventoryError(f"the inventory script '{shown}' printed more than "
                                             f"{MAX_OUTPUT >> 20} MiB, so it was stopped", where)
                elif len(err) > 2 * _STDERR_KEPT:
                    del err[:-_STDERR_KEPT]
    try:  # both pipes closed; the script itself may still run
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.wait()
        raise InventoryError(f"the inventory script '{shown}' did not finish in {timeout:g} s, so it was stopped",
                             where) from None
    return bytes(out), bytes(err[-_STDERR_KEPT:])


def run(path: Path, args: list[str], timeout: float) -> tuple[Any, str]:
    """Run ``path ARGS``; its parsed JSON output and its standard error. Raises InventoryError naming the
    script for a failure to start, a timeout, too much output, an exit status other than 0, or output
    that is not JSON."""
    where = Location(str(path))
    shown = " ".join([path.name, *args])
    try:
        # by its absolute path: 'driftctl inventory cloud.py' is not a command to look up in PATH
        proc = subprocess.Popen([os.path.abspath(path), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:
        raise InventoryError(f"cannot run the inventory script: {e.strerror}", where) from None
    try:
        out, err = _collect(proc, shown, where, timeout)
    finally:
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    stderr = _tail(err.decode("utf-8", "replace"))
    if proc.returncode != 0:
        status = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
                  else f"exited with status {proc.returncode}")
        raise InventoryError(f"the inventory script '{shown}' {status}" + (f": {stderr}" if stderr else ""), where)
    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InventoryError(f"'{shown}' printed bytes that are not UTF-8 (offset {e.start})", where) from None
    if args[0] == "--host" and not text.strip():
        return {}, stderr
    try:
        return json.loads(text), stderr
    except json.JSONDecodeError as e:
        raise InventoryError(f"'{shown}' printed invalid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                             where, f"its standard error: {stderr}" if stderr else None) from None


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


def load(path: Path, builder: Builder, timeout: float = TIMEOUT) -> list[str]:
    """Run the script at ``path`` and add what it prints to ``builder``; returns the warnings."""
    where = Location(str(path))
    why = _untrusted(path)
    if why is not None:
        raise InventoryError(f"refusing to run this inventory script: {why}", where, f"chmod go-w {path}")
    warnings: list[str] = []
    data, stderr = run(path, ["--list"], timeout)
    if stderr:
        warnings.append(f"{path}: the inventory script wrote on standard error: {stderr}")
    if not isinstance(data, dict):
        raise InventoryError(f"'{path.name} --list' printed {_kind(data)}, not a JSON object of groups", where)
    hostvars: dict[str, Any] | None = None
    hosts: list[str] = []
    for group, body in data.items():
        if group == "_meta":
            if not isinstance(body, dict) or not isinstance(body.get("hostvars"), dict):
                got = _kind(body.get("hostvars")) if isinstance(body, dict) else _kind(body)
                raise InventoryError(f"'{path.name} --list': _meta.hostvars must be a mapping, not {got}", where,
                                     "as Ansible requires; leave _meta out to have the script asked with --host")
            hostvars = body["hostvars"]
            continue
        _group(path, builder, group, body, hosts, warnings)
    for name in dict.fromkeys(hosts):
        if hostvars is None:
            found, stderr = run(path, ["--host", name], timeout)
            if stderr:
                warnings.append(f"{path}: the inventory script wrote on standard error for --host {name}: {stderr}")
        else:
            found = hostvars.get(name, {})
        if not isinstance(found, dict):
            raise InventoryError(f"'{path.name}': the variables of host {name!r} must be a mapping, not {_kind(found)}",
                                 where)
        for key, value in found.items():
            builder.set_host_var(name, key, value, where)
    return warnings


def _group(path: Path, builder: Builder, group: str, body: Any, hosts: list[str], warnings: list[str]) -> None:
    where = Location(str(path))
    if isinstance(body, list):
        warnings.append(f"{path}: group {group!r} is a list: read as its hosts (Ansible deprecates this form)")
        body = {"hosts": body}
    elif not isinstance(body, dict):
        raise InventoryError(f"'{path.name} --list': group {group!r} must be a mapping with hosts, vars and "
                             f"children, not {_kind(body)}", where)
    elif not any(k in body for k in ("hosts", "vars", "children")):
        warnings.append(f"{path}: group {group!r} has no hosts, vars or children: read as a host of that name "
                        "with these variables, as Ansible does (it deprecates this form)")
        body = {"hosts": [group], "vars": body}
    builder.group(group, where)
    members = body.get("hosts", [])
    if not isinstance(members, list):
        raise InventoryError(f"'{path.name} --list': {group}.hosts must be a list, not {_kind(members)}", where)
    for name in members:
        if not isinstance(name, str) or not name:
            raise InventoryError(f"'{path.name} --list': a host name in {group}.hosts must be a non-empty string, "
                                 f"not {name!r}", where)
        builder.add_host(group, name, where)
        hosts.append(name)
    variables = body.get("vars", {})
    if not isinstance(variables, dict):
        raise InventoryError(f"'{path.name} --list': {group}.vars must be a mapping, not {_kind(variables)}", where)
    for key, value in variables.items():
        builder.set_group_var(group, key, value, where)
    children = body.get("children", [])
    if not isinstance(children, list):
        raise InventoryError(f"'{path.name} --list': {group}.children must be a list, not {_kind(children)}", where)
    for child in children:
        if not isinstance(child, str) or not child:
            raise InventoryError(f"'{path.name} --list': a child of group {group!r} must be a group name, "
                                 f"not {child!r}", where)
        builder.add_child(group, child, where)
