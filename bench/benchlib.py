"""The measuring half of bench_converge.py: a CLI run, the bytes on the wire, the store's size.

- ``run_cli``: one driftctl command as a user types it (a subprocess of the CLI), its wall time, its
  own peak RSS (wait4 on exactly that process) and its output.
- ``WireMeter``: bytes through each fleet host's network interface, read from the host's own network
  namespace (``/proc/<container pid>/net/dev``, eth0). Every byte between the controller and a host
  crosses it, and an idle fleet host sends almost nothing else; ``calibrate`` checks both on every run
  (a known 1 MB each way over SSH is counted as 1 MB, and the idle background rate is reported).
- ``HostsCpu``: CPU seconds the fleet's containers used (their cgroups' counters): on a machine whose
  cores the hosts share with the controller, a phase whose controller + hosts CPU is near 2 x its wall
  per 2 cores is CPU-bound, and only less work (not more overlap) makes it faster.
- ``store_bytes``: the SQLite store's files after a WAL checkpoint.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import paramiko

REPO = Path(__file__).resolve().parents[1]
STORE_FILE = "driftctl.sqlite"


@dataclass
class CliRun:
    argv: list[str]
    rc: int
    wall_s: float
    peak_rss_mb: float
    stdout: bytes
    stderr: bytes
    cpu_s: float = 0.0  # user + system seconds of the CLI process

    @property
    def output_bytes(self) -> int:
        return len(self.stdout) + len(self.stderr)

    def tail(self, n: int = 1500) -> str:
        return (self.stdout.decode(errors="replace")[-n:] + "\n" + self.stderr.decode(errors="replace")[-n:]).strip()


GNU_TIME = shutil.which("time", path="/usr/bin:/bin")  # apt-get install time; without it RSS is wait4's
TIMEOUT_S = 1800.0  # a hung command is killed (exit -9) and reported, never waited on forever


def _environ() -> dict[str, str]:
    """This process's environment without DRIFTCTL_* of ours, and without PYTHONDONTWRITEBYTECODE: with
    it, every command compiled again each module changed since its bytecode was last written (~40 ms a
    command), which no installed copy does."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_") and k != "PYTHONDONTWRITEBYTECODE"}


def _env(state: Path, code: Path) -> dict[str, str]:
    return {**_environ(), "DRIFTCTL_STATE_DIR": str(state), "NO_COLOR": "1", "PYTHONPATH": str(code)}


@functools.cache
def compile_once(code: Path) -> None:
    """Bytecode for the code under test, as pip writes it when it installs a package: measured commands
    then load it instead of compiling sources (the first command would pay it otherwise)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(code / "driftctl")], env=_environ(),
                   check=True, stdout=subprocess.DEVNULL, timeout=300)


def run_cli(args: list[str], state: Path, timeout: float = TIMEOUT_S, code: Path = REPO) -> CliRun:
    """One CLI command (``python -m driftctl ARGS``) with its own state dir; no DRIFTCTL_* of ours leaks in.

    ``code`` is the checkout whose driftctl runs (another one, e.g. a ``git worktree`` of the commit
    before, compares two versions on the same machine).
    """
    compile_once(code)
    env = _env(state, code)
    argv = [sys.executable, "-m", "driftctl", *args]
    # The peak RSS comes from GNU time's wait4 on the CLI: time forks it from its own small process.
    # wait4 on a child spawned straight from this process reports at least this process's own RSS
    # (Linux carries the spawning memory's high-water mark over exec), which is not the CLI's.
    fd, rss_path = tempfile.mkstemp(prefix="driftctl-bench-rss-")
    os.close(fd)
    if GNU_TIME:
        argv = [GNU_TIME, "-q", "-f", "%M %U %S", "-o", rss_path, *argv]
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    chunks: dict[str, bytes] = {}

    def drain(name: str, stream: IO[bytes]) -> None:
        chunks[name] = stream.read()

    assert proc.stdout is not None and proc.stderr is not None
    readers = [threading.Thread(target=drain, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    killer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))  # the group this function started
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    wall = time.monotonic() - started
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_kb = float(usage.ru_maxrss)
    cpu = usage.ru_utime + usage.ru_stime  # GNU time's own share is a millisecond or two
    try:
        if GNU_TIME:
            peak, user, system = Path(rss_path).read_text().split()[-3:]
            peak_kb, cpu = float(peak), float(user) + float(system)
    except (OSError, ValueError):
        pass  # killed: time wrote nothing
    finally:
        os.unlink(rss_path)
    return CliRun(argv=args, rc=proc.returncode, wall_s=wall, peak_rss_mb=peak_kb / 1024,
                  stdout=chunks["out"], stderr=chunks["err"], cpu_s=cpu)


# ---- bytes on the wire


def container_pids(containers: list[str]) -> list[int]:
    """The PID 1 (on this machine) of each running container, in order: one ``podman inspect`` for all."""
    out = subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", *containers], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    pids = [int(x) for x in out]
    if len(pids) != len(containers) or 0 in pids:
        raise RuntimeError(f"podman inspect gave pids {pids} for {len(containers)} containers")
    return pids


def read_net_dev(text: str, interface: str = "eth0") -> tuple[int, int]:
    """(received, sent) bytes of ``interface`` in the text of a /proc/<pid>/net/dev."""
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if sep and name.strip() == interface:
            fields = rest.split()
            return int(fields[0]), int(fields[8])
    raise ValueError(f"no interface {interface} in net/dev")


Counters = dict[str, tuple[int, int]]


@dataclass
class WireDelta:
    rx: int  # received by the hosts (from the controller)
    tx: int  # sent by the hosts
    by_host: dict[str, int]


class WireMeter:
    """Per-host interface counters of a fleet, read in the hosts' own network namespaces."""

    def __init__(self, containers: dict[str, str]) -> None:
        self.pids = dict(zip(containers, container_pids(list(containers.values())), strict=True))

    def read(self) -> Counters:
        return {name: read_net_dev(Path(f"/proc/{pid}/net/dev").read_text()) for name, pid in self.pids.items()}

    @staticmethod
    def delta(before: Counters, after: Counters) -> WireDelta:
        by_host = {h: (after[h][0] - before[h][0]) + (after[h][1] - before[h][1]) for h in before}
        return WireDelta(rx=sum(after[h][0] - before[h][0] for h in before),
                         tx=sum(after[h][1] - before[h][1] for h in before), by_host=by_host)


def cgroup_cpu_file(pid: int) -> Path | None:
    """The CPU counter of the cgroup ``pid`` runs in: cgroup v1's cpuacct.usage (ns) or v2's cpu.stat."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            for mount in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
                f = Path("/sys/fs/cgroup") / mount / path.lstrip("/") / "cpuacct.usage"
                if f.exists():
                    return f
        if hierarchy == "0" and not controllers:
            f = Path("/sys/fs/cgroup") / path.lstrip("/") / "cpu.stat"
            if f.exists():
                return f
    return None


def read_cpu_s(counter: Path) -> float:
    text = counter.read_text()
    if counter.name == "cpuacct.usage":
        return int(text) / 1e9
    usage = [ln.split()[1] for ln in text.splitlines() if ln.startswith("usage_usec ")]
    return int(usage[0]) / 1e6


class HostsCpu:
    """CPU seconds used by a fleet's containers (sshd, the agents, everything in them), from cgroups."""

    def __init__(self, pids: list[int]) -> None:
        files = [cgroup_cpu_file(pid) for pid in pids]
        self.files = [f for f in files if f is not None] if all(files) else []  # all of them, or none

    def read(self) -> float | None:
        return sum(read_cpu_s(f) for f in self.files) if self.files else None

    def since(self, before: float | None) -> float | None:
        """CPU seconds used since ``before`` (a ``read()``); None when there are no counters."""
        now = self.read()
        return None if before is None or now is None else now - before


@dataclass
class WireCheck:
    """What calibrate() found: counted bytes for a known transfer each way, and the idle background."""

    known_bytes: int
    counted_to_host: int
    counted_from_host: int
    idle_s: float
    idle_bytes_per_host_s: float

    @property
    def ok(self) -> bool:
        # SSH framing, TCP/IP headers and the connection's own handshake add a few percent, never less
        low, high = self.known_bytes, self.known_bytes * 1.06
        return low <= self.counted_to_host <= high and low <= self.counted_from_host <= high

    def describe(self) -> str:
        return (f"known transfer {self.known_bytes} B each way over SSH counted as {self.counted_to_host} B to the "
                f"host and {self.counted_from_host} B from it ({'ok' if self.ok else 'WRONG'}: within +6%); "
                f"idle background {self.idle_bytes_per_host_s:.0f} B/s per host over {self.idle_s:.0f} s")


def calibrate(meter: WireMeter, host: str, address: str, port: int, key_file: str, known_hosts: str,
              known: int = 1_000_000, idle_s: float = 2.0) -> WireCheck:
    """Count a known transfer to and from ``host`` over SSH (connect to close), and the fleet idle."""
    before = meter.read()
    time.sleep(idle_s)
    idle = WireMeter.delta(before, meter.read())
    idle_rate = (idle.rx + idle.tx) / max(1, len(meter.pids)) / idle_s
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(address, port=port, username="root", key_filename=key_file, look_for_keys=False,
                       allow_agent=False, timeout=60)
        a = meter.read()
        stdin, stdout, _ = client.exec_command("cat > /dev/null")
        stdin.write(os.urandom(known))
        stdin.channel.shutdown_write()
        stdout.channel.recv_exit_status()
        b = meter.read()
        _, stdout, _ = client.exec_command(f"head -c {known} /dev/urandom")
        got = stdout.read()
        stdout.channel.recv_exit_status()
        c = meter.read()
    finally:
        client.close()
    if len(got) != known:
        raise RuntimeError(f"calibration: read {len(got)} bytes, expected {known}")
    to_host = b[host][0] - a[host][0]
    from_host = c[host][1] - b[host][1]
    return WireCheck(known_bytes=known, counted_to_host=to_host, counted_from_host=from_host, idle_s=idle_s,
                     idle_bytes_per_host_s=idle_rate)


# ---- the store


def store_bytes(state: Path) -> int:
    """Bytes of the store's SQLite files (database + WAL) after a full checkpoint; 0 before it exists."""
    db = state / STORE_FILE
    if not db.exists():
        return 0
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return sum(p.stat().st_size for p in (db, state / f"{STORE_FILE}-wal") if p.exists())


_READ_STORED = """
import json, sys
from driftctl.store import open_store
store = open_store(sys.argv[1])
try:
    json.dump(store.latest_run(sys.argv[2], command=sys.argv[3]), sys.stdout)
finally:
    store.close()
"""


def stored_run(state: Path, inventory: str, command: str, code: Path = REPO) -> dict[str, Any] | None:
    """The latest stored report document of ``command`` (the one the CLI printed, as the store keeps it).

    Read by the measured checkout's own store code, in a process of its own (this checkout's might
    migrate a store of another version).
    """
    r = subprocess.run([sys.executable, "-c", _READ_STORED, str(state / STORE_FILE), inventory, command], cwd=code,
                       env=_env(state, code), capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"reading the stored {command} run failed: {r.stderr[-1000:]}")
    doc = json.loads(r.stdout)
    return doc if isinstance(doc, dict) else None
