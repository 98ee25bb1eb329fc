"""The engine over the local transport: the real agent runs on this machine, touching only a temp dir.

What these pin down: plan sends only read-only ops; round trips per host (facts cached or not);
apply converges and a second plan is in sync; a stale facts cache is detected and re-rendered.
"""

from __future__ import annotations

import itertools
import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from driftctl import config, ship
from driftctl.content import INLINE_LIMIT
from driftctl.engine import Engine
from driftctl.errors import ConnectionLost, ExitCode
from driftctl.inventory import load_inventory
from driftctl.manifest import load_site
from driftctl.model import Host
from driftctl.transport.base import TransportOptions
from driftctl.transport.local import LocalTransport

pytestmark = pytest.mark.applies_here  # its host lock is this machine's (tests/conftest.py)


class RecordingTransport(LocalTransport):
    """The local transport, remembering the op of every agent request it carried."""

    ops: list[str] = []
    streams = 0  # agents started with a stream (a session's, D50, or an apply's)

    def run(self, argv, *, stdin=b"", timeout=None, become=None):  # type: ignore[no-untyped-def]
        if "driftctl-agent" in " ".join(map(str, argv)):
            request = ship.request_of(argv, stdin)
            RecordingTransport.ops.append(request["op"])
        return super().run(argv, stdin=stdin, timeout=timeout, become=become)

    def stream(self, argv, *, feed, on_output, timeout=None, become=None):  # type: ignore[no-untyped-def]
        chunks = iter(feed.chunks)
        first = next(chunks)  # the program and the request line
        request = ship.request_of(argv, first)
        RecordingTransport.ops.append(request["op"])
        RecordingTransport.streams += 1
        feed.chunks = itertools.chain([first], _later_requests(chunks))
        return super().stream(argv, feed=feed, on_output=on_output, timeout=timeout, become=become)


def _later_requests(chunks):  # type: ignore[no-untyped-def]
    """The chunks, each request that starts one (a session's next request, D50) recorded."""
    for chunk in chunks:
        if chunk.startswith(b'{"z":'):
            head, _, body = chunk.partition(b"\n")
            RecordingTransport.ops.append(json.loads(zlib.decompress(body[: json.loads(head)["z"]]))["op"])
        yield chunk


def local_site(tmp_path: Path, resources: str) -> tuple[Path, Path]:
    """An inventory of this machine (local transport) and a site of one role with ``resources``."""
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n    ctl:\n      driftctl_transport: local\n")
    site = tmp_path / "manifests"
    (site / "roles" / "r").mkdir(parents=True)
    (site / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (site / "roles" / "r" / "resources.yaml").write_text(resources)
    return inv, site


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Any, Any, Path]:
    target = tmp_path / "target"
    target.mkdir()
    inv, site = local_site(tmp_path,
        "resources:\n"
        f"  - file: {target}/facts.txt\n"
        "    content: \"{{ facts.distribution }} {{ facts.architecture }}\\n\"\n"
        "    mode: \"0640\"\n"
        f"  - file: {target}/plain.txt\n"
        "    content: \"no facts here\\n\"\n"
    )
    return load_inventory(inv), load_site(site), target


def engine(inv: Any, site: Any, tmp_path: Path) -> Engine:
    settings = config.load({"state_dir": str(tmp_path / "state")})
    RecordingTransport.ops = []
    RecordingTransport.streams = 0
    return Engine(site, inv, settings, TransportOptions(),
                  transport_factory=lambda h, o: RecordingTransport(h, o))


def test_plan_is_read_only_and_apply_converges(setup: Any, tmp_path: Path) -> None:
    inv, site, target = setup
    hosts: list[Host] = inv.select(None)
    e = engine(inv, site, tmp_path)
    plan = e.run("plan", hosts)
    assert plan.exit_code == 2
    assert set(RecordingTransport.ops) <= {"facts", "probe"}
    assert not any(target.iterdir())  # nothing written
    assert plan.hosts[0].round_trips == 2  # facts first: nothing cached

    applied = engine(inv, site, tmp_path).run("apply", hosts)
    assert applied.exit_code == 2, applied.hosts[0].error
    assert "apply" in RecordingTransport.ops
    facts = applied.hosts[0].facts
    assert (target / "facts.txt").read_text() == f"{facts['distribution']} {facts['architecture']}\n"
    assert (target / "facts.txt").stat().st_mode & 0o777 == 0o640

    again = engine(inv, site, tmp_path).run("plan", hosts)
    assert again.exit_code == 0
    assert {r.status for r in again.hosts[0].resources} == {"ok"}


def test_one_agent_probes_and_applies_a_host_that_changes(setup: Any, tmp_path: Path) -> None:
    """D50: the probe's agent waits for the plan and applies it; a host in sync only says bye to it."""
    inv, site, target = setup
    hosts: list[Host] = inv.select(None)
    e = engine(inv, site, tmp_path)
    assert e.run("apply", hosts).exit_code == 2
    assert RecordingTransport.ops == ["facts", "probe", "apply"] and RecordingTransport.streams == 1
    assert (target / "plain.txt").read_text() == "no facts here\n"

    e = engine(inv, site, tmp_path)
    again = e.run("apply", hosts)
    assert again.exit_code == 0, again.hosts[0].error
    assert RecordingTransport.ops == ["facts", "probe"] and RecordingTransport.streams == 1  # no apply: bye


def test_an_apply_the_probes_agent_cannot_take_starts_an_agent_of_its_own(
        setup: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inv, site, target = setup
    monkeypatch.setattr(ship.Session, "apply", lambda self, *a, **kw: None)
    e = engine(inv, site, tmp_path)
    result = e.run("apply", inv.select(None))
    assert result.exit_code == 2, result.hosts[0].error
    assert RecordingTransport.ops == ["facts", "probe", "apply"] and RecordingTransport.streams == 2
    assert (target / "plain.txt").read_text() == "no facts here\n"


def test_cached_facts_save_a_round_trip_and_stale_ones_are_caught(setup: Any, tmp_path: Path) -> None:
    inv, site, _target = setup
    hosts = inv.select(None)
    first = engine(inv, site, tmp_path).run("apply", hosts)
    real = first.hosts[0].facts

    cached = engine(inv, site, tmp_path)
    cached.facts_cache = {"ctl": dict(real)}
    result = cached.run("plan", hosts)
    assert result.hosts[0].round_trips == 1
    assert RecordingTransport.ops == ["probe"]
    assert result.exit_code == 0

    stale = engine(inv, site, tmp_path)
    stale.facts_cache = {"ctl": dict(real, distribution="not-" + real["distribution"])}
    result = stale.run("plan", hosts)
    # rendered with the stale facts, the probe's fresh facts differ: rendered again, probed again
    assert RecordingTransport.ops == ["probe", "probe"]
    assert result.hosts[0].round_trips == 2
    assert result.exit_code == 0  # the real facts match what was applied


def test_a_resource_that_cannot_be_observed_stops_its_dependents(tmp_path: Path) -> None:
    """An authorized_key for a user that does not exist (and that nothing creates) fails at probe;
    the exec that requires it must be skipped, not run."""
    target = tmp_path / "target"
    target.mkdir()
    inv, site = local_site(tmp_path,
        "resources:\n"
        "  - authorized_key: ghost-key\n"
        "    user: driftctl-no-such-user\n"
        "    key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ghost\n"
        "  - exec: after-the-key\n"
        f"    command: [touch, {target}/ran]\n"
        f"    creates: {target}/ran\n"
        "    require: [authorized_key:ghost-key]\n"
    )
    e = engine(load_inventory(inv), load_site(site), tmp_path)
    result = e.run("apply", load_inventory(inv).select(None))
    by_id = {r.id: r for r in result.hosts[0].resources}
    assert by_id["authorized_key:ghost-key"].status == "failed"
    assert "driftctl-no-such-user" in (by_id["authorized_key:ghost-key"].error or "")
    assert by_id["exec:after-the-key"].status == "skipped"
    assert not (target / "ran").exists()
    assert result.exit_code & 4


def test_plan_shows_refusals_as_apply_will_and_defers_what_the_run_itself_fixes(tmp_path: Path) -> None:
    """A directory where a file should be: plan says failed with apply's own reason and skips what
    depends on it. A line on a file that does not exist yet but that the same run creates: plan says
    it is known after the file; apply converges both. Plan and apply agree resource by resource."""
    target = tmp_path / "target"
    (target / "in-the-way").mkdir(parents=True)
    inv, site = local_site(tmp_path,
        "resources:\n"
        f"  - file: {target}/in-the-way\n"
        "    content: \"x\\n\"\n"
        "  - exec: after-it\n"
        f"    command: [touch, {target}/ran]\n"
        f"    creates: {target}/ran\n"
        f"    require: file:{target}/in-the-way\n"
        f"  - file: {target}/new.conf\n"
        "  - line: setting\n"
        f"    path: {target}/new.conf\n"
        "    text: \"key = value\"\n"
    )
    hosts = load_inventory(inv).select(None)
    plan = {r.id: r for r in engine(load_inventory(inv), load_site(site), tmp_path).run("plan", hosts)
            .hosts[0].resources}
    assert plan[f"file:{target}/in-the-way"].status == "failed"
    assert "is a directory" in (plan[f"file:{target}/in-the-way"].error or "")
    assert plan["exec:after-it"].status == "skipped"
    assert plan["line:setting"].status == "changed"
    assert "known after" in plan["line:setting"].reason
    applied = {r.id: r for r in engine(load_inventory(inv), load_site(site), tmp_path).run("apply", hosts)
               .hosts[0].resources}
    statuses = {k: r.status for k, r in applied.items()}
    assert statuses == {k: r.status for k, r in plan.items()}, applied["line:setting"].error
    assert applied[f"file:{target}/in-the-way"].error == plan[f"file:{target}/in-the-way"].error
    assert not (target / "ran").exists()
    assert (target / "new.conf").read_text() == "key = value\n"


def test_a_line_on_a_file_that_a_dependency_creates_is_known_after_it(tmp_path: Path) -> None:
    """nginx.conf comes with the nginx package: a line in it is judged after the package, in plan as
    in apply. Here an exec plays the package."""
    target = tmp_path / "target"
    target.mkdir()
    inv, site = local_site(tmp_path,
        "resources:\n"
        "  - exec: install\n"
        f"    command: \"printf 'a = 1\\\\n' > {target}/app.conf\"\n"
        "    shell: true\n"
        f"    creates: {target}/app.conf\n"
        "  - line: setting\n"
        f"    path: {target}/app.conf\n"
        "    text: \"key = value\"\n"
        "    require: exec:install\n"
    )
    hosts = load_inventory(inv).select(None)
    plan = {r.id: r for r in engine(load_inventory(inv), load_site(site), tmp_path).run("plan", hosts)
            .hosts[0].resources}
    assert plan["line:setting"].status == "changed" and "known after" in plan["line:setting"].reason
    applied = {r.id: r for r in engine(load_inventory(inv), load_site(site), tmp_path).run("apply", hosts)
               .hosts[0].resources}
    assert applied["line:setting"].status == "changed", applied["line:setting"].error
    assert (target / "app.conf").read_text() == "a = 1\nkey = value\n"
    # what happened, not the plan's placeholder
    assert "known after" not in applied["line:setting"].reason
    assert all(c.field != "pending" for c in applied["line:setting"].changes)


def test_a_deferred_resource_found_in_sync_after_its_dependency_reports_in_sync(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    inv, site = local_site(tmp_path,
        "resources:\n"
        "  - exec: install\n"
        f"    command: \"printf 'key = value\\\\n' > {target}/app.conf\"\n"
        "    shell: true\n"
        f"    creates: {target}/app.conf\n"
        "  - line: setting\n"
        f"    path: {target}/app.conf\n"
        "    text: \"key = value\"\n"
        "    require: exec:install\n"
    )
    hosts = load_inventory(inv).select(None)
    applied = {r.id: r for r in engine(load_inventory(inv), load_site(site), tmp_path).run("apply", hosts)
               .hosts[0].resources}
    assert (target / "app.conf").read_text() == "key = value\n"
    line = applied["line:setting"]
    assert (line.status, line.reason, line.changes) == ("ok", "in sync", []), line


def test_a_created_files_text_is_kept_only_when_it_will_be_shown(setup: Any, tmp_path: Path) -> None:
    """whole_new_contents False (no --diff, no --json): a created file's diff is its header only, in
    the plan and in the apply's results; the file itself is written whole."""
    inv, site, target = setup
    hosts: list[Host] = inv.select(None)
    whole = engine(inv, site, tmp_path).run("plan", hosts)
    [full] = [c.diff for r in whole.hosts[0].resources if r.id.endswith("plain.txt") for c in r.changes if c.diff]
    assert "+no facts here" in full
    e = engine(inv, site, tmp_path)
    e.whole_new_contents = False
    applied = e.run("apply", hosts)
    [head] = [c.diff for r in applied.hosts[0].resources if r.id.endswith("plain.txt") for c in r.changes if c.diff]
    assert head == "".join(full.splitlines(keepends=True)[:3]) and "no facts here" not in head
    assert (target / "plain.txt").read_text() == "no facts here\n"


def test_a_store_that_refuses_collected_pull_runs_costs_the_collection_not_the_host(
        setup: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """What the probe brought from the host's pull outbox goes to the store first; when the store says
    no, the reports wait on the host for the next probe and this host's run goes on."""
    from driftctl.errors import StoreError

    inv, site, _ = setup
    hosts: list[Host] = inv.select(None)
    outbox = tmp_path / "outbox"
    outbox.mkdir(mode=0o700)
    e = engine(inv, site, tmp_path)
    e.outbox_for = lambda host: {"dir": str(outbox), "id": None, "after": 0, "max": 20}

    def refuse(host: Host, answer: dict[str, Any]) -> None:
        raise StoreError("the store is read-only")

    e.on_outbox = refuse
    with caplog.at_level("WARNING"):
        run = e.run("plan", hosts)
    assert run.hosts[0].status == "changed", run.hosts[0].error
    assert "ctl: its pull runs were not collected: the store is read-only" in caplog.text


class LosesTheConnection(LocalTransport):
    """The local transport whose apply connection drops after the agent's first "done" record: the agent
    runs to its end here, but the controller hears nothing after that record (its later lines are lost
    with the connection, as a reset or a silent link loses them)."""

    def stream(self, argv, *, feed, on_output, timeout=None, become=None):  # type: ignore[no-untyped-def]
        buf = bytearray()
        cut: list[bool] = []

        def until_cut(data: bytes) -> None:  # whole lines, up to and with the first "done" record
            buf.extend(data)
            while not cut and (i := buf.find(b"\n")) >= 0:
                line = bytes(buf[: i + 1])
                del buf[: i + 1]
                on_output(line)
                if line.startswith(b'{"done"'):
                    cut.append(True)

        result = super().stream(argv, feed=feed, on_output=until_cut, timeout=timeout, become=become)
        if not cut:  # no apply ran on this stream
            return result
        raise ConnectionLost(self.host.name, "connection lost while running python3")


def test_resources_unheard_of_after_a_lost_connection_are_not_reported_not_said_not_started(
        tmp_path: Path) -> None:
    """After a lost connection the agent's last records may be lost with it: a resource the controller
    has no record of may have run (here they all did), so the report must not call it "not started"."""
    target = tmp_path / "target"
    target.mkdir()
    steps = "".join(
        f"  - exec: step{i}\n    command: [touch, {target}/{i}]\n    creates: {target}/{i}\n"
        + (f"    require: exec:step{i - 1}\n" if i > 1 else "")
        for i in (1, 2, 3))
    inv, site = local_site(tmp_path, "resources:\n" + steps)
    settings = config.load({"state_dir": str(tmp_path / "state")})
    e = Engine(load_site(site), load_inventory(inv), settings, TransportOptions(),
               transport_factory=lambda h, o: LosesTheConnection(h, o))
    result = e.run("apply", load_inventory(inv).select(None))
    host = result.hosts[0]
    by_id = {r.id: r for r in host.resources}
    assert host.interrupted == "connection lost" and result.exit_code & 8
    assert by_id["exec:step1"].status == "changed"
    for rid in ("exec:step2", "exec:step3"):
        r = by_id[rid]
        assert r.status == "skipped" and (r.error or "").startswith("not reported (connection lost"), r
        assert "may have started" in (r.error or "") and "not started" not in (r.error or ""), r
    assert sorted(p.name for p in target.iterdir()) == ["1", "2", "3"]  # they did run: "not started" was false


def test_a_source_changed_on_the_controller_before_it_was_sent_fails_its_resource_only(tmp_path: Path) -> None:
    """The source was hashed when the catalog was compiled and changed before the apply sent it: that
    resource fails with the reason and nothing of it is installed; the others converge, and the run
    ends at once (the content's read error used to end the sending thread, and the agent waited for
    frames that never came until the command's time limit)."""
    target = tmp_path / "target"
    target.mkdir()
    inv, site = local_site(tmp_path,
        "resources:\n"
        f"  - file: {target}/before.txt\n    content: \"one\\n\"\n"
        f"  - file: {target}/logo.bin\n    source: logo.bin\n"
        f"  - file: {target}/after.txt\n    content: \"two\\n\"\n")
    (site / "roles" / "r" / "files").mkdir()
    logo = site / "roles" / "r" / "files" / "logo.bin"
    logo.write_bytes(b"\x89PNG" + b"\0" * (INLINE_LIMIT + 1))  # streamed from the file when sent

    class EditedMeanwhile(LocalTransport):
        def stream(self, argv, *, feed, on_output, timeout=None, become=None):  # type: ignore[no-untyped-def]
            logo.write_bytes(b"\x89PNG" + b"\1" * 100)  # someone edits the site during the run
            return super().stream(argv, feed=feed, on_output=on_output, timeout=timeout, become=become)

    settings = config.load({"state_dir": str(tmp_path / "state")})
    e = Engine(load_site(site), load_inventory(inv), settings, TransportOptions(),
               transport_factory=lambda h, o: EditedMeanwhile(h, o))
    result = e.run("apply", load_inventory(inv).select(None))
    by_id = {r.id: r for r in result.hosts[0].resources}
    logo_result = by_id[f"file:{target}/logo.bin"]
    assert logo_result.status == "failed", logo_result
    assert logo_result.error == f"{logo} changed on the controller during the run: not sent"
    assert by_id[f"file:{target}/before.txt"].status == by_id[f"file:{target}/after.txt"].status == "changed"
    assert sorted(p.name for p in target.iterdir()) == ["after.txt", "before.txt"]  # no temp file left either
    assert result.exit_code & 4 and not result.hosts[0].interrupted  # the run was not cut short


def test_an_abort_while_the_catalogs_render_stops_the_rendering_and_starts_no_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT or SIGTERM while the catalogs are rendered (minutes, for ten thousand hosts): the rendering
    stops at the next host, and no host is changed, the first one's early probe included."""
    import driftctl.manifest.compile as compile_module

    target = tmp_path / "target"
    target.mkdir()
    inv, site = local_site(tmp_path, f"resources:\n  - file: {target}/{{{{ inventory_hostname }}}}.txt\n"
                                     "    content: \"{{ inventory_hostname }}\\n\"\n")
    names = [f"ctl{i}" for i in range(1, 6)]
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n" + "".join(f"    {n}:\n      driftctl_transport: local\n"
                                                                 for n in names))
    e = engine(load_inventory(inv), load_site(site), tmp_path)
    rendered = []
    compile_catalog = compile_module.compile_catalog

    def compile_then_abort(*args: Any, **kwargs: Any) -> Any:
        catalog = compile_catalog(*args, **kwargs)
        rendered.append(args[2].name)
        if len(rendered) == 2:
            e.abort.set()  # as the signal handler does (driftctl/cli/signals.py)
        return catalog

    monkeypatch.setattr(compile_module, "compile_catalog", compile_then_abort)
    result = e.run("apply", load_inventory(inv).select(None))
    assert rendered == names[:2]  # not one catalog after the abort
    assert not any(target.iterdir())  # nothing written
    assert [h.host for h in result.hosts] == names
    assert all(h.interrupted == "aborted" for h in result.hosts), [(h.host, h.status, h.error) for h in result.hosts]
    assert result.exit_code & ExitCode.ABORTED
    assert "apply" not in RecordingTransport.ops


def test_the_rendering_asks_stop_before_each_host_and_keeps_the_errors_met(tmp_path: Path) -> None:
    from driftctl.errors import ManifestError
    from driftctl.manifest import preflight

    inv, site = local_site(tmp_path, "resources:\n  - file: /tmp/{{ broken_for_ctl1 | mandatory }}\n")
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n" + "".join(f"    ctl{i}:\n      driftctl_transport: local\n"
                                                                 for i in (1, 2, 3)))
    (inv / "host_vars").mkdir()
    for i in (2, 3):
        (inv / "host_vars" / f"ctl{i}.yaml").write_text(f"broken_for_ctl1: f{i}\n")
    inventory = load_inventory(inv)
    hosts = inventory.select(None)
    asked = []

    def stop_after(n: int) -> Any:
        return lambda: asked.append(1) or len(asked) > n

    with pytest.raises(ManifestError):  # ctl1's error, met before the stop, is still said
        preflight(load_site(site), inventory, hosts, stop=stop_after(1))
    asked.clear()
    (inv / "host_vars" / "ctl1.yaml").write_text("broken_for_ctl1: f1\n")
    inventory = load_inventory(inv)
    catalogs = preflight(load_site(site), inventory, inventory.select(None), stop=stop_after(2))
    assert sorted(catalogs) == ["ctl1", "ctl2"] and len(asked) == 3
