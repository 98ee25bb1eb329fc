"""The ``file`` resource type (controller side), plus parameter checks the file-like types share."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jinja2 import defaults as jinja2_defaults

from driftctl.content import Blob, FileContent, blob_of
from driftctl.errors import Location, ManifestError
from driftctl.manifest.render import TemplateOptions
from driftctl.model import Change
from driftctl.resources.base import (
    Param,
    ResourceType,
    check_abs_path,
    check_mode,
    content_change,
    field_changes,
    register,
    sha256,
)

# The agent sends a file's text only up to this size (driftctl/agent/_core.py CONTENT_LIMIT).
CONTENT_LIMIT = 256 * 1024

_NAME_RE = re.compile(r"^[^\s:]+$")


def check_owner(value: Any) -> str:
    """An owner or group: a name or a numeric id (YAML ``owner: 0`` arrives as an int)."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must be a name or an id >= 0, not {value}")
        return str(value)
    if not _NAME_RE.match(value):
        raise ValueError(f"must be a user or group name or a numeric id, not {value!r}")
    return value


def check_file_mode(value: Any) -> str:
    """A mode string, normalised to four digits ("644" and "00644" both become "0644")."""
    return f"{int(check_mode(value), 8):04o}"


def check_one_line(value: Any) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"must be one line, not {value!r}")
    return str(value)


def check_regex(value: Any) -> str:
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"is not a valid regular expression ({e}): {value!r}") from None
    return str(value)


def owner_params(what: str) -> dict[str, Param]:
    """owner, group and mode, documented for ``what`` ("the file")."""
    return {
        "owner": Param((str, int), f"User owning {what} (name or uid). Unmanaged when not given.", check=check_owner),
        "group": Param((str, int), f"Group owning {what} (name or gid). Unmanaged when not given.", check=check_owner),
        "mode": Param(
            (str, int),
            f'Permissions of {what} as a quoted octal string ("0644"); a YAML number is refused with a hint. '
            "Unmanaged when not given.",
            check=check_file_mode,
        ),
    }


def require_given(cls: type[ResourceType], params: Mapping[str, Any], location: Location) -> None:
    """A required parameter written as ``key:`` (YAML null) arrives as None: name it like a missing one."""
    for key, spec in cls.params.items():
        if spec.required and params.get(key) is None:
            raise ManifestError(f"{cls.name}: parameter {key!r} is required", location)


def one_content_source(cls: type[ResourceType], params: Mapping[str, Any], location: Location) -> list[str]:
    """Which of ``content``, ``template`` and ``source`` are given: at most one, they say the same thing
    three ways."""
    given = [k for k in ("content", "template", "source") if params.get(k) is not None]
    if len(given) > 1:
        raise ManifestError(f"{cls.name}: give one of content, template and source, not {' and '.join(given)}",
                            location)
    return given


def forbid_when_absent(cls: type[ResourceType], params: Mapping[str, Any], names: tuple[str, ...],
                       location: Location) -> None:
    """``ensure: absent`` with parameters that only make sense for something present is a mistake."""
    given = [n for n in names if params.get(n) not in (None, False)]
    if params.get("ensure") == "absent" and given:
        raise ManifestError(f"{cls.name}: ensure: absent takes no {', '.join(given)}", location)


def parent_directory(path: str) -> str | None:
    parent = path.rsplit("/", 1)[0]
    return parent or None if path != "/" else None


def describe_ensure(change: Change) -> str:
    if change.before in (None, "absent"):
        return "created"
    if change.after == "absent":
        return f"removed (was {change.before})" if change.before not in ("file", "present") else "removed"
    return f"ensure {change.before} -> {change.after}"


def content_bytes(content: str | bytes | FileContent) -> bytes:
    if isinstance(content, FileContent):  # only bake and tests want a large source in memory
        return b"".join(content.chunks())
    return content.encode("utf-8") if isinstance(content, str) else content


def content_sha(content: str | bytes | FileContent) -> str:
    if isinstance(content, FileContent):
        return content.sha256
    return sha256(content_bytes(content))


def content_text(content: str | bytes | FileContent) -> str | None:
    """The content as text when the agent would also send it as text (small, UTF-8), else None."""
    if isinstance(content, FileContent):
        return None
    data = content_bytes(content)
    if len(data) > CONTENT_LIMIT:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None



def check_newline_sequence(value: Any) -> str:
    """"\\n", "\\r" or "\\r\\n"; also as written with backslashes ('\\r\\n' in single quotes), as Ansible allows."""
    written = {"\\n": "\n", "\\r": "\r", "\\r\\n": "\r\n"}.get(value, value)
    if written not in ("\n", "\r", "\r\n"):
        raise ValueError(f"must be one of \"\\n\", \"\\r\" or \"\\r\\n\", not {value!r}")
    return str(written)


def check_delimiter(value: Any) -> str:
    if not value or "\n" in value:
        raise ValueError(f"must be a non-empty string on one line, not {value!r}")
    return str(value)


# the template module's options (Ansible's names and defaults), for a resource with ``template:``
TEMPLATE_PARAMS: dict[str, Param] = {
    "trim_blocks": Param(bool, "Template: remove the first newline after a block tag (Ansible's default: true)."),
    "lstrip_blocks": Param(bool, "Template: strip spaces and tabs before a block tag on its line (default: false)."),
    "newline_sequence": Param(str, 'Template: the newline of the rendered file, "\\n" (default), "\\r" or "\\r\\n".',
                              check=check_newline_sequence),
    **{f"{kind}_{end}_string": Param(str, f"Template: the {kind} {end} delimiter (default "
                                          f"{getattr(jinja2_defaults, f'{kind}_{end}_string'.upper())!r}).",
                                     check=check_delimiter)
       for kind in ("block", "variable", "comment") for end in ("start", "end")},
}


def template_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """The template options given on a resource (those not given keep Ansible's defaults)."""
    return {k: params[k] for k in TEMPLATE_PARAMS if params.get(k) is not None}


def check_template_options(type_name: str, params: Mapping[str, Any], location: Location) -> None:
    """Template options need ``template:``, and must make a valid set (start strings all different)."""
    given = template_options(params)
    if not given:
        return
    if not params.get("template"):
        raise ManifestError(f"{type_name}: {', '.join(given)} only apply to a template: file", location,
                            "give template: (a file under templates/), or remove them")
    try:
        TemplateOptions.of(given)
    except ValueError as e:
        raise ManifestError(f"{type_name}: template options: {e}", location) from None


def parent_and_owners(params: Mapping[str, Any]) -> list[str]:
    """What a path resource depends on when the catalog has it: its parent directory, its owner and group."""
    out = []
    parent = parent_directory(params["path"])
    if parent:
        out.append(f"directory:{parent}")
    for key, rtype in (("owner", "user"), ("group", "group")):
        if params.get(key) is not None and not str(params[key]).isdigit():
            out.append(f"{rtype}:{params[key]}")
    return out

@register
class File(ResourceType):
    """A regular file: its content, owner, group and mode.

    The content comes from ``content`` (text in the manifest), ``template`` (a Jinja2 file of the
    role's ``templates/``, rendered per host) or ``source`` (a file of ``files/``, copied byte for
    byte); without any of them only the file's existence and metadata are managed (a missing file is
    created empty; without ``mode`` a new file is 0644, or 0600 when it is sensitive). Files are
    replaced atomically: a private temporary file in the same directory, fsync, rename, all through
    the directory's descriptor; a file changed by hand since the plan is not replaced (the resource
    fails). The replaced file is kept in the backup directory (``/var/lib/driftctl/backup`` by
    default: per path, 0600, the newest ``backup_keep`` for ``backup_max_age_days``) unless
    ``backup: false``. Large ``source`` files are streamed, never held in memory.

    driftctl never follows or replaces a symlink or a directory at the path (declare a ``symlink``
    resource, or remove it), never writes through a symlink in the path that a user other than root
    could have planted, and never creates a missing parent directory: declare a ``directory``
    resource for it (a file requires its parent directory's resource automatically).

    Example::

        - file: /etc/motd
          content: "managed by driftctl on {{ inventory_hostname }}\\n"
          owner: root
          group: root
          mode: "0644"
        - file: /etc/nginx/nginx.conf
          template: nginx.conf.j2
          notify: [service:nginx]
        - file: /usr/local/share/logo.png
          source: logo.png
        - file: /etc/cron.allow
          ensure: absent
    """

    name = "file"
    namevar = "path"
    bake_phase = 4
    bake_writer = "driftctl.bake.writers:bake_file"
    params = {
        "path": Param(str, "Absolute path of the file (the title).", required=True, check=check_abs_path),
        "ensure": Param(str, "present (a regular file) or absent.", default="present", choices=("present", "absent")),
        "content": Param((str, bytes), "The file's content, as text."),
        "template": Param(str, "A Jinja2 template file (under templates/) rendered into the content, as Ansible's "
                               "template module renders it."),
        "source": Param(str, "A file (under files/) copied as the content, byte for byte."),
        **TEMPLATE_PARAMS,
        **owner_params("the file"),
        "backup": Param(bool, "Keep the replaced or removed file in the backup directory (per path, with retention).",
                        default=True),
    }

    @classmethod
    def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
        require_given(cls, params, location)
        one_content_source(cls, params, location)
        forbid_when_absent(cls, params, ("content", "template", "source", "owner", "group", "mode"), location)
        check_template_options(cls.name, params, location)
        for key in TEMPLATE_PARAMS:  # not given: left out, so a file's params (and digests) are as before
            if params.get(key) is None:
                params.pop(key, None)
        return params

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        return parent_and_owners(params)

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        if params.get("ensure") == "absent":
            return {"ensure": "absent", "content_sha256": None, "owner": None, "group": None, "mode": None}
        content = params.get("content")
        return {
            "ensure": "file",
            "content_sha256": content_sha(content) if content is not None else None,
            "owner": params.get("owner"),
            "group": params.get("group"),
            "mode": params.get("mode"),
        }

    @classmethod
    def agent_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: params.get(k) for k in ("path", "ensure", "owner", "group", "mode", "backup")}
        content = params.get("content")
        blob = blob_of(content) if content is not None else None  # its sha256 and size, hashed once
        out["content_sha256"] = blob.sha256 if blob is not None else None
        out["content_size"] = blob.size if blob is not None else None
        out.update({k: v for k, v in params.items() if k.startswith("_")})
        return out

    @classmethod
    def blobs(cls, params: Mapping[str, Any]) -> dict[str, bytes]:
        content = params.get("content")
        if content is None or params.get("ensure") == "absent":
            return {}
        data = content_bytes(content)
        return {sha256(data): data}

    @classmethod
    def contents(cls, params: Mapping[str, Any]) -> list[Blob]:
        content = params.get("content")
        if content is None or params.get("ensure") == "absent":
            return []
        return [blob_of(content)]

    @classmethod
    def diff(cls, desired: Mapping[str, Any], observed: Mapping[str, Any], sensitive: bool = False,
             params: Mapping[str, Any] | None = None) -> list[Change]:
        have = observed.get("ensure") or "absent"
        if desired["ensure"] == "absent":
            return [Change("ensure", have, "absent")] if have != "absent" else []
        changes = []
        if have != "file":
            changes.append(Change("ensure", have, "file"))
            if have != "absent":
                return changes  # a link or a directory is in the way: apply refuses, nothing more to say
        sha = desired.get("content_sha256")
        if sha is not None and observed.get("content_sha256") != sha:
            content = None if sensitive or params is None else params.get("content")
            text = content_text(content) if content is not None else None
            changes.append(content_change("content", sha, observed, text, "content", sensitive))
        changes += field_changes(desired, observed, ("owner", "group", "mode"))
        return changes

    @classmethod
    def describe(cls, change: Change) -> str:
        if change.field == "ensure":
            return describe_ensure(change)
        if change.field == "content":
            return f"content {change.before} -> {change.after}" if change.before else f"content {change.after}"
        return super().describe(change)
