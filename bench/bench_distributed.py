"""Distributed drift benchmark (issue 14): drift of N fleet hosts with 1, 2 and 4 `driftctl worker`s,
against an in-process run of the same inventory.

    .venv/bin/python bench/bench_distributed.py                  # 40 and 100 hosts, 1/2/4 workers
    .venv/bin/python bench/bench_distributed.py --hosts 40 --workers 1 2

Real parts: a fleet of podman hosts (tests/fleet/fleet.py), a Redis broker and a PostgreSQL store of
its own (tests/distributed/dist.py), workers with ``--concurrency`` C each (default 10, the parallel
setting). The inventory is applied once; each measured run is ``driftctl drift`` (3 files and an exec
per host), run twice, the second kept (warm agent cache, as a scheduled run is). Per run: wall time,
CPU seconds of the controller and of the workers (/proc), and both per host. Results: stdout and
bench/results/distributed-<time>.json. All on one 2-core machine: the workers, the controller, Redis,
PostgreSQL and the hosts share the same cores, so more workers here cannot be faster than the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "distributed"), str(REPO / "tests" / "fleet")]

from dist import PgServer, RedisServer, Scene  # noqa: E402

import fleet as fleetlib  # noqa: E402


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its threads (children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drift(scene: Scene, celery: bool, parallel: int) -> tuple[float, float, int]:
    """(wall s, controller CPU s, exit code) of one drift run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = scene.driftctl("drift", "-p", str(parallel), celery=celery, timeout=1800)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode not in (0, 2):
        raise SystemExit(f"drift exited {r.returncode}: {r.stderr[-2000:]}")
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), r.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, nargs="+", default=[40, 100])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--concurrency", type=int, default=10, help="hosts per worker at once")
    ap.add_argument("--keep-fleet", action="store_true")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="driftctl-bench-dist-"))
    base.chmod(0o755)  # the postgres user goes through it to its cluster
    (base / "pg").mkdir()
    (base / "redis").mkdir()
    pg = PgServer(base / "pg")
    pg.start()
    redis = RedisServer(base / "redis")
    redis.start()
    fleet_id = fleetlib.new_session_id("bench")
    rows: list[dict[str, Any]] = []
    try:
        for n in sorted(args.hosts):
            fl = fleetlib.start_fleet(fleet_id, n, inventory_dir=base / "fleet-inv", known_hosts=base / "known_hosts",
                                      owner=fleetlib.current_owner(), host_prefix="bench")
            scene = Scene(base / f"scene-{n}", fl.hosts, pg.new_database(), redis.url)
            applied = scene.driftctl("apply", "-p", "20", celery=False, timeout=1800)
            if applied.returncode not in (0, 2):
                raise SystemExit(f"apply exited {applied.returncode}: {applied.stderr[-2000:]}")
            drift(scene, False, args.concurrency)
            wall, cpu, _ = drift(scene, False, args.concurrency)
            rows.append({"hosts": n, "workers": 0, "parallel": args.concurrency, "wall_s": round(wall, 2),
                         "controller_cpu_s": round(cpu, 2), "worker_cpu_s": 0.0})
            print(json.dumps(rows[-1]), flush=True)
            for w in args.workers:
                workers = [scene.start_worker(f"b{n}-{w}-{i}", concurrency=args.concurrency) for i in range(w)]
                drift(scene, True, args.concurrency)  # warm: the workers' agent caches, their store connections
                before = sum(cpu_of(x.proc.pid) for x in workers)
                wall, cpu, _ = drift(scene, True, args.concurrency)
                worker_cpu = sum(cpu_of(x.proc.pid) for x in workers) - before
                rows.append({"hosts": n, "workers": w, "concurrency": args.concurrency, "wall_s": round(wall, 2),
                             "controller_cpu_s": round(cpu, 2), "worker_cpu_s": round(worker_cpu, 2)})
                print(json.dumps(rows[-1]), flush=True)
                scene.stop_workers()
        for r in rows:
            r["wall_ms_per_host"] = round(1000 * r["wall_s"] / r["hosts"], 1)
            r["cpu_ms_per_host"] = round(1000 * (r["controller_cpu_s"] + r["worker_cpu_s"]) / r["hosts"], 1)
        out = REPO / "bench" / "results" / f"distributed-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps({"rows": rows, "cores": os.cpu_count()}, indent=1) + "\n")
        head = ("hosts", "workers", "wall s", "ms/host", "cpu ms/host", "ctl cpu", "wk cpu")
        print(f"{head[0]:>5} {head[1]:>7} {head[2]:>7} {head[3]:>8} {head[4]:>11} {head[5]:>7} {head[6]:>7}")
        for r in rows:
            print(f"{r['hosts']:>5} {r['workers'] or 'in-proc':>7} {r['wall_s']:>7} {r['wall_ms_per_host']:>8} "
                  f"{r['cpu_ms_per_host']:>11} {r['controller_cpu_s']:>7} {r['worker_cpu_s']:>7}")
        print(f"wrote {out}")
    finally:
        if not args.keep_fleet:
            fleetlib.down(fleet_id)
        redis.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
