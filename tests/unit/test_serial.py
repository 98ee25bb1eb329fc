"""--serial and --max-fail-percentage: values, batches (checked against ansible-core's own batching),
the stop rule, and an engine run whose first batch fails: later batches never start (local transport)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from driftctl import batches, config
from driftctl.cli.opt_run import RunOptions
from driftctl.engine import Engine, Event
from driftctl.errors import ConfigError, ExitCode, InputError
from driftctl.inventory import load_inventory
from driftctl.manifest import load_site
from driftctl.transport.base import TransportOptions
from driftctl.transport.local import LocalTransport

pytestmark = pytest.mark.applies_here  # its host lock is this machine's (tests/conftest.py)


def ansible_batches(n_hosts: int, serial: list[Any]) -> list[list[str]]:
    """ansible-core's PlaybookExecutor._get_serialized_batches over hosts h0..h(n-1)."""
    from ansible import context
    from ansible.executor.playbook_executor import PlaybookExecutor
    from ansible.inventory.manager import InventoryManager
    from ansible.module_utils.common.collections import ImmutableDict
    from ansible.parsing.dataloader import DataLoader
    from ansible.playbook.play import Play
    from ansible.vars.manager import VariableManager

    context.CLIARGS = ImmutableDict({"syntax": False, "start_at_task": None, "listhosts": False,
                                     "listtasks": False, "listtags": False})
    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=",".join(f"h{i}" for i in range(n_hosts)) + ",")
    vm = VariableManager(loader=loader, inventory=inv)
    play = Play.load({"hosts": "all", "gather_facts": False, "serial": serial, "tasks": []}, loader=loader,
                     variable_manager=vm)
    executor = PlaybookExecutor(playbooks=[], inventory=inv, variable_manager=vm, loader=loader, passwords={})
    return [[h.name for h in b] for b in executor._get_serialized_batches(play)]


@pytest.mark.parametrize("text", ["1", "2", "3", "1,5,25%", "25%", "10%", "1,50%", "100%", "2,1", "99%", "7"])
@pytest.mark.parametrize("n_hosts", [1, 3, 10, 17])
def test_batches_match_ansible(text: str, n_hosts: int) -> None:
    hosts = [f"h{i}" for i in range(n_hosts)]
    ours = batches.split(hosts, batches.parse_serial(text))
    assert ours == ansible_batches(n_hosts, [v.strip() for v in text.split(",")])


@pytest.mark.parametrize("text", ["0", "abc", "150%", "-1", "0%", "1,,2", "", "2.5", "5 %x", "%"])
def test_bad_serial_is_an_input_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--serial"):
        batches.parse_serial(text)


@pytest.mark.parametrize("text", ["abc", "-1", "150", "101%", "nan", ""])
def test_bad_max_fail_is_an_input_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--max-fail-percentage"):
        batches.parse_max_fail(text)


def test_max_fail_needs_serial() -> None:
    with pytest.raises(ConfigError, match="needs --serial"):
        RunOptions(max_fail_percentage="10").parse()
    assert RunOptions(serial="1,50%", max_fail_percentage="20%").parse().max_fail == 20


def test_the_stop_rule_is_strictly_greater_per_batch() -> None:
    assert not batches.judge(1, 4, 25).stop  # 25% is not more than 25%
    assert batches.judge(2, 4, 25).stop
    assert batches.judge(1, 10, 0).stop  # 0: any failure stops
    assert not batches.judge(0, 10, 0).stop
    assert batches.judge(3, 3, None).stop  # every host failed: Ansible stops without a threshold too
    assert batches.judge(3, 3, 100).stop
    assert not batches.judge(2, 3, None).stop
    assert "2 of 4 hosts failed (50% > --max-fail-percentage 25)" in batches.judge(2, 4, 25).why


def test_a_failed_first_batch_leaves_later_hosts_untouched(tmp_path: Path) -> None:
    """Batch 1 is a host whose resource fails (a file in a directory that does not exist); the other two
    hosts (local transport, each writing its own file) must never be contacted."""
    target = tmp_path / "target"
    target.mkdir()
    inv_dir = tmp_path / "inv"
    inv_dir.mkdir()
    (inv_dir / "hosts.yaml").write_text(
        "all:\n  hosts:\n" + "".join(f"    h{i}:\n      driftctl_transport: local\n      n: {i}\n" for i in range(3)))
    root = tmp_path / "manifests"
    (root / "roles" / "r").mkdir(parents=True)
    (root / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (root / "roles" / "r" / "resources.yaml").write_text(
        "resources:\n"
        f"  - file: \"{target}/{{{{ 'missing/' if n == 0 else '' }}}}h{{{{ n }}}}.txt\"\n"
        "    content: \"x\\n\"\n")
    inv = load_inventory(inv_dir)
    contacted: list[str] = []
    events: list[Event] = []

    def factory(host: Any, options: Any) -> LocalTransport:
        contacted.append(host.name)
        return LocalTransport(host, options)

    # one host at a time: the three "hosts" are this machine, whose agent lock lets one change it at once
    settings = config.load({"state_dir": str(tmp_path / "state"), "parallel": 1})
    engine = Engine(load_site(root), inv, settings, TransportOptions(), transport_factory=factory,
                    on_event=events.append)
    engine.serial = batches.parse_serial("1")
    engine.max_fail = 0.0
    run = engine.run("apply", inv.select(None))
    assert contacted == ["h0"]
    assert [h.status for h in run.hosts] == ["failed", "failed", "failed"]
    assert [h.batch for h in run.hosts] == [1, 2, 3]
    assert run.serial is not None and run.serial.stopped_after == 1 and run.serial.not_started == ["h1", "h2"]
    assert all(h.error and h.error.startswith("not started: batch 1:") for h in run.hosts[1:])
    assert run.exit_code & ExitCode.ABORTED
    assert sorted(p.name for p in target.iterdir()) == []  # nothing written anywhere
    assert [e.phase for e in events if e.kind == "batch"] == ["1/3"]

    engine.serial = batches.parse_serial("1,2")  # a threshold not passed: every batch runs
    engine.max_fail = None
    (target / "missing").mkdir()
    contacted.clear()
    run = engine.run("apply", inv.select(None))
    assert contacted == ["h0", "h1", "h2"] and run.serial is not None and run.serial.stopped_after is None
    assert not run.exit_code & ExitCode.ABORTED
    assert sorted(p.name for p in target.rglob("*.txt")) == ["h0.txt", "h1.txt", "h2.txt"]


def test_reports_say_which_batches_never_started() -> None:
    import jsonschema

    from driftctl.model import Batches, HostResult, RunResult
    from driftctl.report import document, render
    from driftctl.store import json_schema

    why = "batch 1: 1 of 1 hosts failed (100% > --max-fail-percentage 0)"
    run = RunResult("apply", [
        HostResult("a", "unreachable", error="connection refused", batch=1),
        HostResult("b", "failed", error=f"not started: {why}", interrupted="aborted", batch=2),
    ], aborted=True, serial=Batches([["a"], ["b"]], 0.0, 1, why, ["b"]))
    doc = document.build(run, "inv")
    jsonschema.Draft202012Validator(json_schema()).validate(doc)
    assert doc["serial"] == {"batches": [["a"], ["b"]], "max_fail_percentage": 0.0, "stopped_after": 1,
                             "reason": why, "not_started": ["b"]}
    assert [h["batch"] for h in doc["hosts"]] == [1, 2]
    assert doc["exit_code"] & ExitCode.ABORTED
    for fmt in ("markdown", "html"):
        assert "Stopped after batch 1 of 2" in render(doc, fmt) and "never started: b" in render(doc, fmt)


def test_an_input_error_in_a_later_batch_stops_the_run_before_the_first(tmp_path: Path) -> None:
    """Every catalog is checked before batch 1 works: a mistake in the last host's changes nothing anywhere."""
    target = tmp_path / "target"
    target.mkdir()
    inv_dir = tmp_path / "inv"
    inv_dir.mkdir()
    (inv_dir / "hosts.yaml").write_text(
        "all:\n  hosts:\n" + "".join(f"    h{i}:\n      driftctl_transport: local\n      n: {i}\n" for i in range(3)))
    root = tmp_path / "manifests"
    (root / "roles" / "r").mkdir(parents=True)
    (root / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (root / "roles" / "r" / "resources.yaml").write_text(
        "resources:\n"
        f"  - file: \"{target}/h{{{{ n }}}}.txt\"\n"
        "    content: \"{{ 'x' if n != 2 else no_such_variable }}\\n\"\n")
    inv = load_inventory(inv_dir)
    settings = config.load({"state_dir": str(tmp_path / "state"), "parallel": 1})
    engine = Engine(load_site(root), inv, settings, TransportOptions(), transport_factory=LocalTransport)
    engine.serial = batches.parse_serial("1")
    with pytest.raises(InputError, match="no_such_variable"):  # exit 1
        engine.run("apply", inv.select(None))
    assert list(target.iterdir()) == []
