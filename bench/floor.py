#!/usr/bin/env python3
"""The SSH floor of issue 10: what one round trip to every host costs, without driftctl.

For each host, all hosts at once (one thread each), in this process: paramiko connect with the same
host-key verification (the fleet's known_hosts, unknown keys refused) and the same key, both read
once before the clock starts as a controller reads them once per run, authenticate,
exec ``python3 -c <AGENT>``, send the workload's managed paths and account names on stdin (one JSON
line), read the answer (one JSON line of short hashes), close. The agent is stdlib only: lstat and
sha256 of every path (readlink for a symlink), the /etc/passwd and /etc/group entries of the users and
groups. Nothing of driftctl is imported here; the controller side uses paramiko only.

Measured: the wall time of the whole fleet (median of ``repeat`` runs) and each host's own round trip
(mean over hosts). The bench compares driftctl's wall with ``floor + 0.3 s`` (a CLI pays the
interpreter's start, this in-process floor does not).

    .venv/bin/python bench/floor.py --up 3             # start fleet "benchfloor", converge it, measure, remove it
    .venv/bin/python bench/floor.py --inventory inventory/fleet   # measure a running fleet as it is
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import paramiko

# The whole agent: read one JSON line, answer one JSON line. Every entry is 16 hex digits of the
# sha256 of what a checker compares (type, mode, owner, group, content or link target); "-" = absent.
AGENT = r"""
import hashlib, json, os, stat, sys
q = json.loads(sys.stdin.readline())
def h(b): return hashlib.sha256(b).hexdigest()[:16]
def path(p):
    try:
        st = os.lstat(p)
    except OSError:
        return "-"
    if stat.S_ISREG(st.st_mode):
        with open(p, "rb") as f:
            body = hashlib.sha256(f.read()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        body = os.readlink(p)
    else:
        body = ""
    return h(("%o %d %d %s" % (st.st_mode, st.st_uid, st.st_gid, body)).encode())
def entries(db, names):
    found = {}
    with open(db, "rb") as f:
        for line in f:
            found[line.split(b":", 1)[0].decode()] = line
    return [h(found[n]) if n in found else "-" for n in names]
def ask(argv):
    # one command for all names, as a prober asks a tool once (no subprocess module: spawn and pipe)
    r, w = os.pipe()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, w, 1)])
    os.close(w)
    out = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        out += chunk
    os.close(r)
    return out if os.waitpid(pid, 0)[1] == 0 else None
def answers(out, names):
    return [h(out + n.encode()) if out is not None else "-" for n in names]
a = {"p": [path(p) for p in q["paths"]], "u": entries("/etc/passwd", q["users"]),
     "g": entries("/etc/group", q["groups"]),
     "k": answers(ask(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}\\n", *q["packages"]])
                  if q["packages"] else b"", q["packages"]),
     "s": answers(ask(["systemctl", "show", "-p", "Id,LoadState,ActiveState,UnitFileState", *q["services"]])
                  if q["services"] else b"", q["services"])}
sys.stdout.write(json.dumps(a, separators=(",", ":")) + "\n")
"""


@dataclass(frozen=True)
class Target:
    """One host as the floor reaches it."""

    name: str
    address: str
    port: int
    user: str
    key_file: str
    known_hosts: str

    @property
    def known_name(self) -> str:
        """The name known_hosts files this host under (``[address]:port`` off port 22)."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


@dataclass
class HostTrip:
    name: str
    seconds: float
    ok: bool
    error: str = ""
    answer_bytes: int = 0
    absent: int = 0  # managed paths or accounts the agent did not find (a converged host has none)


@dataclass
class FloorRun:
    wall_s: float
    hosts: list[HostTrip]

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hosts)


@dataclass
class FloorResult:
    """``repeat`` runs of the whole fleet; ``wall_s`` is their median, ``host_mean_s`` the mean round trip."""

    hosts: int
    repeat: int
    wall_s: float
    host_mean_s: float
    runs: list[FloorRun] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def request_line(paths: list[str], users: list[str], groups: list[str], packages: list[str] | None = None,
                 services: list[str] | None = None) -> bytes:
    q = {"paths": paths, "users": users, "groups": groups, "packages": packages or [], "services": services or []}
    return (json.dumps(q, separators=(",", ":")) + "\n").encode()


def agent_command() -> str:
    # started as driftctl starts its agent (-I -S: no working directory on sys.path, no site), so the
    # floor pays no interpreter start that driftctl does not
    return "python3 -I -S -c " + shlex.quote(AGENT)


def parse_answer(raw: bytes, paths: int, users: int, groups: int, packages: int = 0,
                 services: int = 0) -> dict[str, list[str]]:
    """The agent's answer, checked for shape (one entry per path, user, group, package and service)."""
    answer = json.loads(raw)
    if not isinstance(answer, dict):
        raise ValueError(f"answer is {type(answer).__name__}, not an object")
    for key, want in (("p", paths), ("u", users), ("g", groups), ("k", packages), ("s", services)):
        got = answer.get(key)
        if not isinstance(got, list) or len(got) != want:
            raise ValueError(f"answer[{key!r}] has {len(got) if isinstance(got, list) else got!r} entries, want {want}")
    return answer


@dataclass(frozen=True)
class Keys:
    """What a connection checks and signs with, read once per measurement as a controller reads them
    once per run: the host's known keys (refused when it has none) and the client key."""

    host_keys: dict[str, paramiko.PKey]
    client_key: paramiko.PKey


def load_keys(targets: list[Target]) -> dict[str, Keys]:
    """Each target's Keys: every known_hosts file and key file parsed once. paramiko's SSHClient would
    parse the whole known_hosts file for every connection and scan it line by line: O(hosts) per host,
    ~60 ms of CPU per connection at 100 hosts (yappi: HostKeys.load and lookup), which is not a floor."""
    files: dict[str, paramiko.HostKeys] = {}
    client_keys: dict[str, paramiko.PKey] = {}
    out: dict[str, Keys] = {}
    for t in targets:
        if t.known_hosts not in files:
            files[t.known_hosts] = paramiko.HostKeys(t.known_hosts)
        if t.key_file not in client_keys:
            client_keys[t.key_file] = paramiko.PKey.from_path(t.key_file)
        entries = files[t.known_hosts].lookup(t.known_name)
        if not entries:
            raise ValueError(f"{t.name}: no key of {t.known_name} in {t.known_hosts}")
        out[t.name] = Keys(dict(entries), client_keys[t.key_file])
    return out


def round_trip(target: Target, keys: Keys, request: bytes, counts: tuple[int, ...],
               timeout: float = 60.0) -> HostTrip:
    """Connect, authenticate, run the agent, read its answer, close: one host's round trip."""
    started = time.monotonic()
    client = paramiko.SSHClient()
    try:
        for kind, key in keys.host_keys.items():
            client.get_host_keys().add(target.known_name, kind, key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(target.address, port=target.port, username=target.user, pkey=keys.client_key,
                       look_for_keys=False, allow_agent=False, timeout=timeout, banner_timeout=timeout,
                       auth_timeout=timeout)
        stdin, stdout, stderr = client.exec_command(agent_command(), timeout=timeout)
        stdin.write(request)
        stdin.channel.shutdown_write()
        raw = stdout.read()
        err = stderr.read()
        rc = stdout.channel.recv_exit_status()
        if rc != 0:
            raise RuntimeError(f"agent exited {rc}: {err.decode(errors='replace')[-300:]}")
        answer = parse_answer(raw, *counts)
        absent = sum(v == "-" for key in ("p", "u", "g", "k", "s") for v in answer[key])
        return HostTrip(target.name, time.monotonic() - started, True, answer_bytes=len(raw), absent=absent)
    except Exception as e:  # one host's failure is reported, never aborts the fleet
        return HostTrip(target.name, time.monotonic() - started, False, error=f"{type(e).__name__}: {e}")
    finally:
        client.close()


def run_once(targets: list[Target], request: bytes, counts: tuple[int, ...]) -> FloorRun:
    """Every host at once, one thread each; the wall is from the first connect to the last close (the
    keys are read before it)."""
    keys = load_keys(targets)
    barrier = threading.Barrier(len(targets) + 1)

    def trip(t: Target) -> HostTrip:
        barrier.wait()
        return round_trip(t, keys[t.name], request, counts)

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        futures = [pool.submit(trip, t) for t in targets]
        barrier.wait()  # threads are up: their start-up is not part of the round trip
        started = time.monotonic()
        trips = [f.result() for f in futures]
        wall = time.monotonic() - started
    return FloorRun(wall_s=wall, hosts=trips)


def measure(targets: list[Target], paths: list[str], users: list[str], groups: list[str],
            repeat: int = 3, packages: list[str] | None = None, services: list[str] | None = None) -> FloorResult:
    """The floor of ``targets``: ``repeat`` runs, median wall, mean per-host round trip, every error."""
    if not targets:
        raise ValueError("no hosts to measure")
    request = request_line(paths, users, groups, packages, services)
    counts = (len(paths), len(users), len(groups), len(packages or []), len(services or []))
    runs = [run_once(targets, request, counts) for _ in range(repeat)]
    errors = [f"run {i + 1} {h.name}: {h.error}" for i, r in enumerate(runs) for h in r.hosts if not h.ok]
    trips = [h.seconds for r in runs for h in r.hosts if h.ok]
    return FloorResult(hosts=len(targets), repeat=repeat, wall_s=statistics.median(r.wall_s for r in runs),
                       host_mean_s=statistics.fmean(trips) if trips else 0.0, runs=runs, errors=errors)


def targets_from_inventory(inventory_dir: Path) -> list[Target]:
    """The hosts of a fleet inventory as tests/fleet/fleet.py writes it (hosts.yaml + group_vars/all.yaml)."""
    import yaml  # only for reading the inventory, outside anything measured

    hosts_doc = yaml.safe_load((inventory_dir / "hosts.yaml").read_text())
    common = yaml.safe_load((inventory_dir / "group_vars" / "all.yaml").read_text())
    found: dict[str, Target] = {}

    def walk(group: dict[str, Any]) -> None:
        for name, hv in (group.get("hosts") or {}).items():
            v = {**common, **(hv or {})}
            found[name] = Target(name=name, address=v.get("ansible_host", name), port=int(v.get("ansible_port", 22)),
                                 user=v["ansible_user"], key_file=v["ansible_ssh_private_key_file"],
                                 known_hosts=v["driftctl_known_hosts"])
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk(hosts_doc["all"])
    return sorted(found.values(), key=lambda t: (len(t.name), t.name))


def format_result(r: FloorResult) -> str:
    walls = " ".join(f"{run.wall_s:.2f}" for run in r.runs)
    absent = max((h.absent for run in r.runs for h in run.hosts if h.ok), default=0)
    answer = max((h.answer_bytes for run in r.runs for h in run.hosts if h.ok), default=0)
    line = (f"floor {r.hosts} host(s): wall {r.wall_s:.2f} s (median of {r.repeat}: {walls}), "
            f"per-host round trip {r.host_mean_s:.2f} s, answer {answer} B, absent {absent}")
    return line + "".join(f"\n  error: {e}" for e in r.errors)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import workload

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--inventory", type=Path, help="a running fleet's inventory directory (measured as it is)")
    where.add_argument("--up", type=int, metavar="N", help="start fleet 'benchfloor' of N hosts, converge it with "
                       "driftctl apply, measure, remove it")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                        help="with --up: the checkout whose driftctl converges the fleet first (default this one)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    ns = parser.parse_args(argv)
    observed = workload.managed_paths()
    if ns.inventory:
        result = measure(targets_from_inventory(ns.inventory), observed.paths, observed.users, observed.groups,
                         ns.repeat, observed.packages, observed.services)
    else:
        result = _measure_new_fleet(ns.up, ns.repeat, observed, ns.code)
    print(json.dumps(result.as_dict(), indent=2) if ns.json else format_result(result))
    return 0 if result.ok else 1


def _measure_new_fleet(count: int, repeat: int, observed: Any, code: Path) -> FloorResult:
    import subprocess
    import tempfile

    import workload

    fleetlib = workload.fleet_library()
    fleet_id = "benchfloor"
    with tempfile.TemporaryDirectory(prefix="driftctl-floor-") as tmp:
        tmpdir = Path(tmp)
        workload.write_manifests(tmpdir / "manifests")
        fleetlib.down(fleet_id)
        try:
            fleet = fleetlib.start_fleet(fleet_id, count, inventory_dir=tmpdir / "inv", known_hosts=tmpdir / "kh",
                                         owner=fleetlib.current_owner())
            # the floor observes a converged host (files present and hashed), as drift does
            applied = subprocess.run(
                [sys.executable, "-m", "driftctl", "apply", str(fleet.inventory_dir), "-m", str(tmpdir / "manifests"),
                 "--parallel", str(count), "--no-diff"],
                cwd=code, capture_output=True, text=True,
                env={**{k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")},
                     "DRIFTCTL_STATE_DIR": str(tmpdir / "state"), "NO_COLOR": "1", "PYTHONPATH": str(code)})
            if applied.returncode not in (0, 2):
                raise SystemExit(f"driftctl apply failed ({applied.returncode}):\n{applied.stdout[-2000:]}\n"
                                 f"{applied.stderr[-2000:]}")
            return measure(targets_from_inventory(fleet.inventory_dir), observed.paths, observed.users,
                           observed.groups, repeat, observed.packages, observed.services)
        finally:
            fleetlib.down(fleet_id)


if __name__ == "__main__":
    sys.exit(main())
