"""The inventory loader: formats, groups, variable precedence, group_vars/host_vars, warnings.

Expected values were written from Ansible's documented behaviour and checked against
ansible-inventory 2.19 on the same fixture files (tests/unit/data/inventory/).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from driftctl.errors import InventoryError, Location
from driftctl.inventory import load_inventory

DATA = Path(__file__).parent / "data" / "inventory"
REPO = Path(__file__).parents[2]


# --- precedence -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def precedence():
    return load_inventory(DATA / "precedence")


def test_host_vars_beat_child_beat_parent_beat_all(precedence):
    h1 = precedence.hosts["h1"].vars
    assert h1["level"] == "host"  # set in all, parent, child and on the host
    assert h1["only_all"] == "from-all"  # set only in all: inherited
    assert h1["only_parent"] == "from-parent"


def test_child_group_beats_parent_group(precedence):
    # h2 has no host-level 'deep'; alpha (depth 1) and child (depth 2) both set it
    assert precedence.hosts["h2"].vars["deep"] == "child"


def test_same_depth_alphabetical_later_wins(precedence):
    # child and zeta are both at depth 2: 'zeta' sorts later and wins
    assert precedence.hosts["h2"].vars["same_depth"] == "zeta"


def test_group_priority_beats_name_at_same_depth(precedence):
    # 'low' has ansible_group_priority 5 (default 1), so it applies after 'high' despite its name
    assert precedence.hosts["h3"].vars["prio"] == "low-but-priority-5"
    assert precedence.groups["low"].priority == 5
    assert precedence.groups["high"].priority == 1
    # Ansible keeps the priority on the group, not among the variables
    assert "ansible_group_priority" not in precedence.hosts["h3"].vars


def test_group_vars_files_beat_inventory_file_group_vars(precedence):
    # Ansible: any group's vars in the hosts file < group_vars/all < group_vars/<group>
    assert precedence.hosts["h1"].vars["tier"] == "group_vars-all"


def test_group_vars_child_file_beats_parent_and_all_files(precedence):
    assert precedence.hosts["h2"].vars["file_tier"] == "group_vars-child-10"
    assert precedence.hosts["h3"].vars["file_tier"] == "group_vars-all"


def test_host_vars_file_beats_everything(precedence):
    assert precedence.hosts["h1"].vars["file_tier"] == "host_vars-h1"
    assert precedence.hosts["h2"].vars["level"] == "host_vars-h2"  # host_vars/h2 has no extension


def test_group_vars_directory_files_merge_in_lexical_order(precedence):
    assert precedence.hosts["h1"].vars["merge_order"] == "second"
    child = precedence.groups["child"]
    assert [Path(f).name for f in child.var_files] == ["10-first.yaml", "20-second.yaml"]


def test_values_are_replaced_not_merged(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yaml").write_text("all:\n  children:\n    web:\n      hosts:\n        w1:\n")
    (tmp_path / "group_vars" / "all.yaml").write_text("limits: {nofile: 1024, nproc: 512}\n")
    (tmp_path / "group_vars" / "web.yaml").write_text("limits: {nofile: 4096}\n")
    assert load_inventory(tmp_path).hosts["w1"].vars["limits"] == {"nofile": 4096}


def test_var_sources_name_the_file_and_line(precedence):
    src = precedence.var_sources["h1"]
    assert src["level"] == Location(str(DATA / "precedence" / "hosts.yaml"), 22)
    assert src["tier"] == Location(str(DATA / "precedence" / "group_vars" / "all.yml"), 1)
    assert src["merge_order"] == Location(str(DATA / "precedence" / "group_vars" / "child" / "20-second.yaml"), 1)
    assert precedence.var_source("h1", "file_tier") == Location(
        str(DATA / "precedence" / "host_vars" / "h1.yaml"), 1
    )


def test_groups_include_ancestors_and_all_in_precedence_order(precedence):
    assert precedence.hosts["h1"].groups == ("all", "parent", "child")
    assert precedence.hosts["h2"].groups == ("all", "alpha", "parent", "child", "zeta")
    assert precedence.hosts["h3"].groups == ("all", "high", "low")


def test_group_structure(precedence):
    g = precedence.groups
    assert g["parent"].children == ["child", "zeta"]
    assert g["child"].parents == ["parent"]
    assert g["child"].hosts == ["h1", "h2"]
    assert g["child"].depth == 2 and g["parent"].depth == 1 and g["all"].depth == 0
    assert set(g["all"].children) >= {"parent", "alpha", "low", "high", "ungrouped"}
    assert g["child"].location == Location(str(DATA / "precedence" / "hosts.yaml"), 14)


def test_hosts_are_in_inventory_order(precedence):
    assert list(precedence.hosts) == ["h1", "h2", "h3"]


# --- YAML and INI ---------------------------------------------------------------------------


def _summary(inv):
    return {
        name: (h.vars, sorted(h.groups), h.connection)
        for name, h in inv.hosts.items()
    }


def test_ini_and_yaml_give_the_same_inventory():
    ini = load_inventory(DATA / "equiv" / "hosts.ini")
    yml = load_inventory(DATA / "equiv" / "hosts.yaml")
    assert _summary(ini) == _summary(yml)
    assert sorted(ini.hosts) == sorted(yml.hosts)
    for name in ("web", "db", "prod", "ungrouped"):
        assert sorted(ini.members(name)) == sorted(yml.members(name))


def test_ini_values_are_parsed_like_ansible():
    inv = load_inventory(DATA / "equiv" / "hosts.ini")
    canary = inv.hosts["web-canary"].vars
    assert canary["canary"] is True
    assert canary["note"] == "two words"
    assert inv.hosts["db2"].vars["weight"] == 0.5
    assert inv.hosts["web01"].vars["http_port"] == 8080  # int, and the host line beats group_vars/web.yaml
    assert inv.hosts["web02"].vars["http_port"] == 8443  # host_vars/web02.yaml
    assert inv.hosts["web01"].vars["nginx_workers"] == 4
    prod = inv.groups["prod"].vars
    assert prod["ansible_become"] == "yes"  # not a Python literal: stays text, as in Ansible
    assert prod["ntp"] == ["0.pool.ntp.org", "1.pool.ntp.org"]
    assert prod["limits"] == {"nofile": 4096}


def test_ini_host_port_and_ranges():
    inv = load_inventory(DATA / "equiv" / "hosts.ini")
    assert [h for h in inv.hosts if h.startswith("web")] == ["web01", "web02", "web03", "web-canary"]
    assert inv.hosts["db1"].connection.port == 5522
    assert inv.hosts["db1"].vars["ansible_port"] == 5522
    assert inv.hosts["bastion"].groups == ("all", "ungrouped")


def test_ini_vars_line_keeps_everything_after_the_first_equals(tmp_path):
    f = tmp_path / "hosts.ini"
    f.write_text("[web]\nw1\n[web:vars]\nopts=a=b c\ncount = 3\nlabel=x # not a comment here\n")
    v = load_inventory(f).hosts["w1"].vars
    assert v["opts"] == "a=b c"
    assert v["count"] == 3
    assert v["label"] == "x # not a comment here"  # Ansible's [x:vars] lines have no comments


def test_ini_host_line_comments_and_quotes(tmp_path):
    f = tmp_path / "hosts.ini"
    f.write_text("; a comment\n[web]\nw1 motd='hello world' # trailing comment\n")
    assert load_inventory(f).hosts["w1"].vars == {"motd": "hello world"}


def test_ini_groups_may_be_declared_after_their_vars_and_children(tmp_path):
    f = tmp_path / "hosts"
    f.write_text("[prod:children]\nweb\n[web:vars]\nx=1\n[web]\nw1\n")
    inv = load_inventory(f)
    assert inv.hosts["w1"].groups == ("all", "prod", "web")
    assert inv.hosts["w1"].vars == {"x": 1}


def test_ini_host_in_ungrouped_and_a_group_is_not_ungrouped(tmp_path):
    f = tmp_path / "hosts.ini"
    f.write_text("w1\n[web]\nw1\n")
    inv = load_inventory(f)
    assert inv.hosts["w1"].groups == ("all", "web")
    assert inv.groups["ungrouped"].hosts == []


@pytest.mark.parametrize(
    ("text", "expected_groups"),
    [
        ("all:\n  children:\n    web:\n      hosts:\n        w1:\n", ("all", "web")),  # YAML
        ("---\nweb:\n  hosts:\n    w1:\n", ("all", "web")),  # YAML, top-level group
        ("[web]\nw1\n", ("all", "web")),  # INI
        ("# comment\nw1 ansible_port=22\n", ("all", "ungrouped")),  # INI, no section
    ],
)
def test_a_hosts_file_without_extension_may_be_yaml_or_ini(tmp_path, text, expected_groups):
    (tmp_path / "hosts").write_text(text)
    assert load_inventory(tmp_path).hosts["w1"].groups == expected_groups


def test_yaml_hosts_and_children_accept_a_single_name(tmp_path):
    f = tmp_path / "hosts.yaml"
    f.write_text("all:\n  children:\n    prod:\n      children: web\n    web:\n      hosts: w1\n")
    assert load_inventory(f).hosts["w1"].groups == ("all", "prod", "web")


def test_a_host_in_several_groups_collects_its_vars_in_order(tmp_path):
    f = tmp_path / "hosts.yaml"
    f.write_text(
        "all:\n  children:\n    a:\n      hosts:\n        h: {x: 1, y: 1}\n"
        "    b:\n      hosts:\n        h: {y: 2}\n"
    )
    h = load_inventory(f).hosts["h"]
    assert h.vars == {"x": 1, "y": 2}
    assert h.groups == ("all", "a", "b")
    assert h.source == Location(str(f), 5)


def test_directory_reads_every_inventory_file(tmp_path):
    (tmp_path / "10-web.yaml").write_text("web:\n  hosts:\n    w1:\n")
    (tmp_path / "hosts.ini").write_text("[db]\nd1\n[prod:children]\ndb\n")
    (tmp_path / "README.md").write_text("not an inventory\n")
    (tmp_path / "hosts.yaml~").write_text("an editor's backup\n")
    (tmp_path / "staging").mkdir()
    inv = load_inventory(tmp_path)
    assert list(inv.hosts) == ["w1", "d1"]
    assert inv.hosts["d1"].groups == ("all", "prod", "db")
    assert inv.warnings == [f"{tmp_path / 'staging'}: ignored (driftctl does not read inventories in subdirectories)"]


def test_single_file_reads_group_vars_next_to_it():
    inv = load_inventory(DATA / "equiv" / "hosts.yaml")
    assert inv.hosts["web03"].vars["nginx_workers"] == 4
    assert str(DATA / "equiv" / "group_vars" / "web.yaml") in inv.files


def test_group_vars_json_and_no_extension(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yaml").write_text(
        "all:\n  children:\n    web:\n      hosts:\n        w1:\n    db:\n      hosts:\n        d1:\n"
    )
    (tmp_path / "group_vars" / "web.json").write_text('{"port": 80, "tags": ["a", "b"]}\n')
    (tmp_path / "group_vars" / "db").write_text("port: 5432\n")
    inv = load_inventory(tmp_path)
    assert inv.hosts["w1"].vars == {"port": 80, "tags": ["a", "b"]}
    assert inv.hosts["d1"].vars == {"port": 5432}


def test_empty_vars_file_is_no_variables(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yaml").write_text("all:\n  hosts:\n    w1:\n")
    (tmp_path / "group_vars" / "all.yaml").write_text("# nothing yet\n")
    assert load_inventory(tmp_path).hosts["w1"].vars == {}


def test_secret_values_survive_loading():
    from driftctl.secret import Secret

    inv = load_inventory(REPO / "inventory" / "prod")
    value = inv.hosts["db1.prod.example.com"].vars["postgres_replication_password"]
    assert isinstance(value, Secret)
    assert "rep-6Jq2" not in repr(value)


# --- warnings -------------------------------------------------------------------------------


def test_vars_for_unknown_groups_and_hosts_are_warnings(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "hosts.yaml").write_text("all:\n  children:\n    web:\n      hosts:\n        web1:\n")
    (tmp_path / "group_vars" / "wbe.yaml").write_text("x: 1\n")
    (tmp_path / "host_vars" / "web2.yml").write_text("x: 1\n")
    inv = load_inventory(tmp_path)
    assert inv.hosts["web1"].vars == {}
    assert len(inv.warnings) == 2
    assert "group_vars/wbe.yaml" in inv.warnings[0] and "did you mean 'web'?" in inv.warnings[0]
    assert "host_vars/web2.yml" in inv.warnings[1] and "did you mean 'web1'?" in inv.warnings[1]


def test_a_shadowed_vars_file_is_a_warning_and_ignored(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yaml").write_text("all:\n  hosts:\n    w1:\n")
    (tmp_path / "group_vars" / "all.yml").write_text("x: yml\n")
    (tmp_path / "group_vars" / "all.yaml").write_text("x: yaml\n")
    inv = load_inventory(tmp_path)
    assert inv.hosts["w1"].vars == {"x": "yml"}  # Ansible reads NAME, NAME.yml, NAME.yaml: the first found
    assert len(inv.warnings) == 1 and "all.yaml: ignored" in inv.warnings[0]


def test_group_priority_in_group_vars_has_no_effect_and_warns(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yaml").write_text(
        "all:\n  children:\n    a:\n      hosts: {h: }\n    b:\n      hosts: {h: }\n"
    )
    (tmp_path / "group_vars" / "a.yaml").write_text("ansible_group_priority: 10\nx: a\n")
    (tmp_path / "group_vars" / "b.yaml").write_text("x: b\n")
    inv = load_inventory(tmp_path)
    assert inv.hosts["h"].vars["x"] == "b"
    assert any("ansible_group_priority has no effect in group_vars" in w for w in inv.warnings)


def test_empty_inventory_warns(tmp_path):
    (tmp_path / "hosts.yaml").write_text("all:\n  children:\n    web:\n")
    inv = load_inventory(tmp_path)
    assert inv.hosts == {}
    assert inv.warnings == [f"{tmp_path}: the inventory has no hosts"]
    assert inv.select(None) == []


def test_missing_inventory_is_an_error(tmp_path):
    with pytest.raises(InventoryError) as e:
        load_inventory(tmp_path / "nope")
    assert str(e.value).startswith(f"{tmp_path / 'nope'}: inventory not found")


def test_directory_without_inventory_file_is_an_error(tmp_path):
    (tmp_path / "group_vars").mkdir()
    with pytest.raises(InventoryError, match="no inventory file in this directory"):
        load_inventory(tmp_path)


# --- the example production inventory ---------------------------------------------------------


def test_example_prod_inventory_loads_cleanly():
    inv = load_inventory(REPO / "inventory" / "prod")
    assert inv.warnings == []
    assert len(inv.hosts) == 10
    assert inv.members("web")[:4] == [f"web0{i}.prod.example.com" for i in range(1, 5)]
    db1 = inv.hosts["db1.prod.example.com"]
    assert db1.groups == ("all", "prod", "db")
    assert db1.connection.become is True
    assert db1.connection.user == "deploy"
    assert db1.connection.proxy_jump == "ops@203.0.113.10:2222"
    assert db1.connection.become_password == "sudo-example-not-real"
    assert db1.vars["postgres_shared_buffers"] == "8GB"
    bastion = inv.hosts["bastion.prod.example.com"]
    assert (bastion.connection.address, bastion.connection.port, bastion.connection.user) == (
        "203.0.113.10", 2222, "ops"
    )
    assert bastion.connection.become is False
    assert bastion.connection.proxy_jump is None


def test_a_group_name_patterns_cannot_name_is_a_warning(tmp_path):
    f = tmp_path / "hosts.yaml"
    f.write_text("all:\n  children:\n    'web,eu':\n      hosts:\n        w1:\n")
    inv = load_inventory(f)
    assert inv.hosts["w1"].groups == ("all", "web,eu")
    assert inv.warnings == [
        f"{f}:3: group name 'web,eu' contains one of ':,!&~[]*?', so --limit and site files cannot name it"
    ]
