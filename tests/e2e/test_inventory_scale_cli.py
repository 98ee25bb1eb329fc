"""A big inventory as a user types the commands: ``--limit ONE`` and ``inventory --host ONE`` work on
ONE only. Every other host is given variables that cannot be rendered (a manifest value and a
connection value naming undefined variables), so any per-host work done for them is an error.

The inventory is the bench's generator (bench/bench_inventory.py) at 2,000 hosts: no timing is
asserted here (bench/ shows speed), only that the other hosts are not built or rendered.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import REPO, driftctl

ONE = "host-00042"
HOSTS = 2000


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_inventory", REPO / "bench" / "bench_inventory.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(inventory, manifests): every host but ONE has a host_vars file that breaks its catalog
    (``motd_text``) and its connection (``ansible_host``) once rendered."""
    root = tmp_path_factory.mktemp("big")
    bench = _bench()
    inventory = bench.generate(root / "inv", HOSTS, _closed_port())["yaml"]
    manifests = bench.write_manifest(root)
    for n in range(HOSTS):
        name = bench.hostname(n)
        if name != ONE:
            f = inventory / "host_vars" / f"{name}.yaml"
            before = f.read_text() if f.exists() else ""
            f.write_text(before + 'motd_text: "{{ undefined_motd }}"\n')
    return inventory, manifests


def _break_connections(inventory: Path) -> None:
    for f in (inventory / "host_vars").iterdir():
        if f.stem != ONE and "ansible_host" not in f.read_text():
            f.write_text(f.read_text() + 'ansible_host: "{{ undefined_address }}"\n')


def test_plan_limit_renders_only_that_hosts_catalog(big: tuple[Path, Path], tmp_path: Path) -> None:
    """A guard: plan compiled only the selected hosts' catalogs before this work too."""
    inventory, manifests = big
    r = driftctl("plan", inventory, "--limit", ONE, "-m", manifests, "--connect-timeout", "1",
                 state_dir=tmp_path / "state")
    assert r.rc == 8, r.output  # ONE is unreachable (a closed port): its catalog was rendered, nobody else's
    assert "undefined_motd" not in r.output
    assert f"{ONE}: unreachable" in r.output or f"{ONE}  unreachable" in r.output


def test_inventory_host_builds_only_that_host(big: tuple[Path, Path], tmp_path: Path) -> None:
    inventory, _ = big
    broken = tmp_path / "inv"
    shutil.copytree(inventory, broken)
    _break_connections(broken)
    assert driftctl("inventory", broken, "--json", state_dir=tmp_path / "s").rc == 1  # every host: an error
    r = driftctl("inventory", broken, "--host", ONE, "--json", state_dir=tmp_path / "s")
    assert r.rc == 0, r.output
    doc = r.json()
    assert doc["host"] == ONE and doc["connection"]["address"] == "127.0.0.1"
    assert doc["vars"]["region"] == "region00" and "r00_svc02" in doc["groups"]  # 20 hosts a service group


def test_plan_limit_builds_only_that_hosts_connection(big: tuple[Path, Path], tmp_path: Path) -> None:
    inventory, manifests = big
    broken = tmp_path / "inv"
    shutil.copytree(inventory, broken)
    _break_connections(broken)
    r = driftctl("plan", broken, "--limit", ONE, "-m", manifests, "--connect-timeout", "1",
                 state_dir=tmp_path / "state")
    assert r.rc == 8, r.output
    assert "undefined_address" not in r.output
