"""Variables whose values are templates (Ansible's group_vars habit): rendered with the host's other
variables, once, in the order they refer to each other; broken ones are errors only where used."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_manifest_support import TYPES, inventory, write_tree

from driftctl.errors import TemplateError
from driftctl.inventory import load_inventory
from driftctl.manifest import compile_catalog, load_site
from driftctl.secret import Secret

FACTS = {"distribution": "debian", "cpus": 4, "distribution_like": []}


def site(tmp_path: Path, resources: str, **files: str) -> Any:
    root = write_tree(tmp_path / "m", {"site.yaml": "- hosts: all\n  roles: [r]\n",
                                       "roles/r/resources.yaml": resources, **files})
    return load_site(root, types=TYPES)


def contents(s: Any, facts: dict[str, Any] | None = FACTS, **variables: Any) -> list[Any]:
    inv = inventory(**variables)
    cat = compile_catalog(s, inv, inv.hosts["web1"], facts, types=TYPES)
    return [r.params["content"] for r in cat.resources]


def test_a_chain_of_templated_variables_renders_in_order(tmp_path: Path) -> None:
    s = site(tmp_path, """
        resources:
          - file: /etc/a
            content: "{{ url }}"
          - file: /etc/b
            content: "{{ ports | join(',') }}"
    """, **{"roles/r/defaults.yaml": "scheme: https\nurl: '{{ scheme }}://{{ fqdn }}:{{ port }}/'\n"})
    # a default templated from an inventory variable, an inventory variable from a magic one, a list
    assert contents(s, fqdn="{{ inventory_hostname }}.example.com", ports=["{{ port }}", "{{ port + 1 }}"]) == [
        "https://web1.example.com:8080/", "8080,8081"]


def test_a_lone_expression_keeps_its_type(tmp_path: Path) -> None:
    s = site(tmp_path, "resources:\n  - file: /etc/a\n    content: \"{{ (double * 2) | string }}\"\n")
    assert contents(s, double="{{ port * 2 }}") == ["32320"]


def test_a_variable_built_from_a_secret_is_a_secret(tmp_path: Path) -> None:
    s = site(tmp_path, "resources:\n  - file: /etc/a\n    content: \"{{ db_url }}\"\n")
    inv = inventory(db_pw=Secret("Hunter2Secret"), db_url="postgres://app:{{ db_pw }}@db/app")
    cat = compile_catalog(s, inv, inv.hosts["web1"], FACTS, types=TYPES)
    assert "postgres://app:Hunter2Secret@db/app" in cat.secrets
    assert cat.resources[0].sensitive


def test_a_loop_or_a_broken_variable_is_an_error_only_where_used(tmp_path: Path) -> None:
    unused = site(tmp_path / "1", "resources:\n  - file: /etc/a\n    content: fine\n")
    broken = {"a": "{{ b }}", "b": "{{ a }}x", "ip": "{{ ansible_default_ipv4.address }}"}
    assert contents(unused, **broken) == ["fine"]  # Ansible renders a variable when used: so here
    used = site(tmp_path / "2", "resources:\n  - file: /etc/a\n    content: \"{{ a }}\"\n")
    with pytest.raises(TemplateError, match=r"variable [ab] refers to itself: (a -> b -> a|b -> a -> b)"):
        contents(used, **broken)
    fact = site(tmp_path / "3", "resources:\n  - file: /etc/a\n    content: \"{{ ip }}\"\n")
    with pytest.raises(TemplateError, match=r"variable ip: .*ansible_default_ipv4"):
        contents(fact, **broken)


def test_an_error_names_the_file_and_line_where_the_variable_was_written(tmp_path: Path) -> None:
    inv_dir = write_tree(tmp_path / "inv", {
        "hosts.yaml": "all:\n  hosts:\n    web1:\n",
        "group_vars/all.yml": "fine: 1\nbad: '{{ fine | no_such_filter }}'\n",
    })
    s = site(tmp_path, "resources:\n  - file: /etc/a\n    content: \"{{ bad }}\"\n")
    inv = load_inventory(inv_dir)
    with pytest.raises(TemplateError) as e:
        compile_catalog(s, inv, inv.hosts["web1"], FACTS, types=TYPES)
    assert e.value.location is not None
    assert (Path(e.value.location.file).name, e.value.location.line) == ("all.yml", 2)
    assert "no_such_filter" in str(e.value)


def test_a_variable_from_facts_is_known_only_with_the_facts(tmp_path: Path) -> None:
    s = site(tmp_path, "resources:\n  - file: /etc/a\n    content: \"{{ os }}\"\n")
    inv = inventory(os="{{ facts.distribution }}-{{ facts.cpus }}")
    preflight = compile_catalog(s, inv, inv.hosts["web1"], None, types=TYPES)
    assert preflight.uses_facts  # rendered again once the host's facts are known
    assert contents(s, os="{{ facts.distribution }}-{{ facts.cpus }}") == ["debian-4"]


@pytest.mark.skipif(shutil.which("ansible", path=str(Path(sys.executable).parent)) is None,
                    reason="ansible-core is the oracle")
def test_the_same_inventory_renders_as_ansible_renders_it(tmp_path: Path) -> None:
    inv_dir = write_tree(tmp_path / "inv", {
        "hosts.yaml": "all:\n  children:\n    web:\n      hosts:\n        web1:\n          port: 8080\n",
        "group_vars/all.yml": ("domain: example.com\nfqdn: '{{ inventory_hostname }}.{{ domain }}'\n"
                               "url: 'https://{{ fqdn }}:{{ port }}/'\nnames: ['{{ fqdn }}', 'www.{{ domain }}']\n"
                               "go_tmpl: !unsafe '{{ .Values.x }}'\n"),
        "group_vars/web.yml": "domain: web.example.com\n",
    })
    names = ("fqdn", "url", "names", "go_tmpl")
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path / "ah"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "at"),
           "ANSIBLE_NOCOLOR": "1", "PYTHONWARNINGS": "ignore"}
    ansible = Path(sys.executable).parent / "ansible"
    out = subprocess.run([str(ansible), "-i", str(inv_dir), "web1", "-c", "local", "-m", "debug", "-a",
                          f"msg={{{{ [{', '.join(names)}] }}}}"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout
    expected = json.loads(out.stdout.split("=>", 1)[1])["msg"]  # "web1 | SUCCESS => {JSON}"
    s = site(tmp_path, "resources:\n  - file: /etc/a\n    content: \"{{ [fqdn, url, names, go_tmpl] | to_json }}\"\n")
    inv = load_inventory(inv_dir)
    cat = compile_catalog(s, inv, inv.hosts["web1"], FACTS, types=TYPES)
    assert json.loads(cat.resources[0].params["content"]) == expected
