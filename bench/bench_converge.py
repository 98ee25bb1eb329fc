#!/usr/bin/env python3
"""Benchmark plan, first apply, second apply and drift on 1, 10 and 40 fleet hosts.

The manifest is generated at a realistic size: 100 templated files in 10 directories, 3 users and a
group, a line edit, a symlink, a package and a service (both already in the base image, so the numbers
measure driftctl and not Debian's mirror). Each size gets brand-new hosts, so "first apply" really
is the first. Every command runs as a user types it (a subprocess of the CLI); the controller's peak
memory is that process's max RSS.

    .venv/bin/python bench/bench_converge.py --hosts 1,10,40
Results: a table on stdout and bench/results/converge-<date>.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fleet_library():
    path = REPO / "tests" / "fleet" / "fleet.py"
    spec = importlib.util.spec_from_file_location("driftctl_test_fleet", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["driftctl_test_fleet"] = module
    spec.loader.exec_module(module)
    return module


def write_manifests(root: Path, files: int = 100, dirs: int = 10) -> None:
    role = root / "roles" / "bench"
    (role / "templates").mkdir(parents=True)
    (root / "site.yaml").write_text("- hosts: all\n  roles: [bench]\n")
    (role / "templates" / "conf.j2").write_text(
        "# {{ inventory_hostname }} file {{ item }}: managed by driftctl\n"
        "{% for i in range(40) %}option_{{ i }} = {{ (item * 31 + i) % 97 }}\n{% endfor %}"
    )
    (role / "defaults.yaml").write_text(f"bench_files: {list(range(files))}\n")
    res = ["resources:", "  - group: benchops", "    gid: 5000"]
    for u in range(3):
        res += [f"  - user: bench{u}", f"    uid: {5001 + u}", "    group: benchops", "    shell: /bin/bash"]
    for d in range(dirs):
        res += [f"  - directory: /srv/bench/d{d}", "    mode: \"0755\""]
    res += ["  - directory: /srv/bench", "    mode: \"0755\""]
    res += [
        "  - file: \"/srv/bench/d{{ item % " + str(dirs) + " }}/f{{ item }}.conf\"",
        "    template: conf.j2",
        "    mode: \"0644\"",
        "    owner: root",
        "    loop: \"{{ bench_files }}\"",
        "  - symlink: /srv/bench/current",
        "    target: /srv/bench/d0",
        "  - line: bench-sshd",
        "    path: /etc/ssh/sshd_config",
        "    text: MaxSessions 20",
        "    match: \"^#?MaxSessions\"",
        "  - package: procps",
        "  - service: cron",
        "    enabled: true",
        "    running: true",
    ]
    (role / "resources.yaml").write_text("\n".join(res) + "\n")


def run(args: list[str], state: Path) -> dict:
    """One CLI command; wall time and its own peak RSS (wait4 on exactly that process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
    env.update(DRIFTCTL_STATE_DIR=str(state), NO_COLOR="1")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "driftctl", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    chunks: dict[str, bytes] = {}

    def drain(name: str, stream) -> None:
        chunks[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    return {"rc": proc.returncode, "wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "stdout": chunks["out"].decode()[-400:], "stderr": chunks["err"].decode()[-400:],
            "stdout_full": chunks["out"].decode()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1,10,40")
    parser.add_argument("--drift-runs", type=int, default=20,
                        help="extra drift runs on the untouched fleet, counting false positives")
    ns = parser.parse_args()
    sizes = [int(x) for x in ns.hosts.split(",")]
    fleetlib = fleet_library()
    results = []
    with tempfile.TemporaryDirectory(prefix="driftctl-bench-") as tmp:
        tmpdir = Path(tmp)
        manifests = tmpdir / "manifests"
        write_manifests(manifests)
        for n in sizes:
            fleet_id = f"bench{n}"
            fleetlib.down(fleet_id)
            t0 = time.monotonic()
            fleet = fleetlib.start_fleet(fleet_id, n, inventory_dir=tmpdir / f"inv{n}",
                                         known_hosts=tmpdir / f"kh{n}", owner=fleetlib.current_owner())
            start_s = time.monotonic() - t0
            state = tmpdir / f"state{n}"
            inv = str(fleet.inventory_dir)
            row: dict = {"hosts": n, "fleet_start_s": round(start_s, 1)}
            try:
                for label, cmd in (("plan", "plan"), ("first_apply", "apply"), ("second_apply", "apply"),
                                   ("drift", "drift")):
                    r = run([cmd, inv, "-m", str(manifests), "--parallel", "40"], state)
                    row[label] = r
                    print(f"{n:>3} hosts  {label:<13} {r['wall_s']:>6.1f}s  rc={r['rc']}  "
                          f"peak {r['peak_rss_mb']} MB", flush=True)
                false_positives = 0
                for _ in range(ns.drift_runs):  # nothing touched the fleet: every drift found is false
                    r = run(["drift", inv, "-m", str(manifests), "--parallel", "40", "--json"], state)
                    doc = json.loads(r["stdout_full"])
                    false_positives += doc["summary"]["resources_drifted"] + doc["summary"]["unmanaged_changes"]
                row["drift_runs"] = ns.drift_runs
                row["false_positives"] = false_positives
                print(f"{n:>3} hosts  {ns.drift_runs} more drift runs: {false_positives} false positive(s)", flush=True)
                db = state / "driftctl.sqlite"
                row["store_bytes"] = sum(p.stat().st_size for p in state.glob("driftctl.sqlite*")) if db.exists() else 0
            finally:
                fleetlib.down(fleet_id)
            results.append(row)
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"converge-{time.strftime('%Y%m%d-%H%M%S')}.json"
    for row in results:
        for key in ("plan", "first_apply", "second_apply", "drift"):
            row[key].pop("stdout_full", None)
    out.write_text(json.dumps(results, indent=2))
    print(f"\n{'hosts':>5} {'plan':>7} {'apply1':>7} {'apply2':>7} {'drift':>7} {'peak MB':>8} {'false+':>7}")
    for row in results:
        peak = max(row[k]["peak_rss_mb"] for k in ("plan", "first_apply", "second_apply", "drift"))
        print(f"{row['hosts']:>5} {row['plan']['wall_s']:>7} {row['first_apply']['wall_s']:>7} "
              f"{row['second_apply']['wall_s']:>7} {row['drift']['wall_s']:>7} {peak:>8} {row['false_positives']:>7}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
