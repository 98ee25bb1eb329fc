"""A site whose templates use facts, on real hosts (``small_dist_fleet``: 2, one per zone), a real Redis,
PostgreSQL and a `driftctl worker`: ``--executor celery`` gives the results of ``--executor threads``,
first without cached facts (a facts task, then the command), then with the facts of the stored run
(one task), for plan, apply and drift."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from dist import CANARY, RESOURCES, PgServer, RedisServer, Scene, without_keys

pytestmark = [pytest.mark.fleet, pytest.mark.slow, pytest.mark.postgres]

FACTS = RESOURCES + """  - file: /etc/dist/os
    content: "{{ version }} {{ facts.distribution }} {{ facts.distribution_version }} on {{ facts.hostname }}\\n"
"""
VOLATILE = {"duration", "started", "finished", "since", "runs", "run_id", "id", "argv", "timestamp", "time",
            "created", "generated"}


def normal(doc: Any) -> Any:
    return without_keys(doc, VOLATILE)


def expected_os(host: Any, version: str) -> str:
    out = host.sh('. /etc/os-release; echo "$ID $VERSION_ID on $(uname -n)"').stdout.decode()
    return f"{version} {out}"


def in_clear(seen: bytes) -> list[bytes]:
    """The MONITOR log and every base64 run in it, decoded (as test_distributed's canary test reads it)."""
    out = [seen]
    for m in re.finditer(rb"[A-Za-z0-9+/=_-]{40,}", seen):
        for dec in (base64.b64decode, base64.urlsafe_b64decode):
            with contextlib.suppress(Exception):
                out.append(dec(m.group(0) + b"=" * (-len(m.group(0)) % 4)))
    return out


def test_a_site_with_facts_gives_the_in_process_results(tmp_path: Path, small_dist_fleet: Any, pg: PgServer,
                                                        broker: RedisServer) -> None:
    scene = Scene(tmp_path, small_dist_fleet.hosts, pg.new_database(), broker.url)
    roles = scene.manifests / "roles" / "dist"
    (roles / "resources.yaml").write_text(FACTS.replace("{{ version }}", "v1"))
    for h in scene.hosts:
        h.sh("rm -rf /etc/dist")
    worker = scene.start_worker("w1", concurrency=2)
    monitor = broker.monitor(tmp_path / "monitor.log")
    try:
        # no stored run: no cached facts (a facts task first, then the command)
        local, remote = scene.driftctl("plan", "--json", celery=False), scene.driftctl("plan", "--json")
        assert local.returncode == remote.returncode == 0, remote.stderr  # plan: 0 with changes (D41)
        doc = json.loads(remote.stdout)
        assert normal(doc) == normal(json.loads(local.stdout))  # round trips too
        assert all(h["status"] == "changed" for h in doc["hosts"])
        assert len(re.findall(r": facts \S+ done: facts$", worker.text(), re.M)) == len(scene.hosts)

        applied = scene.driftctl("apply", "--json")  # its record keeps the facts: the next runs' cache
        assert applied.returncode == 2, applied.stderr
        for h in scene.hosts:  # checked on the hosts themselves
            assert h.sh("cat /etc/dist/os").stdout.decode() == expected_os(h, "v1")
        facts_tasks = worker.text().count(": facts ")
        monitor.terminate()
        monitor.wait(10)
        seen = (tmp_path / "monitor.log").read_bytes()
        assert b"driftctl.host" in seen and b"-facts" in seen  # the monitor saw the facts tasks
        pretty = scene.hosts[0].sh(". /etc/os-release; echo $PRETTY_NAME").stdout.decode().strip().encode()
        assert not [t for t in in_clear(seen) if pretty in t or CANARY.encode() in t]  # facts sealed too

        # cached facts from the stored run: rendered before the task is sent, one task per host
        local, remote = scene.driftctl("plan", "--json", celery=False), scene.driftctl("plan", "--json")
        assert local.returncode == remote.returncode == 0, remote.stderr
        assert normal(json.loads(remote.stdout)) == normal(json.loads(local.stdout))

        scene.hosts[0].sh("echo edited > /etc/dist/os")
        local, remote = scene.driftctl("drift", "--json", celery=False), scene.driftctl("drift", "--json")
        assert local.returncode == remote.returncode == 2, remote.stderr
        assert normal(json.loads(remote.stdout)["hosts"]) == normal(json.loads(local.stdout)["hosts"])

        (roles / "resources.yaml").write_text(FACTS.replace("{{ version }}", "v2"))
        applied = scene.driftctl("apply", "--json")
        assert applied.returncode == 2, applied.stderr
        assert all(h["status"] == "changed" for h in json.loads(applied.stdout)["hosts"])
        for h in scene.hosts:
            assert h.sh("cat /etc/dist/os").stdout.decode() == expected_os(h, "v2")
        assert worker.text().count(": facts ") == facts_tasks  # no facts task once they are cached
        assert "facts_changed" not in worker.text()
        assert scene.driftctl("check", celery=False).returncode == 0
    finally:
        if monitor.poll() is None:
            monitor.terminate()
            monitor.wait(10)
        scene.stop_workers()
