"""A host probes as soon as its own catalog is rendered, while the other catalogs still render; nothing is
judged, stored or changed before every catalog is valid, and an early probe writes nothing on the host.

In-process runs against real fleet hosts. The order is made certain, not timed: rendering the ``late``
host's catalog waits until the ``early`` host's probe has come back (or 60 s: then the test fails).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2ehelp import write_inventory

import driftctl.manifest.compile as compile_mod
from driftctl import engine as engine_mod
from driftctl.cli.common import load_context
from driftctl.engine import Engine
from driftctl.errors import InputError
from driftctl.manifest.site import load_site

TARGET = "/tmp/driftctl-early-probe.txt"


def make_site(root: Path, facts: bool = False) -> Path:
    (root / "roles" / "r" / "templates").mkdir(parents=True)
    (root / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (root / "roles" / "r" / "templates" / "t.j2").write_text(
        "host {{ inventory_hostname }}\n{{ nothing.here if broken is defined else 'ok' }}\n"
        + ("{{ facts.hostname }}\n" if facts else ""))
    (root / "roles" / "r" / "resources.yaml").write_text(f"resources:\n  - file: {TARGET}\n    template: t.j2\n")
    return root


class Run:
    """An engine over two fleet hosts: ``early`` (hosts[0]) and ``late`` (hosts[1]), whose catalog is
    rendered only once ``early``'s probe came back (``early_probed``) or 60 s went by."""

    def __init__(self, fleet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, late_vars: str = "",
                 facts: bool = False, wait: float = 60.0) -> None:
        self.early, self.late = fleet.hosts[0], fleet.hosts[1]
        inv = write_inventory(tmp_path / "inv", [self.early, self.late],
                              host_vars={self.late.name: late_vars} if late_vars else None)
        site_dir = make_site(tmp_path / "manifests", facts)
        monkeypatch.setenv("DRIFTCTL_STATE_DIR", str(tmp_path / "state"))
        self.ctx = load_context(Path(inv), manifests=str(site_dir))
        self.events: list[tuple[str, str, str]] = []
        self.early_probed = threading.Event()
        self.waited_for_early: bool | None = None
        self.preflight_done = threading.Event()
        self.probe_before_preflight_done: bool | None = None
        real_compile: Callable[..., Any] = compile_mod.compile_catalog
        real_probe = engine_mod.AgentObserver.probe

        def compile_catalog(site: Any, inventory: Any, host: Any, facts: Any = None, types: Any = None) -> Any:
            if host.name == self.late.name and facts is None:
                self.waited_for_early = self.early_probed.wait(wait)
            return real_compile(site, inventory, host, facts, types)

        def probe(observer: Any, request: dict[str, Any]) -> dict[str, Any]:
            try:
                return real_probe(observer, request)
            finally:
                if observer.transport.host.name == self.early.name and not self.early_probed.is_set():
                    self.probe_before_preflight_done = not self.preflight_done.is_set()
                    self.early_probed.set()

        monkeypatch.setattr(compile_mod, "compile_catalog", compile_catalog)
        monkeypatch.setattr(engine_mod.AgentObserver, "probe", probe)
        self.site = load_site(site_dir)

    def engine(self) -> Engine:
        e = Engine(self.site, self.ctx.inventory, self.ctx.settings, self.ctx.transport_options,
                   on_event=lambda ev: self.events.append((ev.kind, ev.host, ev.phase)))
        e.on_preflight = lambda _: self.preflight_done.set()
        return e

    def warm(self, only_early: bool = False) -> None:
        """One ordinary run, so the controller knows the hosts' agent caches hold the program."""
        self.early_probed.set()  # nothing to wait for in this run
        self.engine().run("check", [h for h in self.ctx.hosts if h.name == self.early.name or not only_early])
        self.early_probed.clear()
        self.waited_for_early = self.probe_before_preflight_done = None
        self.preflight_done.clear()


def cache_state(host: Any) -> str:
    r = host.sh("find /var/cache/driftctl -printf '%p %T@ %s\\n' 2>/dev/null | sort")
    return r.stdout


def test_a_host_whose_catalog_is_ready_probes_while_the_others_render_and_the_run_is_unchanged(
        fleet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(fleet, tmp_path, monkeypatch)
    run.warm()
    fleet.hosts[0].sh(f"rm -f {TARGET}")
    fleet.hosts[1].sh(f"rm -f {TARGET}")
    result = run.engine().run("check", run.ctx.hosts)
    assert run.waited_for_early is True, "the late catalog was rendered before the early host probed"
    assert run.probe_before_preflight_done is True
    by_host = {h.host: h for h in result.hosts}
    for name in (run.early.name, run.late.name):
        h = by_host[name]
        assert h.status == "changed" and not h.error, (name, h.status, h.error)
        [r] = [r for r in h.resources if r.id == f"file:{TARGET}"]
        assert r.status == "changed", r
    # the same plan as a run without any early probe (every catalog rendered first)
    run.early_probed.set()
    again = run.engine().run("check", run.ctx.hosts)
    assert [(h.host, [(r.id, r.status) for r in h.resources]) for h in again.hosts] == \
        [(h.host, [(r.id, r.status) for r in h.resources]) for h in result.hosts]


def test_an_input_error_after_an_early_probe_changes_nothing_on_the_host_that_probed(
        fleet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(fleet, tmp_path, monkeypatch, late_vars="broken: true\n")
    early = run.early
    run.warm(only_early=True)  # the late host's catalog is broken
    early.sh(f"rm -f {TARGET}")
    before = cache_state(early)
    assert before, "the warm-up run left no agent cache on the host"
    with pytest.raises(InputError) as raised:
        run.engine().run("apply", run.ctx.hosts)
    assert "nothing" in str(raised.value)
    assert run.waited_for_early is True and run.probe_before_preflight_done is True
    assert early.sh(f"test -e {TARGET}").rc == 1, "the early host was changed before the input error was known"
    assert cache_state(early) == before, "the early probe wrote to the host's agent cache"


def test_an_early_probe_whose_host_lost_its_agent_cache_creates_nothing_there(
        fleet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller believes the cache holds the program, but it is gone: the read-only probe must not
    create the cache directory (it waits for the other catalogs, and the run then ends on their error)."""
    run = Run(fleet, tmp_path, monkeypatch, late_vars="broken: true\n")
    early = run.early
    run.warm(only_early=True)
    early.sh("rm -rf /var/cache/driftctl")
    with pytest.raises(InputError):
        run.engine().run("check", run.ctx.hosts)
    assert run.waited_for_early is True  # the probe was tried (and refused by the host's launcher)
    assert early.sh("test -e /var/cache/driftctl").rc == 1, "a read-only probe created the agent cache"
    # an ordinary run afterwards sends the program again and caches it
    run.early_probed.set()
    result = run.engine().run("check", [h for h in run.ctx.hosts if h.name == early.name])
    assert result.hosts[0].status in ("ok", "changed") and not result.hosts[0].error
    assert early.sh("test -d /var/cache/driftctl").rc == 0


def test_a_catalog_that_uses_facts_is_not_probed_before_every_catalog_is_rendered(
        fleet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its catalog is rendered again with the host's facts (the stored run's, read once every catalog is
    known): the probe waits for the gate, so the late catalog's render gives up waiting for it."""
    run = Run(fleet, tmp_path, monkeypatch, facts=True, wait=3.0)
    run.warm()
    result = run.engine().run("check", run.ctx.hosts)
    assert run.waited_for_early is False, "a facts-using catalog was probed before the other catalogs were known"
    for h in result.hosts:
        assert h.status in ("ok", "changed") and not h.error, (h.host, h.status, h.error)
