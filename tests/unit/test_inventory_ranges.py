"""Host definitions: ranges and ports, as Ansible expands them."""

from __future__ import annotations

import pytest

from driftctl.errors import InventoryError, Location
from driftctl.inventory.hostpattern import HostDefinition, expand

HERE = Location("hosts", 3)


@pytest.mark.parametrize(
    ("text", "names", "port"),
    [
        ("web1", ["web1"], None),
        ("web[1:3]", ["web1", "web2", "web3"], None),
        ("web[01:03]", ["web01", "web02", "web03"], None),  # zero padding keeps the width
        ("web[08:10].example.com", ["web08.example.com", "web09.example.com", "web10.example.com"], None),
        ("web[:2]", ["web0", "web1", "web2"], None),  # an empty start is 0
        ("web[0:10:5]", ["web0", "web5", "web10"], None),  # a step
        ("db-[a:c]", ["db-a", "db-b", "db-c"], None),  # letters
        ("r[1:2]n[a:b]", ["r1na", "r1nb", "r2na", "r2nb"], None),  # several ranges multiply, leftmost outer
        ("web[1:2]:2222", ["web1", "web2"], 2222),
        ("db1:5432", ["db1"], 5432),
        ("10.0.0.1:22", ["10.0.0.1"], 22),
        ("2001:db8::1", ["2001:db8::1"], None),  # bare IPv6: no port
        ("[2001:db8::1]:2200", ["2001:db8::1"], 2200),
        ("web[3:3]", ["web3"], None),
    ],
)
def test_expand(text, names, port):
    assert expand(text, HERE) == HostDefinition(names, port)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("web[3:1]", "host range [3:1] in 'web[3:1]' runs backwards"),
        ("web[c:a]", "host range [c:a] in 'web[c:a]' runs backwards"),
        ("web[1:]", "host range [1:] in 'web[1:]' has no end"),
        ("web[1:2:3:4]", "host range [1:2:3:4] in 'web[1:2:3:4]' must be [begin:end] or [begin:end:step]"),
        (
            "web[01:100]",
            "host range [01:100] in 'web[01:100]': begin and end must have the same width when zero-padded",
        ),
        ("web:0", "invalid port 0 in host definition 'web:0'"),
        ("", "empty host name"),
    ],
)
def test_expand_errors(text, message):
    with pytest.raises(InventoryError) as e:
        expand(text, HERE)
    assert str(e.value) == f"hosts:3: {message}"
