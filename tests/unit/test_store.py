"""The store on both backends: report documents in, answers out (runs, converged state, drift episodes,
history, series). Documents are validated against the published JSON Schema before they are saved."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest

from driftctl.errors import StoreError
from driftctl.store import SCHEMA_ID, Store, json_schema, open_store

INV = "inventory/prod"
T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
VALIDATOR = jsonschema.Draft202012Validator(json_schema(), format_checker=jsonschema.FormatChecker())


def fp(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def stamp(hours: float) -> str:
    return at(hours).isoformat().replace("+00:00", "Z")


def res(
    rid: str,
    status: str = "ok",
    drift: str | None = None,
    changes: tuple[tuple[str, Any, Any], ...] = (),
    desired: str = "v1",
    observed: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """One resource result; ``desired``/``observed`` name states, fingerprinted like the engine does."""
    observed = desired if observed is None else observed
    return {
        "id": rid, "type": rid.split(":", 1)[0], "status": status, "drift": drift,
        "changes": [{"field": f, "before": b, "after": a, "diff": None} for f, b, a in changes],
        "reason": "in sync" if status == "ok" and not drift else None, "error": error,
        "source": "manifests/roles/base/resources.yaml:7",
        "desired_fingerprint": fp(desired), "observed_fingerprint": fp(observed), "converged_fingerprint": None,
        "observed": {"state": observed},
    }


def host(name: str, resources: list[dict[str, Any]], status: str | None = None,
         unmanaged: list[dict[str, Any]] | None = None, error: str | None = None) -> dict[str, Any]:
    if status is None:
        statuses = {r["status"] for r in resources}
        status = ("failed" if "failed" in statuses else "changed" if "changed" in statuses
                  else "drifted" if any(r["drift"] for r in resources) or unmanaged else "ok")
    doc: dict[str, Any] = {"name": name, "status": status, "error": error, "fingerprint": fp(name),
                           "duration": 0.4, "round_trips": 1, "resources": resources}
    if unmanaged is not None:
        doc["unmanaged"] = unmanaged
    return doc


def unmanaged(path: str, change: str = "added", mode: str = "0644") -> dict[str, Any]:
    after = {"type": "file", "sha256": fp(path), "mode": mode, "owner": "root", "group": "root", "size": 10}
    return {"path": path, "change": change, "before": None if change == "added" else {**after, "mode": "0600"},
            "after": None if change == "removed" else after}


def report(command: str, hours: float, hosts: list[dict[str, Any]], inventory: str = INV) -> dict[str, Any]:
    count = {s: sum(h["status"] == s for h in hosts) for s in ("ok", "changed", "drifted", "failed", "unreachable")}
    doc = {
        "schema": SCHEMA_ID, "command": command, "inventory": inventory,
        "started": stamp(hours), "finished": stamp(hours + 0.01), "driftctl_version": "0.1.0",
        "exit_code": 2 if count["changed"] or count["drifted"] else 0,
        "user": "alice", "controller": "ctl1", "argv": ["driftctl", command, inventory],
        "summary": {
            "hosts": len(hosts), **count,
            "resources_changed": sum(r["status"] == "changed" for h in hosts for r in h["resources"]),
            "resources_drifted": sum(bool(r["drift"]) for h in hosts for r in h["resources"]),
        },
        "hosts": hosts,
    }
    VALIDATOR.validate(doc)
    return doc


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as s:
        yield s


def drift_of(store: Store, host_name: str = "web1") -> dict[str, tuple[str, datetime, int]]:
    return {e.subject: (e.drift_class, e.first_seen, e.runs) for e in store.open_drift(INV, host_name)}


# -- runs and documents ----------------------------------------------------------------------------


def test_run_round_trip(store: Store) -> None:
    doc = report("apply", 0, [host("web1", [res("file:/etc/motd", "changed", changes=(("mode", "0600", "0644"),))]),
                              host("db1", [], status="unreachable", error="connection refused")])
    sent = copy.deepcopy(doc)
    run_id = store.save_run(doc)
    assert doc == sent  # nothing to fill on an apply
    [run] = store.runs(INV)
    assert (run.id, run.command, run.inventory, run.started, run.exit_code) == (run_id, "apply", INV, at(0), 2)
    assert (run.user, run.controller, run.driftctl_version) == ("alice", "ctl1", "0.1.0")
    assert run.argv == ["driftctl", "apply", INV] and run.summary["unreachable"] == 1
    assert store.latest_run(INV) == sent
    assert store.run_document(run_id) == sent
    assert store.latest_run("inventory/staging") is None


def test_runs_newest_first_and_latest_by_command(store: Store) -> None:
    ids = [store.save_run(report(cmd, h, [host("web1", [res("file:/etc/motd")])]))
           for h, cmd in enumerate(["apply", "drift", "check", "drift"])]
    assert [r.id for r in store.runs(INV)] == ids[::-1]
    assert [r.id for r in store.runs(INV, limit=2)] == ids[:1:-1]
    assert [r.id for r in store.runs(INV, command="drift")] == [ids[3], ids[1]]
    latest_apply = store.latest_run(INV, command="apply")
    assert latest_apply is not None and latest_apply["started"] == stamp(0)


def test_inventory_names_are_normalised(store: Store) -> None:
    store.save_run(report("apply", 0, [host("web1", [res("file:/etc/motd")])], inventory="./inventory/prod/"))
    assert len(store.runs("inventory/prod")) == 1
    assert set(store.converged("inventory//prod", "web1")) == {"file:/etc/motd"}


def test_a_broken_document_is_refused_and_nothing_is_stored(store: Store) -> None:
    good = report("drift", 0, [host("web1", [res("file:/etc/motd", drift="corrective", observed="v2")])])
    for breakage, schema_sees_it in (
        (lambda d: d.update(schema="driftctl.report/v0"), True),
        (lambda d: d.update(command="destroy"), True),
        (lambda d: d["hosts"][0]["resources"][0].update(status="exploded"), True),
        (lambda d: d["hosts"][0]["resources"][0].update(drift="sideways"), True),
        (lambda d: d.update(started="yesterday"), True),
        # JSON Schema cannot say "names are unique within the list": only the store's check can.
        (lambda d: d["hosts"].append(copy.deepcopy(d["hosts"][0])), False),
        (lambda d: d["hosts"][0]["resources"].append(copy.deepcopy(d["hosts"][0]["resources"][0])), False),
    ):
        bad = copy.deepcopy(good)
        breakage(bad)
        with pytest.raises(StoreError, match="report"):
            store.save_run(bad)
        assert VALIDATOR.is_valid(bad) is not schema_sees_it
    assert store.runs(INV) == [] and store.open_drift(INV) == []


# -- converged state -------------------------------------------------------------------------------


def test_converged_state_is_replaced_only_by_successful_applies(store: Store, tmp_path: Any) -> None:
    ids = ["file:/etc/motd", "package:nginx", "service:nginx", "user:deploy"]
    first = store.save_run(report("apply", 0, [host("web1", [res(i, "changed", desired="v1") for i in ids])]))
    before = store.converged(INV, "web1")
    assert set(before) == set(ids)
    assert {c.fingerprint for c in before.values()} == {fp("v1")}
    assert before["file:/etc/motd"].run_id == first and before["file:/etc/motd"].converged_at == at(0)
    assert before["file:/etc/motd"].observed == {"state": "v1"}

    # changed -> replaced; in sync (ok) -> replaced (confirmed); failed and skipped -> kept.
    second = store.save_run(report("apply", 1, [host("web1", [
        res("file:/etc/motd", "changed", desired="v2"),
        res("package:nginx", "ok", desired="v1"),
        res("service:nginx", "failed", desired="v2", observed="v1", error="unit nginx.service failed"),
        res("user:deploy", "skipped", desired="v2", observed="v1"),
    ])]))
    after = store.converged(INV, "web1")
    assert (after["file:/etc/motd"].fingerprint, after["file:/etc/motd"].run_id) == (fp("v2"), second)
    assert (after["package:nginx"].run_id, after["package:nginx"].converged_at) == (second, at(1))
    assert after["service:nginx"] == before["service:nginx"]
    assert after["user:deploy"] == before["user:deploy"]

    # Observing other states (drift, check, plan) and an unreachable apply change nothing.
    for cmd, h in (("drift", 2), ("check", 3), ("plan", 4)):
        store.save_run(report(cmd, h, [host("web1", [res(i, drift="corrective", desired="v2", observed="v9")
                                                      for i in ids])]))
    store.save_run(report("apply", 5, [host("web1", [], status="unreachable", error="timed out")]))
    assert store.converged(INV, "web1") == after
    fingerprints_agree(store, "web1", tmp_path)
    assert store.converged(INV, "web2") == {}


def test_the_converged_fingerprint_is_what_the_apply_observed(store: Store) -> None:
    # The host as apply left it (re-observed) is the reference for corrective drift, even where it
    # differs from the manifest's desired fingerprint (a field the agent normalises, say).
    store.save_run(report("apply", 0, [host("web1", [res("file:/etc/motd", "changed", desired="v1",
                                                          observed="v1-as-seen")])]))
    state = store.converged(INV, "web1")["file:/etc/motd"]
    assert (state.fingerprint, state.desired_fingerprint) == (fp("v1-as-seen"), fp("v1"))


def fingerprints_agree(store: Store, name: str, state_dir: Any) -> None:
    """What a drift run compares with (``converged_fingerprints``, read without the observed values) is
    the fingerprints of ``converged``, from the store and from a run's view of it."""
    from driftctl.store.runstate import RunState

    want = {r: s.fingerprint for r, s in store.converged(INV, name).items() if s.fingerprint}
    assert store.converged_fingerprints(INV, name) == want
    view = RunState.begin(store, state_dir, INV)
    assert view.converged_fingerprints(INV, name) == want
    view.converged(INV, name)  # decoded in full: the same answer from that
    assert view.converged_fingerprints(INV, name) == want


def test_an_apply_that_converged_every_resource_stores_its_part_as_the_general_write_would(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The short way (converged.covered_by + write_part: by ids and times, no state computed) against
    the general one (write, forced) over the same runs: rows and answers identical, and the short way
    taken for the applies that converged all of a host and refused for the others."""
    from driftctl.store import converged

    ids = ["file:/etc/motd", "package:nginx", "service:nginx"]
    runs = [
        report("apply", 0, [host("web1", [res(i, "changed") for i in ids]), host("web2", [res(ids[0], "changed")])]),
        report("apply", 1, [host("web1", [res(i) for i in ids])]),  # no-op: the same part (short)
        report("apply", 2, [host("web1", [res(ids[0], "changed", desired="v2"), res(ids[1]),
                                          res(ids[2], "failed", desired="v2", error="unit failed")])]),  # general
        # general too: few states differ from the previous part, so they are stored inline beside it
        report("apply", 3, [host("web1", [res(ids[0], desired="v2"), res(ids[1]), res(ids[2], "changed",
                                                                                    desired="v2")])]),
        report("apply", 4, [host("web1", [res(ids[0], desired="v2"), res(ids[1])])]),  # one left the catalog
        report("apply", 5, [host("web1", [res(i, desired="v3", observed="v3") for i in ids])]),  # short
        report("apply", 4.5, [host("web1", [res(i, desired="v3", observed="v3") for i in ids])]),  # older: general
        report("drift", 6, [host("web1", [res(ids[0], "changed", desired="v4", drift="corrective"),
                                          res(ids[1], desired="v3"), res(ids[2], desired="v3")])]),  # remediated
        report("apply", 7, [host("web2", [res(ids[0], "changed"), res(ids[1], "changed")])]),  # a new resource
        report("apply", 8, [host("web2", [res(ids[1])])]),  # one left the catalog: its part says so (general)
        # a resource that failed on its first apply: in the part, never converged (skipped, no state)
        report("apply", 9, [host("web3", [res(ids[0], "changed"), res(ids[1], "failed", desired="v2",
                                                                      observed="v0", error="exit 1")])]),
        # not re-observed after its change: its converged fingerprint is the desired one (general: its
        # part is stored beside the previous one, not as a part of its own; short: the first on web4)
        report("apply", 10, [host("web3", [res(ids[0]), {**res(ids[1], "changed", desired="v2"),
                                                         "observed_fingerprint": None}])]),
        report("apply", 11, [host("web4", [res(ids[0], "changed"), {**res(ids[1], "changed"),
                                                                    "observed_fingerprint": None}])]),
    ]
    short: list[str] = []
    write_part = converged.write_part

    def counted(cur: Any, inventory: str, name: str, base: Any) -> None:
        short.append(f"{name}@{(base.at - T0.timestamp()) / 3600:g}")
        write_part(cur, inventory, name, base)

    def rows(store: Store) -> list[tuple[str, str | None, dict[str, Any]]]:
        with store.database.read() as cur:
            return [(r["host"], r["part"], converged._decode(r["encoding"], r["body"]))
                    for r in cur.all("SELECT * FROM converged_hosts ORDER BY host")]

    with open_store(str(tmp_path / "a.sqlite")) as a, open_store(str(tmp_path / "b.sqlite")) as b:
        seen_a, seen_b = [], []
        for doc in runs:
            monkeypatch.setattr(converged, "write_part", counted)
            a.save_run(copy.deepcopy(doc))
            seen_a.append(rows(a))
            monkeypatch.setattr(converged, "covered_by", lambda *args: False)
            b.save_run(copy.deepcopy(doc))
            seen_b.append(rows(b))
            monkeypatch.undo()
            for name in ("web1", "web2", "web3", "web4"):
                fingerprints_agree(a, name, tmp_path / "spool")
        assert seen_a == seen_b
        for name in ("web1", "web2", "web3", "web4"):
            assert a.converged(INV, name) == b.converged(INV, name)
        assert set(a.converged(INV, "web3")) == {ids[0], ids[1]}
    assert short == ["web1@0", "web2@0", "web1@1", "web1@5", "web2@7", "web4@11"]


# -- drift episodes --------------------------------------------------------------------------------


def drift_run(store: Store, hours: float, resources: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    doc = report("drift", hours, [host("web1", resources, **kw)])
    store.save_run(doc)
    VALIDATOR.validate(doc)  # still valid with since/runs filled in
    return doc


def test_drift_episode_opens_extends_and_closes(store: Store) -> None:
    motd, nginx = "file:/etc/motd", "package:nginx"
    d1 = drift_run(store, 0, [res(motd, drift="corrective", observed="hand-edit",
                                  changes=(("content", "a", "b"),)), res(nginx)])
    assert (d1["hosts"][0]["resources"][0]["since"], d1["hosts"][0]["resources"][0]["runs"]) == (stamp(0), 1)
    assert "since" not in d1["hosts"][0]["resources"][1]  # in sync: nothing to say
    assert drift_of(store) == {motd: ("corrective", at(0), 1)}

    d2 = drift_run(store, 1, [res(motd, drift="corrective", observed="hand-edit"), res(nginx)])
    assert (d2["hosts"][0]["resources"][0]["since"], d2["hosts"][0]["resources"][0]["runs"]) == (stamp(0), 2)
    [ep] = store.open_drift(INV, "web1")
    assert (ep.last_seen, ep.fields) == (at(1), ["content"])

    drift_run(store, 2, [res(motd), res(nginx)])
    assert store.open_drift(INV) == []
    [closed] = store.episodes(INV, "web1", motd)
    assert (closed.first_seen, closed.last_seen, closed.closed, closed.runs, closed.close_reason) == (
        at(0), at(1), at(2), 2, "in sync")

    # It comes back: a new episode, counted from the new first sighting.
    d4 = drift_run(store, 3, [res(motd, drift="corrective", observed="again"), res(nginx)])
    assert d4["hosts"][0]["resources"][0]["since"] == stamp(3)
    assert drift_of(store) == {motd: ("corrective", at(3), 1)}
    assert len(store.episodes(INV, "web1", motd)) == 2
    assert store.latest_run(INV) == d4  # the stored copy has since/runs too


def test_a_changing_class_continues_the_episode(store: Store) -> None:
    motd = "file:/etc/motd"
    drift_run(store, 0, [res(motd, drift="pending", desired="v2", observed="v1")])
    drift_run(store, 1, [res(motd, drift="both", desired="v2", observed="hand")])
    assert drift_of(store) == {motd: ("both", at(0), 2)}


def test_unknown_outcomes_neither_extend_nor_close(store: Store) -> None:
    motd = "file:/etc/motd"
    drift_run(store, 0, [res(motd, drift="corrective", observed="x")])
    drift_run(store, 1, [], status="unreachable", error="no route to host")
    drift_run(store, 2, [res(motd, "failed", error="permission denied")])
    drift_run(store, 3, [res(motd, "skipped")])
    assert drift_of(store) == {motd: ("corrective", at(0), 1)}
    drift_run(store, 4, [res(motd, drift="corrective", observed="x")])
    assert drift_of(store) == {motd: ("corrective", at(0), 2)}


def test_a_resource_gone_from_the_catalog_closes_its_episode_unless_partial(store: Store) -> None:
    motd, nginx = "file:/etc/motd", "package:nginx"
    drift_run(store, 0, [res(motd, drift="corrective", observed="x"), res(nginx, drift="pending", observed="y")])
    partial = report("drift", 1, [host("web1", [res(motd, drift="corrective", observed="x")])])
    partial["partial"] = True
    store.save_run(partial)
    assert drift_of(store) == {motd: ("corrective", at(0), 2), nginx: ("pending", at(0), 1)}
    drift_run(store, 2, [res(motd, drift="corrective", observed="x")])
    assert drift_of(store) == {motd: ("corrective", at(0), 3)}
    [gone] = store.episodes(INV, "web1", nginx)
    assert gone.close_reason == "no longer in the catalog"


def test_an_apply_resolves_the_drift_it_corrects(store: Store) -> None:
    motd, nginx = "file:/etc/motd", "package:nginx"
    drift_run(store, 0, [res(motd, drift="corrective", observed="x"), res(nginx, drift="corrective", observed="y")])
    store.save_run(report("apply", 1, [host("web1", [
        res(motd, "changed"), res(nginx, "failed", observed="y", error="dpkg lock")])]))
    assert drift_of(store) == {nginx: ("corrective", at(0), 1)}
    [fixed] = store.episodes(INV, "web1", motd)
    assert (fixed.closed, fixed.close_reason) == (at(1), "applied")


def test_unmanaged_paths_have_episodes_too(store: Store) -> None:
    sudo, key = "/etc/sudoers.d/backdoor", "/root/.ssh/authorized_keys"
    d1 = drift_run(store, 0, [res("file:/etc/motd")], unmanaged=[unmanaged(sudo), unmanaged(key, "changed")])
    assert [(u["since"], u["runs"]) for u in d1["hosts"][0]["unmanaged"]] == [(stamp(0), 1), (stamp(0), 1)]
    eps = {e.subject: e for e in store.open_drift(INV, "web1")}
    assert (eps[sudo].kind, eps[sudo].drift_class, eps[sudo].fields) == ("path", "unmanaged", ["added"])
    assert eps[key].fields == ["changed", "mode"]
    drift_run(store, 1, [res("file:/etc/motd")], unmanaged=[unmanaged(sudo)])
    drift_run(store, 2, [res("file:/etc/motd")])  # watch paths not examined this time
    drift_run(store, 2.5, [], status="failed", error="agent crashed", unmanaged=[])  # nothing known
    assert drift_of(store) == {sudo: ("unmanaged", at(0), 2)}
    assert store.drift_since(INV, "web1")[sudo].runs == 2
    drift_run(store, 3, [res("file:/etc/motd")], unmanaged=[])
    assert drift_of(store) == {}
    assert {e.close_reason for e in store.episodes(INV, "web1")} == {"back to the baseline"}


def test_hosts_and_inventories_are_kept_apart(store: Store) -> None:
    motd = "file:/etc/motd"
    store.save_run(report("drift", 0, [host("web1", [res(motd, drift="corrective", observed="x")]),
                                       host("web2", [res(motd)])]))
    store.save_run(report("drift", 0, [host("web1", [res(motd)])], inventory="inventory/staging"))
    store.save_run(report("drift", 1, [host("web2", [res(motd, drift="pending", observed="y")])]))
    assert {(e.host, e.subject, e.runs) for e in store.open_drift(INV)} == {("web1", motd, 1), ("web2", motd, 1)}
    assert store.open_drift("inventory/staging") == []


# -- history and series ----------------------------------------------------------------------------


def test_history_is_a_timeline_of_applies_drift_and_failures(store: Store) -> None:
    motd, nginx = "file:/etc/motd", "service:nginx"
    store.save_run(report("apply", 0, [host("web1", [res(motd, "changed", changes=(("mode", "0600", "0644"),)),
                                                     res(nginx, "failed", error="unit failed")]),
                                       host("db1", [], status="unreachable", error="connection refused")]))
    drift_run(store, 1, [res(motd, drift="corrective", observed="x", changes=(("content", "a", "b"),)), res(nginx)])
    drift_run(store, 2, [res(motd, drift="corrective", observed="x"), res(nginx)])
    store.save_run(report("apply", 3, [host("web1", [res(motd, "changed", changes=(("content", "b", "a"),)),
                                                     res(nginx)])]))

    events = store.history(INV)
    assert [(e.time, e.kind, e.host, e.subject) for e in events] == [
        (at(0), "unreachable", "db1", None),
        (at(0), "applied", "web1", motd),
        (at(0), "failed", "web1", nginx),
        (at(1), "drift-found", "web1", motd),
        (at(3), "applied", "web1", motd),
        (at(3), "drift-resolved", "web1", motd),
    ]
    assert events[1].detail == "applied: mode" and events[1].fields == ["mode"]
    assert "unit failed" in events[2].detail
    assert events[3].detail == "corrective drift: content" and events[3].drift_class == "corrective"
    assert events[5].detail == "resolved (applied) after 2 drift runs"
    assert all(e.inventory == INV for e in events)

    assert {e.host for e in store.history(INV, host="web1")} == {"web1"}
    assert [e.kind for e in store.history(INV, resource=nginx)] == ["failed"]
    assert [e.time for e in store.history(INV, since=at(1))] == [at(1), at(3), at(3)]
    assert [e.kind for e in store.history(INV, limit=2)] == ["applied", "drift-resolved"]  # the latest two
    assert store.history("inventory/staging") == []
    assert events[3].to_json()["time"] == stamp(1)


def test_drift_series_counts_per_run_host_and_class(store: Store) -> None:
    store.save_run(report("drift", 0, [
        host("web1", [res("file:/a", drift="corrective", observed="x"), res("file:/b", drift="corrective",
                                                                           observed="x"),
                      res("file:/c", drift="pending", observed="x")], unmanaged=[unmanaged("/etc/cron.d/x")]),
        host("web2", [res("file:/a")]),
    ]))
    store.save_run(report("apply", 1, [host("web1", [res("file:/a", "changed")])]))
    second = report("drift", 2, [host("web1", [res("file:/a", drift="both", observed="y")])])
    store.save_run(second)
    series = [(p.time, p.host, p.drift_class, p.count) for p in store.drift_series(INV)]
    assert series == [
        (at(0), "web1", "corrective", 2), (at(0), "web1", "pending", 1), (at(0), "web1", "unmanaged", 1),
        (at(2), "web1", "both", 1),
    ]
    assert [(p.time, p.count) for p in store.drift_series(INV, since=at(1))] == [(at(2), 1)]


def test_remediation_converges_and_closes_what_it_fixed(store: Store) -> None:
    motd, nginx = "file:/etc/motd", "package:nginx"
    store.save_run(report("apply", 0, [host("web1", [res(motd, "changed"), res(nginx, "changed")])]))
    drift_run(store, 1, [res(motd, drift="corrective", observed="hand"), res(nginx, drift="corrective", observed="x")])
    # drift --remediate: motd changed back (observed again after the fix), nginx could not be.
    doc = drift_run(store, 2, [
        res(motd, "changed", drift="corrective", desired="v1", observed="v1"),
        res(nginx, "failed", drift="corrective", observed="x", error="dpkg lock"),
    ])
    assert doc["hosts"][0]["resources"][0]["runs"] == 2  # it was seen in this run too
    [fixed] = store.episodes(INV, "web1", motd)
    assert (fixed.runs, fixed.closed, fixed.close_reason) == (2, at(2), "remediated")
    assert store.converged(INV, "web1")[motd].converged_at == at(2)
    assert store.converged(INV, "web1")[nginx].converged_at == at(0)
    assert drift_of(store) == {nginx: ("corrective", at(1), 1)}


def test_ignored_drift_keeps_its_episode_but_leaves_the_charts(store: Store) -> None:
    motd = "file:/etc/motd"
    ignored = res(motd, drift="corrective", observed="x")
    ignored["ignored"] = "motd owned by the login team (until 2026-12-01)"
    cron = unmanaged("/etc/cron.d/agent")
    cron["ignored"] = "vendor agent (until 2026-12-01)"
    drift_run(store, 0, [ignored, res("file:/etc/issue", drift="pending", observed="y")], unmanaged=[cron])
    assert set(drift_of(store)) == {motd, "file:/etc/issue", "/etc/cron.d/agent"}
    assert [(p.drift_class, p.count) for p in store.drift_series(INV)] == [("pending", 1)]


def test_the_engines_document_validates_and_round_trips(store: Store) -> None:
    """The contract between driftctl.document (the producer) and the schema and store."""
    from driftctl.errors import Location
    from driftctl.model import Change, HostResult, ResourceResult, RunResult, UnmanagedChange
    from driftctl.report.document import build

    motd = ResourceResult(
        "file:/etc/motd", "ok", changes=[Change("content", "a\n", "b\n", "--- a\n+++ b\n")], reason="corrective drift",
        source=Location("manifests/site.yaml", 4), type="file", drift="corrective", desired_fingerprint=fp("a"),
        observed_fingerprint=fp("b"), converged_fingerprint=fp("a"), observed={"mode": "0644", "owner": "root"},
    )
    nginx = ResourceResult("package:nginx", "ok", reason="in sync", type="package", desired_fingerprint=fp("n"),
                           observed_fingerprint=fp("n"), converged_fingerprint=fp("n"), observed={"version": "1.22"})
    added = UnmanagedChange("/etc/sudoers.d/x", "added", None,
                            {"type": "file", "mode": "0440", "owner": "root", "group": "root", "size": 20,
                             "sha256": fp("x")})
    run = RunResult("drift", [
        HostResult("web1", "ok", [motd, nginx], facts={"os": "debian"}, round_trips=1, duration=0.52,
                   fingerprint=fp("web1"), catalog_digest=fp("cat"), unmanaged=[added], unmanaged_examined=True),
        HostResult("db1", "unreachable", error="connection refused"),
    ], started=at(0).timestamp(), finished=at(0.01).timestamp())
    doc = build(run, INV, ["driftctl", "drift", INV])
    VALIDATOR.validate(doc)
    store.save_run(doc)
    VALIDATOR.validate(doc)
    assert store.latest_run(INV) == doc
    web1 = doc["hosts"][0]
    assert (web1["resources"][0]["since"], web1["resources"][0]["runs"]) == (stamp(0), 1)
    assert (web1["unmanaged"][0]["since"], web1["unmanaged"][0]["runs"]) == (stamp(0), 1)
    assert {e.subject for e in store.open_drift(INV)} == {"file:/etc/motd", "/etc/sudoers.d/x"}
