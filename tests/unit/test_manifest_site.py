"""The example site in manifests/ compiles for every host of the example inventories, with the real
resource types and this machine's own facts (a Debian 12 controller, like the fleet hosts)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from driftctl import graph
from driftctl.agent.facts import gather_facts
from driftctl.inventory import Inventory, load_inventory
from driftctl.manifest import compile_catalog, load_site, preflight
from driftctl.model import Catalog

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"


def fleet_shaped_inventory(tmp_path: Path, n: int = 4) -> Path:
    """An inventory shaped like the one tests/fleet/fleet.py writes (fleet1..N, web first half, db rest)."""
    web = [f"fleet{i}" for i in range(1, n // 2 + 1)]
    db = [f"fleet{i}" for i in range(n // 2 + 1, n + 1)]

    def hosts(names: list[str]) -> str:
        return "".join(f"        {h}:\n          ansible_host: 127.0.0.1\n          ansible_port: {2200 + i}\n"
                       for i, h in enumerate(names))

    (tmp_path / "group_vars").mkdir(parents=True)
    (tmp_path / "hosts.yaml").write_text(
        "all:\n  children:\n    web:\n      hosts:\n" + textwrap.indent(hosts(web), "  ")
        + "    db:\n      hosts:\n" + textwrap.indent(hosts(db), "  "))
    (tmp_path / "group_vars" / "all.yaml").write_text("ansible_user: root\n")
    return tmp_path


@pytest.fixture(scope="module")
def facts() -> dict[str, Any]:
    return gather_facts()


@pytest.fixture(scope="module")
def site() -> Any:
    return load_site(MANIFESTS)


def inventories(tmp_path: Path) -> list[Inventory]:
    found = [load_inventory(REPO / "inventory" / "prod"), load_inventory(fleet_shaped_inventory(tmp_path))]
    if (REPO / "inventory" / "fleet" / "hosts.yaml").exists():  # written by `fleet.py up`
        found.append(load_inventory(REPO / "inventory" / "fleet"))
    return found


def check_catalog(cat: Catalog, groups: tuple[str, ...]) -> None:
    ids = [r.id for r in cat.resources]
    pos = {rid: i for i, rid in enumerate(ids)}
    by_id = cat.by_id()
    for rid in ("package:vim-tiny", "package:curl", "line:sshd-permit-root-login",
                "line:sshd-password-authentication", "service:ssh", "sysctl:net.ipv4.tcp_syncookies", "file:/etc/motd"):
        assert rid in ids
    assert by_id["line:sshd-permit-root-login"].params["text"] == "PermitRootLogin prohibit-password"
    assert by_id["line:sshd-password-authentication"].notify == ["service:ssh"]
    assert pos["line:sshd-permit-root-login"] < pos["service:ssh"]
    assert f"host    {cat.host}" in by_id["file:/etc/motd"].params["content"]
    assert set(cat.watch) == {"/etc/ssh", "/etc/sudoers.d", "/etc/cron.d"}
    if "web" in groups:
        site_conf = "file:/etc/nginx/sites-available/driftctl"
        assert by_id["service:nginx"].subscribe == [
            "line:nginx-worker-processes", site_conf, "symlink:/etc/nginx/sites-enabled/driftctl"]
        assert pos["package:nginx"] < pos[site_conf] < pos["symlink:/etc/nginx/sites-enabled/driftctl"] \
            < pos["service:nginx"]
        assert f"server_name {cat.host};" in by_id[site_conf].params["content"]
        assert by_id["symlink:/etc/nginx/sites-enabled/driftctl"].params["target"] == \
            "/etc/nginx/sites-available/driftctl"
    else:
        assert not any(rid.endswith("nginx") for rid in ids)
    graph.order(cat.resources)  # a valid order (compile already ordered it; this re-checks for cycles)


def test_example_site_compiles_for_every_host(tmp_path: Path, site: Any, facts: dict[str, Any]) -> None:
    for inv in inventories(tmp_path):
        hosts = list(inv.hosts.values())
        catalogs = preflight(site, inv, hosts)
        assert set(catalogs) == set(inv.hosts)
        assert all(c.uses_facts for c in catalogs.values())  # the motd shows the distribution
        digests = set()
        for host in hosts:
            cat = compile_catalog(site, inv, host, facts)
            check_catalog(cat, host.groups)
            assert facts["distribution_pretty"] in cat.by_id()["file:/etc/motd"].params["content"]
            digests.add(cat.digest)
        assert len(digests) == len(hosts)  # the hostname is in every catalog


def test_prod_specifics(site: Any, facts: dict[str, Any]) -> None:
    inv = load_inventory(REPO / "inventory" / "prod")
    canary = compile_catalog(site, inv, inv.hosts["web-canary.prod.example.com"], facts).by_id()
    assert canary["line:nginx-worker-processes"].params["text"] == "worker_processes 2;"  # host_vars win
    assert "listen 443;" in canary["file:/etc/nginx/sites-available/driftctl"].params["content"]
    assert "Release 2026.11.3" in canary["file:/var/www/html/index.html"].params["content"]
    assert canary["file:/etc/motd"].params["content"].startswith("PRODUCTION - changes go through driftctl\n")
    for admin in ("alice", "bob"):
        assert canary[f"user:{admin}"].params["groups"] == ["sudo"]
        assert canary[f"authorized_key:{admin}"].require == [f"user:{admin}"]
    db = compile_catalog(site, inv, inv.hosts["db1.prod.example.com"], facts)
    assert "rep-6Jq2-example-not-real" in db.secrets  # a !secret in group_vars/db/secrets.yaml


def test_example_site_catalogs_are_reproducible(tmp_path: Path, facts: dict[str, Any]) -> None:
    inv = load_inventory(REPO / "inventory" / "prod")
    host = inv.hosts["web01.prod.example.com"]
    first = compile_catalog(load_site(MANIFESTS), inv, host, facts).digest
    assert compile_catalog(load_site(MANIFESTS), load_inventory(REPO / "inventory" / "prod"), host, facts).digest \
        == first
    other = compile_catalog(load_site(MANIFESTS), inv, host, {**facts, "distribution_pretty": "Debian 13"}).digest
    assert other != first
