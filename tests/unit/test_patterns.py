"""The --limit language. Expected selections were checked with ``ansible PATTERN --list-hosts`` on
data/inventory/patterns.yaml (Ansible orders by group traversal; driftctl by inventory order)."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftctl import patterns
from driftctl.errors import InventoryError, Location
from driftctl.inventory import load_inventory

DATA = Path(__file__).parent / "data" / "inventory"

# The same fleet as data/inventory/patterns.yaml, as the pure function takes it.
HOSTS = ["bastion", "web1", "web2", "web10", "db1", "db2", "web-stg1", "db-stg1"]
GROUPS = {
    "all": HOSTS,
    "ungrouped": ["bastion"],
    "prod": ["web1", "web2", "web10", "db1", "db2"],
    "web": ["web1", "web2", "web10"],
    "db": ["db1", "db2"],
    "staging": ["web-stg1", "db-stg1"],
    "canary": ["web2", "db-stg1"],
    "empty": [],
}

CASES = [
    ("web", ["web1", "web2", "web10"]),  # a group
    ("web1", ["web1"]),  # a host
    ("web*", ["web1", "web2", "web10", "web-stg1"]),  # glob: the group web and hosts web*
    ("~web\\d+", ["web1", "web2", "web10"]),  # regex
    ("~(web|db)\\d$", ["web1", "web2", "db1", "db2"]),  # regex, anchored at the start only by re.match
    ("all", HOSTS),
    ("*", HOSTS),
    ("web:db", ["web1", "web2", "web10", "db1", "db2"]),
    ("web,db", ["web1", "web2", "web10", "db1", "db2"]),
    ("db , web", ["web1", "web2", "web10", "db1", "db2"]),  # spaces; inventory order, not pattern order
    ("prod:!web", ["db1", "db2"]),
    ("prod:&canary", ["web2"]),
    ("!canary", ["bastion", "web1", "web10", "db1", "db2", "web-stg1"]),  # only exclusions: from all
    ("&canary", ["web2", "db-stg1"]),  # only an intersection: all & canary
    ("prod:!db:&canary", ["web2"]),  # & applies before !, whatever the written order
    ("!db:prod:&canary", ["web2"]),
    ("canary:!web", ["db-stg1"]),
    ("all:!prod:!staging", ["bastion"]),
    ("web*:&staging", ["web-stg1"]),
    ("db*", ["db1", "db2", "db-stg1"]),
    ("*stg*", ["web-stg1", "db-stg1"]),
    ("web[0]", ["web1"]),  # subscripts over the group's hosts
    ("web[-1]", ["web10"]),
    ("web[0:1]", ["web1", "web2"]),  # inclusive end, as in Ansible
    ("web[1:]", ["web2", "web10"]),
    ("prod:!empty", ["web1", "web2", "web10", "db1", "db2"]),  # excluding an empty group is fine
    ("web1:web1:web", ["web1", "web2", "web10"]),  # no duplicates
]


@pytest.mark.parametrize(("pattern", "expected"), CASES)
def test_select(pattern, expected):
    assert patterns.select(pattern, HOSTS, GROUPS) == expected


@pytest.fixture(scope="module")
def inv():
    return load_inventory(DATA / "patterns.yaml")


@pytest.mark.parametrize(("pattern", "expected"), CASES)
def test_inventory_select_agrees(inv, pattern, expected):
    assert [h.name for h in inv.select(pattern)] == expected


def test_inventory_select_none_is_every_host(inv):
    assert [h.name for h in inv.select(None)] == HOSTS


def test_inventory_membership_matches_the_pure_input(inv):
    assert inv.membership() == GROUPS


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("wbe", "host pattern 'wbe' matches no host or group (did you mean 'web'?)"),
        ("web:dbb", "host pattern 'dbb' matches no host or group (did you mean 'db'?)"),
        ("web:!canry", "host pattern '!canry' matches no host or group (did you mean 'canary'?)"),
        ("web:&stagin", "host pattern '&stagin' matches no host or group (did you mean 'staging'?)"),
        ("xyz*", "host pattern 'xyz*' matches no host or group"),
        ("~^zz", "host pattern '~^zz' matches no host or group"),
        (
            "web1,db1:db2",  # ',' wins: db1:db2 is one part
            "host pattern 'db1:db2' matches no host or group "
            "(a pattern with ',' is split on ',' only: write 'db1,db2')",
        ),
        ("empty", "host pattern 'empty' matches no host: the group is empty"),
        ("web:&empty", "host pattern '&empty' matches no host: the group is empty"),
        ("web:&db", "host pattern 'web:&db' selects no host"),
        ("web:!web", "host pattern 'web:!web' selects no host"),
        ("web[5]", "host pattern 'web[5]': the subscript is out of range ('web' has 3 hosts)"),
        ("~web(", "host pattern '~web(': invalid regular expression: missing ), unterminated subpattern at position 3"),
        ("", "empty host pattern '' (use 'all' for every host)"),
        (" , ", "empty host pattern ' , ' (use 'all' for every host)"),
        ("web:!", "host pattern 'web:!': '!' names nothing"),
    ],
)
def test_errors(pattern, message):
    with pytest.raises(InventoryError) as e:
        patterns.select(pattern, HOSTS, GROUPS)
    assert str(e.value) == message


def test_error_carries_the_location_it_is_given():
    with pytest.raises(InventoryError) as e:
        patterns.select("wbe", HOSTS, GROUPS, location=Location("manifests/site.yaml", 4))
    assert str(e.value) == "manifests/site.yaml:4: host pattern 'wbe' matches no host or group (did you mean 'web'?)"


def test_not_strict_lets_unknown_parts_select_nothing():
    assert patterns.select("web:nosuchgroup", HOSTS, GROUPS, strict=False) == ["web1", "web2", "web10"]
    assert patterns.select("nosuchgroup", HOSTS, GROUPS, strict=False) == []
    assert patterns.select("web:!empty[0]", HOSTS, GROUPS, strict=False) == ["web1", "web2", "web10"]
    assert [h.name for h in load_inventory(DATA / "patterns.yaml").select("nope", strict=False)] == []
    with pytest.raises(InventoryError, match="invalid regular expression"):  # syntax is still checked
        patterns.select("~(", HOSTS, GROUPS, strict=False)


def test_a_host_named_like_a_group_is_the_host():
    assert patterns.select("x", ["x", "y"], {"all": ["x", "y"], "x": ["y"]}) == ["x"]


@pytest.mark.parametrize(
    ("pattern", "parts"),
    [
        ("a:b", ["a", "b"]),
        ("a,b:c", ["a", "b:c"]),
        ("web[0:2]:db", ["web[0:2]", "db"]),  # ':' inside [...] is not a separator
        ("2001:db8::1", ["2001:db8::1"]),  # an IPv6 address is one part
        ("a, b ,c", ["a", "b", "c"]),
    ],
)
def test_split(pattern, parts):
    assert patterns.split(pattern) == parts


def test_parse_orders_plain_then_intersections_then_exclusions():
    terms = patterns.parse("!a:&b:c:!d:&e:f")
    assert [t.text for t in terms] == ["c", "f", "&b", "&e", "!a", "!d"]
    assert [t.op for t in terms] == ["", "", "&", "&", "!", "!"]
    assert patterns.parse("web[1:]")[0].subscript == patterns.Subscript(1, -1)


def test_cached_errors_carry_each_callers_location():
    inv = load_inventory(DATA / "patterns.yaml")
    for line in (3, 9):
        with pytest.raises(InventoryError) as e:
            inv.select("wbe", location=Location("site.yaml", line))
        assert str(e.value) == f"site.yaml:{line}: host pattern 'wbe' matches no host or group (did you mean 'web'?)"
    assert [h.name for h in inv.select("web[0]")] == ["web1"]
    assert [h.name for h in inv.select("web[0]")] == ["web1"]  # from the cache, same answer
