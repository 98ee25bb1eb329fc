"""The inventory at scale: what makes 10,000 hosts fast must not change what any host reads.

- the INI shortcuts (host lines split without shlex, plain words without literal_eval) give exactly
  what shlex and literal_eval give;
- hosts are built when first read: ``load_inventory(lazy=True)`` selects and builds one host of many,
  and a mistake in another host's connection variables stops only that host (as in Ansible);
- the bench's generated inventory (every level of variables, group_vars files and directories,
  host_vars) reads as ansible-inventory reads it, in both formats, lazily or not.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import shlex
import warnings
from pathlib import Path
from typing import Any

import pytest

from driftctl.errors import InventoryError
from driftctl.inventory import load_inventory
from driftctl.inventory.ini_format import _literal, parse_value, split_host_line
from driftctl.inventory.loader import warnings_for
from driftctl.inventory.model import Hosts

REPO = Path(__file__).resolve().parents[2]

WORDS = [
    "rack12", "SN00000042", "web-01", "db.example.com", "a.1", "a..b", "a-", "_", "True", "False", "None",
    "true", "none", "yes", "no", "inf", "nan", "lambda", "not-True", "None-1j", "True-1j", "a-1j", "e1",
    "True.real", "None.x", "await", "yield", "if", "x_y.z-w", "A", "Z9", "0", "00", "1", "0123", "1.5",
    "1e5", "10.0.0.42", "-1", "+2", "1+2j", "[1, 2]", "{'a': 1}", "'quoted'", '"dq"', "b'x'", "(1,)",
    "set()", "", " x", "x y", "ünïcode", "a#b", "{{ inventory_hostname }}", "0x1f", "1_000", "a/b",
    "7", "42", "999999999999999999", "9999999999999999999", "1.2.3", "10.0.0.42", "1.2.3.4.5", "01.2.3",
    "1.2.3e4", "1..2", "2001:db8::1", "08", "10.0.0", "1.2",
]


@pytest.mark.parametrize("text", WORDS)
def test_ini_values_read_as_literal_eval_reads_them(text: str) -> None:
    expected = _literal(text)
    got = parse_value(text)
    assert got == expected and type(got) is type(expected)
    # and _literal is literal_eval-or-text, as Ansible reads INI values
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            direct: Any = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        direct = text
    if not isinstance(direct, bytes):
        assert expected == direct


LINES = [
    "web1", "web1 ansible_host=10.0.0.1 ansible_port=22", "web1\tx=1  y=2", "web1 x=1 # a comment",
    "web1 x=1#comment", "web1 #", "# all comment", "web[01:03] http_port=8080", "web1 x=a#b y=c",
    "web1 msg='hello world'", 'web1 msg="a b" z=1', "web1 path=C:\\\\dir", "web1 x=1\x0by=2",
    "web1 x=\u00a0y", "db1:2222 ansible_user=root", "web1     ", "web1 a=b=c",
]


@pytest.mark.parametrize("line", LINES)
def test_host_lines_split_as_shlex_splits_them(line: str) -> None:
    assert split_host_line(line) == shlex.split(line, comments=True)


def _inventory(tmp_path: Path, broken: str) -> Path:
    """Three hosts; ``bad1`` and ``bad2`` have a connection variable that cannot be built."""
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "hosts.yaml").write_text(
        "all:\n  children:\n    web:\n      hosts:\n        good: {ansible_host: 10.0.0.1}\n"
        "        bad1:\n        bad2:\n")
    for name in ("bad1", "bad2"):
        (tmp_path / "host_vars" / f"{name}.yaml").write_text(broken)
    return tmp_path


@pytest.mark.parametrize("broken", ['ansible_host: "{{ no_such_variable }}"\n', "ansible_port: http\n"])
def test_lazy_inventory_builds_only_what_is_read(tmp_path: Path, broken: str) -> None:
    path = _inventory(tmp_path, broken)
    with pytest.raises(InventoryError, match="bad1"):
        load_inventory(path)  # every host built: the first bad one is the error, at its file
    inv = load_inventory(path, lazy=True)
    assert list(inv.hosts) == ["good", "bad1", "bad2"]  # every name, no host built
    [good] = inv.select("good")
    assert good.connection.address == "10.0.0.1"
    assert [h.name for h in inv.select("web:!bad*")] == ["good"]
    assert inv.members("web") == ["good", "bad1", "bad2"]
    assert inv.groups_var() == {"all": ["good", "bad1", "bad2"], "web": ["good", "bad1", "bad2"]}
    assert "ansible_host" in inv.var_sources["good"]
    with pytest.raises(InventoryError, match="bad2"):
        inv.hosts["bad2"]  # reading the bad host is its error
    assert isinstance(inv.hosts, Hosts)


def test_lazy_warnings_are_those_of_the_hosts_read(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(
        "all:\n  hosts:\n"
        "    a: {ansible_host: 10.0.0.1, ansible_ssh_common_args: '-o StrictHostKeyChecking=no'}\n"
        "    b: {ansible_host: 10.0.0.1}\n    c: {ansible_host: 10.0.0.1}\n    d: {ansible_host: 10.0.0.9}\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "nobody.yaml").write_text("x: 1\n")
    eager = load_inventory(tmp_path)
    lazy = load_inventory(tmp_path, lazy=True)
    file_warning = [w for w in eager.warnings if "nobody" in w]
    assert file_warning and lazy.warnings == file_warning  # no host built yet: the files' warnings only
    got = warnings_for(lazy, lazy.select("a,b"))
    assert any("StrictHostKeyChecking" in w for w in got)  # a's own
    assert any("hosts a (" in w and "and b (" in w for w in got)  # a and b in one run share an address
    assert not any(" c (" in w for w in got)  # c is not in this run
    assert set(warnings_for(eager, eager.hosts.values())) == set(eager.warnings)
    assert warnings_for(lazy, lazy.select("d")) == file_warning


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_inventory", REPO / "bench" / "bench_inventory.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bench's inventory, 600 hosts (every kind of file and variable level it has at 10,000)."""
    return _bench().generate(tmp_path_factory.mktemp("gen"), 600, 2222)  # type: ignore[no-any-return]


@pytest.mark.parametrize("fmt", ["ini", "yaml"])
def test_lazy_and_eager_build_the_same_hosts(generated: dict[str, Path], fmt: str) -> None:
    eager, lazy = load_inventory(generated[fmt]), load_inventory(generated[fmt], lazy=True)
    assert list(lazy.hosts) == list(eager.hosts)
    for name in reversed(list(eager.hosts)):  # any order of reading builds the same host
        assert lazy.hosts[name] == eager.hosts[name]
        assert list(lazy.hosts[name].vars) == list(eager.hosts[name].vars)  # and the same key order
        assert lazy.var_sources[name] == eager.var_sources[name]
    assert lazy.membership() == eager.membership()
    assert set(warnings_for(lazy, lazy.hosts.values())) == set(eager.warnings)


def test_both_formats_of_the_generated_inventory_agree(generated: dict[str, Path]) -> None:
    ini, yaml = load_inventory(generated["ini"]), load_inventory(generated["yaml"])
    assert list(ini.hosts) == list(yaml.hosts)
    for name in ini.hosts:
        assert ini.hosts[name].vars == yaml.hosts[name].vars, name
        assert ini.hosts[name].groups == yaml.hosts[name].groups, name
        assert ini.hosts[name].connection == yaml.hosts[name].connection, name


def test_groups_var_is_the_groups_of_the_hosts(generated: dict[str, Path]) -> None:
    inv = load_inventory(generated["ini"], lazy=True)
    expected: dict[str, list[str]] = {"all": []}
    for h in load_inventory(generated["ini"]).hosts.values():  # what compile._view computes from Hosts
        expected["all"].append(h.name)
        for g in h.groups:
            if g != "all":
                expected.setdefault(g, []).append(h.name)
    got = inv.groups_var()
    assert got == expected and list(got) == list(expected)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["ini", "yaml"])
def test_generated_inventory_reads_as_ansible_reads_it(generated: dict[str, Path], fmt: str) -> None:
    from test_inventory_ansible_compat import _ansible, _membership  # tests/unit is on sys.path

    theirs = _ansible(generated[fmt])
    hostvars, membership = theirs["_meta"]["hostvars"], _membership(theirs)
    ours = load_inventory(generated[fmt], lazy=True)
    assert set(ours.hosts) == set(membership)
    for name in ours.hosts:
        host = ours.hosts[name]
        assert json.loads(json.dumps(host.vars)) == hostvars.get(name, {}), name
        assert set(host.groups) == membership[name], name


def test_ungrouped_and_all_keep_their_order_when_hosts_move(tmp_path: Path) -> None:
    """Hosts at the top of an INI file that a group lists too leave ``ungrouped``; the others stay in order."""
    (tmp_path / "hosts").write_text("a\nb\nc\nd\n[web]\nc\na\ne\n[web]\na\n")
    inv = load_inventory(tmp_path / "hosts")
    assert inv.groups["ungrouped"].hosts == ["b", "d"]
    assert inv.groups["web"].hosts == ["c", "a", "e"]  # each once, in the order first listed
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "hosts.yaml").write_text(
        "all:\n  hosts: {p: , q: , r: }\n  children:\n    db:\n      hosts: {q: , s: }\n")
    inv = load_inventory(tmp_path / "y")
    assert inv.groups["all"].hosts == [] and inv.groups["ungrouped"].hosts == ["p", "r"]
    assert inv.groups["db"].hosts == ["q", "s"]
    assert list(inv.hosts) == ["p", "q", "r", "s"]


def test_a_flat_inventory_of_many_hosts(tmp_path: Path) -> None:
    """10,000 hosts in one group (no timing: the list lookups that made this quadratic are gone)."""
    (tmp_path / "hosts").write_text("".join(f"h{i:05d} ansible_host=10.0.{i // 256}.{i % 256}\n" for i in range(10000)))
    inv = load_inventory(tmp_path / "hosts", lazy=True)
    assert inv.groups["ungrouped"].hosts == [f"h{i:05d}" for i in range(10000)]
    assert inv.select("h09999")[0].connection.address == "10.0.39.15"
