"""The agent's side of pull reports: ``outbox_collect`` on a directory of this machine (no host needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from driftctl.agent._core import Failure
from driftctl.agent._main import outbox_collect


def box(tmp_path: Path, n: int, ident: str = "abc") -> Path:
    d = tmp_path / "outbox"
    d.mkdir(mode=0o700)
    (d / "id").write_text(ident)
    for seq in range(1, n + 1):
        (d / f"{seq:012d}.json").write_text(json.dumps({"n": seq}))
        os.chmod(d / f"{seq:012d}.json", 0o600)
    return d


def test_reports_after_the_cursor_oldest_first_bounded(tmp_path: Path) -> None:
    d = box(tmp_path, 5)
    got = outbox_collect({"dir": str(d), "id": None, "after": 0, "max": 3})
    assert got["id"] == "abc" and [r["seq"] for r in got["reports"]] == [1, 2, 3] and got["more"] is True
    assert got["reports"][0]["doc"] == {"n": 1}
    assert len(list(d.glob("*.json"))) == 5  # nothing acknowledged yet


def test_naming_the_cursor_acknowledges_for_the_same_outbox_only(tmp_path: Path) -> None:
    d = box(tmp_path, 4)
    other = outbox_collect({"dir": str(d), "id": "not-this-one", "after": 3})
    assert [r["seq"] for r in other["reports"]] == [1, 2, 3, 4] and other["acked"] == 0
    got = outbox_collect({"dir": str(d), "id": "abc", "after": 3})
    assert [r["seq"] for r in got["reports"]] == [4] and got["acked"] == 3 and got["more"] is False
    assert sorted(p.name for p in d.iterdir()) == ["000000000004.json", "id"]


def test_a_byte_budget_leaves_the_rest_for_the_next_probe(tmp_path: Path) -> None:
    d = box(tmp_path, 3)
    got = outbox_collect({"dir": str(d), "id": "abc", "after": 0, "max_bytes": 12})
    assert [r["seq"] for r in got["reports"]] == [1] and got["more"] is True


def test_no_outbox_is_nothing(tmp_path: Path) -> None:
    assert outbox_collect({"dir": str(tmp_path / "none")}) == {"id": None, "reports": [], "more": False}


def test_what_others_could_have_written_is_refused_or_left_out(tmp_path: Path) -> None:
    d = box(tmp_path, 2)
    os.chmod(d / "000000000001.json", 0o666)  # writable by others: not believed
    (d / "000000000003.json").symlink_to(d / "000000000002.json")  # a link: not followed
    got = outbox_collect({"dir": str(d), "id": "abc", "after": 0})
    assert [r["seq"] for r in got["reports"]] == [2]
    os.chmod(d, 0o755)
    with pytest.raises(Failure, match="refusing the pull outbox"):
        outbox_collect({"dir": str(d)})
    link = tmp_path / "link"
    os.chmod(d, 0o700)
    link.symlink_to(d)
    with pytest.raises(Failure, match="cannot be opened"):
        outbox_collect({"dir": str(link)})


def test_pull_modes_default_cache_is_never_unmanaged_drift() -> None:
    """Every pull writes checkouts, state and reports under its cache: a watch on /var/lib must not
    report them as hand changes."""
    from types import SimpleNamespace

    from driftctl.agent.watch import watch_own_dirs

    assert "/var/lib/driftctl/pull" in watch_own_dirs(SimpleNamespace(backup_dir="/var/backups/driftctl"))


def test_a_report_over_the_budget_comes_alone_in_a_later_probe_never_refused(tmp_path: Path) -> None:
    """A host of many thousand resources writes reports over 4 MB: each was answered "larger than ..."
    and the controller passed it over for good."""
    d = box(tmp_path, 1)
    big = {"n": 2, "pad": "x" * (5 * 1024 * 1024)}
    (d / "000000000002.json").write_text(json.dumps(big))
    os.chmod(d / "000000000002.json", 0o600)
    first = outbox_collect({"dir": str(d), "id": "abc", "after": 0, "max_bytes": 4 * 1024 * 1024})
    assert [r["seq"] for r in first["reports"]] == [1] and first["more"] is True  # it waits
    then = outbox_collect({"dir": str(d), "id": "abc", "after": 1, "max_bytes": 4 * 1024 * 1024})
    assert [r["seq"] for r in then["reports"]] == [2] and then["reports"][0]["doc"] == big
