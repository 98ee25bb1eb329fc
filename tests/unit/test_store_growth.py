"""What a run adds to the store (issue 10: a 40-host drift with nothing drifted <= 50 KB, a first converge
<= 1 MB), counted in bytes of stored values on both backends, and stores of older schemas upgraded.

Documents have the bench's shape (bench/workload.py): per host 100 files and 20 other resources, each
with its source line, three 64-hex fingerprints and its observed values (a content sha256 for files).
"""

from __future__ import annotations

import copy
import hashlib
import json
import lzma
from datetime import UTC, datetime, timedelta
from typing import Any

from driftctl.store import SCHEMA_ID, Store, open_store
from driftctl.store import migrations as store_migrations
from driftctl.store.db import connect

INV = "inventory/prod"
T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
HOSTS = 4
TABLES = ("runs", "run_documents", "host_results", "resource_results", "unmanaged_results", "converged",
          "drift_episodes", "baseline", "ignores", "document_parts", "converged_hosts")


def fp(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stamp(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def resource(host: str, i: int, command: str, version: int = 1) -> dict[str, Any]:
    """Resource ``i`` of ``host`` as ``command`` reports it on a converged host (first apply: created)."""
    if i < 100:
        rid, content = f"file:/srv/bench/d{i // 10}/f{i}.conf", fp(f"{host} {i} v{version}")
        observed: dict[str, Any] = {"ensure": "file", "content_sha256": content, "owner": "root", "mode": "0644"}
    else:
        rid, observed = f"directory:/srv/bench/d{i}", {"ensure": "directory", "mode": "0755"}
    desired = fp(rid + json.dumps(observed, sort_keys=True))
    first = command == "first"
    return {
        "id": rid, "type": rid.split(":", 1)[0], "status": "changed" if first else "ok", "drift": None,
        "since": None, "runs": None, "ignored": None,
        "changes": [{"field": f, "before": None, "after": v, "diff": None} for f, v in observed.items()] if first
        else [],
        "reason": "" if first else "in sync", "error": None,
        "source": f"/home/ops/infra/manifests/roles/bench/resources.yaml:{16 + i}",
        "desired_fingerprint": desired, "observed_fingerprint": desired,
        "converged_fingerprint": desired if command == "drift" else None,
        "observed": observed,
    }


def report(command: str, hours: float, version: int = 1, hosts: int = HOSTS) -> dict[str, Any]:
    """A whole run: ``first`` (the first apply), ``apply`` (nothing to do) or ``drift`` (nothing drifted)."""
    docs = []
    for n in range(hosts):
        name = f"web{n}.prod.example.com"
        docs.append({
            "name": name, "status": "changed" if command == "first" else "ok", "error": None, "locked": False,
            "interrupted": None, "fingerprint": fp(f"{name} root v{version}"), "catalog_digest": fp(f"catalog {n}"),
            "duration": 0.41 + hours / 100, "round_trips": 1,
            "facts": {"os": "linux", "distribution": "debian", "distribution_version": "12", "hostname": name,
                      "kernel": "6.1.0-27-amd64", "architecture": "x86_64", "python": "3.11.2", "cpus": 2},
            "resources": [resource(name, i, command, version) for i in range(120)],
            "unmanaged": [] if command == "drift" else None,
        })
    return {
        "schema": SCHEMA_ID, "command": "apply" if command == "first" else command, "inventory": INV,
        "started": stamp(hours), "finished": stamp(hours + 0.001), "driftctl_version": "0.1.0",
        "controller": "ctl1", "user": "alice", "argv": ["driftctl", command, INV],
        "exit_code": 2 if command == "first" else 0,
        "summary": {"hosts": hosts, "resources": 120 * hosts}, "hosts": docs,
    }


def test_the_document_is_encoded_a_host_at_a_time_to_the_text_of_the_whole() -> None:
    """encode_document streams a host at a time; what it compresses is exactly json.dumps of the whole
    (split) document, with non-ASCII text escaped as before."""
    from driftctl.store.ingest import encode_document, split_document

    doc = report("first", 1, hosts=3)
    doc["hosts"][1]["error"] = "ünïcödé \u2603 and a \"quote\""
    doc["hosts"][2]["resources"][0]["changes"][0]["after"] = "line1\nline2\ttab"
    whole = json.dumps(doc, separators=(",", ":"))
    assert lzma.decompress(encode_document(copy.deepcopy(doc))).decode("utf-8") == whole
    part_of = {h["name"]: (fp(h["name"]), {}) for h in doc["hosts"][:2]}  # the third host stays whole
    split = json.dumps(split_document(copy.deepcopy(doc), part_of), separators=(",", ":"))
    assert lzma.decompress(encode_document(doc, part_of)).decode("utf-8") == split
    assert '"_parts"' in split and doc["hosts"][2]["name"] in split
    assert lzma.decompress(encode_document({"hosts": []})) == b'{"hosts":[]}'


def stored_bytes(store: Store) -> int:
    """Bytes of every value in the store's tables (text and blobs by length, numbers 8): what the rows
    hold, whatever the backend's pages, indexes and free space."""
    total = 0
    with store.database.read() as cur:
        if store.dialect == "sqlite":
            names = {r["name"] for r in cur.all("SELECT name FROM sqlite_master WHERE type = 'table'")}
        else:
            names = {r["table_name"] for r in cur.all(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
        for table in (t for t in TABLES if t in names):
            for row in cur.all(f"SELECT * FROM {table}"):
                for value in row.values():
                    if isinstance(value, (bytes, memoryview)):
                        total += len(bytes(value))
                    elif isinstance(value, str):
                        total += len(value.encode())
                    elif value is not None:
                        total += 8
    return total


def test_an_unchanged_run_adds_under_1_kb_per_host_and_a_first_converge_under_20(store_url: str) -> None:
    with open_store(store_url) as store:
        grown = []
        for hours, command in enumerate(("first", "apply", "drift", "apply", "drift", "drift")):
            before = stored_bytes(store)
            doc = report(command, hours)
            sent = copy.deepcopy(doc)
            run_id = store.save_run(doc)
            grown.append((command, (stored_bytes(store) - before) / HOSTS))
            assert store.run_document(run_id) == sent  # nothing lost: the whole document reads back
        first, *unchanged = grown
        assert first[1] <= 20_000, grown
        assert all(per_host <= 1_000 for _, per_host in unchanged), grown
        # the converged state is the first apply's, and no-op applies did not move it
        converged = store.converged(INV, "web0.prod.example.com")
        assert len(converged) == 120
        motd = converged["file:/srv/bench/d0/f0.conf"]
        assert motd.fingerprint == motd.desired_fingerprint == resource("web0.prod.example.com", 0, "apply")[
            "desired_fingerprint"]
        assert motd.observed["content_sha256"] == fp("web0.prod.example.com 0 v1")


def test_a_changed_host_state_is_stored_again_and_old_states_go_with_their_runs(store_url: str) -> None:
    with open_store(store_url) as store:
        store.save_run(report("first", 0))
        store.save_run(report("drift", 1))
        before = stored_bytes(store)
        store.save_run(report("first", 2, version=2))  # every file's content changed: a new state per host
        assert (stored_bytes(store) - before) / HOSTS > 5_000
        latest = store.save_run(report("drift", 3, version=2))
        converged = store.converged(INV, "web1.prod.example.com")
        assert converged["file:/srv/bench/d0/f1.conf"].observed["content_sha256"] == fp("web1.prod.example.com 1 v2")
        with store.database.read() as cur:
            assert cur.scalar("SELECT COUNT(*) AS n FROM document_parts") == 2 * HOSTS
        store.prune(INV, before=T0 + timedelta(hours=2.5))
        with store.database.read() as cur:
            assert cur.scalar("SELECT COUNT(*) AS n FROM document_parts") == HOSTS  # v1 states: no run left
        assert store.run_document(latest) == report("drift", 3, version=2)
        pruned = store.converged(INV, "web1.prod.example.com")
        assert {r: (c.fingerprint, c.observed) for r, c in pruned.items()} == {
            r: (c.fingerprint, c.observed) for r, c in converged.items()}
        assert {c.run_id for c in pruned.values()} == {None}  # the apply that converged them was pruned


def drifted(doc: dict[str, Any], run: int) -> dict[str, Any]:
    """Each host with one hand-edited file, a different one (with new content) in every run."""
    for n, h in enumerate(doc["hosts"]):
        r = h["resources"][(run * 7 + n) % 100]
        r["observed"] = dict(r["observed"], content_sha256=fp(f"hand edit {run}"))
        r["observed_fingerprint"] = fp(json.dumps(r["observed"]))
        r.update(drift="corrective", reason="corrective drift",
                 changes=[{"field": "content", "before": "sha256:aaaa", "after": "sha256:bbbb", "diff": None}])
        h["status"] = "drifted"
    return doc


def test_drift_that_comes_and_goes_is_stored_beside_the_host_state_not_as_a_new_one(store_url: str) -> None:
    with open_store(store_url) as store:
        store.save_run(report("first", 0))
        grown = []
        for run in range(1, 8):
            before = stored_bytes(store)
            doc = drifted(report("drift", run), run) if run % 2 else report("drift", run)
            sent = copy.deepcopy(doc)
            run_id = store.save_run(doc)
            grown.append((stored_bytes(store) - before) / HOSTS)
            assert store.run_document(run_id) == doc  # since/runs filled in both, all else as sent
            assert (doc != sent) == bool(run % 2)
        with store.database.read() as cur:
            assert cur.scalar("SELECT COUNT(*) AS n FROM document_parts") == HOSTS  # the first apply's
        assert all(per_host <= 2_000 for per_host in grown), grown
        # and drift is still classified from the converged state: the last hand edits are open episodes
        assert {e.subject for e in store.open_drift(INV, "web0.prod.example.com")} == {"file:/srv/bench/d4/f49.conf"}


def test_a_partial_apply_keeps_the_older_converged_state_of_what_failed(store_url: str) -> None:
    with open_store(store_url) as store:
        first = store.save_run(report("first", 0, hosts=1))
        doc = report("first", 1, version=2, hosts=1)
        failed = doc["hosts"][0]["resources"][3]
        failed.update(status="failed", error="disk full", changes=[])
        doc["hosts"][0]["status"] = "failed"
        second = store.save_run(doc)
        converged = store.converged(INV, "web0.prod.example.com")
        assert converged[failed["id"]].run_id == first
        assert converged[failed["id"]].observed["content_sha256"] == fp("web0.prod.example.com 3 v1")
        assert converged["file:/srv/bench/d0/f4.conf"].run_id == second
        assert converged["file:/srv/bench/d0/f4.conf"].observed["content_sha256"] == fp("web0.prod.example.com 4 v2")


def test_a_document_reads_back_exactly_keys_in_order_and_odd_entries_kept(store_url: str) -> None:
    doc = report("drift", 0, hosts=2)
    h0 = doc["hosts"][0]
    del h0["facts"]  # an absent key stays absent
    h0["resources"][0]["converged_fingerprint"] = fp("older")  # converged is not observed
    h0["resources"][1]["drift"], h0["resources"][1]["reason"] = "corrective", "corrective drift"
    del h0["resources"][2]["source"]
    h0["resources"][3]["extra"] = {"a": [1, 2]}  # a key this code does not know
    doc["hosts"].append({"name": "db1", "status": "unreachable", "error": "timed out", "resources": []})
    sent = copy.deepcopy(doc)
    with open_store(store_url) as store:
        back = store.run_document(store.save_run(doc))
    assert back == doc  # since/runs filled by the save, in both
    assert json.dumps(back) == json.dumps(doc)  # the same keys in the same order
    assert back["hosts"][0]["resources"][1]["since"] is not None and sent["hosts"][0]["resources"][1]["since"] is None


# -- an older store -------------------------------------------------------------------------------------


def _save_as_schema_3(cur: Any, doc: dict[str, Any], hours: int) -> int:
    """Rows as driftctl wrote them at schema 3: the whole document (json+xz), resource results with whole
    changes and fingerprints, one converged row per resource."""
    when = T0.timestamp() + hours * 3600.0
    run_id = int(cur.scalar(
        "INSERT INTO runs (command, inventory, started, finished, exit_code, username, controller, version,"
        " argv, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (doc["command"], INV, when, None, doc["exit_code"], "alice", "ctl1", "0.1.0", json.dumps(doc["argv"]),
         json.dumps(doc["summary"]))))
    for h in doc["hosts"]:
        cur.execute("INSERT INTO host_results (run_id, host, status, error, fingerprint, duration, round_trips)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, h["name"], h["status"], None, h["fingerprint"], h["duration"], 1))
        for r in h["resources"]:
            if r["status"] != "ok":
                cur.execute(
                    "INSERT INTO resource_results (run_id, host, resource, type, status, drift, changes, reason,"
                    " error, source, desired_fingerprint, observed_fingerprint, converged_fingerprint)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, h["name"], r["id"], r["type"], r["status"], None, json.dumps(r["changes"]), "",
                     None, r["source"], r["desired_fingerprint"], r["observed_fingerprint"], None))
            cur.execute(
                "INSERT INTO converged (inventory, host, resource, type, fingerprint, desired_fingerprint, observed,"
                " run_id, converged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (inventory, host, resource) DO UPDATE SET fingerprint = excluded.fingerprint,"
                " observed = excluded.observed, run_id = excluded.run_id, converged_at = excluded.converged_at",
                (INV, h["name"], r["id"], r["type"], r["observed_fingerprint"], r["desired_fingerprint"],
                 json.dumps(r["observed"]), run_id, when))
    cur.execute("INSERT INTO run_documents (run_id, encoding, body) VALUES (?, ?, ?)",
                (run_id, "json+xz", lzma.compress(json.dumps(doc).encode(), preset=1)))
    return run_id


def test_a_schema_3_store_is_upgraded_and_reads_the_same(store_url: str) -> None:
    old = [report("first", 1, hosts=2), report("apply", 2, hosts=2)]
    db = connect(store_url)
    try:
        assert store_migrations.migrate(db, store_migrations.MIGRATIONS[:3]) == 3
        with db.transaction() as cur:
            ids = [_save_as_schema_3(cur, doc, hours) for hours, doc in enumerate(old, start=1)]
    finally:
        db.close()
    host = "web1.prod.example.com"
    with open_store(store_url) as store:
        assert store.schema_version == store_migrations.LATEST
        assert [store.run_document(i) for i in ids] == old
        legacy = store.converged(INV, host)
        assert len(legacy) == 120 and {c.run_id for c in legacy.values()} == {ids[1]}
        assert legacy["file:/srv/bench/d0/f1.conf"].observed["content_sha256"] == fp(f"{host} 1 v1")
        assert store.converged_fingerprints(INV, host) == {r: c.fingerprint for r, c in legacy.items()}
        applied = [e for e in store.history(INV, host=host, limit=1000) if e.kind == "applied"]
        assert len(applied) == 120
        assert [e.fields for e in applied if e.subject == "file:/srv/bench/d0/f1.conf"] == [
            ["ensure", "content_sha256", "owner", "mode"]]
        # a new run on the upgraded store: the old rows are replaced, nothing read changes but the run
        new = store.save_run(report("apply", 3, hosts=2))
        after = store.converged(INV, host)
        assert {r: (c.fingerprint, c.desired_fingerprint, c.observed) for r, c in after.items()} == {
            r: (c.fingerprint, c.desired_fingerprint, c.observed) for r, c in legacy.items()}
        assert {c.run_id for c in after.values()} == {new}
        assert store.converged_fingerprints(INV, host) == {r: c.fingerprint for r, c in legacy.items()}
        with store.database.read() as cur:
            assert cur.scalar("SELECT COUNT(*) AS n FROM converged") == 0
        assert [store.run_document(i) for i in ids] == old
        assert len([e for e in store.history(INV, host=host, limit=1000) if e.kind == "applied"]) == 120
