"""Host runs on Celery workers (issue 14), end to end: a real Redis, a real PostgreSQL store, 2-3
`driftctl worker` processes and a fleet of hosts in two zones (DRIFTCTL_TEST_DIST_FLEET_SIZE, 20).

- the same runs with ``--executor celery`` and in-process give the same results (ids, classes,
  fields, exit codes), and the store has exactly one record per run;
- a worker SIGKILLed mid-run: its tasks go to another worker, every host is reported exactly once;
- the broker stopped: a clear error, exit 1, no host contacted;
- a secret canary is in no broker message and no stored result (Redis MONITOR and its keys);
- a task sealed with another key is refused by the workers, never run;
- a worker that hangs: the host's timeout fails the host and the run ends.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dist import CANARY, ZONES, PgServer, RedisServer, Scene, wait_for, without_keys

pytestmark = [pytest.mark.fleet, pytest.mark.slow, pytest.mark.postgres]

# what differs between two runs of the same inventory whatever runs them
LIST = "ls -la --time-style=full-iso /etc/dist 2>&1; cat /etc/dist/zone 2>&1"
VOLATILE = {"duration", "started", "finished", "since", "runs", "run_id", "id", "argv", "timestamp", "time",
            "created", "generated", "round_trips"}


@pytest.fixture
def scene(tmp_path: Path, dist_fleet: Any, pg: PgServer, broker: RedisServer) -> Iterator[Scene]:
    s = Scene(tmp_path, dist_fleet.hosts, pg.new_database(), broker.url)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:  # every test starts from hosts without the managed files
        list(pool.map(lambda h: h.sh("rm -rf /etc/dist"), s.hosts))
    try:
        yield s
    finally:
        s.stop_workers()


def normal(doc: Any) -> Any:
    return without_keys(doc, VOLATILE)


def hosts_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {h["name"]: h for h in doc["hosts"]}


def accepted(host: Any) -> int:
    """sshd's accepted logins on ``host`` so far (its journal, read through podman exec)."""
    return int(sh(host, "journalctl -u ssh.service --no-pager -q | grep -c 'Accepted publickey' || true").strip() or 0)


def sh(host: Any, script: str) -> str:
    return host.sh(script).stdout.decode()


def test_celery_runs_give_the_results_of_an_in_process_run(scene: Scene) -> None:
    scene.start_workers({"name": "w1", "concurrency": 3}, {"name": "w2", "queues": (ZONES[0],), "concurrency": 3},
                        {"name": "w3", "queues": (ZONES[1],), "concurrency": 3})
    n = len(scene.hosts)
    local = scene.driftctl("plan", "--json", celery=False)
    remote = scene.driftctl("plan", "--json")
    assert local.returncode == remote.returncode == 0, remote.stderr  # plan: 0 with changes (D41)
    assert normal(json.loads(remote.stdout)) == normal(json.loads(local.stdout))

    # a first drift run takes the watch baselines: the workers send them, the controller writes them
    from driftctl.drift import inventory_key
    from driftctl.store import open_store

    for h in scene.hosts:
        h.sh("mkdir -p /etc/dist && echo there > /etc/dist/before")
    first = scene.driftctl("drift", "--json")
    assert first.returncode == 2, first.stderr  # pending: the manifests want what apply has not done yet
    store = open_store(scene.store_url)
    try:
        taken = [h.name for h in scene.hosts if store.baseline(inventory_key(scene.inventory), h.name)]
    finally:
        store.close()
    assert taken == [h.name for h in scene.hosts]

    applied = scene.driftctl("apply", "--json")
    assert applied.returncode == 2, applied.stderr
    doc = json.loads(applied.stdout)
    assert sorted(hosts_of(doc)) == sorted(h.name for h in scene.hosts)
    assert all(h["status"] == "changed" for h in doc["hosts"])
    for i, h in enumerate(scene.hosts):  # checked on the hosts themselves, not through driftctl
        assert sh(h, "cat /etc/dist/zone") == f"zone {ZONES[i % 2]}\n"
        assert sh(h, "stat -c %a /etc/dist/secret.env").strip() == "600"

    for h in scene.hosts[:2]:  # drift by hand on two hosts: a managed file, and one nobody manages
        h.sh("echo edited > /etc/dist/zone; echo new > /etc/dist/unmanaged")
    local = scene.driftctl("drift", "--json", celery=False)
    remote = scene.driftctl("drift", "--json")
    assert local.returncode == remote.returncode == 2, remote.stderr
    lh, rh = hosts_of(json.loads(local.stdout)), hosts_of(json.loads(remote.stdout))
    assert normal(rh) == normal(lh)
    drifted = sorted(name for name, h in rh.items() if any(r.get("drift") for r in h["resources"]))
    assert drifted == sorted(h.name for h in scene.hosts[:2])
    unmanaged = sorted(name for name, h in rh.items() if h.get("unmanaged"))
    assert unmanaged == drifted, [h.get("unmanaged") for h in rh.values()]

    store = open_store(scene.store_url)
    try:
        runs = store.runs(inventory_key(scene.inventory))
        latest = store.latest_run(inventory_key(scene.inventory))
    finally:
        store.close()
    assert sorted(r.command for r in runs) == ["apply", "drift", "drift", "drift"]  # one record per run
    assert latest is not None and len(latest["hosts"]) == n
    check_local, check_remote = scene.driftctl("check", celery=False), scene.driftctl("check")
    assert check_local.returncode == check_remote.returncode == 2
    # --serial batches and --tags narrow a celery run as they narrow an in-process one
    batched = ("plan", "--json", "--serial", "30%", "--skip-tags", "never")
    local, remote = scene.driftctl(*batched, celery=False), scene.driftctl(*batched)
    assert local.returncode == remote.returncode == 0, remote.stderr
    assert normal(json.loads(remote.stdout)) == normal(json.loads(local.stdout))


def test_a_worker_killed_mid_run_loses_no_host(scene: Scene) -> None:
    fast = {"DRIFTCTL_VISIBILITY_TIMEOUT": "8"}
    scene.driftctl("apply", celery=False)
    (scene.inventory / "group_vars" / "all.yaml").write_text(f"canary: !secret {CANARY}\nslow: 2\n")
    victim, survivor = scene.start_workers({"name": "victim", "concurrency": 2, "env": fast},
                                           {"name": "survivor", "concurrency": 2, "env": fast})
    import subprocess
    import sys

    argv = [sys.executable, "-m", "driftctl", "drift", "--json", str(scene.inventory), "-m", str(scene.manifests),
            "--executor", "celery", "--broker", scene.broker, "--worker-key", str(scene.key)]
    # a task still lost (driftctl/distributed/lost.py sends one lost at BRPOP again) fails its host
    # "no worker took its task in 180s", not the test after 600 s
    run = subprocess.Popen(argv, env=scene.env(**fast, DRIFTCTL_QUEUE_TIMEOUT="180"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    wait_for(lambda: victim.text().count(": drift ") >= 1, "the victim to take a task", 120)
    victim.kill()
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    doc = json.loads(out)
    names = [h["name"] for h in doc["hosts"]]
    assert sorted(names) == sorted(h.name for h in scene.hosts)  # every host, exactly once
    assert all(h["status"] == "ok" for h in doc["hosts"]), [h.get("error") for h in doc["hosts"]]
    taken = set(re.findall(r": drift (\S+)$", victim.text(), re.M))
    finished = set(re.findall(r": drift (\S+) done:", victim.text()))
    rerun = set(re.findall(r": drift (\S+)$", survivor.text(), re.M))
    assert taken - finished and taken - finished <= rerun  # what the victim had not finished, the survivor ran


def test_broker_stopped_is_a_clear_error_and_no_host_is_contacted(scene: Scene, broker: RedisServer) -> None:
    before = {h.name: accepted(h) for h in scene.hosts[:2]}
    broker.stop()
    r = scene.driftctl("drift")
    assert r.returncode == 1
    assert "cannot be reached" in r.stderr and "nothing was run" in r.stderr
    assert "Traceback" not in r.stderr
    assert {h.name: accepted(h) for h in scene.hosts[:2]} == before


def _broker_texts(broker: RedisServer) -> list[bytes]:
    """Every value in the broker's keys (lists, hashes, strings, sets), with base64 bodies decoded."""
    c = broker.client()
    out: list[bytes] = []
    for key in c.scan_iter("*"):
        kind = c.type(key)
        if kind == b"string":
            out.append(c.get(key) or b"")
        elif kind == b"list":
            out += c.lrange(key, 0, -1)
        elif kind == b"hash":
            out += list(c.hgetall(key).values())
        elif kind in (b"set", b"zset"):
            out += list(c.smembers(key)) if kind == b"set" else [m for m, _ in c.zrange(key, 0, -1, withscores=True)]
        out.append(key)
    return out + [decoded for v in out for decoded in _decoded(v)]


def _decoded(value: bytes) -> list[bytes]:
    found = []
    for m in re.finditer(rb"[A-Za-z0-9+/=_-]{40,}", value):
        for dec in (base64.b64decode, base64.urlsafe_b64decode):
            with contextlib.suppress(Exception):
                found.append(dec(m.group(0) + b"=" * (-len(m.group(0)) % 4)))
    return found


def test_the_secret_canary_is_in_no_broker_message_and_no_result(scene: Scene, broker: RedisServer,
                                                                  tmp_path: Path) -> None:
    scene.start_worker("w1", concurrency=4)
    log = tmp_path / "monitor.log"
    monitor = broker.monitor(log)
    try:
        assert scene.driftctl("apply").returncode == 2
        scene.hosts[0].sh("echo 'TOKEN=handmade' > /etc/dist/secret.env")
        assert scene.driftctl("drift").returncode == 2
    finally:
        monitor.terminate()
        monitor.wait(10)
    seen = log.read_bytes()
    assert b"driftctl.host" in seen and b"celery-task-meta-" in seen  # the monitor saw tasks and results
    texts = [seen, *_decoded(seen), *_broker_texts(broker)]
    assert not [t for t in texts if CANARY.encode() in t]
    assert not [t for t in texts if CANARY[8:18].encode() in t]  # nor any piece of it
    assert sh(scene.hosts[0], "cat /etc/dist/secret.env") == "TOKEN=handmade\n"


def test_tasks_sealed_with_another_key_are_refused_and_not_run(scene: Scene, tmp_path: Path) -> None:
    import subprocess
    import sys

    worker = scene.start_worker("w1", concurrency=4)
    other = tmp_path / "other.key"
    subprocess.run([sys.executable, "-m", "driftctl", "worker", "--new-key", str(other)], check=True)
    before = {h.name: (accepted(h), sh(h, LIST)) for h in scene.hosts[:2]}
    r = scene.driftctl("apply", "--json", key=other)
    assert r.returncode == 4, r.stderr
    doc = json.loads(r.stdout)
    assert all(h["status"] == "failed" and "refused the task" in h["error"] for h in doc["hosts"])
    assert len(set(re.findall(r"REFUSED task (\S+):", worker.text()))) == len(scene.hosts)
    assert {h.name: (accepted(h), sh(h, LIST)) for h in scene.hosts[:2]} == before  # never run: no login


def test_a_hanging_worker_fails_its_hosts_and_the_run_ends(scene: Scene) -> None:
    worker = scene.start_worker("w1", concurrency=len(scene.hosts))
    (scene.inventory / "group_vars" / "all.yaml").write_text(f"canary: !secret {CANARY}\nslow: 5\n")
    import subprocess
    import sys

    argv = [sys.executable, "-m", "driftctl", "plan", "--json", str(scene.inventory), "-m", str(scene.manifests),
            "--executor", "celery", "--broker", scene.broker, "--worker-key", str(scene.key)]
    # started tasks: 3 s without a result; tasks the stopped worker holds unstarted: 10 s in the queue
    env = scene.env(DRIFTCTL_TASK_TIMEOUT="3", DRIFTCTL_QUEUE_TIMEOUT="10")
    run = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    wait_for(lambda: worker.text().count(": plan ") >= 1, "a task to start", 120)
    os.killpg(worker.proc.pid, signal.SIGSTOP)  # hangs: alive, holding its tasks, silent
    try:
        out, err = run.communicate(timeout=300)
    finally:
        os.killpg(worker.proc.pid, signal.SIGCONT)
    assert run.returncode & 4, err
    doc = json.loads(out)
    assert sorted(h["name"] for h in doc["hosts"]) == sorted(h.name for h in scene.hosts)
    errors = [h.get("error") or "" for h in doc["hosts"] if h["status"] == "failed"]
    assert any("no result from w1 in 3s" in e for e in errors)
    # every failed host failed by a timeout (the worker is named once it said who it is)
    assert all("no result from" in e or "no worker took its task in 10s" in e for e in errors), errors
    worker.kill()  # its warm shutdown would wait for the tasks it held, 5 s of `slow` each, for nothing


def test_celery_beat_runs_a_scheduled_drift_with_its_one_store_record(scene: Scene, tmp_path: Path) -> None:
    from driftctl.drift import inventory_key
    from driftctl.store import open_store

    assert scene.driftctl("apply", celery=False).returncode == 2
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(f"- name: dist\n  inventory: {scene.inventory}\n  every: 5\n"
                        f"  args: [--manifests, {scene.manifests}]\n")
    scene.start_worker("w1", concurrency=4)
    beat = scene.start_worker("beat", concurrency=2, args=("--beat", "--schedule", str(schedule)))

    def drift_runs() -> list[Any]:
        store = open_store(scene.store_url)
        try:
            return [r for r in store.runs(inventory_key(scene.inventory)) if r.command == "drift"]
        finally:
            store.close()

    runs = wait_for(drift_runs, "a scheduled drift run in the store", 180)
    scene.stop_workers()
    assert "scheduled run dist: exit 0" in beat.text()
    store = open_store(scene.store_url)
    try:
        doc = store.run_document(runs[0].id)
    finally:
        store.close()
    assert doc is not None and sorted(h["name"] for h in doc["hosts"]) == sorted(h.name for h in scene.hosts)
