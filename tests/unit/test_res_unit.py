"""unit: validation (errors at the offending key's line), desired state, claims, what the apply call
streams, and bake: the unit file, drop-ins and enablement in an image, checked by verify() (the agent's
own observe code over the image). The change cases and ``systemctl show`` captures are data files in
tests/unit/data/unit/ (run by test_write_fixtures.py); the host side runs on the fleet
(tests/fleet/test_unit_resource.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_bake_support import TINY_TREE, make_tiny_base, res

from driftctl.bake import bake, open_image, verify
from driftctl.bake.fs import ImageFS
from driftctl.errors import BakeError, Location, ManifestError
from driftctl.model import Catalog
from driftctl.resources.base import get_type, sha256

LOC = Location("manifests/roles/app/resources.yaml", 7)
KEY_LOC = Location("manifests/roles/app/resources.yaml", 9)
Unit = get_type("unit")
assert Unit is not None
UNIT = "[Service]\nExecStart=/usr/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n"
EPOCH = 1_700_000_000


def validate(**raw: object) -> dict:
    assert Unit is not None
    return Unit.validate({"name": "app.service", **raw}, LOC, {k: KEY_LOC for k in raw})


@pytest.mark.parametrize("name", ["app.service", "getty@tty1.service", "app@.service", "backup.timer", "dbus.socket",
                                  "srv-data.mount", "spool.path", "multi-user.target", "x\\x2dy.service"])
def test_unit_names_accepted(name: str) -> None:
    assert validate(name=name, content=UNIT)["name"] == name


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "app"}, "name must be a systemd unit name with one of the suffixes .service, .timer, .socket"),
        ({"name": "app.swap"}, "with one of the suffixes"),
        ({"name": "../etc/shadow.service"}, "must be a systemd unit name"),
        ({"name": "sub/app.service"}, "must be a systemd unit name"),
        ({"name": "-app.service"}, "must be a systemd unit name"),
        ({"name": ".service"}, "must be a systemd unit name"),
        ({"name": "a b.service"}, "must be a systemd unit name"),
        ({"name": "x" * 250 + ".service"}, "must be a systemd unit name"),
        ({"name": "x" * 248 + ".service"}, "at most 255 characters"),
        ({"name": "app.service\n"}, "must be a systemd unit name"),
        ({"name": "app.service\n.service"}, "must be a systemd unit name"),
        ({"name": "caf\u00e9.service"}, "must be a systemd unit name"),
        ({"name": "app\uff0eservice.service"}, "must be a systemd unit name"),
        ({"dropins": {"10-a.conf\n": "x"}}, "names files of the unit's .d directory"),
        ({"dropins": {"10-a/b.conf": "x"}}, "names files of the unit's .d directory"),
        ({"dropins": {"..conf": "x"}}, "names files of the unit's .d directory"),
        ({"dropins": {"a" * 251 + ".conf": "x"}}, "names files of the unit's .d directory"),
        ({"state": "running"}, "state must be one of started, stopped, not 'running'"),
        ({"state": True}, "state must be str"),
        ({"enabled": "yes"}, "enabled must be bool"),
        ({"refresh": "bounce"}, "refresh must be one of restart, reload, reload-or-restart"),
        ({"timeout": 0}, "timeout must be a positive number of seconds"),
        ({"dropins": ["10-a.conf"]}, "dropins must be dict"),
        ({"dropins": {"10-a": "x"}}, "names files of the unit's .d directory ending in .conf"),
        ({"dropins": {"../x.conf": "x"}}, "names files of the unit's .d directory"),
        ({"dropins": {".hidden.conf": "x"}}, "names files of the unit's .d directory"),
        ({"dropins": {"10-a.conf": 5}}, "10-a.conf: the content must be text, not int"),
        ({"running": True}, "unknown parameter 'running'"),
        ({"ensure": "gone"}, "ensure must be one of present, absent"),
    ],
)
def test_validation_errors_carry_the_keys_line(raw: dict, message: str) -> None:
    with pytest.raises(ManifestError) as e:
        validate(**{"content": UNIT, **raw})
    assert message in str(e.value)
    assert e.value.location == KEY_LOC


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "unit:app.service: give the unit file (content, template or source) or dropins"),
        ({"enabled": True, "state": "started"}, "give the unit file"),
        ({"content": UNIT, "source": "app.service"},
         "give one of content, template and source, not content and source"),
        ({"name": "app@.service", "content": UNIT, "enabled": True}, "is a template unit: it cannot be enabled"),
        ({"name": "app@.service", "content": UNIT, "state": "started"}, "declare the instance (unit: app@one.service)"),
        ({"name": "x" * 246 + ".service", "dropins": {"10-a.conf": "x"}},
         "only a unit name of at most 253 characters has a .d directory for drop-ins"),
        ({"ensure": "absent", "content": UNIT}, "unit: ensure: absent takes no content"),
        ({"ensure": "absent", "dropins": {"10-a.conf": "x"}, "state": "stopped"},
         "unit: ensure: absent takes no dropins, state"),
    ],
)
def test_errors_across_parameters_carry_the_resources_line(raw: dict, message: str) -> None:
    assert Unit is not None
    with pytest.raises(ManifestError) as e:
        Unit.validate({"name": "app.service", **raw}, LOC)
    assert message in str(e.value)
    assert e.value.location == LOC


def test_desired_manages_only_what_is_given() -> None:
    assert Unit is not None
    only_dropin = validate(dropins={"10-a.conf": "[Service]\nNice=5\n"}, content=None)
    assert Unit.desired(only_dropin) == {
        "content_sha256": None, "dropins": {"10-a.conf": sha256("[Service]\nNice=5\n")}, "needs_reload": False,
        "enabled": None, "running": None}
    full = validate(content=UNIT, enabled=False, state="stopped")
    assert Unit.desired(full) == {"content_sha256": sha256(UNIT), "dropins": None, "needs_reload": False,
                                  "enabled": False, "running": False}
    assert Unit.refreshable and Unit.desired(validate(content=UNIT))["running"] is None
    gone = Unit.validate({"name": "old.service", "ensure": "absent"}, LOC)
    assert Unit.desired(gone) == {"ensure": "absent", "content_sha256": None, "dropins": None, "needs_reload": None,
                                  "enabled": False, "running": False}
    assert Unit.claims(gone) == ["unit:old.service", "file:/etc/systemd/system/old.service", "service:old.service",
                                 "service:old"]
    assert Unit.autorequire(gone) == [] and Unit.managed_paths(gone) == []


def test_claims_stop_a_second_resource_for_the_same_file_or_state() -> None:
    assert Unit is not None
    p = validate(content=UNIT, dropins={"10-a.conf": "x"}, state="started")
    assert Unit.claims(p) == ["unit:app.service", "file:/etc/systemd/system/app.service",
                              "file:/etc/systemd/system/app.service.d/10-a.conf", "service:app.service", "service:app"]
    assert Unit.claims(validate(dropins={"10-a.conf": "x"})) == [
        "unit:app.service", "file:/etc/systemd/system/app.service.d/10-a.conf"]
    assert Unit.autorequire(p) == []  # its own unit file: no package to wait for
    assert Unit.autorequire(validate(name="nginx.service", dropins={"10-a.conf": "x"})) == ["package:nginx"]
    assert Unit.managed_paths(p) == ["/etc/systemd/system/app.service", "/etc/systemd/system/app.service.d/10-a.conf"]


def test_apply_streams_each_distinct_content_once_in_write_order() -> None:
    assert Unit is not None
    p = validate(content=UNIT, dropins={"20-b.conf": "same\n", "10-a.conf": "same\n"})
    assert list(p["dropins"]) == ["10-a.conf", "20-b.conf"]
    assert [b.sha256 for b in Unit.contents(p)] == [sha256(UNIT), sha256("same\n")]
    assert set(Unit.blobs(p)) == {sha256(UNIT), sha256("same\n")}
    item = Unit.agent_params(p)
    assert item["content_sha256"] == sha256(UNIT) and item["content_size"] == len(UNIT)
    assert item["dropins"] == {"10-a.conf": sha256("same\n"), "20-b.conf": sha256("same\n")}
    assert "content" not in item  # the text travels as a frame, never in the item


def test_agent_files_are_the_unit_file_then_the_dropins() -> None:
    from driftctl.agent import unit as agent_unit

    assert Unit is not None
    p = Unit.agent_params(validate(content=UNIT, dropins={"10-a.conf": "x"}))
    assert agent_unit.unit_files(p) == [("/etc/systemd/system/app.service", sha256(UNIT)),
                                        ("/etc/systemd/system/app.service.d/10-a.conf", sha256("x"))]
    expects = {"unit_files": {"/etc/systemd/system/app.service": None}}
    assert agent_unit.unit_expected(expects, "/etc/systemd/system/app.service") is None
    assert agent_unit.unit_expected(agent_unit.CAS_UNKNOWN, "/x") is agent_unit.CAS_UNKNOWN


# ---- bake: files and enablement in an image, checked by the agent's own observe code


@pytest.fixture
def base(tmp_path: Path) -> Path:
    # a systemd image: the tiny base with systemd's binary, so the image's facts say init: systemd
    return make_tiny_base(tmp_path / "base", [*TINY_TREE, ("usr/lib/systemd/systemd", "file", 0o755, 0, 0, "")])


def _statuses(image: Path, *resources: object) -> dict[str, tuple[str, list[str]]]:
    return {r.id: (r.status, [c.field for c in r.changes]) for r in verify(str(image), Catalog("h", list(resources)))}


def test_bake_writes_the_unit_its_dropins_and_enablement(base: Path, tmp_path: Path) -> None:
    unit = res("unit", "app.service", content=UNIT, dropins={"10-a.conf": "[Service]\nNice=5\n"}, enabled=True,
               state="started")
    assert _statuses(base, unit) == {
        "unit:app.service": ("changed", ["content", "dropin 10-a.conf", "enabled", "running"])}
    bake(Catalog("h", [unit]), str(base), tmp_path / "out", epoch=EPOCH)
    fs = ImageFS.load(open_image(str(tmp_path / "out")), lambda p: True)
    entry = fs.get("/etc/systemd/system/app.service")
    assert entry is not None and (entry.kind, entry.mode, entry.uid) == ("file", 0o644, 0)
    assert fs.read("/etc/systemd/system/app.service") == UNIT.encode()
    folder = fs.get("/etc/systemd/system/app.service.d")
    assert folder is not None and (folder.kind, folder.mode) == ("dir", 0o755)
    assert fs.read("/etc/systemd/system/app.service.d/10-a.conf") == b"[Service]\nNice=5\n"
    link = fs.get("/etc/systemd/system/multi-user.target.wants/app.service")
    assert link is not None and link.target == "/etc/systemd/system/app.service"
    assert _statuses(tmp_path / "out", unit) == {"unit:app.service": ("ok", [])}
    # the image's own drift: another content is a change of this resource
    other = res("unit", "app.service", content=UNIT + "# more\n", enabled=True)
    assert _statuses(tmp_path / "out", other) == {"unit:app.service": ("changed", ["content"])}


def test_bake_stopped_means_disabled_and_refuses_what_an_image_cannot_be(base: Path, tmp_path: Path) -> None:
    started = res("unit", "app.service", content=UNIT, state="started")
    bake(Catalog("h", [started]), str(base), tmp_path / "on", epoch=EPOCH)
    stopped = res("unit", "app.service", content=UNIT, state="stopped")
    bake(Catalog("h", [stopped]), str(tmp_path / "on"), tmp_path / "off", epoch=EPOCH)
    fs = ImageFS.load(open_image(str(tmp_path / "off")), lambda p: True)
    assert fs.get("/etc/systemd/system/multi-user.target.wants/app.service") is None
    assert _statuses(tmp_path / "off", stopped) == {"unit:app.service": ("ok", [])}
    with pytest.raises(BakeError, match="enabled: true with state: stopped cannot be baked"):
        bake(Catalog("h", [res("unit", "app.service", content=UNIT, enabled=True, state="stopped")]), str(base),
             tmp_path / "x1", epoch=EPOCH)
    # started but not enabled: in an image started is enabled, so verify would say "changed" forever
    with pytest.raises(BakeError, match="enabled: false with state: started cannot be baked"):
        bake(Catalog("h", [res("unit", "app.service", content=UNIT, enabled=False, state="started")]), str(base),
             tmp_path / "x3", epoch=EPOCH)
    with pytest.raises(BakeError, match=r"no unit file for nope\.service"):
        bake(Catalog("h", [res("unit", "nope.service", dropins={"10-a.conf": "x"}, enabled=True)]), str(base),
             tmp_path / "x2", epoch=EPOCH)


def test_bake_never_replaces_a_link_or_a_file_in_the_way(tmp_path: Path) -> None:
    tree = [*TINY_TREE, ("usr/lib/systemd/systemd", "file", 0o755, 0, 0, ""),
            ("etc/systemd/system/app.service", "link", 0o777, 0, 0, "/dev/null"),
            ("etc/systemd/system/web.service.d", "file", 0o644, 0, 0, "")]
    base = make_tiny_base(tmp_path / "base", tree)
    with pytest.raises(BakeError, match=r"app\.service is a link in the image: driftctl never follows or replaces"):
        bake(Catalog("h", [res("unit", "app.service", content=UNIT)]), str(base), tmp_path / "x1", epoch=EPOCH)
    with pytest.raises(BakeError, match=r"web\.service\.d is a file in the image, not a directory"):
        bake(Catalog("h", [res("unit", "web.service", dropins={"10-a.conf": "x"})]), str(base), tmp_path / "x2",
             epoch=EPOCH)
    # the probe says the same for the link: apply would refuse it (a masked unit)
    [result] = verify(str(base), Catalog("h", [res("unit", "app.service", content=UNIT)]))
    assert result.status == "failed" and "(to /dev/null)" in (result.error or "")
    assert "unmask the unit" in (result.error or "")


def test_bake_absent_removes_the_unit_its_dropins_and_links(base: Path, tmp_path: Path) -> None:
    unit = res("unit", "app.service", content=UNIT, dropins={"10-a.conf": "x\n"}, enabled=True)
    bake(Catalog("h", [unit]), str(base), tmp_path / "on", epoch=EPOCH)
    gone = res("unit", "app.service", ensure="absent")
    assert _statuses(tmp_path / "on", gone) == {"unit:app.service": ("changed", ["ensure", "enabled", "running"])}
    bake(Catalog("h", [gone]), str(tmp_path / "on"), tmp_path / "off", epoch=EPOCH)
    fs = ImageFS.load(open_image(str(tmp_path / "off")), lambda p: True)
    for path in ("/etc/systemd/system/app.service", "/etc/systemd/system/app.service.d",
                 "/etc/systemd/system/app.service.d/10-a.conf",
                 "/etc/systemd/system/multi-user.target.wants/app.service"):
        assert fs.get(path) is None, path
    assert _statuses(tmp_path / "off", gone) == {"unit:app.service": ("ok", [])}
    assert _statuses(base, gone) == {"unit:app.service": ("ok", [])}  # never there: nothing to do


def test_absent_on_a_packaged_static_unit_is_refused_in_an_image(tmp_path: Path) -> None:
    """A static unit (no [Install]) under /usr/lib cannot be disabled (on a host absent stops it)."""
    static = "[Service]\nType=oneshot\nExecStart=/bin/true\n"
    base = make_tiny_base(tmp_path / "base", [*TINY_TREE, ("usr/lib/systemd/systemd", "file", 0o755, 0, 0, ""),
                                              ("usr/lib/systemd/system/pkg.service", "file", 0o644, 0, 0, static)])
    gone = res("unit", "pkg.service", ensure="absent")
    # in an image a static unit counts as started and nothing disables it: refused, not "changed" forever
    with pytest.raises(BakeError, match=r"pkg\.service stays in the image and is a static unit"):
        bake(Catalog("h", [gone]), str(base), tmp_path / "out", epoch=EPOCH)


def test_bake_stopped_on_a_static_unit_says_why(base: Path, tmp_path: Path) -> None:
    """A timer's oneshot service (no [Install]) with state: stopped: an image cannot stop a static unit."""
    oneshot = res("unit", "tick.service", content="[Service]\nType=oneshot\nExecStart=/bin/true\n", state="stopped")
    with pytest.raises(BakeError, match=r"state: stopped cannot be baked for tick\.service, a static unit"):
        bake(Catalog("h", [oneshot]), str(base), tmp_path / "out", epoch=EPOCH)
