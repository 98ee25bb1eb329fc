"""Services and packages in an image: systemd enablement as symlinks, packages from dpkg's database.

``systemctl enable`` in an image without systemd running is a matter of symlinks: the unit's
[Install] section (read from the image) names the targets that want it (``WantedBy=`` ->
``/etc/systemd/system/<target>.wants/<unit>``), its aliases and the units enabled with it (``Also=``).
Bake writes those links; ``unit_enabled`` reads them back the way ``systemctl is-enabled`` does.

In an image, *running* means "started when the container boots": a service with ``running: true``
(and no ``enabled``) is enabled, and the image reports a service as running exactly when it is
enabled. docs/bake.md says so.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from driftctl.bake.fs import Entry, ImageFS
from driftctl.errors import BakeError
from driftctl.model import Resource

if TYPE_CHECKING:
    from driftctl.bake.writers import Baker

ETC_UNITS = "/etc/systemd/system"
# systemd's unit search path for the system manager, the part that can exist in an image, in order
UNIT_DIRS = (ETC_UNITS, "/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")


@dataclass
class Unit:
    """A unit file found in the image: its name, where it is, and its [Install] section."""

    name: str
    path: str
    wanted_by: list[str] = field(default_factory=list)
    required_by: list[str] = field(default_factory=list)
    alias: list[str] = field(default_factory=list)
    also: list[str] = field(default_factory=list)

    @property
    def has_install(self) -> bool:
        return bool(self.wanted_by or self.required_by or self.alias or self.also)

    def links(self) -> list[tuple[str, str]]:
        """(link path, target) pairs that ``systemctl enable`` creates for this unit."""
        out = [(posixpath.join(ETC_UNITS, f"{t}.wants", self.name), self.path) for t in self.wanted_by]
        out += [(posixpath.join(ETC_UNITS, f"{t}.requires", self.name), self.path) for t in self.required_by]
        out += [(posixpath.join(ETC_UNITS, a), self.path) for a in self.alias]
        return out


def unit_name(name: str) -> str:
    suffixes = (".service", ".socket", ".timer", ".target", ".path", ".mount")
    return name if name.endswith(suffixes) else f"{name}.service"


def parse_install(text: str) -> dict[str, list[str]]:
    """The [Install] section of a unit file -> {key: values} (an empty assignment resets a key)."""
    out: dict[str, list[str]] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Install" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not value:
            out[key] = []
        else:
            out.setdefault(key, []).extend(value.split())
    return out


def find_unit(fs: ImageFS, name: str) -> Unit | None:
    """The unit file for ``name`` in the image (an alias symlink leads to the real unit), or None."""
    name = unit_name(name)
    for directory in UNIT_DIRS:
        path = posixpath.join(directory, name)
        entry = fs.get(fs.resolve(path))
        if entry is None:
            continue
        if entry.kind == "link":
            if entry.target == "/dev/null":
                return Unit(name, path)  # masked; unit_enabled says so
            real = fs.resolve(path, follow_last=True)
            if posixpath.basename(real) != name:
                return find_unit(fs, posixpath.basename(real))
            entry = fs.get(real)
        if entry is None or entry.kind != "file":
            continue
        install = parse_install(fs.read_text(fs.resolve(path, follow_last=True)) or "")
        return Unit(name, path, install.get("WantedBy", []), install.get("RequiredBy", []),
                    install.get("Alias", []), install.get("Also", []))
    return None


def _masked(fs: ImageFS, name: str) -> bool:
    entry = fs.get(fs.resolve(posixpath.join(ETC_UNITS, name)))
    return entry is not None and entry.kind == "link" and entry.target == "/dev/null"


def unit_enabled(fs: ImageFS, name: str) -> bool | None:
    """Whether the unit starts at boot, as ``systemctl is-enabled`` would say; None if it is missing.

    enabled: one of its install links exists; static (no [Install]): yes; masked: no; indirect
    (only ``Also=``): when one of those is enabled.
    """
    unit = find_unit(fs, name)
    if unit is None:
        return None
    if _masked(fs, unit.name):
        return False
    if not unit.has_install:
        return True
    for link, _target in unit.links():
        entry = fs.get(fs.resolve(link))
        if entry is not None and entry.kind == "link" and posixpath.basename(
                fs.resolve(link, follow_last=True)) == unit.name:
            return True
    if not (unit.wanted_by or unit.required_by or unit.alias):
        return any(unit_enabled(fs, also) for also in unit.also)
    return False


def _ensure_dir(fs: ImageFS, path: str, epoch: int) -> None:
    real = fs.resolve(path)
    if fs.get(real) is None:
        _ensure_dir(fs, posixpath.dirname(real), epoch)
        fs.put(real, Entry("dir", 0o755, 0, 0, mtime=epoch))


def set_enabled(fs: ImageFS, r: Resource, name: str, enabled: bool, epoch: int, seen: set[str] | None = None) -> None:
    """``systemctl enable|disable NAME`` done with symlinks in the image."""
    seen = seen if seen is not None else set()
    unit = find_unit(fs, name)
    if unit is None:
        raise BakeError(f"{r.id} ({r.source}): no unit file for {unit_name(name)} in the image "
                        f"(looked in {', '.join(UNIT_DIRS)})")
    if unit.name in seen:
        return
    seen.add(unit.name)
    if _masked(fs, unit.name):
        if not enabled:
            return
        fs.remove(fs.resolve(posixpath.join(ETC_UNITS, unit.name)))  # unmask
        unit = find_unit(fs, name) or unit
    if not unit.has_install:
        if not enabled:
            raise BakeError(f"{r.id}: {unit.name} is a static unit (no [Install] section): "
                            "it cannot be disabled, mask it")
        return
    for link, target in unit.links():
        real = fs.resolve(link)
        cur = fs.get(real)
        if enabled:
            if cur is not None and cur.kind == "link" and cur.target == target:
                continue
            if cur is not None and cur.kind != "link":
                raise BakeError(f"{r.id}: {link} is a {cur.kind} in the image, not an enablement link")
            _ensure_dir(fs, posixpath.dirname(real), epoch)
            fs.put(real, Entry("link", 0o777, 0, 0, mtime=epoch, target=target))
        elif cur is not None and cur.kind == "link":
            fs.remove(real)
    for also in unit.also:
        set_enabled(fs, r, also, enabled, epoch, seen)


def bake_service(fs: ImageFS, r: Resource, epoch: int) -> None:
    from driftctl.bake.accounts import agent_params

    p = agent_params(r)
    enabled = p.get("enabled")
    if enabled is None:
        enabled = p.get("running")  # in an image, running means started at boot
    if enabled is None:
        return
    set_enabled(fs, r, p["name"], bool(enabled), epoch)


def observe_service(fs: ImageFS, params: dict[str, object]) -> dict[str, bool]:
    """The agent's service observe() shape, from the image: running == starts at boot."""
    state = unit_enabled(fs, str(params["name"]))
    if state is None:
        raise BakeError(f"no such service: {params['name']} (the image has no unit file for it)")
    out = {}
    for key in ("enabled", "running"):
        if params.get(key) is not None:
            out[key] = state
    return out


# ---------------------------------------------------------------- the unit resource


def bake_unit_resource(b: Baker, r: Resource) -> None:
    """A ``unit`` resource in the image: its unit file and drop-ins as files, then its enablement as
    links, as ``bake_service`` does (in an image ``state: started`` means enabled; ``stopped``, disabled).

    A unit that should be enabled but stopped cannot be an image (what is enabled runs when the
    container boots): refused. Nothing runs, so there is no daemon-reload to do.
    """
    from driftctl.resources.file import content_bytes

    p = r.params
    name = str(p["name"])
    if p.get("ensure") == "absent":
        _bake_unit_absent(b, r, name)
        return
    files = [(posixpath.join(ETC_UNITS, name), p.get("content"))]
    files += [(posixpath.join(ETC_UNITS, f"{name}.d", d), t) for d, t in sorted((p.get("dropins") or {}).items())]
    for path, content in files:
        if content is None:
            continue
        real = b.path(path)
        if posixpath.dirname(path).endswith(".d"):
            folder = b.path(posixpath.dirname(path))
            cur_dir = b.fs.get(folder)
            if cur_dir is None:
                b.require_parent(r, folder)
                b.put(folder, Entry("dir", 0o755, 0, 0))
            elif cur_dir.kind != "dir":
                raise b.fail(r, f"{folder} is a {cur_dir.kind} in the image, not a directory")
        data = content_bytes(content)
        cur = b.fs.get(real)
        if cur is not None and cur.kind != "file":
            raise b.fail(r, f"{real} is a {cur.kind} in the image: driftctl never follows or replaces it "
                            "for a unit")
        if cur is None:
            b.require_parent(r, real)
        mode = cur.mode if cur is not None else (0o600 if r.sensitive else 0o644)
        b.put(real, Entry("file", mode, cur.uid if cur else 0, cur.gid if cur else 0, size=len(data), data=data))
    enabled, state = p.get("enabled"), p.get("state")
    if enabled and state == "stopped":
        raise b.fail(r, "enabled: true with state: stopped cannot be baked: an image's enabled units run when "
                        "the container boots (bake the unit disabled, or not stopped)")
    if enabled is False and state == "started":
        raise b.fail(r, "enabled: false with state: started cannot be baked: an image's units run when the "
                        "container boots exactly when they are enabled (bake the unit enabled, or not started)")
    if enabled is None and state is not None:
        enabled = state == "started"
        unit = find_unit(b.fs, name)
        if not enabled and unit is not None and not unit.has_install and not _masked(b.fs, unit.name):
            raise b.fail(r, f"state: stopped cannot be baked for {name}, a static unit (no [Install] section): in "
                            "an image it counts as started, as nothing can disable it (leave state out, or mask it)")
    if enabled is not None:
        set_enabled(b.fs, r, name, bool(enabled), b.epoch)


def _bake_unit_absent(b: Baker, r: Resource, name: str) -> None:
    """``ensure: absent`` in an image: the enablement links go, then the unit file and its .d (regular
    files only, as on a host)."""
    unit = find_unit(b.fs, name)
    if unit is not None and unit.has_install and not _masked(b.fs, unit.name):
        set_enabled(b.fs, r, name, False, b.epoch)
    path = b.path(posixpath.join(ETC_UNITS, name))
    cur = b.fs.get(path)
    if cur is not None and cur.kind != "file":
        raise b.fail(r, f"{path} is a {cur.kind} in the image: driftctl never follows or replaces it for a unit")
    folder = b.path(posixpath.join(ETC_UNITS, f"{name}.d"))
    entry = b.fs.get(folder)
    if entry is not None and entry.kind != "dir":
        raise b.fail(r, f"{folder} is a {entry.kind} in the image, not a directory")
    inside = [posixpath.join(folder, n) for n in b.fs.listdir(folder)] if entry is not None else []
    for child in inside:
        kind = b.fs.get(child)
        if kind is not None and kind.kind != "file":
            raise b.fail(r, f"{child} is a {kind.kind} in the image: driftctl removes only regular files from "
                            "a unit's .d")
    for child in inside:
        b.fs.remove(child)
    if entry is not None:
        b.fs.remove(folder)
    if cur is not None:
        b.fs.remove(path)
    left = find_unit(b.fs, name)
    if left is not None and not left.has_install and not _masked(b.fs, left.name):
        # in an image a static unit counts as started (nothing can disable it): never in sync
        raise b.fail(r, f"{left.path} stays in the image and is a static unit (no [Install] section): ensure: "
                        "absent cannot stop it there (remove its package, or mask it)")


def image_unit_systemd(fs: ImageFS) -> Callable[..., dict[str, Any]]:
    """The agent's ``unit_systemd`` for an image: enablement from its links, running == enabled, and
    never a pending daemon-reload (nothing runs)."""

    def view(name: str, timeout: float | None = None) -> dict[str, Any]:
        enabled = unit_enabled(fs, name)
        unit = find_unit(fs, name) if enabled is not None else None
        masked = _masked(fs, unit_name(name))
        # UnitFileState as systemctl would say it (ensure: absent compares what it can disable)
        state = ("" if unit is None else "masked" if masked else "static" if not unit.has_install
                 else "enabled" if enabled else "disabled")
        return {"enabled": bool(enabled), "running": bool(enabled), "needs_reload": False,
                "loaded": enabled is not None, "masked": masked, "unit_file_state": state, "active_state": ""}

    return view


# ---------------------------------------------------------------- packages


def dpkg_installed(fs: ImageFS) -> dict[str, str]:
    """{package: version} of what dpkg's status database says is installed in the image."""
    text = fs.read_text("/var/lib/dpkg/status") or ""
    out: dict[str, str] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        name, status = fields.get("Package"), fields.get("Status", "").split()
        # the current state (third word) installed, or only waiting for triggers, counts (as dpkg-query)
        if name and len(status) == 3 and status[2] in ("installed", "triggers-awaited", "triggers-pending"):
            out[name] = fields.get("Version", "")
            arch = fields.get("Architecture")
            if arch:
                out.setdefault(f"{name}:{arch}", fields.get("Version", ""))
    return out


def observe_package(fs: ImageFS, params: dict[str, object]) -> dict[str, object]:
    """The agent's package observe() shape, from the image's dpkg database.

    ``candidate`` (what the mirror would install) cannot be known without a mirror: it is reported
    as None, so ``ensure: latest`` never counts as in sync in an image.
    """
    if fs.get("/var/lib/dpkg/status") is None:
        raise BakeError("the image has no dpkg database (/var/lib/dpkg/status): cannot observe packages")
    installed = dpkg_installed(fs).get(str(params["name"]))
    ensure = params.get("ensure") or "present"
    out: dict[str, object] = {"ensure": installed or "absent"}
    if ensure == "latest" or (installed is None and ensure != "absent"):
        out["candidate"] = None
    return out
