"""``driftctl inventory`` as a user types it: a real process, real files, exit codes and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
PROD = "inventory/prod"
ERRORS = REPO / "tests" / "unit" / "data" / "inventory" / "errors"
SECRETS = ("rep-6Jq2-example-not-real", "sudo-example-not-real")


def driftctl(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "driftctl", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_json_lists_every_host_with_connection_and_groups():
    r = driftctl("inventory", PROD, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["inventory"] == PROD
    assert doc["warnings"] == []
    assert list(doc["hosts"]) == [
        "lb1.prod.example.com", "lb2.prod.example.com",
        "web01.prod.example.com", "web02.prod.example.com", "web03.prod.example.com", "web04.prod.example.com",
        "web-canary.prod.example.com", "db1.prod.example.com", "db2.prod.example.com", "bastion.prod.example.com",
    ]
    canary = doc["hosts"]["web-canary.prod.example.com"]
    assert canary["address"] == "10.20.1.50"
    assert canary["user"] == "deploy" and canary["become"] is True
    assert canary["groups"] == ["all", "prod", "web"]
    assert canary["vars"]["nginx_worker_processes"] == 2  # the host beats group_vars/web.yaml
    assert canary["connection"]["proxy_jump"] == "ops@203.0.113.10:2222"
    assert canary["connection"]["connect_timeout"] == 15.0
    assert canary["source"] == "inventory/prod/hosts.yaml:19"
    assert doc["groups"]["prod"]["children"] == ["lb", "web", "db"]
    assert doc["groups"]["db"]["var_files"] == [
        "inventory/prod/group_vars/db/main.yaml", "inventory/prod/group_vars/db/secrets.yaml",
    ]


def test_secrets_are_redacted_everywhere():
    for args in (["--json"], [], ["--host", "db1.prod.example.com"], ["--host", "db2.prod.example.com", "--json"]):
        r = driftctl("inventory", PROD, *args)
        assert r.returncode == 0, r.stderr
        for secret in SECRETS:
            assert secret not in r.stdout and secret not in r.stderr
    doc = json.loads(driftctl("inventory", PROD, "--json").stdout)
    db1 = doc["hosts"]["db1.prod.example.com"]
    assert db1["vars"]["postgres_replication_password"] == "********"
    assert db1["vars"]["ansible_become_password"] == "********"
    assert db1["connection"]["become_password"] == "********"
    assert doc["groups"]["db"]["vars"]["postgres_replication_password"] == "********"


def test_limit_selects_hosts():
    r = driftctl("inventory", PROD, "--json", "--limit", "web:!web-canary*")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert list(doc["hosts"]) == [f"web0{i}.prod.example.com" for i in range(1, 5)]
    assert doc["groups"]["web"]["hosts"] == list(doc["hosts"])
    assert doc["groups"]["db"]["hosts"] == []


def test_limit_matching_nothing_exits_1_with_a_hint():
    r = driftctl("inventory", PROD, "--limit", "wbe")
    assert r.returncode == 1
    assert r.stdout == ""
    assert "host pattern 'wbe' matches no host or group (did you mean 'web'?)" in r.stderr


def test_host_shows_merged_vars_and_where_each_came_from():
    r = driftctl("inventory", PROD, "--host", "db1.prod.example.com")
    assert r.returncode == 0, r.stderr
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
            for line in r.stdout.splitlines() if line.startswith("│")}
    assert rows["postgres_shared_buffers"] == ["8GB", "host_vars/db1.prod.example.com.yaml:2"]
    assert rows["postgres_version"] == ["15", "group_vars/db/main.yaml:1"]
    assert rows["ansible_user"] == ["deploy", "hosts.yaml:8"]
    assert rows["postgres_replication_password"] == ["********", "group_vars/db/secrets.yaml:2"]
    assert "via ops@203.0.113.10:2222, become root" in r.stdout


def test_host_json_has_sources():
    r = driftctl("inventory", PROD, "--host", "web01.prod.example.com", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["host"] == "web01.prod.example.com"
    assert doc["vars"]["nginx_listen_port"] == 443
    assert doc["sources"]["nginx_listen_port"] == "inventory/prod/group_vars/web.yaml:2"
    assert doc["sources"]["env"] == "inventory/prod/hosts.yaml:7"


def test_unknown_host_exits_1_with_a_hint():
    r = driftctl("inventory", PROD, "--host", "db1.prod.exmaple.com")
    assert r.returncode == 1
    assert "no host named 'db1.prod.exmaple.com' in the inventory (did you mean 'db1.prod.example.com'?)" in r.stderr


def test_graph_shows_the_group_tree():
    r = driftctl("inventory", PROD, "--graph")
    assert r.returncode == 0, r.stderr
    lines = [line.rstrip() for line in r.stdout.splitlines()]
    assert lines[0] == "@all"
    text = "\n".join(lines)
    assert text.index("@prod") < text.index("@web") < text.index("web01.prod.example.com") < text.index("@db")
    assert "@bastion" in text and "@ungrouped" not in text  # empty groups are left out


def test_graph_json_with_limit():
    r = driftctl("inventory", PROD, "--graph", "--json", "--limit", "db")
    doc = json.loads(r.stdout)["graph"]
    assert doc == {
        "name": "all", "hosts": [],
        "children": [{"name": "prod", "hosts": [], "children": [
            {"name": "db", "hosts": ["db1.prod.example.com", "db2.prod.example.com"], "children": []},
        ]}],
    }


def test_table_lists_hosts():
    r = driftctl("inventory", PROD)
    assert r.returncode == 0, r.stderr
    assert "inventory/prod: 10 of 10 hosts" in r.stdout
    row = next(line for line in r.stdout.splitlines() if "bastion.prod.example.com" in line)
    assert [c.strip() for c in row.split("│")[1:-1]] == [
        "bastion.prod.example.com", "203.0.113.10:2222", "ops", "-", "ssh", "bastion",
    ]


@pytest.mark.parametrize(
    ("fixture", "where"),
    [("cycle.yaml", "cycle.yaml:7"), ("children_undefined.ini", "children_undefined.ini:6"),
     ("become_maybe", "become_maybe/group_vars/web.yml:2")],
)
def test_bad_inventory_exits_1_naming_file_and_line(fixture, where):
    r = driftctl("inventory", str(ERRORS / fixture), "--json")
    assert r.returncode == 1
    assert r.stdout == ""
    assert f"error: {ERRORS / where}:" in r.stderr.replace("\n", "")


def test_missing_inventory_exits_1():
    r = driftctl("inventory", "inventory/nope")
    assert r.returncode == 1
    assert "inventory/nope: inventory not found" in r.stderr


def test_warnings_go_to_stderr_and_json_stays_clean(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts").write_text("[web]\nweb1\n")
    (tmp_path / "group_vars" / "wbe.yml").write_text("x: 1\n")
    r = driftctl("inventory", str(tmp_path), "--json")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert list(doc["hosts"]) == ["web1"]
    assert "warning:" in r.stderr and "no group named 'wbe'" in r.stderr.replace("\n", "")
    assert len(doc["warnings"]) == 1


def test_host_and_limit_together_is_a_usage_error():
    r = driftctl("inventory", PROD, "--host", "x", "--limit", "web")
    assert r.returncode == 1
    assert "--host cannot be combined with --graph or --limit" in r.stderr


def test_secret_connection_values_are_redacted_in_every_view(tmp_path):
    (tmp_path / "hosts.yaml").write_text(
        "all:\n  hosts:\n    h1:\n      ansible_host: !secret 198.51.100.77\n"
        "      ansible_user: !secret svc-hidden-user\n      ansible_ssh_pass: plain-but-a-password\n"
    )
    hidden = ("198.51.100.77", "svc-hidden-user", "plain-but-a-password")
    for args in ([], ["--json"], ["--graph"], ["--host", "h1"], ["--host", "h1", "--json"]):
        r = driftctl("inventory", str(tmp_path), *args)
        assert r.returncode == 0, r.stderr
        for value in hidden:
            assert value not in r.stdout, (args, value)
    doc = json.loads(driftctl("inventory", str(tmp_path), "--json").stdout)
    assert doc["hosts"]["h1"]["address"] == "********"
    assert doc["hosts"]["h1"]["connection"]["password"] == "********"


def test_json_is_utf8_as_is_whatever_the_locale(tmp_path):
    """--json goes through the one JSON writer: UTF-8 as is (no \\u escapes), even when the locale's
    encoding could not hold it, keys in the inventory's order, one trailing newline."""
    (tmp_path / "hosts.yaml").write_text("all:\n  hosts:\n    zeta:\n      motd: Grüße, café\n    alpha: {}\n",
                                         encoding="utf-8")
    env = {**os.environ, "NO_COLOR": "1", "PYTHONIOENCODING": "ascii"}
    proc = subprocess.run([sys.executable, "-m", "driftctl", "inventory", str(tmp_path), "--json"], cwd=REPO,
                          env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode("utf-8")
    assert "Grüße, café" in text and "\\u00fc" not in text
    assert text.endswith("}\n") and not text.endswith("\n\n")
    doc = json.loads(text)
    assert list(doc["hosts"]) == ["zeta", "alpha"]
    assert doc["hosts"]["zeta"]["vars"]["motd"] == "Grüße, café"
