"""Saved plans over the local transport: the real agent on this machine, touching only a temp dir.

``plan -o`` then ``apply PLAN`` through driftctl/cli/cmd_saved.py's functions (the ones cmd_converge
calls): exactly the planned changes are applied; a hand change, a manifest or inventory edit, other
facts, an edited, truncated or foreign plan file are refused and nothing is written; no secret in
clear in the file; the file is 0600.
"""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from driftctl import __version__, savedplan
from driftctl.cli import ui
from driftctl.cli.cmd_converge import prepare
from driftctl.cli.cmd_saved import apply_saved, is_saved_plan, save_plan
from driftctl.errors import ConfigError, ExitCode, InputError

pytestmark = pytest.mark.applies_here  # its host lock is this machine's (tests/conftest.py)

CANARY = "CANARY-7f3e9a01c4d2b8"


class Site:
    """An inventory of this machine (local transport) and a manifest tree writing under ``target``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inv = root / "inv"
        self.manifests = root / "manifests"
        self.target = root / "target"
        self.state = root / "state"
        self.plan = root / "plan.json"
        self.target.mkdir(parents=True)
        (self.inv / "group_vars").mkdir(parents=True)
        (self.inv / "hosts.yaml").write_text("all:\n  hosts:\n    ctl:\n      driftctl_transport: local\n")
        (self.inv / "group_vars" / "all.yaml").write_text(f"token: !secret {CANARY}\ngreeting: hello\n")
        (self.manifests / "roles" / "r").mkdir(parents=True)
        (self.manifests / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
        self.write_resources()

    def write_resources(self, extra: str = "") -> None:
        t = self.target
        (self.manifests / "roles" / "r" / "resources.yaml").write_text(
            "resources:\n"
            f"  - file: {t}/a.txt\n"
            "    content: \"{{ greeting }} a\\n\"\n"
            f"  - file: {t}/b.txt\n"
            "    content: \"{{ greeting }} b\\n\"\n"
            "    mode: \"0640\"\n"
            f"  - file: {t}/token.txt\n"
            "    content: \"token={{ token }}\\n\"\n"
            f"  - file: {t}/sensitive.txt\n"
            "    content: \"{{ token }}\\n\"\n"
            "    sensitive: true\n" + extra
        )

    def flags(self, **more: Any) -> dict[str, Any]:
        return {"state_dir": str(self.state), "state": None, "wait_lock": None, **more}

    def make_plan(self) -> dict[str, Any]:
        ctx, engine = prepare(self.inv, None, False, self.manifests, self.flags())
        run = engine.run("plan", ctx.hosts)
        assert run.exit_code == ExitCode.CHANGES, [h.error for h in run.hosts]
        save_plan(self.plan, run, engine, ctx, self.inv)
        doc: dict[str, Any] = json.loads(self.plan.read_text())
        return doc

    def apply(self, **flags: Any) -> int:
        return apply_saved(self.plan, self.flags(**flags), False, None, False)

    def files(self) -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted(self.target.iterdir())}


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


class Screen:
    def __init__(self) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()

    def text(self) -> str:
        """Everything shown since the last call (stdout and stderr)."""
        text = self.out.getvalue() + self.err.getvalue()
        for s in (self.out, self.err):
            s.seek(0)
            s.truncate()
        return text


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> Screen:
    """What the CLI shows: ui's consoles write to strings (they hold the streams of their import)."""
    shown = Screen()
    monkeypatch.setattr(ui, "out", Console(file=shown.out, width=400, no_color=True))
    monkeypatch.setattr(ui, "err", Console(file=shown.err, width=400, no_color=True))
    return shown


def test_apply_of_a_saved_plan_converges_exactly_the_planned_changes(site: Site, screen: Screen) -> None:
    doc = site.make_plan()
    assert site.files() == {}  # planning wrote nothing
    assert doc["kind"] == "driftctl-plan" and doc["summary"] == {"add": 4, "change": 0, "remove": 0}
    assert [r["id"] for r in doc["hosts"][0]["resources"]] == [
        f"file:{site.target}/{n}" for n in ("a.txt", "b.txt", "token.txt", "sensitive.txt")]
    planned = screen.text()
    assert site.apply() == ExitCode.CHANGES
    applied = screen.text()
    assert f"Applying the plan saved in {site.plan} ({doc['created']} by " in applied
    assert site.files() == {"a.txt": "hello a\n", "b.txt": "hello b\n", "token.txt": f"token={CANARY}\n",
                            "sensitive.txt": f"{CANARY}\n"}
    assert stat.S_IMODE(os.stat(site.target / "b.txt").st_mode) == 0o640
    assert CANARY not in planned + applied and "Saved the plan to" in planned


def test_the_plan_file_is_0600_and_holds_no_secret_in_clear(site: Site) -> None:
    doc = site.make_plan()
    text = site.plan.read_text()
    assert stat.S_IMODE(os.stat(site.plan).st_mode) == 0o600
    assert CANARY not in text and CANARY[:12] not in text and CANARY[-12:] not in text
    by_id = {r["id"]: r for r in doc["hosts"][0]["resources"]}
    sensitive = by_id[f"file:{site.target}/sensitive.txt"]
    content = next(c for c in sensitive["changes"] if c["field"] == "content")
    assert content["after"].startswith("sha256:") and content["diff"] is None  # a hash only
    assert not list(site.root.glob(".plan.json.*.tmp"))  # written atomically: no temp file left


def test_a_hand_change_after_the_plan_refuses_the_host_and_writes_nothing(site: Site, screen: Screen) -> None:
    (site.target / "b.txt").write_text("by hand\n")  # exists when planned: a content change
    site.make_plan()
    (site.target / "b.txt").write_text("changed again by hand\n")
    rc = site.apply()
    assert rc & ExitCode.FAILED and not rc & ExitCode.CHANGES
    assert site.files() == {"b.txt": "changed again by hand\n"}  # nothing else created either
    shown = screen.text()
    assert f"file:{site.target}/b.txt" in shown and "stale plan" in shown


def test_applying_a_plan_twice_is_refused_the_second_time(site: Site, screen: Screen) -> None:
    site.make_plan()
    assert site.apply() == ExitCode.CHANGES
    screen.text()
    before = site.files()
    assert site.apply() & ExitCode.FAILED
    assert "was the plan applied already?" in screen.text()
    assert site.files() == before


@pytest.mark.parametrize("edit", ["manifest", "inventory", "added_template"])
def test_a_configuration_change_after_the_plan_is_refused_before_any_host(site: Site, edit: str) -> None:
    site.make_plan()
    if edit == "manifest":
        site.write_resources(f"  - file: {site.target}/c.txt\n    content: \"c\\n\"\n")
        changed = "roles/r/resources.yaml (changed)"
    elif edit == "inventory":
        (site.inv / "group_vars" / "all.yaml").write_text(f"token: !secret {CANARY}\ngreeting: bye\n")
        changed = "group_vars/all.yaml (changed)"
    else:
        (site.manifests / "templates").mkdir()
        (site.manifests / "templates" / "x.j2").write_text("x\n")
        changed = "templates/x.j2 (added)"
    with pytest.raises(savedplan.PlanFileError) as e:
        site.apply()
    assert changed in str(e.value) and str(site.plan) in str(e.value)
    assert e.value.exit_code == ExitCode.INPUT
    assert site.files() == {}
    assert not (site.state / "driftctl.sqlite").exists()  # not even the store was opened


def test_hidden_files_and_the_plan_itself_inside_the_tree_do_not_count(site: Site) -> None:
    site.plan = site.manifests / "plan.json"  # a plan kept inside the manifest tree
    site.make_plan()
    (site.manifests / ".git").mkdir()
    (site.manifests / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert site.apply() == ExitCode.CHANGES


def test_other_facts_at_apply_make_the_host_stale(site: Site, screen: Screen) -> None:
    site.write_resources(f"  - file: {site.target}/os.txt\n    content: \"{{{{ facts.distribution }}}}\\n\"\n")
    doc = site.make_plan()
    assert doc["hosts"][0]["uses_facts"] is True
    # the plan as if made when the host had other facts (the file stays a valid plan: checksum redone)
    doc["hosts"][0]["facts_sha256"] = "sha256:" + "0" * 64
    savedplan.write(site.plan, doc)
    assert site.apply() & ExitCode.FAILED
    shown = screen.text()
    assert "not applied: the plan is stale on this host (the host's facts changed" in shown
    assert site.files() == {}


def test_different_extra_variables_refuse_the_plan_before_any_host(site: Site) -> None:
    doc = site.make_plan()
    doc["hosts"][0]["vars_sha256"] = "sha256:" + "1" * 64  # as if planned with other -e values
    savedplan.write(site.plan, doc)
    with pytest.raises(savedplan.PlanFileError, match="ctl: its variables differ"):
        site.apply()
    assert site.files() == {}


def _corrupt(plan: Path, how: str) -> None:
    text = plan.read_text()
    if how == "edited":
        doc = json.loads(text)
        doc["hosts"][0]["resources"][0]["observed_fingerprint"] = "f" * 64
        plan.write_text(json.dumps(doc, indent=1))
    elif how == "truncated":
        plan.write_text(text[: len(text) // 2])
    elif how == "version":
        doc = json.loads(text)
        doc["driftctl_version"] = "0.0.1"
        plan.write_text(savedplan.dumps(doc))
    elif how == "format":
        doc = json.loads(text)
        doc["format"] = 99
        plan.write_text(savedplan.dumps(doc))
    elif how == "other_inventory":
        doc = json.loads(text)
        doc["inventory"]["path"] = str(plan.parent / "nowhere")
        plan.write_text(savedplan.dumps(doc))
    elif how == "missing_key":
        doc = json.loads(text)
        del doc["hosts"][0]["catalog_digest"]
        plan.write_text(savedplan.dumps(doc))


@pytest.mark.parametrize(("how", "says"), [
    ("edited", "modified after it was written"),
    ("truncated", "truncated"),
    ("version", f"made by driftctl 0.0.1, this is driftctl {__version__}"),
    ("format", "plan format 99"),
    ("other_inventory", "inventory"),
    ("missing_key", "not a valid driftctl plan"),
])
def test_a_broken_plan_file_is_a_clear_error_and_nothing_changes(site: Site, how: str, says: str) -> None:
    site.make_plan()
    _corrupt(site.plan, how)
    assert is_saved_plan(site.plan)  # still recognised as a plan: the error is about the plan
    with pytest.raises(InputError) as e:
        site.apply()
    assert says in str(e.value) and str(site.plan) in str(e.value)
    assert site.files() == {}


def test_limit_or_other_manifests_with_a_plan_are_errors(site: Site) -> None:
    site.make_plan()
    with pytest.raises(ConfigError, match="--limit cannot be used with a saved plan"):
        site.apply(limit="ctl")
    with pytest.raises(ConfigError, match="differs from the plan's manifest tree"):
        site.apply(manifests=str(site.root))
    assert site.files() == {}


def test_is_saved_plan_looks_at_the_content(site: Site, tmp_path: Path) -> None:
    site.make_plan()
    assert is_saved_plan(site.plan)
    renamed = tmp_path / "inventory.yaml"
    renamed.write_bytes(site.plan.read_bytes())
    assert is_saved_plan(renamed)  # not by its name
    assert not is_saved_plan(site.inv)  # a directory
    assert not is_saved_plan(site.inv / "hosts.yaml")  # a YAML inventory
    ini = tmp_path / "hosts.ini"
    ini.write_text("[web]\nweb1 ansible_host=10.0.0.1\n")
    assert not is_saved_plan(ini)
    yaml_json = tmp_path / "inv.json"
    yaml_json.write_text('{"all": {"hosts": {"a": {}}}, "kind": "driftctl-plan"}')
    assert not is_saved_plan(yaml_json)  # an inventory in JSON that merely mentions the kind
    assert not is_saved_plan(tmp_path / "missing.json")


def test_extra_variables_must_be_given_again_as_they_were_planned(site: Site) -> None:
    ctx, engine = prepare(site.inv, None, False, site.manifests, site.flags(extra_vars=("greeting=hi",)))
    save_plan(site.plan, engine.run("plan", ctx.hosts), engine, ctx, site.inv)
    with pytest.raises(savedplan.PlanFileError, match="ctl: its variables differ"):
        site.apply()  # without -e: the catalog would be another one
    assert site.files() == {}
    assert site.apply(extra_vars=("greeting=hi",)) == ExitCode.CHANGES
    assert site.files()["a.txt"] == "hi a\n"


def test_a_plan_made_with_tags_applies_with_the_same_tags(site: Site) -> None:
    from driftctl.cli.opt_run import RunOptions

    site.write_resources(f"  - file: {site.target}/web.txt\n    content: \"web\\n\"\n    tags: [web]\n")
    opts = RunOptions(tags=("web",)).parse()
    ctx, engine = prepare(site.inv, None, False, site.manifests, site.flags(), run_opts=opts)
    save_plan(site.plan, engine.run("plan", ctx.hosts), engine, ctx, site.inv)
    doc = json.loads(site.plan.read_text())
    assert doc["tags"] == {"only": ["web"], "skip": []}
    assert [r["id"] for r in doc["hosts"][0]["resources"]] == [f"file:{site.target}/web.txt"]
    with pytest.raises(ConfigError, match="--tags/--skip-tags cannot be used with a saved plan"):
        site.apply(run_opts=RunOptions(tags=("db",)).parse())
    assert site.apply(run_opts=RunOptions().parse()) == ExitCode.CHANGES  # no tags given: the plan's
    assert site.files() == {"web.txt": "web\n"}  # only what the tags selected


@pytest.mark.parametrize("inside", ["plan.json", "group_vars/plan.json", "host_vars/x/plan.json"])
def test_a_plan_is_never_written_where_the_inventory_would_read_it(site: Site, inside: str) -> None:
    site.plan = site.inv / inside
    with pytest.raises(ConfigError, match="inside the inventory"):
        site.make_plan()
    assert not site.plan.exists()


def test_input_hashes_follow_links_as_the_loaders_do(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "all.yaml").write_text("a: 1\n")
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n    h1:\n")
    (inv / "group_vars" / "all.yaml").symlink_to(shared / "all.yaml")
    (inv / "group_vars" / "loop").symlink_to(inv)  # walked once, not forever
    (inv / ".git").mkdir()
    (inv / ".git" / "HEAD").write_text("x\n")
    before = savedplan.tree_files([inv], inv)
    assert ".git/HEAD" not in before and "group_vars/loop" in before
    assert before["group_vars/all.yaml"].startswith(f"link:{shared / 'all.yaml'} sha256:")
    (shared / "all.yaml").write_text("a: 2\n")  # the target outside the tree changes
    after = savedplan.tree_files([inv], inv)
    assert savedplan.changed_files(before, after) == ["group_vars/all.yaml (changed)"]
    linked = tmp_path / "prod"
    linked.symlink_to(inv)  # the inventory named through a link is walked, not hashed as a link
    assert set(savedplan.tree_files([linked], linked)) == set(after)


def test_a_host_unreachable_when_planned_is_not_in_the_plan_and_left_alone(site: Site, screen: Screen) -> None:
    (site.inv / "hosts.yaml").write_text(
        "all:\n  hosts:\n    ctl:\n      driftctl_transport: local\n"
        "    gone:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n")  # nothing listens on port 1
    ctx, engine = prepare(site.inv, None, False, site.manifests, site.flags(connect_timeout=5))
    run = engine.run("plan", ctx.hosts)
    save_plan(site.plan, run, engine, ctx, site.inv)
    doc = json.loads(site.plan.read_text())
    assert [h["name"] for h in doc["hosts"]] == ["ctl"]
    assert [(h["name"], h["status"]) for h in doc["not_planned"]] == [("gone", "unreachable")]
    assert "gone is not in the saved plan (unreachable" in screen.text()
    rc = site.apply()
    assert rc == ExitCode.CHANGES  # gone was not contacted: no unreachable bit
    assert "gone is not in the plan (unreachable when planned): left alone" in screen.text()
    assert len(site.files()) == 4


def test_effects_count_as_terraform_counts() -> None:
    from driftctl.model import Change, ResourceResult

    def r(status: str, *changes: Change) -> ResourceResult:
        return ResourceResult("file:/x", status, changes=list(changes))  # type: ignore[arg-type]

    assert savedplan.effect(r("changed", Change("ensure", "absent", "file"), Change("content", None, "x"))) == "add"
    assert savedplan.effect(r("changed", Change("ensure", None, "present"))) == "add"
    assert savedplan.effect(r("changed", Change("ensure", "file", "absent"))) == "remove"
    assert savedplan.effect(r("changed", Change("mode", "0644", "0600"))) == "change"
    assert savedplan.effect(r("changed", Change("refresh", None, "notified by file:/y"))) == "change"
    assert savedplan.effect(r("ok")) == "none"
    assert savedplan.effect(r("failed", Change("mode", "0644", "0600"))) == "none"
