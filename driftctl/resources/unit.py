"""The ``unit`` resource type (controller side): a systemd unit's file, drop-ins, reload, enablement
and state in one resource. Host side: driftctl/agent/unit.py.

A type of its own rather than more parameters on ``service``: ``service`` manages a unit that
something else installed (a package) on systemd *or* sysv, while ``unit`` writes the unit file, so it
is systemd-only, and its id names the full unit (``unit:app.service``, ``unit:backup.timer``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from driftctl.content import Blob, blob_of
from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import Param, ResourceType, content_change, field_changes, register, sha256
from driftctl.resources.file import (
    content_bytes,
    content_sha,
    content_text,
    forbid_when_absent,
    one_content_source,
    require_given,
)
from driftctl.resources.service import check_timeout

UNIT_DIR = "/etc/systemd/system"
UNIT_SUFFIXES = (".service", ".timer", ".socket", ".path", ".mount", ".target")
# systemd's unit name alphabet (systemd.unit(5): ASCII letters, digits, ":-_.\"; "@" before the
# instance); at most 255 characters
_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|timer|socket|path|mount|target)$")
_DROPIN_RE = re.compile(r"^[A-Za-z0-9:_.@\\-]+\.conf$")


def check_unit_name(value: Any) -> str:
    """``app.service``, ``getty@tty1.service``, ``backup.timer``: a unit name with a known suffix."""
    if len(value) > 255:
        raise ValueError(f"must be a systemd unit name of at most 255 characters, not {len(value)} ({value[:40]!r}...)")
    # fullmatch: "$" would also match before a final newline ("app.service\n" as a path and a systemctl argument)
    if value.startswith((".", "-")) or not _UNIT_RE.fullmatch(value):
        suffix = "" if value.endswith(UNIT_SUFFIXES) else f" with one of the suffixes {', '.join(UNIT_SUFFIXES)}"
        raise ValueError(f"must be a systemd unit name{suffix} (\"app.service\", \"backup.timer\"), not {value!r}")
    return str(value)


def check_dropins(value: Any) -> dict[str, str]:
    """``{"10-limits.conf": "[Service]\\nLimitNOFILE=65536\\n"}``: file names in NAME.d/ -> their text."""
    out = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _DROPIN_RE.fullmatch(name) or name.startswith(".") or len(name) > 255:
            raise ValueError(f"names files of the unit's .d directory ending in .conf (\"10-limits.conf\"), "
                             f"not {name!r}")
        if not isinstance(text, str):
            raise ValueError(f"{name}: the content must be text, not {type(text).__name__} ({text!r})")
        out[name] = text
    return dict(sorted(out.items()))


def unit_path(name: str) -> str:
    return f"{UNIT_DIR}/{name}"


def dropin_dir(name: str) -> str:
    return f"{UNIT_DIR}/{name}.d"


def is_template(name: str) -> bool:
    """``app@.service``: a template, which runs only as instances (``app@one.service``)."""
    return "@." in name


@register
class Unit(ResourceType):
    """A systemd unit: its unit file, drop-ins, daemon-reload, enablement and state, in one resource.

    The unit file is ``/etc/systemd/system/<name>``, from ``content``, ``template`` (rendered per
    host, as a file's) or ``source``; ``dropins`` are files of ``/etc/systemd/system/<name>.d/``
    (the directory is created when missing; drop-ins not listed are left alone). Without a unit
    file parameter the unit comes from elsewhere and only its drop-ins are managed; the unit then
    requires ``package:<name without suffix>`` when the catalog has it. Files are written as the
    file resource writes them: atomically, through the directory's descriptor, never through a
    symlink, refused when changed by hand since the plan, the old one backed up; a refused file
    (a symlink at its path, a ``.d`` that is not a directory) is found before anything is written.

    When a file changed, the unit is enabled or disabled, then ``systemctl daemon-reload`` runs
    once (per changed unit: its own start must see its new files), then the unit is started or
    stopped; a unit that runs and whose files changed is restarted, as a Puppet service subscribed
    to its unit file. A unit that systemd runs from an older copy of its files
    (``NeedDaemonReload``) is reloaded too. When notified the unit is restarted (``refresh``)
    unless it should be or is stopped, or this run already (re)started it. A hand edit of a file,
    ``systemctl disable`` or ``stop`` show as drift of this resource. systemd hosts only; the name
    needs one of the suffixes .service, .timer, .socket, .path, .mount, .target; a template
    (``app@.service``) cannot be enabled or started. In an image (bake), ``state: started`` means
    enabled and ``stopped`` disabled.

    ``ensure: absent`` stops and disables the unit, then removes its unit file and its ``.d``
    directory (each file backed up) from /etc/systemd/system and reloads systemd; a unit that a
    package installed under /usr/lib stays installed (stopped and disabled: remove the package; a
    static one, with no [Install], is only stopped, and refused in an image, where it counts as started).

    Example::

        - unit: app.service
          template: app.service.j2
          dropins:
            10-limits.conf: |
              [Service]
              LimitNOFILE=65536
          enabled: true
          state: started
          subscribe: [file:/etc/app/app.conf]
        - unit: backup.timer
          content: |
            [Timer]
            OnCalendar=daily
            [Install]
            WantedBy=timers.target
          enabled: true
          state: started
        - unit: nginx.service      # the package's unit, with an override
          dropins:
            10-restart.conf: "[Service]\\nRestart=always\\n"
        - unit: old-app.service
          ensure: absent
    """

    name = "unit"
    namevar = "name"
    bake_phase = 7
    bake_writer = "driftctl.bake.units:bake_unit_resource"
    refreshable = True
    params: ClassVar[dict[str, Param]] = {
        "name": Param(str, "The unit name with its suffix (the title).", required=True, check=check_unit_name),
        "ensure": Param(str, "Present, or absent: stopped, disabled, and its files in /etc/systemd/system removed.",
                        default="present", choices=("present", "absent")),
        "content": Param((str, bytes), "The unit file's content, as text."),
        "template": Param(str, "A Jinja2 template file (under templates/) rendered into the unit file."),
        "source": Param(str, "A file (under files/) copied as the unit file, byte for byte."),
        "dropins": Param(dict, "Drop-in files of the unit's .d directory: file name (*.conf) -> content.",
                         check=check_dropins),
        "enabled": Param(bool, "Start at boot (true/false; default unmanaged)."),
        "state": Param(str, "Started or stopped now (default unmanaged).", choices=("started", "stopped")),
        "refresh": Param(str, "Restart (default), reload or reload-or-restart, when notified.", default="restart",
                         choices=("restart", "reload", "reload-or-restart")),
        "timeout": Param((int, float), "Seconds each systemctl change may take (default: the resource's time limit).",
                         check=check_timeout),
        "backup": Param(bool, "Keep replaced files in the backup directory (per path, with retention).", default=True),
    }

    @classmethod
    def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
        require_given(cls, params, location)
        given = one_content_source(cls, params, location)
        if params.get("ensure") == "absent":
            forbid_when_absent(cls, params, ("content", "template", "source", "dropins", "enabled", "state"), location)
            return params
        if not given and not params.get("dropins"):
            raise ManifestError(f"unit:{params['name']}: give the unit file (content, template or source) or "
                                "dropins", location,
                                "for the state of a unit that something else installed, use a service resource")
        name = params["name"]
        if params.get("dropins") and len(name) > 253:  # NAME.d is a file name too: 255 bytes at most
            raise ManifestError(f"unit:{name[:40]}...: only a unit name of at most 253 characters has a .d "
                                f"directory for drop-ins, not {len(name)}", location)
        if is_template(name) and (params.get("enabled") is not None or params.get("state") is not None):
            raise ManifestError(f"unit:{name} is a template unit: it cannot be enabled or started", location,
                                f"declare the instance (unit: {name.replace('@.', '@one.')}) with "
                                "enabled/state")
        return params

    @classmethod
    def claims(cls, params: Mapping[str, Any]) -> list[str]:
        name = params["name"]
        out = [f"unit:{name}"]
        absent = params.get("ensure") == "absent"
        if absent or params.get("content") is not None or params.get("template") or params.get("source"):
            out.append(f"file:{unit_path(name)}")  # a file resource for the same path is one too many
        out += [f"file:{dropin_dir(name)}/{d}" for d in params.get("dropins") or {}]
        if absent or params.get("enabled") is not None or params.get("state") is not None:
            # a service resource for the same unit would fight over its state
            out.append(f"service:{name}")
            if name.endswith(".service"):
                out.append(f"service:{name[: -len('.service')]}")
        return out

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        # a unit whose file the resource does not write usually comes from the package of its name
        name = params["name"]
        if (params.get("content") is not None or params.get("template") or params.get("source") or "@" in name
                or params.get("ensure") == "absent"):
            return []
        return [f"package:{name.rsplit('.', 1)[0]}"]

    @classmethod
    def managed_paths(cls, params: Mapping[str, Any]) -> list[str]:
        name = params["name"]
        out = [unit_path(name)] if params.get("content") is not None else []
        return out + [f"{dropin_dir(name)}/{d}" for d in params.get("dropins") or {}]

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        if params.get("ensure") == "absent":
            return {"ensure": "absent", "content_sha256": None, "dropins": None, "needs_reload": None,
                    "enabled": False, "running": False}
        content = params.get("content")
        dropins = params.get("dropins") or {}
        files = content is not None or bool(dropins)
        state = params.get("state")
        return {
            "content_sha256": content_sha(content) if content is not None else None,
            "dropins": {n: sha256(t) for n, t in dropins.items()} or None,
            "needs_reload": False if files else None,
            "enabled": params.get("enabled"),
            "running": None if state is None else state == "started",
        }

    @classmethod
    def agent_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: params.get(k) for k in ("name", "ensure", "enabled", "state", "refresh", "timeout", "backup")}
        content = params.get("content")
        blob = blob_of(content) if content is not None else None
        out["content_sha256"] = blob.sha256 if blob is not None else None
        out["content_size"] = blob.size if blob is not None else None
        out["dropins"] = {n: sha256(t) for n, t in (params.get("dropins") or {}).items()}
        out.update({k: v for k, v in params.items() if k.startswith("_")})
        return out

    @classmethod
    def blobs(cls, params: Mapping[str, Any]) -> dict[str, bytes]:
        out = {}
        content = params.get("content")
        if content is not None:
            data = content_bytes(content)
            out[sha256(data)] = data
        for text in (params.get("dropins") or {}).values():
            data = text.encode("utf-8")
            out[sha256(data)] = data
        return out

    @classmethod
    def contents(cls, params: Mapping[str, Any]) -> list[Blob]:
        # in the order the agent writes them (the unit file, then the drop-ins by name); one frame per
        # distinct content, as the agent takes a frame by its hash
        out: dict[str, Blob] = {}
        content = params.get("content")
        if content is not None:
            blob = blob_of(content)
            out[blob.sha256] = blob
        for text in (params.get("dropins") or {}).values():
            blob = blob_of(text.encode("utf-8"))
            out.setdefault(blob.sha256, blob)
        return list(out.values())

    @classmethod
    def diff(cls, desired: Mapping[str, Any], observed: Mapping[str, Any], sensitive: bool = False,
             params: Mapping[str, Any] | None = None) -> list[Change]:
        changes = []
        if desired.get("ensure") == "absent" and observed.get("ensure") != "absent":
            changes.append(Change("ensure", observed.get("ensure"), "absent"))
        sha = desired.get("content_sha256")
        if sha is not None and observed.get("content_sha256") != sha:
            content = None if sensitive or params is None else params.get("content")
            text = content_text(content) if content is not None else None
            changes.append(content_change("content", sha, observed, text, "unit file", sensitive))
        want_dropins = desired.get("dropins") or {}
        have_dropins = observed.get("dropins") or {}
        texts = observed.get("dropin_texts") or {}
        for name, want in want_dropins.items():
            have = have_dropins.get(name)
            if have != want:
                new = None if sensitive or params is None else (params.get("dropins") or {}).get(name)
                seen = {"content_sha256": have, "content": texts.get(name)}
                c = content_change(f"dropin {name}", want, seen, new, name, sensitive)
                changes.append(c)
        changes += field_changes(desired, observed, ("needs_reload", "enabled", "running"))
        return changes

    @classmethod
    def describe(cls, change: Change) -> str:
        if change.field == "running":
            return "started" if change.after else "stopped"
        if change.field == "enabled":
            return "enabled" if change.after else "disabled"
        if change.field == "ensure":
            return "removed" if change.after == "absent" else f"ensure {change.before} -> {change.after}"
        if change.field == "needs_reload":
            return "daemon-reload (systemd runs an older copy of the unit's files)"
        if change.field == "content" or change.field.startswith("dropin "):
            what = "unit file" if change.field == "content" else change.field
            return f"{what} {change.before} -> {change.after}" if change.before else f"{what} created"
        return super().describe(change)
