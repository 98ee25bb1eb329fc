"""Unreachable-host benchmark: what black-holed hosts add to a `driftctl facts` run (issue 8 §5).

    .venv/bin/python bench/bench_unreachable.py                      # 9 good hosts + 3 black holes
    .venv/bin/python bench/bench_unreachable.py --good 4 --repeat 3
    .venv/bin/python bench/bench_unreachable.py --code /path/to/other/checkout   # e.g. the code before

Good hosts are a podman fleet of their own (removed at the end). Black holes, all on loopback:
- ``dropped``: ports whose SYNs a nftables table of this script drops (a TCP connect that never
  completes; needs root and nft), the case of a host that went away;
- ``mute``: a listener that accepts and never sends an SSH banner.

Cases: clean (good hosts only), black holes with the default connect timeout (10 s), black holes
with ``--connect-timeout 3``. Each is the CLI run as a user types it (``python -m driftctl facts``),
wall-clock seconds, median of ``--repeat``, on whatever else the machine is doing (the load average
is printed with the numbers). Target: a run with black holes takes at most clean + timeout + 10 %.
Results go to stdout and bench/results/unreachable.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workload import fleet_library  # bench/ is this script's directory

ROOT = Path(__file__).resolve().parent.parent


class Mute:
    """A loopback listener that accepts and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def dropped_ports(count: int) -> Iterator[list[int]]:
    """Loopback ports whose SYNs are dropped, by a nftables table removed afterwards."""
    if count == 0:
        yield []
        return
    nft = shutil.which("nft")
    if nft is None:
        raise SystemExit("needs nft (apt-get install -y nftables), or --dropped 0")
    ports = [_free_port() for _ in range(count)]
    table = f"driftctl_bench_{os.getpid()}"
    rules = "".join(f"    ip daddr 127.0.0.1 tcp dport {p} drop\n" for p in ports)
    text = (f"table inet {table} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n"
            f"{rules}  }}\n}}\n")
    subprocess.run([nft, "-f", "-"], input=text, text=True, check=True)
    try:
        yield ports
    finally:
        subprocess.run([nft, "delete", "table", "inet", table], check=False)


def inventory(directory: Path, good: list[Any], holes: list[tuple[str, int]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["all:", "  hosts:"]
    like = good[0]
    entries = [(h.name, h.port) for h in good] + holes
    for name, port in entries:
        lines += [f"    {name}:", "      ansible_host: 127.0.0.1", f"      ansible_port: {port}",
                  "      ansible_user: root", f"      ansible_ssh_private_key_file: {like.key_file}",
                  f"      driftctl_known_hosts: {like.known_hosts}"]
    (directory / "hosts.yaml").write_text("\n".join(lines) + "\n")
    return directory


def run_facts(code: Path, inv: Path, extra: list[str], state: Path) -> tuple[float, int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
    env.update({"DRIFTCTL_STATE_DIR": str(state), "NO_COLOR": "1", "PYTHONPATH": str(code)})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "driftctl", "facts", str(inv), *extra], cwd=code, env=env,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    summary = next((ln for ln in reversed(proc.stdout.splitlines()) if "host(s)" in ln), proc.stderr[-300:])
    return elapsed, proc.returncode, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--good", type=int, default=9, help="working fleet hosts (default 9)")
    ap.add_argument("--dropped", type=int, default=2, help="SYN-dropped black holes (default 2)")
    ap.add_argument("--mute", type=int, default=1, help="accept-and-never-answer black holes (default 1)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose driftctl runs (default this one)")
    ap.add_argument("--timeouts", default="default,3", help="connect timeouts to try, comma-separated")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "unreachable.json")
    args = ap.parse_args()

    fleetlib = fleet_library()
    fleet_id = fleetlib.new_session_id("bu")
    state = fleetlib.STATE_DIR / "sessions" / fleet_id
    work = Path(tempfile.mkdtemp(prefix="bench-unreachable-"))
    mutes = [Mute() for _ in range(args.mute)]
    results: dict[str, Any] = {"good": args.good, "dropped": args.dropped, "mute": args.mute,
                               "code": str(args.code), "cases": {}}
    try:
        fleet = fleetlib.start_fleet(fleet_id, args.good, inventory_dir=state / "inventory",
                                     known_hosts=state / "known_hosts", owner=fleetlib.current_owner(),
                                     host_prefix="bench")
        with dropped_ports(args.dropped) as ports:
            holes = [(f"dropped{i + 1}", p) for i, p in enumerate(ports)]
            holes += [(f"mute{i + 1}", m.port) for i, m in enumerate(mutes)]
            clean_inv = inventory(work / "clean", fleet.hosts, [])
            holes_inv = inventory(work / "holes", fleet.hosts, holes)
            cases: list[tuple[str, Path, list[str]]] = []
            for t in args.timeouts.split(","):
                flag = [] if t == "default" else ["--connect-timeout", t]
                cases.append((f"clean, timeout {t}", clean_inv, flag))
                cases.append((f"{len(holes)} black holes, timeout {t}", holes_inv, flag))
            run_facts(args.code, clean_inv, [], work / "state")  # warm-up: imports, page cache
            for name, inv, flag in cases:
                times = []
                for _ in range(args.repeat):
                    elapsed, rc, summary = run_facts(args.code, inv, flag, work / "state")
                    times.append(elapsed)
                median = statistics.median(times)
                results["cases"][name] = {"seconds": round(median, 2), "all": [round(x, 2) for x in times],
                                          "rc": rc, "summary": summary}
                print(f"{name:34s} {median:6.1f} s  rc={rc}  {summary}  (load {os.getloadavg()[0]:.1f})",
                      flush=True)
    finally:
        for m in mutes:
            m.close()
        fleetlib.down(fleet_id)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
