"""The engine's seams, driven by fakes: an observer that answers probes from a table, an executor that
records how hosts were run, a transport that connects to nothing. No host, no agent, no threads needed.

What they pin down: every way of observing goes through one plan loop (plan_catalog): a host's
plan, an image's verify and drift's converged state decide in sync, changed, refused and deferred the
same way; the engine runs hosts only through its executor; events and exit codes stay above it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from driftctl import config
from driftctl.engine import Engine, plan_catalog, plan_results
from driftctl.errors import Location
from driftctl.model import Catalog, ConnectionSpec, Host, Resource
from driftctl.parallel import InlineExecutor, Outcome, ThreadExecutor, run_hosts
from driftctl.resources import get_type
from driftctl.transport.base import Transport, TransportOptions

LOC = Location("m.yaml", 1)


def resource(type_: str, title: str, **params: object) -> Resource:
    rtype = get_type(type_)
    assert rtype is not None
    return Resource(type_, title, rtype.validate({rtype.namevar: title, **params}, LOC), LOC)


def host(name: str = "h1") -> Host:
    return Host(name, {}, (), ConnectionSpec(address="127.0.0.1"))


class TableObserver:
    """Answers probes from a table: resource id -> the agent's answer for it."""

    def __init__(self, answers: dict[str, dict[str, Any]]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []

    def probe(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        return {"resources": {i["id"]: self.answers[i["id"]] for i in request["resources"] if i["id"] in self.answers},
                "facts": {"hostname": "fake"}}


def file_observed(sha: str | None, kind: str = "file", mode: str | None = "0644") -> dict[str, Any]:
    return {"observed": {"ensure": kind, "content_sha256": sha, "owner": "root", "group": "root", "mode": mode}}


def test_one_plan_loop_decides_in_sync_changed_refused_failed_and_deferred() -> None:
    ok = resource("file", "/etc/ok", content="same\n")
    moved = resource("file", "/etc/moved", content="new\n")
    refused = resource("file", "/etc/dir-in-the-way", content="x\n")
    broken = resource("file", "/etc/unreadable", content="x\n")
    dependent = Resource("exec", "after", get_type("exec").validate(  # type: ignore[union-attr]
        {"name": "after", "command": "true", "creates": "/x"}, LOC), LOC, require=["file:/etc/dir-in-the-way"])
    catalog = Catalog("h1", [ok, moved, refused, broken, dependent])
    sha_same = get_type("file").desired(ok.params)["content_sha256"]  # type: ignore[union-attr]
    observer = TableObserver({
        "file:/etc/ok": file_observed(sha_same),
        "file:/etc/moved": file_observed("0" * 64),
        "file:/etc/dir-in-the-way": {**file_observed(None, kind="directory", mode="0755"),
                                     "refuse": "/etc/dir-in-the-way is a directory"},
        "file:/etc/unreadable": {"error": "permission denied"},
        "exec:after": {"observed": {"ran": False, "creates": False}},
    })
    plan = plan_catalog(host(), catalog, observer)
    got = {r.id: (r.status, r.error) for r in plan_results(plan)}
    assert got["file:/etc/ok"] == ("ok", None)
    assert got["file:/etc/moved"][0] == "changed"
    assert got["file:/etc/dir-in-the-way"] == ("failed", "/etc/dir-in-the-way is a directory")
    assert got["file:/etc/unreadable"] == ("failed", "permission denied")
    assert got["exec:after"][0] == "skipped"  # the dependent of a refusal, as the agent would skip it
    # the observer got the engine's probe items: ids, types and the type's agent params
    [request] = observer.requests
    assert [i["id"] for i in request["resources"]] == [r.id for r in catalog.resources]
    assert request["resources"][0]["params"]["path"] == "/etc/ok"
    assert plan.facts == {"hostname": "fake"}


class NoTransport(Transport):
    """Connects to nothing: the fake observer answers instead of an agent."""

    name = "none"
    connects = 0

    def connect(self) -> None:
        NoTransport.connects += 1

    def close(self) -> None:
        pass

    def run(self, argv: Any, *, stdin: bytes = b"", timeout: float | None = None,
            become: bool | None = None) -> Any:
        raise AssertionError("a plan through the fake observer runs no command")

    def stream(self, argv: Any, **kwargs: Any) -> Any:
        raise AssertionError("a plan streams nothing")

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a plan through the fake observer runs no command")

    def _stream(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a plan streams nothing")


class RecordingExecutor:
    """Runs hosts inline, in reverse order, and remembers them: results must still come back in order."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def map(self, hosts: Sequence[Host], fn: Callable[[Host], Any]) -> Iterator[Outcome[Any]]:
        for h in reversed(hosts):
            self.ran.append(h.name)
            yield Outcome(h, value=fn(h))


def test_the_engine_runs_hosts_only_through_its_executor_and_observer(tmp_path: Any) -> None:
    hosts = [host("a"), host("b"), host("c")]
    catalogs = {h.name: Catalog(h.name, [resource("file", f"/etc/{h.name}", content="x\n")]) for h in hosts}
    executor = RecordingExecutor()
    observers: list[TableObserver] = []

    def observer_for(transport: Transport) -> TableObserver:
        name = transport.host.name
        obs = TableObserver({f"file:/etc/{name}": file_observed(None, kind="absent", mode=None)})
        observers.append(obs)
        return obs

    events: list[tuple[str, str]] = []
    engine = Engine(None, None, config.load({"state_dir": str(tmp_path)}), TransportOptions(),
                    on_event=lambda e: events.append((e.kind, e.host)),
                    transport_factory=lambda h, o: NoTransport(h, o), executor=executor,
                    observer_factory=observer_for)
    engine.catalogs = catalogs
    run = engine.run("plan", hosts)
    assert executor.ran == ["c", "b", "a"]
    assert [h.host for h in run.hosts] == ["a", "b", "c"]  # the run's order, whatever the executor's
    assert all(h.status == "changed" for h in run.hosts), [(h.status, h.error) for h in run.hosts]
    assert run.exit_code == 2
    assert len(observers) == 3 and ("done", "a") in events and ("start", "c") in events


def test_run_hosts_keeps_the_hosts_order_and_collects_failures() -> None:
    hosts = [host(n) for n in "abcd"]

    def fn(h: Host) -> str:
        if h.name == "c":
            raise RuntimeError("boom")
        return h.name.upper()

    for executor in (InlineExecutor(), ThreadExecutor(3)):
        seen: list[str] = []
        outcomes = run_hosts(hosts, fn, executor=executor, on_done=lambda o, seen=seen: seen.append(o.host.name))
        assert [o.host.name for o in outcomes] == ["a", "b", "c", "d"]
        assert [o.value for o in outcomes] == ["A", "B", None, "D"]
        assert isinstance(outcomes[2].error, RuntimeError)
        assert sorted(seen) == ["a", "b", "c", "d"]
