"""Store benchmark: the size of a store after N drift runs of a fleet, and the time to save one run.

    .venv/bin/python bench/bench_store.py                       # 100 runs x 40 hosts x 120 resources, SQLite
    .venv/bin/python bench/bench_store.py --url postgresql://... # the same on PostgreSQL (an empty database)

Each run is a full ``driftctl.report/v1`` document, as a cron'd ``driftctl drift`` produces it: every
resource with its fingerprints and observed attributes; 1% of resources drift and stay drifted
(their episodes extend), another 0.5% flap from run to run, and a few unmanaged files appear under
watched paths. Results go to stdout and bench/results/store-<backend>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from driftctl.store import open_store
from driftctl.store.ingest import encode_document

TYPES = ("file", "package", "service", "user", "line", "sysctl")


def fp(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def resource(host: int, i: int, drift: str | None) -> dict[str, Any]:
    rtype = TYPES[i % len(TYPES)]
    rid = f"{rtype}:/etc/app/conf-{i:03d}" if rtype in ("file", "line") else f"{rtype}:item-{i:03d}"
    # A fleet is mostly alike: in sync, the same resource has the same state (and fingerprints) on
    # every host; a drifted one has a state of its own.
    state = f"{host}-{i}-x" if drift else f"{i}-d"
    observed = {"ensure": "present", "mode": "0644", "owner": "root", "group": "root",
                "content_sha256": fp("content " + state)}
    diff = "--- converged\n+++ observed\n@@ -1 +1 @@\n-max_conn = 100\n+max_conn = 500\n"
    changes = [{"field": "content", "before": fp(f"{host}-{i}-d"), "after": fp(f"{host}-{i}-x"),
                "diff": diff}] if drift else []
    return {
        "id": rid, "type": rtype, "status": "ok", "drift": drift, "changes": changes,
        "reason": f"{drift} drift" if drift else "in sync", "error": None,
        "source": f"manifests/roles/app/resources.yaml:{3 + 4 * i}",
        "desired_fingerprint": fp(f"{i}-d"), "observed_fingerprint": fp(state),
        "converged_fingerprint": fp(f"{i}-d"), "observed": observed,
    }


def document(k: int, hosts: int, resources: int, rng: random.Random, sticky: set[tuple[int, int]]) -> dict[str, Any]:
    started = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=15 * k)
    host_docs = []
    drifted_total = 0
    for h in range(hosts):
        res = []
        for i in range(resources):
            drift = "corrective" if (h, i) in sticky or rng.random() < 0.005 else None
            drifted_total += drift is not None
            res.append(resource(h, i, drift))
        unmanaged = [{"path": f"/etc/cron.d/added-{h}", "change": "added", "before": None,
                      "after": {"type": "file", "mode": "0644", "owner": "root", "group": "root", "size": 120,
                                "sha256": fp(str(h))}}] if h % 10 == 0 else []
        host_docs.append({"name": f"host{h:03d}.prod", "status": "drifted" if any(r["drift"] for r in res) else "ok",
                          "error": None, "fingerprint": fp(f"{h}-{k}"), "duration": 0.8, "round_trips": 1,
                          "resources": res, "unmanaged": unmanaged})
    return {
        "schema": "driftctl.report/v1", "command": "drift", "inventory": "inventory/prod",
        "started": started.isoformat(), "finished": (started + timedelta(seconds=40)).isoformat(),
        "driftctl_version": "0.1.0", "exit_code": 2, "user": "driftctl", "controller": "ctl1",
        "argv": ["driftctl", "drift", "inventory/prod"],
        "summary": {"hosts": hosts, "ok": sum(d["status"] == "ok" for d in host_docs),
                    "changed": 0, "drifted": sum(d["status"] == "drifted" for d in host_docs), "failed": 0,
                    "unreachable": 0, "resources_changed": 0, "resources_drifted": drifted_total},
        "hosts": host_docs,
    }


def sqlite_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--hosts", type=int, default=40)
    ap.add_argument("--resources", type=int, default=120)
    ap.add_argument("--url", help="a store URL (default: a new SQLite file in a temporary directory)")
    args = ap.parse_args()

    rng = random.Random(42)  # the same fleet and the same drift every time
    sticky = {(h, i) for h in range(args.hosts) for i in range(args.resources) if rng.random() < 0.01}
    tmp = tempfile.TemporaryDirectory(prefix="driftctl-store-bench-")
    url = args.url or str(Path(tmp.name) / "driftctl.sqlite")
    store = open_store(url)
    raw, packed, times = [], [], []
    for k in range(args.runs):
        # One document at a time, as cron would: holding 100 of them would time Python's GC instead.
        doc = document(k, args.hosts, args.resources, rng, sticky)
        raw.append(len(json.dumps(doc, separators=(",", ":"))))
        packed.append(len(encode_document(doc)))
        t = time.perf_counter()
        store.save_run(doc)
        times.append(time.perf_counter() - t)
    del doc

    t = time.perf_counter()
    history = store.history("inventory/prod", limit=100)
    t_history = time.perf_counter() - t
    t = time.perf_counter()
    open_drift = store.open_drift("inventory/prod")
    t_open = time.perf_counter() - t
    t = time.perf_counter()
    store.latest_run("inventory/prod")
    t_latest = time.perf_counter() - t
    t = time.perf_counter()
    series = store.drift_series("inventory/prod")
    t_series = time.perf_counter() - t
    with store.database.read() as cur:
        rows = {table: int(cur.scalar(f"SELECT COUNT(*) AS n FROM {table}"))  # fixed names
                for table in ("runs", "host_results", "resource_results", "unmanaged_results", "drift_episodes",
                              "run_documents")}
        if store.dialect == "postgresql":
            size = int(cur.scalar("SELECT pg_database_size(current_database()) AS n"))
    store.close()
    if store.dialect == "sqlite":
        size = sqlite_size(Path(url))

    result = {
        "backend": store.dialect, "runs": args.runs, "hosts": args.hosts, "resources_per_host": args.resources,
        "store_bytes": size, "store_mib": round(size / 2**20, 2), "bytes_per_run": size // args.runs,
        "document_json_bytes_mean": int(statistics.mean(raw)),
        "document_stored_bytes_mean": int(statistics.mean(packed)),
        "save_seconds": {"mean": round(statistics.mean(times), 4), "median": round(statistics.median(times), 4),
                         "p95": round(sorted(times)[int(0.95 * (len(times) - 1))], 4), "max": round(max(times), 4)},
        "query_seconds": {"history_100": round(t_history, 4), "open_drift": round(t_open, 4),
                          "latest_run": round(t_latest, 4), "drift_series": round(t_series, 4)},
        "rows": rows, "open_episodes": len(open_drift), "history_events": len(history), "series_points": len(series),
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"store-{store.dialect}.json").write_text(json.dumps(result, indent=2) + "\n")
    tmp.cleanup()
    os.sync()


if __name__ == "__main__":
    main()
