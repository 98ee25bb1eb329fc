from __future__ import annotations

import pytest

from driftctl.drift.classify import BOTH, CORRECTIVE, PENDING, classify, rebaseline, unmanaged_changes


@pytest.mark.parametrize(
    ("desired", "observed", "converged", "expected"),
    [
        ("d", "d", "d", None),  # in sync
        ("d", "d", None, None),  # in sync, never applied by us: nothing to do
        ("d", "x", None, PENDING),  # never converged
        ("d", "x", "d", CORRECTIVE),  # changed by hand
        ("d2", "d1", "d1", PENDING),  # manifest moved
        ("d2", "x", "d1", BOTH),  # both moved
        ("d2", "d2", "d1", None),  # hand change happens to match the new manifest
        ("d", None, "d", None),  # not observed: never a classification
    ],
)
def test_classify(desired, observed, converged, expected):
    assert classify(desired, observed, converged) == expected


def entry(sha="a", mode="0644", owner="root", type_="file"):
    return {"type": type_, "mode": mode, "owner": owner, "group": "root", "size": 1, "sha256": sha}


def test_unmanaged_changes_added_removed_changed():
    base = {"/etc/ssh/a": entry(), "/etc/ssh/b": entry(), "/etc/ssh/c": entry()}
    now = {"/etc/ssh/a": entry(), "/etc/ssh/b": entry(mode="0666"), "/etc/ssh/d": entry()}
    changes = {(u.path, u.change) for u in unmanaged_changes(base, now)}
    assert changes == {("/etc/ssh/b", "changed"), ("/etc/ssh/c", "removed"), ("/etc/ssh/d", "added")}


def test_unmanaged_changes_ignore_fields_that_are_not_watched():
    a = entry() | {"mtime": 1}
    b = entry() | {"mtime": 2}
    assert unmanaged_changes({"/x": a}, {"/x": b}) == []


def test_unmanaged_changes_only_under_current_roots():
    base = {"/old/a": entry(), "/etc/ssh/a": entry()}
    assert [u.path for u in unmanaged_changes(base, {"/etc/ssh/a": entry()}, roots=["/etc/ssh"])] == []


def test_rebaseline_accepts_only_what_the_apply_changed():
    old = {"/etc/x": entry("1"), "/etc/hand": entry("1")}
    pre = {"/etc/x": entry("1"), "/etc/hand": entry("HAND")}  # changed by hand before the apply
    post = {"/etc/x": entry("2"), "/etc/hand": entry("HAND"), "/etc/new": entry("n")}
    new = rebaseline(old, pre, post)
    assert new["/etc/x"]["sha256"] == "2"
    assert new["/etc/new"]["sha256"] == "n"
    assert new["/etc/hand"]["sha256"] == "1"  # still reported as drift
    assert rebaseline(None, pre, post) == post


def test_unmanaged_changes_report_only_watched_fields() -> None:
    """A stored baseline entry also says when and by whom it was accepted: never part of a change."""
    from datetime import UTC, datetime

    base = {"/etc/x": entry() | {"accepted_at": datetime.now(UTC), "accepted_by": "root"}}
    (change,) = unmanaged_changes(base, {"/etc/x": entry(mode="0600")})
    assert set(change.before or {}) <= {"type", "mode", "owner", "group", "size", "sha256", "target"}
    (gone,) = unmanaged_changes(base, {})
    assert "accepted_at" not in (gone.before or {})
