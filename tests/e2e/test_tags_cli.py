"""--tags / --skip-tags end to end on a real host (issue 11, point 3).

A resource drifted by hand and left out by --tags keeps its drift record untouched: the partial run
neither extends nor resolves it (the next full run counts it as run 2 of the same episode, since the
same time); an apply limited by tags changes only what it selects and leaves the converged state of
the rest alone; the report, the stored run and the output say the run was partial; an unknown tag is
an error before any connection.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import driftctl, write_inventory

from driftctl.store import inventory_key, json_schema, open_store

RESOURCES = """\
watch: [/etc/tagtest]
resources:
  - directory: /etc/tagtest
  - file: /etc/tagtest/web.conf
    content: "web\\n"
    tags: [web]
  - file: /etc/tagtest/db.conf
    content: "db\\n"
    tags: [db]
  - file: /etc/tagtest/plain.conf
    content: "plain\\n"
  - file: /etc/tagtest/debug.conf
    content: "debug\\n"
    tags: [never, debug]
"""



def valid(doc: dict[str, Any]) -> dict[str, Any]:
    """The document, after checking it against the report's JSON Schema (strict: a new field must be in it)."""
    import jsonschema

    jsonschema.Draft202012Validator(json_schema()).validate(doc)
    return doc

def manifests(tmp_path: Path) -> Path:
    root = tmp_path / "manifests"
    (root / "roles" / "t").mkdir(parents=True)
    (root / "site.yaml").write_text("- hosts: all\n  roles: [t]\n")
    (root / "roles" / "t" / "resources.yaml").write_text(RESOURCES)
    return root


def by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in doc["hosts"][0]["resources"]}


def cat(host: Any, path: str) -> str:
    return host.exec(["cat", path]).stdout_text


def test_a_partial_drift_run_leaves_filtered_drift_alone(fresh_host: Any, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv", [fresh_host])
    state = tmp_path / "state"
    args = (inv, "-m", manifests(tmp_path))

    plan = driftctl("plan", "--detailed-exitcode", *args, state_dir=state)
    assert plan.rc == 2, plan.output
    # the never-tagged file is left out by default (as Ansible does): 4 to add, the run is partial
    assert "Plan: 4 to add, 0 to change, 0 to remove." in plan.stdout
    assert "1 left out by tags" in plan.stdout
    applied = driftctl("apply", *args, "--json", state_dir=state)
    assert applied.rc == 2, applied.output
    assert applied.json()["summary"]["actions"] == {"add": 4, "change": 0, "remove": 0}
    assert fresh_host.exec(["test", "-e", "/etc/tagtest/debug.conf"]).rc == 1
    debug = driftctl("apply", *args, "--tags", "debug", "--json", state_dir=state)
    assert debug.rc == 2, debug.output
    assert list(by_id(debug.json())) == ["file:/etc/tagtest/debug.conf"]
    assert cat(fresh_host, "/etc/tagtest/debug.conf") == "debug\n"
    assert driftctl("drift", *args, "--tags", "all,debug", state_dir=state).rc == 0  # the first drift: baselines

    fresh_host.sh("echo 'by hand' >> /etc/tagtest/db.conf && echo x > /etc/tagtest/stray")
    found = driftctl("drift", *args, "--tags", "all,debug", "--json", state_dir=state)
    assert found.rc == 2, found.output
    first = by_id(found.json())["file:/etc/tagtest/db.conf"]
    assert (first["drift"], first["runs"]) == ("corrective", 1)
    assert [(u["path"], u["change"], u["runs"]) for u in found.json()["hosts"][0]["unmanaged"]] == [
        ("/etc/tagtest/stray", "added", 1)]
    assert found.json()["partial"] is False

    # --tags web: db.conf is not examined, not listed, and its episode is left as it was
    partial = driftctl("drift", *args, "--tags", "web", "--json", state_dir=state)
    assert partial.rc == 0, partial.output
    doc = valid(partial.json())
    assert doc["partial"] is True and doc["tags"] == {"only": ["web"], "skip": []}
    assert list(by_id(doc)) == ["file:/etc/tagtest/web.conf"]
    host = doc["hosts"][0]
    assert sorted(host["excluded"]) == ["directory:/etc/tagtest", "file:/etc/tagtest/db.conf",
                                        "file:/etc/tagtest/debug.conf", "file:/etc/tagtest/plain.conf"]
    assert host["unmanaged"] is None  # db.conf is not "unmanaged" either
    key = inventory_key(inv)
    store = open_store(str(state / "driftctl.sqlite"))
    try:
        assert store.latest_run(key)["partial"] is True  # the store keeps the mark
        episodes = store.open_drift(key, fresh_host.name)
        assert sorted((e.subject, e.runs) for e in episodes) == [("/etc/tagtest/stray", 1),
                                                                  ("file:/etc/tagtest/db.conf", 1)]
    finally:
        store.close()
    history = driftctl("history", inv, "--json", state_dir=state)  # as a user asks the store
    assert history.rc == 0, history.output
    assert [(e["subject"], e["runs"]) for e in history.json()["open_drift"] if e["kind"] == "resource"] == [
        ("file:/etc/tagtest/db.conf", 1)]
    assert not [e for e in history.json()["events"] if e["kind"] == "drift-resolved"]
    text = driftctl("drift", *args, "--skip-tags", "db", state_dir=state)
    assert text.rc == 0, text.output
    assert "partial run (--skip-tags db)" in text.stdout

    # an apply limited by tags: web.conf is fixed, db.conf is not touched and stays corrective drift
    fresh_host.sh("echo 'by hand' >> /etc/tagtest/web.conf")
    web = driftctl("apply", *args, "--tags", "web", "--json", state_dir=state)
    assert web.rc == 2, web.output
    assert list(by_id(web.json())) == ["file:/etc/tagtest/web.conf"]
    assert cat(fresh_host, "/etc/tagtest/web.conf") == "web\n"
    assert cat(fresh_host, "/etc/tagtest/db.conf") == "db\nby hand\n"

    # the whole run again: the same episode, counted once more (not resolved, not restarted)
    full = driftctl("drift", *args, "--tags", "all,debug", "--json", state_dir=state)
    assert full.rc == 2, full.output
    valid(full.json())
    again = by_id(full.json())["file:/etc/tagtest/db.conf"]
    assert (again["drift"], again["runs"], again["since"]) == ("corrective", 2, first["since"])
    assert by_id(full.json())["file:/etc/tagtest/web.conf"]["drift"] is None
    assert [(u["path"], u["runs"]) for u in full.json()["hosts"][0]["unmanaged"]] == [("/etc/tagtest/stray", 2)]

    # and without any tag option (debug.conf, tagged never, is left out: still partial)
    plain = driftctl("drift", *args, "--json", state_dir=state)
    assert plain.rc == 2, plain.output
    last = by_id(valid(plain.json()))["file:/etc/tagtest/db.conf"]
    assert (last["drift"], last["runs"], last["since"]) == ("corrective", 3, first["since"])
    assert plain.json()["partial"] is True and "tags" not in plain.json()
    history = driftctl("history", inv, "--json", state_dir=state)
    assert history.rc == 0, history.output
    assert not [e for e in history.json()["events"] if e["kind"] == "drift-resolved"]


class Listener:
    """A loopback port that counts the connections made to it (a host that must never be contacted)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.count = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.close()


BAD = [
    (["--tags", "wbe"], "did you mean 'web'?"),
    (["--skip-tags", "dbb"], "did you mean 'db'?"),
    (["--tags", "web,,db"], "an empty tag name"),
    (["--serial", "0"], "--serial '0'"),
    (["--serial", "abc"], "--serial 'abc'"),
    (["--serial", "150%"], "out of range"),
    (["--serial", "-1"], "--serial '-1'"),
    (["--serial", "2", "--max-fail-percentage", "-5"], "--max-fail-percentage '-5'"),
    (["--serial", "2", "--max-fail-percentage", "abc"], "--max-fail-percentage 'abc'"),
    (["--max-fail-percentage", "10"], "needs --serial"),
]
CASES = [("apply", *case) for case in BAD] + [
    (command, *case) for command in ("plan", "check", "drift") for case in (BAD[0], BAD[5])]


@pytest.mark.parametrize(("command", "argv", "message"), CASES)
def test_bad_tags_and_batches_are_errors_before_any_connection(tmp_path: Path, command: str, argv: list[str],
                                                              message: str) -> None:
    listener = Listener()
    try:
        host = type("H", (), {"name": "h1", "address": "127.0.0.1", "port": listener.port,
                              "key_file": tmp_path / "key", "known_hosts": tmp_path / "known_hosts"})
        inv = write_inventory(tmp_path / "inv", [host])
        result = driftctl(command, inv, "-m", manifests(tmp_path), *argv, state_dir=tmp_path / "state")
    finally:
        listener.sock.close()
    assert result.rc == 1, result.output
    assert message in result.stderr
    assert listener.count == 0
