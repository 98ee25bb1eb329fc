"""--tags / --skip-tags: Ansible's selection rules (checked against ansible-core itself), the catalog a
selection leaves, the unknown-tag error, and a real apply (local transport) that leaves out what the
tags do not select, including what a selected purge directory would otherwise remove."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from test_manifest_support import TYPES, inventory, write_tree

from driftctl import config
from driftctl.engine import Engine
from driftctl.errors import ConfigError
from driftctl.inventory import load_inventory
from driftctl.manifest import compile_catalog, load_site
from driftctl.manifest.compile import site_tags
from driftctl.tags import TagSelection, check_known, select_catalog, selection
from driftctl.transport.base import TransportOptions
from driftctl.transport.local import LocalTransport

pytestmark = pytest.mark.applies_here  # its host lock is this machine's (tests/conftest.py)

RESOURCE_TAGS: list[list[str]] = [
    [], ["web"], ["db"], ["web", "db"], ["always"], ["never"], ["never", "debug"], ["web", "always"],
    ["tagged"], ["untagged"],
]
CHOICES: list[list[str]] = [[], ["all"], ["web"], ["tagged"], ["untagged"], ["never"], ["debug"], ["always"],
                            ["web", "untagged"], ["all", "never"]]


def ansible_tasks(tag_lists: list[list[str]]) -> list[Any]:
    """Real ansible-core Task objects with these tags (a play of debug tasks, compiled as ansible does)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.playbook.play import Play
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    tasks = [{"debug": {"msg": str(i)}, **({"tags": tags} if tags else {})} for i, tags in enumerate(tag_lists)]
    play = Play.load({"hosts": "localhost", "gather_facts": False, "tasks": tasks}, loader=loader,
                     variable_manager=VariableManager(loader=loader))
    compiled = [t for block in play.compile() for t in block.block if t.action == "debug"]
    assert len(compiled) == len(tag_lists)
    return compiled


def test_selection_matches_ansible_core_for_every_combination() -> None:
    tasks = ansible_tasks(RESOURCE_TAGS)
    checked = 0
    for only, skip in itertools.product(CHOICES, CHOICES):
        ours = selection(only, skip)
        ansible_only = only or ["all"]  # ansible-playbook's default --tags
        for tags, task in zip(RESOURCE_TAGS, tasks, strict=True):
            want = task.evaluate_tags(ansible_only, skip, {})
            assert ours.selects(tags) == want, (only, skip, tags)
            checked += 1
    assert checked == len(CHOICES) ** 2 * len(RESOURCE_TAGS)


def test_default_selection_leaves_out_only_never() -> None:
    default = TagSelection()
    assert default.default
    assert default.selects([]) and default.selects(["web"]) and default.selects(["always"])
    assert not default.selects(["never"])


@pytest.mark.parametrize("values", [["web,,db"], [""], [" , "]])
def test_an_empty_tag_name_is_an_error(values: list[str]) -> None:
    with pytest.raises(ConfigError, match="empty tag name"):
        selection(values, [])


def test_comma_lists_and_repeats_combine() -> None:
    chosen = selection(["web,db", "cache", "web"], ["slow"])
    assert chosen.only == {"web", "db", "cache"} and chosen.skip == {"slow"}


def test_unknown_tag_is_an_error_with_did_you_mean() -> None:
    with pytest.raises(ConfigError) as info:
        check_known(selection(["wbe"], []), {"web", "db"}, "manifests")
    text = str(info.value)
    assert "'wbe'" in text and "did you mean 'web'?" in text and "db, web" in text
    with pytest.raises(ConfigError, match="--skip-tags"):
        check_known(selection([], ["nope"]), {"web"}, "manifests")
    check_known(selection(["web", "always", "untagged"], ["never"]), {"web"}, "manifests")  # specials: fine


SITE = """
resources:
  - package: nginx
    tags: [web]
  - file: /etc/nginx/nginx.conf
    content: "x"
    require: package:nginx
    notify: service:nginx
    tags: [web, config]
  - service: nginx
    tags: web-restart
  - file: /etc/motd
    content: "hello"
watch: [/etc/cron.d]
"""


def test_compiled_tags_and_the_selected_catalog(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"site.yaml": "- hosts: all\n  roles: [r]\n", "roles/r/resources.yaml": SITE})
    site = load_site(root, types=TYPES)
    inv = inventory()
    catalog = compile_catalog(site, inv, inv.hosts["web1"], {}, types=TYPES)
    tags = {r.id: r.tags for r in catalog.resources}
    assert tags == {"package:nginx": ["web"], "file:/etc/nginx/nginx.conf": ["web", "config"],
                    "service:nginx": ["web-restart"], "file:/etc/motd": []}
    assert site_tags(site) == ({"web", "config", "web-restart"}, False)

    chosen = select_catalog(catalog, selection(["config"], []))
    assert [r.id for r in chosen.catalog.resources] == ["file:/etc/nginx/nginx.conf"]
    conf = chosen.catalog.resources[0]
    assert conf.require == [] and conf.notify == []  # relations to what is left out are not followed
    assert {(d.source, d.target, d.kind) for d in chosen.dropped} == {
        ("file:/etc/nginx/nginx.conf", "package:nginx", "require"),
        ("file:/etc/nginx/nginx.conf", "service:nginx", "notify")}
    assert [r.id for r in chosen.catalog.excluded] == ["package:nginx", "service:nginx", "file:/etc/motd"]
    assert chosen.catalog.watch == []  # a partial host's watch paths are not examined
    assert catalog.resources[1].notify == ["service:nginx"]  # the full catalog is untouched
    assert catalog.watch == ["/etc/cron.d"]

    everything = select_catalog(catalog, selection(["all"], []))
    assert everything.catalog is catalog  # nothing left out: the same catalog, watch included
    assert [r.id for r in select_catalog(catalog, selection(["untagged"], [])).catalog.resources] == ["file:/etc/motd"]


def test_templated_tags_are_known_after_rendering(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"site.yaml": "- hosts: all\n  roles: [r]\n", "roles/r/resources.yaml": """
        resources:
          - file: /etc/a
            content: a
            tags: ["{{ tier }}", base]
    """})
    site = load_site(root, types=TYPES)
    assert site_tags(site) == ({"base"}, True)
    inv = inventory(tier="gold")
    assert compile_catalog(site, inv, inv.hosts["web1"], {}, types=TYPES).resources[0].tags == ["gold", "base"]


def local_engine(tmp_path: Path, resources: str, chosen: TagSelection) -> tuple[Engine, Any]:
    inv_dir = tmp_path / "inv"
    inv_dir.mkdir(exist_ok=True)
    (inv_dir / "hosts.yaml").write_text("all:\n  hosts:\n    ctl:\n      driftctl_transport: local\n")
    root = tmp_path / "manifests"
    (root / "roles" / "r").mkdir(parents=True, exist_ok=True)
    (root / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (root / "roles" / "r" / "resources.yaml").write_text(resources)
    inv = load_inventory(inv_dir)
    engine = Engine(load_site(root), inv, config.load({"state_dir": str(tmp_path / "state")}), TransportOptions(),
                    transport_factory=lambda h, o: LocalTransport(h, o))
    engine.tags = chosen
    engine.tags_known = set()
    return engine, inv


def test_apply_with_tags_changes_only_the_selected_and_purge_keeps_the_rest(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    resources = (
        "resources:\n"
        f"  - directory: {target}/d\n"
        "    purge: true\n"
        "    tags: [dirs]\n"
        f"  - file: {target}/d/kept.conf\n"
        "    content: \"kept\\n\"\n"
        "    tags: [files]\n"
        f"  - file: {target}/other.conf\n"
        "    content: \"other\\n\"\n"
    )
    engine, inv = local_engine(tmp_path, resources, TagSelection())
    engine.run("apply", inv.select(None))  # everything, once
    (target / "other.conf").write_text("edited\n")
    (target / "d" / "stray").write_text("not managed\n")

    engine, inv = local_engine(tmp_path, resources, selection(["dirs"], []))
    run = engine.run("apply", inv.select(None))
    host = run.hosts[0]
    assert [r.id for r in host.resources] == [f"directory:{target}/d"]
    assert host.excluded == [f"file:{target}/d/kept.conf", f"file:{target}/other.conf"] and run.partial
    assert not (target / "d" / "stray").exists()  # the selected purge ran
    assert (target / "d" / "kept.conf").read_text() == "kept\n"  # managed by a resource left out: kept
    assert (target / "other.conf").read_text() == "edited\n"  # left out: untouched

    with pytest.raises(ConfigError, match="no resource in the manifests has the tag"):
        engine, inv = local_engine(tmp_path, resources, selection(["dir"], []))
        engine.run("apply", inv.select(None))
    assert (target / "other.conf").read_text() == "edited\n"


def test_reports_say_a_run_was_partial_and_count_actions() -> None:
    import jsonschema

    from driftctl.model import Change, HostResult, ResourceResult, RunResult
    from driftctl.report import document, render
    from driftctl.store import json_schema

    created = ResourceResult("file:/etc/a", "changed", [Change("ensure", "absent", "file"),
                                                        Change("content", None, "sha256:1")], type="file")
    removed = ResourceResult("package:telnet", "changed", [Change("ensure", "1.2", "absent")], type="package")
    line_gone = ResourceResult("line:x", "changed", [Change("line", "old", None)], type="line")
    edited = ResourceResult("file:/etc/b", "changed", [Change("mode", "0644", "0600")], type="file")
    refreshed = ResourceResult("service:nginx", "changed", [Change("refresh", None, "notified by file:/etc/b")],
                               type="service")
    in_sync = ResourceResult("file:/etc/c", "ok", reason="in sync", type="file")
    run = RunResult("plan", [HostResult("web1", "changed", [created, removed, line_gone, edited, refreshed, in_sync],
                                        excluded=["file:/x", "file:/y", "file:/z"])], tags=["web"])
    doc = document.build(run, "inv")
    jsonschema.Draft202012Validator(json_schema()).validate(doc)
    assert doc["partial"] is True and doc["tags"] == {"only": ["web"], "skip": []}
    assert doc["summary"]["actions"] == {"add": 1, "change": 2, "remove": 2}
    assert [r["action"] for r in doc["hosts"][0]["resources"]] == ["add", "remove", "remove", "change", "change", None]
    note = "Partial run (--tags web): 3 resource(s) left out, not examined"
    assert note in render(doc, "markdown") and note in render(doc, "html")
    full = document.build(RunResult("plan", [HostResult("web1", "ok", [in_sync])]), "inv")
    assert full["partial"] is False and "tags" not in full
    assert "Partial run" not in render(full, "markdown")


def test_the_store_keeps_the_drift_of_what_the_tags_left_out_and_closes_what_is_gone(tmp_path: Path) -> None:
    """A partial drift run lists what it left out: that drift stays open as it was; a resource in neither
    list was deleted from the manifests and its episode closes, even in a partial run (a default run with
    a never-tagged resource is partial forever)."""
    from driftctl.model import HostResult, ResourceResult, RunResult
    from driftctl.report import document
    from driftctl.store import open_store

    def drift(results: list[ResourceResult], excluded: list[str]) -> None:
        doc = document.build(RunResult("drift", [HostResult("web1", "ok", results, excluded=excluded)]), "inv")
        store.save_run(document.for_store(doc))

    def drifted(rid: str) -> ResourceResult:
        return ResourceResult(rid, "ok", reason="corrective drift", drift="corrective", type=rid.split(":")[0],
                              desired_fingerprint="a" * 64, observed_fingerprint="b" * 64,
                              converged_fingerprint="a" * 64)

    store = open_store(str(tmp_path / "s.sqlite"))
    try:
        drift([drifted("file:/etc/db.conf"), drifted("file:/etc/gone.conf")], [])
        drift([ResourceResult("file:/etc/web.conf", "ok", reason="in sync", type="file")], ["file:/etc/db.conf"])
        assert [(e.subject, e.runs) for e in store.open_drift("inv", "web1")] == [("file:/etc/db.conf", 1)]
        [gone] = store.episodes("inv", "web1", "file:/etc/gone.conf")
        assert gone.close_reason == "no longer in the catalog"
        drift([drifted("file:/etc/db.conf")], [])
        assert [(e.subject, e.runs) for e in store.open_drift("inv", "web1")] == [("file:/etc/db.conf", 2)]
    finally:
        store.close()
