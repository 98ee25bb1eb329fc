"""A run's results survive the store going away: retries on a new connection, the local spool, and
ingesting it first on the next run (driftctl/store/spool.py, runstate.py, Store.retrying).

PostgreSQL connections are cut for real with pg_terminate_backend (what a server restart does to a
client); a server that stays away is a URL whose socket directory has no server. Stopping and starting
a whole cluster mid-run is in tests/e2e/test_store_faults.py.
"""

from __future__ import annotations

import lzma
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from test_store import INV, at, fp, host, report, res

from driftctl.errors import ExitCode, StoreError
from driftctl.store import open_store, spool
from driftctl.store.db import StoreUnavailable
from driftctl.store.runstate import RunState
from driftctl.store.store import Store
from driftctl.transport.base import TransportOptions

pytestmark = pytest.mark.applies_here  # its host lock is this machine's (tests/conftest.py)

MOTD = "file:/etc/motd"


def terminate_store_sessions(url: str) -> int:
    """End every other session on the store's database, as a server restart would."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def away_url(tmp_path: Path) -> str:
    """A PostgreSQL URL with no server behind it (an empty socket directory)."""
    empty = tmp_path / "nosock"
    empty.mkdir(exist_ok=True)
    return f"postgresql://postgres@/driftctl?host={empty}&port=5999"


def drift_doc(hours: float, drifted: bool = True) -> dict[str, Any]:
    r = res(MOTD, drift="corrective", observed="hand") if drifted else res(MOTD)
    return report("drift", hours, [host("web1", [r])])


@pytest.mark.postgres
def test_a_connection_cut_between_two_writes_is_retried_invisibly(pg_url: str) -> None:
    with open_store(pg_url) as store:
        store.save_run(report("apply", 0, [host("web1", [res(MOTD, "changed")])]))
        assert terminate_store_sessions(pg_url) >= 1
        run_id = store.save_run(drift_doc(1))  # the first attempt finds the connection dead
        assert store.runs(INV)[0].id == run_id
        assert terminate_store_sessions(pg_url) >= 1
        assert store.open_drift(INV, "web1")[0].runs == 1  # reads are retried too


@pytest.mark.postgres
def test_a_retried_save_with_the_same_key_goes_in_once(pg_url: str) -> None:
    # What a connection lost during COMMIT leaves: the save went through, the client does not know.
    with open_store(pg_url) as store:
        doc = drift_doc(1)
        first = store.save_run(doc, run_key="k1")
        again = store.save_run(doc, run_key="k1")
        assert first == again
        assert len(store.runs(INV)) == 1
        assert store.open_drift(INV, "web1")[0].runs == 1  # the episode was not extended twice


def test_a_server_that_stays_away_is_a_clear_store_unavailable_error(tmp_path: Path) -> None:
    url = away_url(tmp_path)
    with pytest.raises(StoreUnavailable, match=r"cannot connect to store postgresql://postgres@/driftctl") as e:
        open_store(url)
    assert e.value.exit_code == ExitCode.NOT_STORED


@pytest.mark.postgres
def test_a_store_refusing_on_purpose_is_not_retried_as_unavailable(pg_url: str) -> None:
    base, query = pg_url.split("?", 1)
    wrong = base.rsplit("/", 1)[0] + "/no_such_database?" + query
    with pytest.raises(StoreError) as e:
        open_store(wrong)
    assert not isinstance(e.value, StoreUnavailable)
    assert "does not exist" in str(e.value)


def test_spool_files_are_private_whole_and_ingested_in_order(store_url: str, tmp_path: Path) -> None:
    state = tmp_path / "state-dir"
    with open_store(store_url) as store:
        store.save_run(report("apply", 0, [host("web1", [res(MOTD, "changed")])]))
        # two drift runs that could not be stored, spooled newest first
        second = spool.write(state, spool.Pending(drift_doc(2)))
        first = spool.write(state, spool.Pending(drift_doc(1)))
        assert stat.S_IMODE(first.stat().st_mode) == 0o600
        assert stat.S_IMODE(first.parent.stat().st_mode) == 0o700
        assert spool.pending_files(state) == [first, second]
        assert not [p for p in first.parent.iterdir() if p.name.startswith(".spool-")]  # no temporaries
        done = spool.ingest(store, state)
        assert [p for p, _ in done.stored] == [first, second] and not done.corrupt and not done.left
        assert spool.pending_files(state) == []
        [episode] = store.open_drift(INV, "web1")
        assert (episode.first_seen, episode.runs) == (at(1), 2)  # oldest first: the episode counts right


def test_a_corrupt_spool_file_is_moved_aside_and_never_blocks(store_url: str, tmp_path: Path) -> None:
    state = tmp_path / "state-dir"
    with open_store(store_url) as store:
        good = spool.write(state, spool.Pending(drift_doc(2, drifted=False)))
        bad = spool.spool_dir(state) / "000000000000001-broken.json.xz"
        bad.write_bytes(b"not xz at all")
        refused = spool.spool_dir(state) / "000000000000002-refused.json.xz"
        refused.write_bytes(lzma.compress(b'{"format": "driftctl.spool/v1", "run_key": "x", "baselines": [],'
                                          b' "report": {"schema": "something else"}}'))
        done = spool.ingest(store, state)
        assert [p for p, _ in done.stored] == [good]
        assert {p.name for p, _ in done.corrupt} == {bad.name, refused.name}
        assert all("moved to" in why for _, why in done.corrupt)
        assert sorted(p.name for p in (spool.spool_dir(state) / "corrupt").iterdir()) == sorted(
            [bad.name, refused.name])
        assert spool.pending_files(state) == []
        assert len(store.runs(INV)) == 1


def test_a_spool_file_ingested_twice_is_stored_once(store_url: str, tmp_path: Path) -> None:
    state = tmp_path / "state-dir"
    with open_store(store_url) as store:
        path = spool.write(state, spool.Pending(drift_doc(1)))
        copy = path.read_bytes()
        spool.ingest(store, state)
        path.write_bytes(copy)  # a crash between the commit and the unlink, or a second controller
        done = spool.ingest(store, state)
        assert len(done.stored) == 1 and len(store.runs(INV)) == 1


@pytest.mark.postgres
def test_a_run_keeps_its_results_when_the_store_goes_away_and_the_next_run_stores_them(
        pg_url: str, tmp_path: Path) -> None:
    state = tmp_path / "state-dir"
    with open_store(pg_url) as store:
        store.save_run(report("apply", 0, [host("web1", [res(MOTD, "changed")])]))
        view = RunState.begin(store, state, INV)
        assert view.converged(INV, "web1")[MOTD].fingerprint  # read before any host
        view.set_baseline(INV, "web1", {"/etc/cron.d": {"type": "directory", "mode": "0755"}}, by="alice")
        doc = drift_doc(1)
        view.save_run(doc)
        # the store goes away for good while the hosts are being worked on
        store.database.url = type(store.database.url)("postgresql", away_url(tmp_path))
        terminate_store_sessions(pg_url)
        saved = view.finish()
        assert saved.run_id is None and saved.spooled is not None and saved.spooled.is_file()
        assert saved.exit_bits == ExitCode.NOT_STORED
        assert isinstance(saved.error, StoreUnavailable)
        message = saved.message(store.url)
        assert message is not None and str(saved.spooled) in message and "postgresql://" in message
    with open_store(pg_url) as store:
        assert store.runs(INV, command="drift") == []  # nothing half-written
        assert store.baseline(INV, "web1") == {}
        later = RunState.begin(store, state, INV)  # the next run: the spool goes in first
        assert [run_id for _, run_id in later.ingested.stored] == [store.runs(INV, command="drift")[0].id]
        assert spool.pending_files(state) == []
        assert later.open_drift(INV, "web1")[0].first_seen == at(1)  # ...before the next run reads
        assert set(later.baseline(INV, "web1")) == {"/etc/cron.d"}  # baselines moved with their run


def test_a_run_state_serves_reads_from_memory_and_writes_once(store_url: str, tmp_path: Path) -> None:
    with open_store(store_url) as store:
        store.save_run(report("apply", 0, [host("web1", [res(MOTD, "changed")])]))
        view = RunState.begin(store, tmp_path / "state-dir", INV)
        with pytest.raises(StoreError, match="not of inventory/other"):
            view.converged("inventory/other", "web1")
        view.set_baseline(INV, "web1", {"/etc/a": {"type": "file"}}, by="alice")
        assert set(view.baseline(INV, "web1")) == {"/etc/a"}  # seen by the run at once...
        assert store.baseline(INV, "web1") == {}  # ...stored only with the run
        view.save_run(drift_doc(1))
        saved = view.finish()
        assert saved.run_id is not None and saved.exit_bits == 0 and saved.message(store.url) is None
        assert set(store.baseline(INV, "web1")) == {"/etc/a"}


def test_a_run_state_gives_each_host_the_converged_state_the_store_gives(store_url: str, tmp_path: Path) -> None:
    """The run state leaves each host's part encoded until asked (an apply never asks): what it then
    gives is exactly ``Store.converged``, for a host on one part, on a part with some resources kept
    from an earlier run, with none, and after the run that converged some of it was pruned."""
    ids = ["file:/etc/motd", "package:nginx", "service:nginx"]
    with open_store(store_url) as store:
        store.save_run(report("apply", 0, [host("web1", [res(i, "changed") for i in ids])]))
        store.save_run(report("apply", 1, [host("web2", [res(i, "changed") for i in ids])]))
        store.save_run(report("apply", 30, [host("web1", [
            res("file:/etc/motd", "changed", desired="v2"), res("package:nginx"),
            res("service:nginx", "failed", desired="v2", observed="v1", error="unit failed")])]))
        store.prune(INV, at(29))  # web2's converging run is kept (a host's latest), web1's first is not
        view = RunState.begin(store, tmp_path / "state-dir", INV)
        for name in ("web1", "web2", "web3"):
            assert view.converged(INV, name) == store.converged(INV, name)
        web1 = view.converged(INV, "web1")
        assert (web1["file:/etc/motd"].fingerprint, web1["service:nginx"].fingerprint) == (fp("v2"), fp("v1"))
        assert web1["service:nginx"].run_id is None and web1["file:/etc/motd"].run_id is not None


def test_a_converged_state_that_cannot_be_read_stops_its_reader_and_spools_the_apply(
        tmp_path: Path) -> None:
    """A damaged part (its xz check fails): the run still begins (nothing asks for it before hosts
    are worked on), a drift run asking for the host gets a StoreError naming it, and an apply of it
    keeps its results in the spool with that reason instead of failing after the hosts changed."""
    state = tmp_path / "state-dir"
    with open_store(str(tmp_path / "state" / "driftctl.sqlite")) as store:
        store.save_run(report("apply", 0, [host("web1", [res(MOTD, "changed")]),
                                           host("web2", [res(MOTD, "changed", desired="v3")])]))
        with store.database.transaction() as cur:
            part = cur.scalar("SELECT part FROM converged_hosts WHERE host = 'web1'")
            body = bytes(cur.scalar("SELECT body FROM document_parts WHERE hash = ?", (part,)))
            damaged = body[:20] + bytes(b ^ 0xFF for b in body[20:28]) + body[28:]
            cur.execute("UPDATE document_parts SET body = ? WHERE hash = ?", (damaged, part))
        view = RunState.begin(store, state, INV)
        assert view.converged(INV, "web2")[MOTD].fingerprint == fp("v3")
        with pytest.raises(StoreError, match="converged state of web1 cannot be read"):
            view.converged(INV, "web1")
        view.save_run(report("apply", 1, [host("web1", [res(MOTD, "changed", desired="v2")])]))
        saved = view.finish()
        assert saved.spooled is not None and "converged state of web1 cannot be read" in str(saved.error)
        assert [r.command for r in store.runs(INV)] == ["apply"]  # nothing half-written
        # the drift run that found web1 failed (its reader's error) is stored: its new part goes in whole
        failed = host("web1", [res(MOTD, "failed", error="the converged state of web1 cannot be read")])
        store.save_run(report("drift", 2, [failed, host("web2", [res(MOTD, desired="v3")])]))
        assert [r.command for r in store.runs(INV)] == ["drift", "apply"]


@pytest.mark.postgres
def test_concurrent_savers_with_connections_cut_lose_nothing(pg_url: str) -> None:
    with open_store(pg_url) as a, open_store(pg_url) as b:
        errors: list[BaseException] = []

        def save(store: Store, start: int) -> None:
            try:
                for h in range(start, start + 10):
                    store.save_run(report("check", h, [host("web1", [res(MOTD)])]), run_key=f"run-{h}")
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=save, args=(s, n)) for s, n in ((a, 0), (b, 100))]
        for t in threads:
            t.start()
        for _ in range(3):
            terminate_store_sessions(pg_url)
        for t in threads:
            t.join()
        assert not errors
        assert len(a.runs(INV, limit=100)) == 20


def test_an_apply_through_a_run_state_stores_its_run_and_baselines_together(tmp_path: Path) -> None:
    """record_run (driftctl/drift/run.py) given a RunState, as the apply command hands it one: the report
    and the watch baselines it moves go in with one transaction at finish(), not before."""
    from driftctl import config
    from driftctl.drift import record_run
    from driftctl.engine import Engine
    from driftctl.inventory import load_inventory
    from driftctl.manifest import load_site

    target, watched = tmp_path / "target", tmp_path / "watched"
    target.mkdir()
    watched.mkdir()
    (watched / "seen").write_text("x\n")
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n    ctl:\n      driftctl_transport: local\n")
    site = tmp_path / "manifests"
    (site / "roles" / "r").mkdir(parents=True)
    (site / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (site / "roles" / "r" / "resources.yaml").write_text(
        f"watch:\n  - {watched}\nresources:\n  - file: {target}/motd\n    content: \"hi\\n\"\n    backup: false\n")
    settings = config.load({"state_dir": str(tmp_path / "state")})
    inventory = load_inventory(inv)
    engine = Engine(load_site(site), inventory, settings, TransportOptions())
    with open_store(settings.store_url) as store:
        view = RunState.begin(store, settings.state_dir, str(inv))
        run = engine.run("apply", inventory.select(None))
        assert run.exit_code == 2, run.hosts[0].error
        record_run(settings, run, inv, store=view, argv=["apply", str(inv)])
        assert store.runs(str(inv)) == [] and store.baseline(str(inv), "ctl") == {}  # nothing yet
        saved = view.finish()
        [stored] = store.runs(str(inv))
        assert saved.run_id == stored.id and stored.command == "apply"
        assert str(watched / "seen") in store.baseline(str(inv), "ctl")
        assert f"file:{target}/motd" in store.converged(str(inv), "ctl")


def test_any_failure_to_write_the_run_spools_it_but_a_bad_document_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "state" / "driftctl.sqlite"
    state = tmp_path / "state-dir"
    with open_store(str(path)) as store:
        view = RunState.begin(store, state, INV)
        view.save_run(drift_doc(1))
        # SQLite refusing the write for real (as a full disk would), not a server away
        with store.database.transaction() as cur:
            cur.execute("CREATE TRIGGER refuse BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'no room'); END")
        saved = view.finish()
        assert saved.spooled is not None and "no room" in str(saved.error)
        with store.database.transaction() as cur:
            cur.execute("DROP TRIGGER refuse")
        later = RunState.begin(store, state, INV)
        assert len(later.ingested.stored) == 1 and len(store.runs(INV)) == 1

        broken = RunState.begin(store, state, INV)
        broken.save_run({**drift_doc(2), "command": "dance"})
        with pytest.raises(StoreError, match="command must be one of"):
            broken.finish()
        assert spool.pending_files(state) == []  # a bug is said at once, not kept to fail again later
