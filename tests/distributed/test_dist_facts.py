"""Catalogs whose templates use facts on the celery executor, with this machine as the one host (local
transport), a real Redis and a real `driftctl worker`; the controller is a RemoteEngine in this process
(its facts cache is set by hand to facts the host does not have).

- without cached facts: a "facts" task first, then the controller renders and sends the command: the
  same results as an in-process run;
- with cached facts the host does not have: the worker does nothing and answers the host's facts, the
  controller renders again and sends again; the host is reported once, and an apply writes only what
  the host's real facts give (never what the stale ones gave);
- facts that change under every task: the host fails with a clear error after the last one, untouched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dist import RedisServer, Worker, local_site

from driftctl.distributed import remote
from driftctl.engine import Engine, Event

pytestmark = [pytest.mark.slow]

TEMPLATE = '"{{ facts.distribution }} {{ facts.hostname }}\\n"'  # YAML: a double-quoted string


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return local_site(tmp_path, TEMPLATE)


@pytest.fixture
def worker(site: Path, broker: RedisServer) -> Iterator[Worker]:
    def env(**extra: str) -> dict[str, str]:
        out = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
        return {**out, "NO_COLOR": "1", "DRIFTCTL_STATE_DIR": str(site / "state"), **extra}

    scene = SimpleNamespace(tmp=site, broker=broker.url, store_url=str(site / "store.db"), key=site / "k", env=env)
    w = Worker(scene, "w1", ("driftctl",), 2, {})  # type: ignore[arg-type]
    yield w
    w.stop()


def engine(site: Path, broker: RedisServer, executor: str, facts: dict[str, Any] | None = None) -> tuple[Any, Engine]:
    """The CLI's engine (cli/cmd_converge.py prepare); ``facts``: the facts cache it reads, for the host."""
    from driftctl.cli.cmd_converge import prepare

    flags = {"executor": executor, "broker": broker.url, "worker_key": str(site / "k"),
             "state_dir": str(site / "state")}
    ctx, e = prepare(site / "inv", None, True, site / "manifests", flags)
    if facts is not None:
        e.on_preflight = lambda eng: setattr(eng, "facts_cache", {"ctl": facts})
    return ctx, e


def run(site: Path, broker: RedisServer, command: str, executor: str = "celery",
        facts: dict[str, Any] | None = None) -> tuple[Any, list[Event]]:
    ctx, e = engine(site, broker, executor, facts)
    events: list[Event] = []
    e.on_event = events.append
    result = e.run(command, ctx.hosts)  # type: ignore[arg-type]
    return result.hosts[0], events


def shape(host: Any) -> Any:
    return (host.status, host.error, host.facts, host.round_trips,
            [(r.id, r.status, r.error, r.changes, r.desired_fingerprint) for r in host.resources])


def test_facts_are_gathered_first_then_the_controller_renders(site: Path, broker: RedisServer,
                                                              worker: Worker) -> None:
    local, _ = run(site, broker, "plan", executor="threads")
    host, events = run(site, broker, "plan")
    assert host.status == "changed" and host.facts["hostname"], host.error
    assert shape(host) == shape(local)  # round trips too: the facts task's and the probe's
    assert [e.kind for e in events if e.host == "ctl" and e.kind in ("start", "done")] == ["start", "done"]
    assert re.search(r": facts ctl done: facts$", worker.text(), re.M)
    assert not (site / "touched").exists()


def test_facts_that_changed_render_the_host_again_and_report_it_once(site: Path, broker: RedisServer,
                                                                     worker: Worker) -> None:
    real, _ = run(site, broker, "plan", executor="threads")
    stale = {**real.facts, "distribution": "plan9"}
    host, events = run(site, broker, "apply", facts=stale)
    assert host.status == "changed", host.error
    assert [e.kind for e in events if e.host == "ctl" and e.kind in ("start", "done")] == ["start", "done"]
    expected = f"{real.facts['distribution']} {real.facts['hostname']}\n"
    assert (site / "touched").read_text() == expected
    # the first task did nothing: the second found the file missing, not written from the stale facts
    change = next(c for c in host.resources[0].changes if c.field == "content")
    assert change.before is None and "plan9" not in (change.diff or "")
    assert host.facts == real.facts and host.round_trips == 3  # the stale probe, the probe, the apply
    assert len(re.findall(r": apply ctl done: facts_changed$", worker.text(), re.M)) == 1
    # with the right facts cached: one task, in sync
    again, _ = run(site, broker, "plan", facts=real.facts)
    assert again.status == "ok" and again.round_trips == 1, again.error


def test_facts_that_change_under_every_task_fail_the_host(site: Path, broker: RedisServer, worker: Worker,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    real, _ = run(site, broker, "plan", executor="threads")
    monkeypatch.setattr(remote, "MAX_RESENDS", 0)  # the real host's facts change once: that is every time here
    host, events = run(site, broker, "apply", facts={**real.facts, "distribution": "plan9"})
    assert host.status == "failed"
    assert host.error == ("not run: the host's facts changed under every task sent to it (1), rendered again each "
                          "time; run it again")
    assert [e.kind for e in events if e.host == "ctl" and e.kind in ("start", "done")] == ["start", "done"]
    assert not (site / "touched").exists()
