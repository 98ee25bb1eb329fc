"""graph.py: stable topological order, relation directions, cycles, dependents and notify targets."""

from __future__ import annotations

import pytest

from driftctl.errors import Location, ManifestError
from driftctl.graph import CycleError, dependents, notify_targets, order


def res(rid: str, line: int, **relations: list[str]):  # type: ignore[no-untyped-def]
    from driftctl.model import Resource

    rtype, _, name = rid.partition(":")
    return Resource(rtype, name, {}, Location("site.yaml", line), **relations)


def ids(resources: list) -> list[str]:  # type: ignore[type-arg]
    return [r.id for r in resources]


def test_no_relations_keeps_manifest_order() -> None:
    rs = [res("file:/c", 1), res("file:/a", 2), res("file:/b", 3)]
    assert ids(order(rs)) == ["file:/c", "file:/a", "file:/b"]


def test_require_and_subscribe_come_after() -> None:
    rs = [
        res("service:nginx", 1, subscribe=["file:/etc/nginx.conf"]),
        res("file:/etc/nginx.conf", 2, require=["package:nginx"]),
        res("package:nginx", 3),
    ]
    assert ids(order(rs)) == ["package:nginx", "file:/etc/nginx.conf", "service:nginx"]


def test_before_and_notify_come_before() -> None:
    rs = [
        res("service:ssh", 1),
        res("line:root-login", 2, notify=["service:ssh"]),
        res("package:openssh-server", 3, before=["line:root-login"]),
    ]
    assert ids(order(rs)) == ["package:openssh-server", "line:root-login", "service:ssh"]


def test_ties_are_broken_by_manifest_order_not_by_name() -> None:
    # z must wait for y; a and m are free and keep their places relative to each other
    rs = [res("file:/z", 1, require=["file:/y"]), res("file:/m", 2), res("file:/y", 3), res("file:/a", 4)]
    assert ids(order(rs)) == ["file:/m", "file:/y", "file:/z", "file:/a"]


def test_order_is_stable_over_runs() -> None:
    rs = [res(f"file:/f{i}", i, require=[f"file:/f{i + 1}"] if i % 3 == 0 else []) for i in range(1, 30)]
    first = ids(order(rs))
    assert all(ids(order(rs)) == first for _ in range(5))
    pos = {rid: i for i, rid in enumerate(first)}
    for r in rs:
        for dep in r.require:
            assert pos[dep] < pos[r.id]


def test_cycle_lists_each_resource_with_file_line() -> None:
    rs = [
        res("package:nginx", 1),
        res("file:/etc/a", 4, require=["service:x"]),
        res("service:x", 7, require=["file:/etc/b"]),
        res("file:/etc/b", 9, require=["file:/etc/a"]),
    ]
    with pytest.raises(CycleError) as info:
        order(rs)
    e = info.value
    assert isinstance(e, ManifestError)
    assert e.message == (
        "dependency cycle: file:/etc/a (site.yaml:4) -> file:/etc/b (site.yaml:9) -> "
        "service:x (site.yaml:7) -> file:/etc/a (site.yaml:4)"
    )
    assert str(e.location) == "site.yaml:4"


def test_cycle_through_before_and_notify() -> None:
    rs = [res("file:/a", 1, before=["file:/b"]), res("file:/b", 2, notify=["file:/a"])]
    with pytest.raises(CycleError) as info:
        order(rs)
    assert ids(info.value.cycle) == ["file:/a", "file:/b"]


def test_self_reference_is_a_cycle() -> None:
    with pytest.raises(CycleError, match="file:/a"):
        order([res("file:/a", 3, require=["file:/a"])])


def test_unknown_id_is_an_error_at_the_resource() -> None:
    with pytest.raises(ManifestError) as info:
        order([res("file:/a", 3, require=["file:/nope"])])
    assert str(info.value.location) == "site.yaml:3" and "'file:/nope'" in info.value.message


def test_a_resource_behind_a_cycle_is_not_reported_as_part_of_it() -> None:
    rs = [res("file:/tail", 1, require=["file:/x"]), res("file:/x", 2, require=["file:/y"]),
          res("file:/y", 3, require=["file:/x"])]
    with pytest.raises(CycleError) as info:
        order(rs)
    assert sorted(ids(info.value.cycle)) == ["file:/x", "file:/y"]


def test_dependents_are_transitive_in_every_direction() -> None:
    rs = [
        res("package:nginx", 1, before=["file:/conf"]),
        res("file:/conf", 2),
        res("service:nginx", 3, subscribe=["file:/conf"]),
        res("exec:reload", 4, require=["service:nginx"]),
        res("file:/unrelated", 5),
    ]
    deps = dependents(rs)
    assert deps["package:nginx"] == {"file:/conf", "service:nginx", "exec:reload"}
    assert deps["file:/conf"] == {"service:nginx", "exec:reload"}
    assert deps["exec:reload"] == set() and deps["file:/unrelated"] == set()


def test_notify_targets_merge_notify_and_subscribe_in_catalog_order() -> None:
    rs = [
        res("file:/conf", 1, notify=["service:b"]),
        res("service:a", 2, subscribe=["file:/conf"]),
        res("service:b", 3),
        res("package:p", 4),
        res("exec:x", 5, subscribe=["file:/conf", "package:p"]),
    ]
    assert notify_targets(rs) == {
        "file:/conf": ["service:a", "service:b", "exec:x"],
        "package:p": ["exec:x"],
    }


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ManifestError) as info:
        order([res("file:/a", 3), res("file:/a", 8)])
    assert str(info.value.location) == "site.yaml:8" and "also declared at site.yaml:3" in info.value.message
