"""Several real processes writing and reading one store at once (both backends) never corrupt it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from driftctl.store import open_store

INV = "inventory/prod"
WRITERS, RUNS, HOSTS, RESOURCES = 3, 12, 3, 25

# Saves RUNS drift runs; every host has resource 0 drifted (corrective) and the others in sync.
SAVER = r"""
import hashlib, os, sys, time
from datetime import datetime, timedelta, timezone
from driftctl.store import open_store

url, writer, runs, hosts, resources, go = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6]), sys.argv[6]
fp = lambda s: hashlib.sha256(s.encode()).hexdigest()
store = open_store(url)
while not os.path.exists(go):
    time.sleep(0.005)
for k in range(runs):
    started = datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(minutes=k * 10 + writer)
    def res(i):
        drift = "corrective" if i == 0 else None
        return {"id": f"file:/etc/f{i}", "type": "file", "status": "ok", "drift": drift,
                "changes": [{"field": "content", "before": "a", "after": "b", "diff": None}] if drift else [],
                "reason": None, "error": None, "source": "m.yaml:1", "desired_fingerprint": fp("d"),
                "observed_fingerprint": fp("o" if drift else "d"), "converged_fingerprint": fp("d"),
                "observed": {"content_sha256": fp(str(i))}}
    doc = {"schema": "driftctl.report/v1", "command": "drift", "inventory": "inventory/prod",
           "started": started.isoformat(), "finished": started.isoformat(), "driftctl_version": "0.1.0",
           "exit_code": 2, "summary": {"hosts": hosts, "ok": 0, "changed": 0, "drifted": hosts, "failed": 0,
                                       "unreachable": 0, "resources_changed": 0, "resources_drifted": hosts},
           "hosts": [{"name": f"web{h}", "status": "drifted", "error": None, "fingerprint": fp(str(h)),
                      "duration": 0.1, "round_trips": 1, "resources": [res(i) for i in range(resources)],
                      "unmanaged": [{"path": f"/etc/cron.d/w{writer}", "change": "added", "before": None,
                                     "after": {"type": "file", "sha256": fp("x"), "mode": "0644"}}]}
                     for h in range(hosts)]}
    store.save_run(doc)
store.close()
"""

# Reads while the writers write, until told to stop; counts its rounds.
READER = r"""
import os, sys, time
from driftctl.store import open_store
url, go, stop = sys.argv[1:4]
store = open_store(url)
while not os.path.exists(go):
    time.sleep(0.005)
rounds = 0
while not os.path.exists(stop) or rounds == 0:
    store.history("inventory/prod", limit=50)
    store.latest_run("inventory/prod")
    store.open_drift("inventory/prod")
    store.drift_series("inventory/prod")
    rounds += 1
print(rounds)
"""


def test_concurrent_writers_and_readers_keep_the_store_whole(store_url: str, tmp_path: Path) -> None:
    open_store(store_url).close()  # created and migrated: the race under test is between saves
    go, stop = tmp_path / "go", tmp_path / "stop"
    writers = [
        subprocess.Popen([sys.executable, "-c", SAVER, store_url, str(w), str(RUNS), str(HOSTS), str(RESOURCES),
                          str(go)], stderr=subprocess.PIPE)
        for w in range(WRITERS)
    ]
    reader = subprocess.Popen([sys.executable, "-c", READER, store_url, str(go), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    go.touch()
    for w in writers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err.decode()
    stop.touch()
    out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err.decode()
    assert int(out) > 0

    total = WRITERS * RUNS
    with open_store(store_url) as store:
        runs = store.runs(INV, limit=1000)
        assert len(runs) == total and len({r.id for r in runs}) == total
        counted: dict[str, list[int]] = {f"web{h}": [] for h in range(HOSTS)}
        for run in runs:
            doc = store.run_document(run.id)
            assert doc is not None and len(doc["hosts"]) == HOSTS
            assert all(len(h["resources"]) == RESOURCES for h in doc["hosts"])
            for h in doc["hosts"]:
                counted[h["name"]].append(h["resources"][0]["runs"])
        # Each saved report says "drifted for N runs" with its own N: the saves were serialized.
        assert all(sorted(c) == list(range(1, total + 1)) for c in counted.values()), counted
        # Every save extended the same episodes: none lost, none duplicated.
        episodes = store.episodes(INV)
        resources = [e for e in episodes if e.kind == "resource"]
        assert sorted((e.host, e.subject, e.runs, e.open) for e in resources) == [
            (f"web{h}", "file:/etc/f0", total, True) for h in range(HOSTS)
        ]
        # Each writer's watched path is added in its runs and absent from the others': its episodes
        # open and close as the writers interleave, but never two open at once (a unique index).
        paths = [e for e in episodes if e.kind == "path"]
        assert sum(e.runs for e in paths) == total * HOSTS
        assert len({(e.host, e.subject) for e in paths if e.open}) == len([e for e in paths if e.open])
        with store.database.read() as cur:
            assert cur.scalar("SELECT COUNT(*) AS n FROM host_results") == total * HOSTS
            assert cur.scalar("SELECT COUNT(*) AS n FROM resource_results") == total * HOSTS  # notable rows only
    if not store_url.startswith("postgresql://"):
        with sqlite3.connect(store_url) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_one_store_shared_by_threads(store_url: str) -> None:
    # The engine's host workers may share the controller's Store: calls are serialized, never mixed.
    import json as jsonlib
    from concurrent.futures import ThreadPoolExecutor

    template = {
        "schema": "driftctl.report/v1", "command": "check", "inventory": INV, "finished": None,
        "driftctl_version": "0.1.0", "exit_code": 0,
        "summary": {"hosts": 1, "ok": 1, "changed": 0, "drifted": 0, "failed": 0, "unreachable": 0,
                    "resources_changed": 0, "resources_drifted": 0},
        "hosts": [{"name": "web1", "status": "ok", "error": None, "fingerprint": None, "duration": 0.1,
                   "round_trips": 1, "resources": []}],
    }
    with open_store(store_url) as store:
        def work(n: int) -> int:
            for k in range(5):
                doc = jsonlib.loads(jsonlib.dumps(template))
                doc["started"] = f"2026-11-01T{n:02d}:{k:02d}:00Z"
                store.save_run(doc)
                store.history(INV)
                store.runs(INV, limit=3)
            return n

        with ThreadPoolExecutor(6) as pool:
            assert sorted(pool.map(work, range(6))) == list(range(6))
        assert len(store.runs(INV, limit=100)) == 30
