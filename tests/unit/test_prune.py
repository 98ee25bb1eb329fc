"""Store pruning (``Store.prune``, the store side of ``driftctl prune``) on SQLite and PostgreSQL.

Old runs go with their results and documents, and so do drift episodes closed before the cutoff; the
current truth stays whatever its age: converged state, baselines, open episodes ("since when" never
breaks), the latest run of each host, and the run where each open episode began.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from test_store import INV, T0, at, drift_of, drift_run, host, report, res, unmanaged

from driftctl.store import Store, open_store

MOTD, NGINX = "file:/etc/motd", "package:nginx"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as s:
        yield s


def count(store: Store, table: str) -> int:
    with store.database.read() as cur:
        return int(cur.scalar(f"SELECT COUNT(*) AS n FROM {table}"))


def test_old_runs_go_with_their_rows_and_the_current_truth_stays(store: Store) -> None:
    store.save_run(report("apply", 0, [host("web1", [res(MOTD, "changed"), res(NGINX, "changed")]),
                                       host("web2", [res(MOTD, "changed")])]))
    # nginx drifts at 1 and is back in sync at 2, a watched path changes at 2 and is back at 3: two
    # closed episodes; motd drifts from 3 on: open
    drift_run(store, 1, [res(MOTD), res(NGINX, drift="corrective", observed="x")])
    drift_run(store, 2, [res(MOTD), res(NGINX)], unmanaged=[unmanaged("/etc/cron.d/x")])
    begun = store.save_run(report("drift", 3, [host("web1", [res(MOTD, drift="corrective", observed="y"),
                                                              res(NGINX)], unmanaged=[])]))
    drift_run(store, 4, [res(MOTD, drift="corrective", observed="y"), res(NGINX)])
    latest = store.save_run(report("drift", 10, [host("web1", [res(MOTD, drift="corrective", observed="y"),
                                                                res(NGINX)])]))
    runs_before = {r.id for r in store.runs(INV)}
    docs_before = count(store, "run_documents")

    counted = store.prune(INV, at(5), dry_run=True)
    assert (counted.runs, counted.episodes, counted.kept_runs, counted.dry_run) == (3, 2, 2, True)
    assert {r.id for r in store.runs(INV)} == runs_before  # a dry run deletes nothing
    assert count(store, "run_documents") == docs_before

    pruned = store.prune(INV, at(5))
    # gone: the drift runs at 1, 2 and 4 (the apply at 0 is web2's latest run: it stays)
    assert (pruned.runs, pruned.documents, pruned.host_results) == (3, 3, 3)
    assert pruned.resource_results == 2  # only what had something to say: nginx at 1, motd at 4
    assert pruned.unmanaged_results == 1
    assert pruned.episodes == 2 and pruned.kept_runs == 2 and pruned.document_bytes > 0
    kept = [r for r in store.runs(INV)]
    assert {r.id for r in kept} == {latest, begun, min(runs_before)}
    assert count(store, "run_documents") == docs_before - 3
    # the current truth
    assert set(store.converged(INV, "web1")) == {MOTD, NGINX}
    assert set(store.converged(INV, "web2")) == {MOTD}
    assert drift_of(store) == {MOTD: ("corrective", at(3), 3)}  # "since when" is intact
    assert [e.subject for e in store.episodes(INV, "web1")] == [MOTD]  # the closed episodes went
    assert store.run_document(begun) is not None  # where the open drift began: history links to it
    # the next drift run still counts on from the open episode
    drift_run(store, 11, [res(MOTD, drift="corrective", observed="y"), res(NGINX)])
    assert drift_of(store) == {MOTD: ("corrective", at(3), 4)}


def test_prune_touches_one_inventory_and_keeps_recent_runs(store: Store) -> None:
    store.save_run(report("apply", 0, [host("web1", [res(MOTD, "changed")])], inventory="inventory/staging"))
    store.save_run(report("apply", 0, [host("web1", [res(MOTD, "changed")])]))
    store.save_run(report("apply", 1, [host("web1", [res(MOTD, "changed")])]))
    recent = store.save_run(report("check", 30, [host("web1", [res(MOTD)])]))
    result = store.prune(INV, T0 + timedelta(hours=24))
    assert result.runs == 2  # both applies are older than a day; the check is web1's latest
    assert [r.id for r in store.runs(INV)] == [recent]
    assert len(store.runs("inventory/staging")) == 1
    assert store.prune(INV, T0 + timedelta(hours=24)).runs == 0  # idempotent


def test_prune_then_vacuum_shrinks_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "driftctl.sqlite"
    with open_store(str(path)) as store:
        big = [res(f"file:/etc/f{i}", "changed", observed=f"state {i}" * 50) for i in range(400)]
        for h in range(20):
            store.save_run(report("apply", h, [host("web1", big), host("web2", big)]))
        wal = path.with_name(path.name + "-wal")  # a small store may sit in the write-ahead log entirely
        before = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        result = store.prune(INV, at(19))
        assert result.runs == 19 and result.document_bytes > 0
        store.vacuum()
    assert path.stat().st_size < before


def test_a_store_prune_under_a_concurrent_save_counts_both(store_url: str) -> None:
    """Pruning and saving at once (PostgreSQL: the same advisory lock; SQLite: BEGIN IMMEDIATE)."""
    import threading

    with open_store(store_url) as a, open_store(store_url) as b:
        for h in range(10):
            a.save_run(report("drift", h, [host("web1", [res(MOTD)])]))
        errors: list[BaseException] = []

        def save_more() -> None:
            try:
                for h in range(10, 30):
                    b.save_run(report("drift", h, [host("web1", [res(MOTD)])]))
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=save_more)
        t.start()
        pruned = a.prune(INV, at(9))
        t.join()
        assert not errors
        assert pruned.runs == 9
        assert len(a.runs(INV, limit=100)) == 21


def test_runs_started_in_the_same_second_keep_one_latest(store: Store) -> None:
    """Run times are whole seconds: two drift runs in the same second were both "the latest" and both
    outlived every prune (CI caught it when drift got fast enough)."""
    store.save_run(report("apply", 0, [host("web1", [res(MOTD, "changed")])]))
    store.save_run(report("drift", 1, [host("web1", [res(MOTD)])]))
    last = store.save_run(report("drift", 1, [host("web1", [res(MOTD)])]))
    result = store.prune(INV, at(5))
    assert (result.runs, result.kept_runs) == (2, 1)
    assert [r.id for r in store.runs(INV)] == [last]  # the one saved last
