"""The agent as the controller ships and calls it: the program, one call, one streamed apply.

The agent program (driftctl/agent/, stdlib only) is assembled here from the modules of that package
(``AGENT_MODULES``: every module, each after the modules it imports, ``_main`` last), compressed, and
sent over the channel's stdin with the request; the host's python3 (>= 3.8) decompresses and runs it.
``call()`` is one round trip that answers one document (facts, probe, prune); ``apply()`` streams the
contents in frames and collects the agent's records as they arrive (protocol 2: driftctl/agent/_main.py).
"""

from __future__ import annotations

import ast
import base64
import functools
import hashlib
import io
import json
import math
import os
import queue
import re
import stat
import threading
import time
import tokenize
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from driftctl.agentcache import HostPrograms
from driftctl.content import Blob
from driftctl.errors import (
    AgentError,
    CommandAborted,
    CommandTimeout,
    ConnectionLost,
    DriftctlError,
    HostError,
    HostLockedError,
)
from driftctl.fileio import FileWriteError, write_atomic
from driftctl.fsperms import writable_by_others
from driftctl.transport.base import CommandResult, Feed, Transport

PROTOCOL_VERSION = 2
FRAME_BATCH = 1 << 16  # bytes of an apply's stdin gathered into one write (the SSH transport's chunk)
AGENT_PACKAGE = "driftctl.agent"

# What a module of this package uses from another it imports (``from driftctl.agent.file import ...``):
# those lines are the only statement of the order, so the program is ordered from them.
_AGENT_IMPORT = re.compile(r"^from (?:driftctl\.agent\.|\.)(\w+) import", re.MULTILINE)
_FIRST, _LAST = "_core", "_main"  # the base every module uses; the entry point, which runs the program


@functools.cache
def _module_imports() -> dict[str, list[str]]:
    """Every agent module -> the agent modules it imports."""
    pkg = resources.files(AGENT_PACKAGE)
    imports: dict[str, list[str]] = {}
    for entry in pkg.iterdir():
        if entry.name.endswith(".py") and entry.name != "__init__.py":
            imports[entry.name[:-3]] = sorted(set(_AGENT_IMPORT.findall(entry.read_text(encoding="utf-8"))))
    return imports


def agent_modules() -> list[str]:
    """Every module of this package in shipping order: ``_core`` first, each module after the modules
    it imports (by name where nothing else decides), ``_main`` last (it runs the program, so every
    other module, ``watch`` included, must be defined before it).

    A new resource type's agent module is shipped by being here; it is placed by its own imports.
    """
    imports = _module_imports()
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order or name == _LAST:
            return
        if name in visiting:
            raise ValueError(f"agent modules import each other in a circle: {' -> '.join([*visiting, name])}")
        if name not in imports:
            raise ValueError(f"agent module {visiting[-1]} imports {name}, which is not in driftctl/agent/")
        visiting.append(name)
        for dep in imports[name]:
            visit(dep)
        visiting.pop()
        order.append(name)

    for name in [_FIRST, *sorted(imports)]:
        visit(name)
    return [*order, _LAST]


AGENT_MODULES = agent_modules()

# argv: ``<n> <key> [r]``. Reads exactly n bytes of compressed program from fd 0, unbuffered, so the request
# and the frames behind it stay in the pipe for the agent's own reader. ``key`` (the sha256 of those
# bytes, or "-" for no cache) names the compiled program in the agent cache of the user it runs as:
# /var/cache/driftctl for root, ~/.cache/driftctl otherwise, a 0700 directory of that user's own, opened
# by descriptor without following a link; a cached code object is used only from a regular file of that
# user's, not writable by others. n = 0 means "use the cache": on a miss the launcher answers
# need_program and the controller sends the program again. At most 16 programs are kept. ``r`` (read
# only, with n = 0): the cache is used if it is there, and nothing is created or written on the host.
# The agent learns from ``launcher_cached`` / ``launcher_cache_dir`` whether it was cached, and where.
LAUNCHER = """import os,sys,zlib,marshal,stat
_n=int(sys.argv[1]);_k=sys.argv[2];_ro=len(sys.argv)>3;_b=b''
while len(_b)<_n:
 _c=os.read(0,_n-len(_b))
 if not _c:break
 _b+=_c
def _cache_dir():
 u=os.geteuid()
 if u==0:p='/var/cache'
 else:
  import pwd;p=os.path.join(pwd.getpwuid(u).pw_dir,'.cache')
  if not _ro:
   try:os.mkdir(p,0o700)
   except OSError:pass
 f=os.open(p,os.O_RDONLY|os.O_DIRECTORY)
 try:
  if not _ro:
   try:os.mkdir('driftctl',0o700,dir_fd=f)
   except FileExistsError:pass
  d=os.open('driftctl',os.O_RDONLY|os.O_DIRECTORY|os.O_NOFOLLOW,dir_fd=f)
 finally:os.close(f)
 s=os.fstat(d)
 if s.st_uid!=u or s.st_mode&0o077:
  os.close(d);return None
 global launcher_cache_dir;launcher_cache_dir=os.path.join(p,'driftctl')
 return d
def _cached(d,name):
 f=os.open(name,os.O_RDONLY|os.O_NOFOLLOW,dir_fd=d)
 try:
  s=os.fstat(f)
  if s.st_uid!=os.geteuid() or s.st_mode&0o022 or not stat.S_ISREG(s.st_mode):return None
  data=b''
  while True:
   c=os.read(f,1<<20)
   if not c:break
   data+=c
  c=marshal.loads(data)
  return c if isinstance(c,type(_keep.__code__)) else None
 finally:os.close(f)
def _keep(d,name,code):
 t='%s.%d.tmp'%(name,os.getpid())
 f=os.open(t,os.O_WRONLY|os.O_CREAT|os.O_EXCL|os.O_NOFOLLOW,0o600,dir_fd=d)
 try:os.write(f,marshal.dumps(code))
 finally:os.close(f)
 os.rename(t,name,src_dir_fd=d,dst_dir_fd=d)
 old=sorted((os.stat(e,dir_fd=d,follow_symlinks=False).st_mtime,e) for e in os.listdir(d))
 for _m,e in old[:-16]:os.unlink(e,dir_fd=d)
_d=None;_code=None;launcher_cached=False;launcher_cache_dir=None
_name='%s.%s'%(_k,sys.implementation.cache_tag)
if _k!='-' and _k.isalnum():
 try:
  _d=_cache_dir()
  if _d is not None:_code=_cached(_d,_name)
 except Exception:_code=None
if _code is None and not _b:
 sys.stdout.write('{"v":2,"ok":false,"need_program":true}\\n');sys.stdout.flush();sys.exit(0)
if _code is None:
 _code=compile(zlib.decompress(_b),'driftctl-agent','exec')
 if _d is not None:
  try:_keep(_d,_name,_code);launcher_cached=True
  except Exception:pass
else:launcher_cached=True
if _d is not None:os.close(_d)
del _b
exec(_code)"""

_LOCAL_IMPORT = re.compile(r"^(from (driftctl\.agent|\.)\S* import .*|from __future__ import .*)$")
# the same imports written over several lines: ``from driftctl.agent._core import (\n a,\n b,\n)``
_LOCAL_IMPORT_BLOCK = re.compile(r"^from (driftctl\.agent|\.)\S* import \([^)]*\)[ \t]*$", re.MULTILINE)


# what every program has besides the types' modules: the core, facts, the watch scan, the entry point
_ALWAYS = (_FIRST, "facts", "watch", _LAST)


def modules_for(types: Iterable[str] | None) -> tuple[str, ...]:
    """The agent modules a request about resources of ``types`` needs (all of them for None), in
    shipping order: each type's module and what it imports, plus the core, facts, watch and _main.
    A round trip then carries only the code it runs (the whole program is ~46 KB compressed)."""
    if types is None:
        return tuple(AGENT_MODULES)
    from driftctl.resources.base import get_type

    imports = _module_imports()
    wanted: set[str] = set()
    todo = list(_ALWAYS)
    for name in types:
        rtype = get_type(name)
        if rtype is None:
            return tuple(AGENT_MODULES)  # the agent says what it lacks; do not guess here
        todo.append(rtype.agent_module)
    while todo:
        module = todo.pop()
        if module not in wanted:
            wanted.add(module)
            todo.extend(imports.get(module, []))
    return tuple(m for m in AGENT_MODULES if m in wanted)


def _modules_of(request: dict[str, Any]) -> tuple[str, ...]:
    items = request.get("resources")
    if request.get("op") not in ("probe", "apply") or not items:
        return modules_for(None)
    return modules_for(sorted({str(i["type"]) for i in items}))


@functools.cache
def program_source(modules: tuple[str, ...] | None = None) -> str:
    """The agent program (of ``modules``, default all) as one Python source text."""
    parts = ["from __future__ import annotations\n"]
    pkg = resources.files(AGENT_PACKAGE)
    for name in modules or AGENT_MODULES:
        path = pkg / f"{name}.py"
        if not path.is_file():
            continue
        text = _LOCAL_IMPORT_BLOCK.sub("", path.read_text(encoding="utf-8"))
        lines = [ln for ln in text.splitlines() if not _LOCAL_IMPORT.match(ln)]
        parts.append(f"# ---- {name}.py\n" + "\n".join(lines) + "\n")
    return "\n".join(parts)


_PROGRAMS_LOCK = threading.Lock()


def program_bytes(modules: tuple[str, ...] | None = None) -> bytes:
    """What is sent: the program without its docstrings and comments, compressed. Built once per set
    of modules, under a lock: forty hosts that start together must not each parse and compact it; and
    kept in the controller's cache (compacting costs ~0.1 s of CPU per run otherwise)."""
    with _PROGRAMS_LOCK:
        return _program_bytes(modules)


@functools.cache
def _program_bytes(modules: tuple[str, ...] | None) -> bytes:
    return _built(program_source(modules))


def _built(source: str) -> bytes:
    """``source`` compacted and compressed, from the controller's cache when it holds exactly that
    (named by the source's sha256, read only from a 0700 directory and a file of this user's own)."""
    name = hashlib.sha256(source.encode("utf-8")).hexdigest() + ".z"
    directory = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "driftctl" / "programs"
    try:
        return _read_private(directory, name)
    except OSError:
        pass
    program = zlib.compress(compact(source).encode("utf-8"), 9)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(directory / name, program, mode=0o600)
    except (OSError, FileWriteError):
        pass  # a cache that cannot be written costs CPU, nothing else
    return program


def _read_private(directory: Path, name: str) -> bytes:
    """A file of this user's, in a directory of this user's that nobody else may write; else OSError."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        st = os.fstat(dfd)
        if st.st_uid != os.geteuid() or writable_by_others(st):
            raise PermissionError(f"{directory} is not private")
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid() or writable_by_others(st) or not stat.S_ISREG(st.st_mode):
                raise PermissionError(f"{directory / name} is not private")
            data = f.read()
    finally:
        os.close(dfd)
    try:
        zlib.decompress(data)  # whole: a truncated file is rebuilt
    except zlib.error as e:
        raise OSError(f"{directory / name} is damaged: {e}") from e
    return data


def compact(source: str) -> str:
    """``source`` without docstrings (a body that was only one gets ``pass``) and comments; the same
    program. Line numbers change: an agent traceback names functions, not lines."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    docstrings = []  # every statement that is only a string (docstrings, the modules' own included)
    for node in ast.walk(tree):
        for body in (getattr(node, f, None) for f in ("body", "orelse", "finalbody")):
            if not isinstance(body, list):
                continue
            strings = [st for st in body if isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant)
                       and isinstance(st.value.value, str) and st.end_lineno is not None]
            for i, st in enumerate(strings):
                keep_pass = len(strings) == len(body) and i == 0  # a body of strings only keeps a pass
                docstrings.append((st.lineno, st.end_lineno, st.col_offset, keep_pass))
    for start, end, col, keep_pass in sorted(docstrings, reverse=True):
        lines[start - 1:end] = [" " * col + "pass\n"] if keep_pass else []
    tokens = tokenize.generate_tokens(io.StringIO("".join(lines)).readline)
    return tokenize.untokenize(t for t in tokens if t.type != tokenize.COMMENT)


def command(python: str = "python3", modules: tuple[str, ...] | None = None, *, cache: bool = True,
            send: bool = True, read_only: bool = False) -> list[str]:
    """The argv that runs the agent (of ``modules``, default all) on a host: with ``send`` the program
    follows on stdin, without it the host runs its cached copy (or answers need_program); ``cache``
    False leaves no agent cache on the host (a build container, whose files become an image);
    ``read_only`` (without ``send``) reads the cache and creates nothing."""
    program = program_bytes(modules)
    # -I: neither the working directory nor PYTHON* variables reach sys.path (a run started in /tmp
    # would import a planted zlib.py as root); -S: no site (the agent is stdlib only; ~2 ms a start)
    argv = [python, "-I", "-S", "-c", LAUNCHER, str(len(program) if send else 0),
            program_key(modules) if cache else "-"]
    return [*argv, "r"] if read_only and not send else argv


@functools.cache
def program_key(modules: tuple[str, ...] | None = None) -> str:
    """The name of a program in the hosts' agent caches: the sha256 of what is sent."""
    return hashlib.sha256(program_bytes(modules)).hexdigest()


def _payload(request: dict[str, Any]) -> bytes:
    """The request as the agent reads it: ``{"z": n}`` and n bytes of its JSON, compressed. The agent is
    asked (``zip``) to compress its final answer the same way: a probe document of 100 files in sync
    shrinks from ~40 KB each way to ~5 KB. Content frames are never compressed (docs/security.md)."""
    body = json.dumps({"v": PROTOCOL_VERSION, **request, "zip": True}, separators=(",", ":")).encode("utf-8")
    packed = zlib.compress(body, 6)
    return b'{"z":%d}\n' % len(packed) + packed


class NotCached(Exception):
    """A read-only call: the host's agent cache is not known to hold the program, or lost it."""


def call(transport: Transport, request: dict[str, Any], timeout: float | None = None,
         programs: HostPrograms | None = None, read_only: bool = False) -> dict[str, Any]:
    """Send one request to the agent on ``transport``'s host and return its answer (one round trip).

    With ``programs`` (what each host's agent cache holds), a host known to hold this program is not
    sent it again; a host whose cache lost it answers need_program and is sent it in a second command
    on the same connection. ``read_only``: only the cached program runs and nothing is written to the
    host's cache; NotCached (before any command when the cache is not known to hold it) otherwise.
    """
    modules = _modules_of(request)
    return _with_program(transport, modules, programs, read_only, lambda send, ro: _call_once(
        transport, modules, request, timeout, send=send, read_only=ro))


def _with_program(transport: Transport, modules: tuple[str, ...], programs: HostPrograms | None, read_only: bool,
                  once: Callable[[bool, bool], dict[str, Any]]) -> dict[str, Any]:
    """The checked answer of ``once(send, read_only)``, one agent run of the program of ``modules``, sent
    only when the host's agent cache is not known to hold it. A cache that lost it answers need_program
    and is sent it in a second run; read only: NotCached then, or before any run when the cache is not
    known to hold it. ``programs`` learns which hosts cached what they were sent."""
    host = transport.host
    key = program_key(modules)
    cached = programs is not None and programs.has(host, key)
    if read_only and not cached:
        raise NotCached(host.name)
    answer = once(not cached, read_only)
    if cached and answer.get("need_program"):
        if read_only:
            raise NotCached(host.name)
        answer = once(True, False)
        cached = False
    if programs is not None and not cached and answer.get("cached"):
        programs.remember(host, key)
    return _checked(host.name, answer)


def _call_once(transport: Transport, modules: tuple[str, ...], request: dict[str, Any], timeout: float | None,
               send: bool, read_only: bool = False) -> dict[str, Any]:
    result = transport.run(
        command(transport.host.connection.python, modules, send=send, read_only=read_only),
        stdin=(program_bytes(modules) if send else b"") + _payload(request), timeout=timeout,
    )
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    answer = _parse(lines[-1]) if lines else None
    if not isinstance(answer, dict):
        raise _no_answer(transport.host.name, result)
    return answer


def request_of(argv: Sequence[str], stdin: bytes) -> dict[str, Any]:
    """The request in the stdin of an agent command made by ``command`` (for tests and debugging)."""
    head, _, body = stdin[int(argv[list(argv).index(LAUNCHER) + 1]):].partition(b"\n")
    doc = json.loads(head)
    if isinstance(doc, dict) and list(doc) == ["z"]:
        doc = json.loads(zlib.decompress(body[: int(doc["z"])]))
    return doc


def _parse(line: bytes) -> Any:
    """One line of the agent's output; a compressed answer (``{"v": 2, "z": base64}``) expanded."""
    try:
        doc = json.loads(line)
        if isinstance(doc, dict) and isinstance(doc.get("z"), str):
            return json.loads(zlib.decompress(base64.b64decode(doc["z"])))
        return doc
    except (ValueError, zlib.error):
        return None


def _no_answer(host: str, result: CommandResult) -> AgentError:
    tail = result.stderr_text.strip().splitlines()[-5:]
    return AgentError(host, f"agent did not answer (exit {result.rc}): {' | '.join(tail) or 'no output'}")


def _checked(host: str, answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict) or answer.get("v") != PROTOCOL_VERSION:
        raise AgentError(host, "agent answered in an unknown protocol")
    if not answer.get("ok"):
        if answer.get("locked"):
            raise HostLockedError(host, f"locked: {answer.get('error', 'another apply is running')}")
        raise AgentError(host, f"agent failed: {answer.get('error', 'no reason given')}")
    return answer


@dataclass
class Applied:
    """What an apply call reported, record by record, also when it was cut short.

    ``begun``: resources that started changing something; ``done``: their outcome (a refresh's record
    replaces the change's); ``answer``: the final answer, None when the call ended without one;
    ``cut``: why it ended early (connection lost, aborted, timed out), ``aborted`` when we stopped it;
    ``unsent``: resources whose content changed on the controller before it was sent, and why.
    """

    begun: list[str] = field(default_factory=list)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    answer: dict[str, Any] | None = None
    cut: str | None = None
    aborted: bool = False
    lost: bool = False
    unsent: dict[str, str] = field(default_factory=dict)


def _body(rid: str, blob: Blob, unsent: dict[str, str]) -> Iterator[bytes]:
    """Exactly ``blob.size`` bytes of the blob, so the frames after it stay in step. A source that changed
    on the controller since it was hashed (gone, unreadable, another size or content) is padded with
    zeros where it fell short: the agent refuses the blob by its checksum, so nothing of it is installed,
    and ``unsent`` names the resource and why (the agent's own reason would be the checksum)."""
    left = blob.size
    try:
        for chunk in blob.chunks():
            if len(chunk) > left:
                raise DriftctlError(f"{_source_name(blob)} changed on the controller during the run: not sent")
            left -= len(chunk)
            yield chunk
    except DriftctlError as e:
        unsent[rid] = str(e)
        while left > 0:
            pad = min(left, FRAME_BATCH)
            left -= pad
            yield bytes(pad)


def _source_name(blob: Blob) -> str:
    return blob.source.path if blob.source is not None else "its content"


def _frames(request: dict[str, Any], blobs: Sequence[tuple[str, Blob]], feed: Feed,
            clock: Callable[[], float] = time.monotonic, unsent: dict[str, str] | None = None,
            program: bool = True) -> Iterator[bytes]:
    """stdin of an apply: program, request, the contents as frames (each with the id of the resource
    that needs it, in the resources' order), the end frame, then a ping every quarter of the request's
    lease (D47) until the agent's last line, or a cancel frame if aborted. Without ``program`` (an agent
    already running, D50) the request comes first.

    Small pieces go out together, up to FRAME_BATCH bytes a write: a header and a 2 KB file each
    written alone made two SSH packets per file, each encrypted, sent and read on its own. A content
    that could not be sent as hashed is named in ``unsent`` (``_body``)."""
    unsent = unsent if unsent is not None else {}
    batch = bytearray(program_bytes(_modules_of(request)) if program else b"")
    batch += _payload({**request, "frames": True})
    for rid, blob in blobs:
        if feed.abort is not None and feed.abort.is_set():
            break
        batch += json.dumps({"blob": blob.sha256, "size": blob.size, "for": rid}).encode("utf-8") + b"\n"
        for chunk in _body(rid, blob, unsent):
            if len(batch) + len(chunk) <= FRAME_BATCH:
                batch += chunk
                continue
            if batch:
                yield bytes(batch)
                batch.clear()
            if len(chunk) >= FRAME_BATCH:
                yield chunk
            else:
                batch += chunk
    batch += b'{"end":true}\n'
    yield bytes(batch)
    every = float(request["lease"]) / 4 if request.get("lease") else math.inf
    pings = 0
    due = clock() + every
    while not feed.done.is_set():
        if feed.abort is not None and feed.abort.wait(0.2):
            yield b'{"cancel":"the run was aborted on the controller"}\n'
            return
        if feed.abort is None:
            feed.done.wait(0.2)
        if clock() >= due and not feed.done.is_set():
            pings += 1
            due = clock() + every
            yield b'{"ping":%d}\n' % pings


def apply(transport: Transport, request: dict[str, Any], blobs: Sequence[tuple[str, Blob]], *,
          abort: threading.Event | None = None, kill: threading.Event | None = None, grace: float = 10.0,
          timeout: float | None = None,
          on_record: Callable[[dict[str, Any]], None] | None = None) -> Applied:
    """Send an apply request and its contents; collect the agent's records as they arrive.

    Never loses what was reported: a lost connection, an abort or a timeout ends in an ``Applied``
    with ``cut`` set. A lock held by another run and an agent that cannot start raise, as ``call``.
    """
    records = _Records(on_record)
    # the agent bounds each resource itself; this call's own limit is silence longer than that
    feed = Feed([], abort=abort, grace=grace, kill=kill, idle_timeout=True)
    request = _leased(transport, request)
    feed.chunks = _frames(request, blobs, feed, unsent=records.got.unsent)
    argv = command(transport.host.connection.python, _modules_of(request))
    try:
        result = transport.stream(argv, feed=feed, on_output=_lines(records.take), timeout=timeout)
    except (ConnectionLost, CommandAborted, CommandTimeout) as e:
        return _cut(records.got, e)
    return _outcome(transport.host.name, records.got, result, abort)


def _leased(transport: Transport, request: dict[str, Any]) -> dict[str, Any]:
    """A link that can go silent: the agent stops when the controller does (D47)."""
    return {**request, "lease": transport.link_timeout} if transport.link_timeout else request


def _lines(take: Callable[[dict[str, Any]], None]) -> Callable[[bytes], None]:
    """An ``on_output`` that passes each whole line of the agent's output, parsed, to ``take``."""
    buf = bytearray()

    def on_output(data: bytes) -> None:
        buf.extend(data)
        while (i := buf.find(b"\n")) >= 0:
            record = _parse(bytes(buf[:i]))
            del buf[: i + 1]
            if isinstance(record, dict):
                take(record)

    return on_output


class _Records:
    """An apply's records as they arrive, into ``got``; each passed on to ``on_record`` too."""

    def __init__(self, on_record: Callable[[dict[str, Any]], None] | None) -> None:
        self.got = Applied()
        self.on_record = on_record

    def take(self, record: dict[str, Any]) -> None:
        if "begin" in record:
            self.got.begun.append(str(record["begin"]))
        elif "done" in record:
            self.got.done[str(record["done"])] = record.get("result") or {}
        elif "v" in record:
            self.got.answer = record
            return
        else:
            return  # a pong, or a line of a newer agent
        if self.on_record is not None:
            self.on_record(record)

    @property
    def heard(self) -> bool:
        """Whether the agent said anything of this apply."""
        return self.got.answer is not None or bool(self.got.begun) or bool(self.got.done)


def _cut(got: Applied, e: HostError) -> Applied:
    """The apply ended early by ``e`` (connection lost, aborted, timed out): what was reported stands."""
    got.cut = e.message
    got.lost = isinstance(e, ConnectionLost)
    got.aborted = isinstance(e, CommandAborted)
    return got


def _outcome(host: str, got: Applied, result: CommandResult, abort: threading.Event | None) -> Applied:
    """The apply's agent exited: ``got`` judged by its last answer (raises as ``call`` for a lock held
    by another run, or an agent that failed before it started anything)."""
    if got.answer is None:
        if not got.begun and not got.done:
            raise _no_answer(host, result)
        got.cut = f"the agent ended without its last answer (exit {result.rc})"
        return got
    if not got.answer.get("ok") and not got.answer.get("locked") and (got.begun or got.done):
        got.cut = f"agent failed: {got.answer.get('error', 'no reason given')}"
        return got
    _checked(host, got.answer)
    if got.answer.get("cancelled"):
        got.cut = f"stopped on the host: {got.answer['cancelled']}"
        got.aborted = abort is not None and abort.is_set()
        got.lost = not got.aborted
    return got


SESSION_PING = 10.0  # seconds between pings while a session's agent waits for the plan (at most)
SESSION_CLOSE_WAIT = 5.0  # seconds a session's agent has to leave after "bye"
_STOP = object()  # the session's stream ended: its stdin writer has nothing more to send


class _Stream:
    """One agent of a session: its stream's thread and everything that thread writes. A stream that
    ends late never touches the next one's state (each has its own)."""

    def __init__(self, modules: tuple[str, ...], feed: Feed) -> None:
        self.modules = modules
        self.feed = feed
        self.requests: queue.Queue[Any] = queue.Queue()  # for its stdin: requests, bye, the apply's frames
        self.heard = threading.Event()  # an answer came, or the stream ended
        self.answer: dict[str, Any] | None = None
        self.records: _Records | None = None  # the apply's, once it was queued
        self.frames_taken = False  # the apply's frames reached its stdin writer
        self.result: CommandResult | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    @property
    def open(self) -> bool:
        return (self.thread is not None and self.thread.is_alive() and not self.feed.done.is_set()
                and self.records is None)

    def take(self, record: dict[str, Any]) -> None:
        if self.records is not None:
            self.records.take(record)
        elif "v" in record:
            self.answer = record
            self.heard.set()

    def wait(self) -> dict[str, Any] | None:
        """The answer to the request in flight, or None when the stream ended without one."""
        while not self.heard.wait(1.0):
            if self.thread is None or not self.thread.is_alive():  # it ended as the request was queued
                break
        answer, self.answer = self.answer, None
        if answer is None and self.thread is not None:
            self.thread.join()
        return answer

    @property
    def left_quietly(self) -> bool:
        """The agent left by itself (bye, lease, end of input) and said nothing more."""
        return self.error is None and self.result is not None and self.result.rc == 0


class Session:
    """One agent on a host from a probe to the apply that follows it (D50).

    Without it a host that changes starts the agent twice: once to probe, once to apply (a channel, an
    interpreter and the program's definitions each time, ~35-40 ms of the host's CPU). A session's
    probes ask the agent to stay (``then``); while the controller plans, it pings and the agent answers;
    then ``apply`` sends the apply request and its frames to the same agent, or ``close`` says bye.

    The stream's limit is ``timeout`` seconds of silence, for the probes and the apply alike (the
    engine passes the apply's: the host's command timeout, or the longest resource's limit and a
    minute). ``apply`` answers None when this session cannot carry a request (its agent is gone, it lacks
    a module the request needs, or it is not silent long enough): the caller then starts an agent of its
    own, as without a session; nothing was sent to the host then.
    """

    def __init__(self, transport: Transport, programs: HostPrograms | None = None, timeout: float | None = None,
                 *, abort: threading.Event | None = None, kill: threading.Event | None = None,
                 grace: float = 10.0) -> None:
        self.transport = transport
        self.programs = programs
        self.timeout = timeout if timeout is not None else transport.host.connection.command_timeout
        # as for ``apply``; given at the start: a transport may wrap the feed (sudo) and keep its own copy
        self.abort, self.kill, self.grace = abort, kill, grace
        self._stream: _Stream | None = None
        lease = transport.link_timeout  # the agent leaves after that long without a word from us
        self.ping_every = min(lease / 4, SESSION_PING) if lease else SESSION_PING

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def open(self) -> bool:
        """Whether an agent is there to take another request."""
        return self._stream is not None and self._stream.open

    def call(self, request: dict[str, Any], read_only: bool = False) -> dict[str, Any]:
        """As ``ship.call`` for a probe, the agent left waiting for the next request."""
        modules = _modules_of(request)
        stream = self._stream
        if stream is not None and stream.open and set(modules) <= set(stream.modules):
            stream.heard.clear()
            stream.requests.put(self._head(request))
            answer = stream.wait()
            if answer is not None:
                return _checked(self.transport.host.name, answer)
            if not stream.left_quietly:
                self._raise(stream)
            # it left as the request came (its lease ran out): it read nothing of it; a new agent asks
        try:
            return _with_program(self.transport, modules, self.programs, read_only,
                                 lambda send, ro: self._start(modules, request, send, ro))
        except NotCached:
            self.close()  # the agent that answered need_program leaves
            raise

    def apply(self, request: dict[str, Any], blobs: Sequence[tuple[str, Blob]], *, timeout: float | None = None,
              on_record: Callable[[dict[str, Any]], None] | None = None) -> Applied | None:
        """As ``ship.apply`` (with the session's abort, kill and grace), to the agent that answered the
        probe; None when it cannot take it, or left before it read it (nothing of it ran then)."""
        stream = self._stream
        if (stream is None or not stream.open or not set(_modules_of(request)) <= set(stream.modules)
                or (timeout or 0) > self.timeout):
            return None
        assert stream.thread is not None
        records = stream.records = _Records(on_record)
        stream.requests.put(_frames(_leased(self.transport, request), blobs, stream.feed,
                                    unsent=records.got.unsent, program=False))
        stream.thread.join()
        self._stream = None
        if not stream.frames_taken:
            return None  # the stream ended before its stdin writer took the apply: nothing was sent
        if isinstance(stream.error, (ConnectionLost, CommandAborted, CommandTimeout)):
            return _cut(records.got, stream.error)
        if stream.error is not None:
            raise stream.error
        if not records.heard and stream.left_quietly:
            return None  # it left before it read the request (its lease ran out): nothing of it ran
        assert stream.result is not None
        return _outcome(self.transport.host.name, records.got, stream.result, self.abort)

    def close(self) -> None:
        """Say bye to a waiting agent and let it leave (the stream ends with it)."""
        stream, self._stream = self._stream, None
        if stream is None or stream.thread is None:
            return
        stream.requests.put(None)
        stream.thread.join(SESSION_CLOSE_WAIT)  # past that, closing the connection ends it

    # ---- the stream
    def _start(self, modules: tuple[str, ...], request: dict[str, Any], send: bool,
               read_only: bool = False) -> dict[str, Any]:
        """Start the agent with ``request`` first (after a bye to the one before); its answer (need_program
        included)."""
        self.close()
        feed = Feed([], abort=self.abort, grace=self.grace, kill=self.kill, idle_timeout=True)
        stream = self._stream = _Stream(modules, feed)
        feed.chunks = self._chunks(stream, (program_bytes(modules) if send else b"") + self._head(request))
        argv = command(self.transport.host.connection.python, modules, send=send, read_only=read_only)
        stream.thread = threading.Thread(target=self._run, args=(stream, argv), daemon=True,
                                         name=f"session-{self.transport.host.name}")
        stream.thread.start()
        answer = stream.wait()
        if answer is None:
            self._raise(stream)
        assert answer is not None
        return answer

    def _raise(self, stream: _Stream) -> None:
        """The stream ended without the answer: its own error, or "did not answer"."""
        if stream.error is not None:
            raise stream.error
        assert stream.result is not None
        raise _no_answer(self.transport.host.name, stream.result)

    def _head(self, request: dict[str, Any]) -> bytes:
        return _payload(_leased(self.transport, {**request, "then": True}))

    def _run(self, stream: _Stream, argv: list[str]) -> None:
        try:
            stream.result = self.transport.stream(argv, feed=stream.feed, on_output=_lines(stream.take),
                                                  timeout=self.timeout)
        except BaseException as e:  # re-raised where the session is used
            stream.error = e
        finally:
            stream.requests.put(_STOP)
            stream.heard.set()

    def _chunks(self, stream: _Stream, first: bytes) -> Iterator[bytes]:
        """stdin of a session: the first request; then pings while the controller plans, and the next
        request, or bye (None), or the apply's frames (after which the agent leaves by itself)."""
        yield first
        pings = 0
        while True:
            try:
                item = stream.requests.get(timeout=self.ping_every)
            except queue.Empty:
                pings += 1
                yield b'{"ping":%d}\n' % pings
                continue
            if item is _STOP or stream.feed.done.is_set():
                return
            if item is None:
                yield b'{"bye":true}\n'
                return
            if isinstance(item, bytes):
                yield item
                continue
            stream.frames_taken = True
            yield from item
            return
