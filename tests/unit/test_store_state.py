"""Watch baselines and ignore rules, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from driftctl.errors import InputError
from driftctl.store import Store, open_store

INV = "inventory/prod"
NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as s:
        yield s


def entry(sha: str, mode: str = "0644", kind: str = "file", size: int = 12) -> dict[str, object]:
    return {"type": kind, "sha256": sha, "mode": mode, "owner": "root", "group": "root", "size": size,
            "target": None}


def test_baseline_is_accepted_replaced_and_merged(store: Store) -> None:
    assert store.baseline(INV, "web1") == {}
    accepted = {"/etc/ssh/sshd_config": entry("a" * 64), "/etc/ssh": entry("", "0755", "directory", 0)}
    store.set_baseline(INV, "web1", accepted, by="alice", now=NOW)
    got = store.baseline(INV, "web1")
    assert list(got) == ["/etc/ssh", "/etc/ssh/sshd_config"]
    assert got["/etc/ssh/sshd_config"] == {**entry("a" * 64), "accepted_at": NOW, "accepted_by": "alice"}
    assert store.baseline(INV, "web2") == {} and store.baseline("inventory/staging", "web1") == {}

    # Merge: accept one change and one removal, keep the rest as accepted before.
    later = datetime(2026, 11, 29, tzinfo=UTC)
    store.set_baseline(INV, "web1", {"/etc/ssh/sshd_config": entry("b" * 64, "0600"), "/etc/ssh": None},
                       by="bob", replace=False, now=later)
    got = store.baseline(INV, "web1")
    assert list(got) == ["/etc/ssh/sshd_config"]
    assert (got["/etc/ssh/sshd_config"]["sha256"], got["/etc/ssh/sshd_config"]["mode"]) == ("b" * 64, "0600")
    assert (got["/etc/ssh/sshd_config"]["accepted_by"], got["/etc/ssh/sshd_config"]["accepted_at"]) == ("bob", later)

    # Replace: the new set is the whole baseline.
    store.set_baseline(INV, "web1", {"/etc/sudoers.d/ops": entry("c" * 64, "0440")}, by="carol", now=later)
    assert list(store.baseline(INV, "web1")) == ["/etc/sudoers.d/ops"]


def test_baseline_keeps_every_attribute_of_the_watch_scan(store: Store) -> None:
    # What the agent's scan gives per type (driftctl/agent/watch.py): a file has size and sha256, a
    # symlink its target, a directory neither. The baseline must compare equal to a fresh scan.
    scan = {
        "/etc/ssh/sshd_config": {"type": "file", "mode": "0644", "owner": "root", "group": "root", "size": 3,
                                 "sha256": "d" * 64},
        "/etc/alternatives/editor": {"type": "link", "mode": "0777", "owner": "root", "group": "root",
                                     "target": "/usr/bin/vim.basic"},
        "/etc/ssh": {"type": "directory", "mode": "0755", "owner": "root", "group": "root"},
    }
    store.set_baseline(INV, "web1", scan, by="alice", now=NOW)
    got = store.baseline(INV, "web1")
    for path, attrs in scan.items():
        kept = {k: v for k, v in got[path].items() if v is not None and k not in ("accepted_at", "accepted_by")}
        assert kept == attrs


def test_baseline_needs_absolute_paths_and_an_acceptor(store: Store) -> None:
    with pytest.raises(InputError, match="absolute"):
        store.set_baseline(INV, "web1", {"etc/x": entry("a")}, by="alice")
    with pytest.raises(InputError, match="who"):
        store.set_baseline(INV, "web1", {"/etc/x": entry("a")}, by="")
    assert store.baseline(INV, "web1") == {}


def test_ignore_rules_apply_until_they_expire(store: Store) -> None:
    motd = store.add_ignore(INV, "web*", "file:/etc/motd", "motd owned by the login team", date(2026, 12, 1),
                            by="alice", now=NOW)
    cron = store.add_ignore(INV, "*", "/etc/cron.d/*", "vendor agent drops files", "2026-11-28", by="bob", now=NOW)
    assert motd.reason == "motd owned by the login team" and motd.created_at == NOW and motd.created_by == "alice"
    assert [r.id for r in store.ignores(INV, now=NOW)] == [motd.id, cron.id]
    # The expiry date is the last day a rule applies.
    assert [r.id for r in store.ignores(INV, now=datetime(2026, 11, 28, 23, 59, tzinfo=UTC))] == [motd.id, cron.id]
    assert [r.id for r in store.ignores(INV, now=datetime(2026, 11, 29, tzinfo=UTC))] == [motd.id]
    assert store.ignores(INV, now=datetime(2026, 12, 2, tzinfo=UTC)) == []
    assert len(store.ignores(INV, now=datetime(2026, 12, 2, tzinfo=UTC), include_expired=True)) == 2
    assert store.ignores("inventory/staging", now=NOW) == []

    [rule] = [r for r in store.ignores(INV, now=NOW) if r.id == motd.id]
    assert rule == motd
    assert rule.matches("web1", "file:/etc/motd") and not rule.matches("db1", "file:/etc/motd")
    assert cron.matches("db1", "/etc/cron.d/backup") and not cron.matches("db1", "/etc/crontab")
    assert not rule.active(datetime(2026, 12, 2, tzinfo=UTC)) and rule.active(NOW)

    assert store.remove_ignore(cron.id) is True
    assert store.remove_ignore(cron.id) is False
    assert [r.id for r in store.ignores(INV, now=NOW)] == [motd.id]


@pytest.mark.parametrize(("reason", "expires", "message"), [
    ("", "2026-12-01", "reason"),
    ("   ", "2026-12-01", "reason"),
    ("ok", "next week", "YYYY-MM-DD"),
    ("ok", "2026-11-27", "in the past"),
])
def test_ignore_rules_need_a_reason_and_a_future_expiry(store: Store, reason: str, expires: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        store.add_ignore(INV, "*", "file:/etc/motd", reason, expires, by="alice", now=NOW)
    assert store.ignores(INV, now=NOW, include_expired=True) == []
