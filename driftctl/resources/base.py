"""The resource type model: a schema, a pure diff, and how a change is shown.

A type lives in ``driftctl/resources/<name>.py`` (controller side) and ``driftctl/agent/<name>.py``
(host side: observe/apply). The controller side never touches a host: it validates parameters,
states the desired attributes, and diffs them against what the agent observed.

Subclass ``ResourceType``, set ``name``, ``namevar`` and ``params``, and decorate with ``@register``.
The class docstring is the reference documentation (docs/resources.md is generated from it):
a summary, then the parameters, then a YAML example.

The class is the one table of the type: every list of types is derived from it. It names its agent
module (``agent_module``, default its own name: the shipped program takes every module of
driftctl/agent/, ordered by their imports), its bake phase and writer (``bake_phase``,
``bake_writer`` as "module:function", or ``bake_in_container`` for what needs a running system).
A module of this package is a type module by being here (``type_modules()``).
tests/unit/test_types_table.py checks that every type has all its halves and a fixture folder.
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import posixpath
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from driftctl.content import Blob, blob_of
from driftctl.errors import Location, ManifestError
from driftctl.model import Change, Resource

_TYPES: dict[str, type[ResourceType]] = {}

# Parameters every resource accepts; the manifest module consumes them, types never see them.
META_PARAMS = ("require", "before", "notify", "subscribe", "sensitive", "when", "loop", "loop_var", "tags")

MODE_RE = re.compile(r"^0?[0-7]{3,4}$")


@dataclass(frozen=True)
class Param:
    """One parameter of a resource type.

    ``kind`` is a Python type or a tuple of them (bool is never accepted for int).
    ``check`` validates and normalises the value; it returns the value or raises ValueError(message).
    """

    kind: type | tuple[type, ...]
    doc: str
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] = ()
    check: Callable[[Any], Any] | None = None


def not_text(spec: Param, value: Any) -> str | None:
    """What YAML read ``value`` as ("number", "boolean", "date") when ``spec`` wants text and not that.

    ``ensure: 1.10`` is the float 1.1 and ``name: yes`` the boolean true: a parameter that takes a
    string never turns them back into text, because the text they came from is already lost.
    None when ``value`` is text, or a type the parameter takes (an ``int`` uid, a ``(str, int)`` owner).
    """
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    if str not in kinds or isinstance(value, str):
        return None
    if isinstance(value, bool):
        return None if bool in kinds else "boolean"
    if isinstance(value, (int, float)):
        return None if type(value) in kinds else "number"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "date"
    return None


def shown_scalar(value: Any) -> str:
    """A scalar as YAML would write it back: ``true``, ``1.1``, ``2024-01-02``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def yaml_text_error(what: str, key: str, text: str, value: Any, kind: str) -> str:
    """``package:nginx ensure: 1.10 is a YAML number (read as 1.1): quote it: ensure: "1.10"``."""
    prefix = f"{what} " if what else ""
    return f'{prefix}{key}: {text} is a YAML {kind} (read as {shown_scalar(value)}): quote it: {key}: "{text}"'


def check_mode(value: Any) -> str:
    """Modes are strings of octal digits ("0644"), never YAML ints (0644 would read as 420)."""
    if not isinstance(value, str) or not MODE_RE.match(value):
        raise ValueError(f"mode must be a quoted octal string like \"0644\", not {value!r}")
    return value.rjust(4, "0")


def check_abs_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"must be an absolute path, not {value!r}")
    if "\0" in value or "/../" in value + "/":
        raise ValueError(f"must be a plain absolute path, not {value!r}")
    # "//etc/./motd" and "/etc/motd" are one file: one spelling, so claims and purge see them as one
    return posixpath.normpath(value).replace("//", "/")


def did_you_mean(word: str, options: list[str] | tuple[str, ...]) -> str | None:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def sha256(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


class ResourceType:
    """Base of every resource type."""

    name: ClassVar[str]
    namevar: ClassVar[str]  # the parameter that receives the title: ``- file: /etc/motd``
    params: ClassVar[dict[str, Param]]
    # fields whose values are secret by nature (a password hash): always shown as hashes
    secret_fields: ClassVar[tuple[str, ...]] = ()
    # the agent module registers a refresh() (service restart, refreshonly exec): notify means something
    refreshable: ClassVar[bool] = False
    # after apply, the engine observes again and requires no difference left; a type whose apply *is*
    # the desired outcome (an exec without guards runs on every apply) turns this off
    verify_after_apply: ClassVar[bool] = True
    # a directory's purge keeps what other resources manage below it: the agent gets those paths
    keeps_managed_below: ClassVar[bool] = False

    # ---- where the type's other halves are (the one place: every list of types is derived from these)
    # driftctl/agent/<agent_module>.py registers the observe/apply of this type under ``name``;
    # "" means the type's own name
    agent_module: ClassVar[str] = ""
    # bake: the phase the type is written in (accounts before what they own, directories before their
    # files, content before edits of it, services last), and the writer, "module:function" taking
    # (Baker, Resource); a type that needs a running system is run in a build container instead
    bake_phase: ClassVar[int] = 8
    bake_writer: ClassVar[str | None] = None
    bake_in_container: ClassVar[bool] = False

    # ---- validation (before any connection)
    @classmethod
    def validate(
        cls, raw: Mapping[str, Any], location: Location, key_locations: Mapping[str, Location] | None = None
    ) -> dict[str, Any]:
        """Check ``raw`` against the schema; return normalised params with defaults filled in.

        Raises ManifestError at the line of the offending key (``key_locations``) or of the resource.
        """
        key_locations = key_locations or {}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            loc = key_locations.get(key, location)
            spec = cls.params.get(key)
            if spec is None:
                raise ManifestError(
                    f"{cls.name}: unknown parameter {key!r}",
                    loc,
                    did_you_mean(key, [*cls.params, *META_PARAMS])
                    or f"{cls.name} takes: {', '.join(sorted(cls.params))}",
                )
            out[key] = cls._check_value(key, spec, value, loc)
        for key, spec in cls.params.items():
            if key not in out:
                if spec.required:
                    raise ManifestError(f"{cls.name}: parameter {key!r} is required", location)
                out[key] = spec.default
        out = cls.normalize(out, location)
        return out

    @classmethod
    def _check_value(cls, key: str, spec: Param, value: Any, loc: Location) -> Any:
        if value is None:
            if spec.required:  # `key:` with nothing after it is YAML null, not a value
                raise ManifestError(f"{cls.name}: parameter {key!r} is required and has no value", loc)
            return spec.default
        kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            kind = not_text(spec, value)
            # a YAML literal is caught with its text when the manifest is loaded (site.py); here the
            # value came from an expression or a variable, so say where the quotes go
            hint = (f"a {kind} where text is meant: quote the value where it is written "
                    "(\"1.10\", not 1.10: YAML reads that as 1.1)") if kind else None
            raise ManifestError(
                f"{cls.name}: {key} must be {names}, not {type(value).__name__} ({value!r})", loc, hint
            )
        if spec.choices and value not in spec.choices:
            raise ManifestError(
                f"{cls.name}: {key} must be one of {', '.join(map(str, spec.choices))}, not {value!r}",
                loc,
                did_you_mean(str(value), [str(c) for c in spec.choices]),
            )
        if spec.check is not None:
            try:
                value = spec.check(value)
            except ValueError as e:
                raise ManifestError(f"{cls.name}: {key} {e}", loc) from None
        return value

    @classmethod
    def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
        """Type-specific checks across parameters (``content`` and ``source`` together, ...)."""
        return params

    # ---- identity and relations
    @classmethod
    def title(cls, params: Mapping[str, Any]) -> str:
        return str(params[cls.namevar])

    @classmethod
    def claims(cls, params: Mapping[str, Any]) -> list[str]:
        """What this resource owns on a host; two resources claiming the same thing is an error."""
        return [f"{cls.name}:{cls.title(params)}"]

    @classmethod
    def stateful(cls, params: Mapping[str, Any]) -> bool:
        """Whether the resource leaves a state on the host that drift can compare (an exec may not)."""
        return True

    @classmethod
    def managed_paths(cls, params: Mapping[str, Any]) -> list[str]:
        """Paths this resource writes on the host: a directory's purge keeps them, watch scans skip them."""
        path = params.get("path")
        return [path] if isinstance(path, str) else []

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        """Ids this resource depends on if they are in the catalog (a file's parent directory, its owner)."""
        return []

    # ---- desired state and diff (pure)
    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """The managed attributes, keyed as the agent's observe() reports them. None = unmanaged."""
        raise NotImplementedError

    @classmethod
    def agent_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """What the agent needs to observe and apply (contents replaced by their sha256)."""
        return dict(params)

    @classmethod
    def blobs(cls, params: Mapping[str, Any]) -> dict[str, bytes]:
        """Contents the agent needs for apply, by sha256."""
        return {}

    @classmethod
    def contents(cls, params: Mapping[str, Any]) -> list[Blob]:
        """The same contents as ``blobs()``, as the apply call streams them (large files never in memory)."""
        return [blob_of(data) for data in cls.blobs(params).values()]

    @classmethod
    def diff(cls, desired: Mapping[str, Any], observed: Mapping[str, Any], sensitive: bool = False,
             params: Mapping[str, Any] | None = None) -> list[Change]:
        """The fields whose observed value differs from the desired one, in the schema's order.

        Pure: everything it reads is an argument. ``params`` are the resource's validated parameters,
        for what the desired state keeps out because it is fingerprinted (a file's text, for the
        unified diff of its content); without them the changes are the same, only without that text.
        The default compares each managed field; types override it for ensure=absent and contents.
        """
        changes = []
        for key, want in desired.items():
            if want is None:
                continue
            have = observed.get(key)
            if have != want:
                changes.append(Change(key, have, want))
        return changes

    @classmethod
    def describe(cls, change: Change) -> str:
        """One change line as people read it: ``mode 0644 -> 0600``."""
        if change.before is None:
            return f"{change.field} -> {change.after}"
        return f"{change.field} {change.before} -> {change.after}"


def field_changes(desired: Mapping[str, Any], observed: Mapping[str, Any],
                  keys: Iterable[str] | None = None) -> list[Change]:
    """A change for each of ``keys`` (default: every desired field) whose desired value is set and
    differs from the observed one, in that order."""
    return [
        Change(key, observed.get(key), want)
        for key in (desired if keys is None else keys)
        if (want := desired.get(key)) is not None and observed.get(key) != want
    ]


def content_change(
    field_name: str, desired_sha: str, observed: Mapping[str, Any], new_text: str | None, path: str, sensitive: bool
) -> Change:
    """A content change between the observed file and new text, with a unified diff when both are text."""
    before = observed.get("content_sha256")
    diff = None
    old_text = observed.get("content")
    if not sensitive and new_text is not None and before is None:
        diff = created_diff(new_text.splitlines(keepends=True), f"{path} (manifest)")
    elif not sensitive and new_text is not None and old_text is not None:
        diff = "".join(
            difflib.unified_diff(
                old_text.splitlines(keepends=True),
                new_text.splitlines(keepends=True),
                fromfile=f"{path} (host)",
                tofile=f"{path} (manifest)",
            )
        )
    return Change(field_name, f"sha256:{before[:12]}" if before else None, f"sha256:{desired_sha[:12]}", diff)


def created_diff(lines: list[str], tofile: str) -> str:
    """``difflib.unified_diff([], lines, "/dev/null", tofile)`` joined, written directly: a new file's
    diff is all additions, and difflib's matcher costs ~35 us a file for nothing (a first converge
    diffs every file it creates)."""
    if not lines:
        return ""
    added = f"+1,{len(lines)}" if len(lines) != 1 else "+1"
    return f"--- /dev/null\n+++ {tofile}\n@@ -0,0 {added} @@\n+" + "+".join(lines)


def register(cls: type[ResourceType]) -> type[ResourceType]:
    if not cls.__dict__.get("agent_module"):
        cls.agent_module = cls.name
    _TYPES[cls.name] = cls
    return cls


def get_type(name: str) -> type[ResourceType] | None:
    _load_all()
    return _TYPES.get(name)


def all_types() -> dict[str, type[ResourceType]]:
    _load_all()
    return dict(sorted(_TYPES.items()))


def type_modules() -> list[str]:
    """The modules of driftctl/resources/ that hold types: all but this one, by name."""
    import pkgutil

    import driftctl.resources

    return sorted(m.name for m in pkgutil.iter_modules(driftctl.resources.__path__)
                  if m.name != "base" and not m.name.startswith("_"))


_LOADED: list[bool] = []  # every type module is imported
_LOADING: list[bool] = []  # the thread holding _LOAD_LOCK is importing them (a module may ask for a type)
_LOAD_LOCK = threading.RLock()


def _load_all() -> None:
    """Import every type module once (get_type is called per resource: 13 imports each time cost seconds).

    Threads (a worker's, a controller's per host) that ask meanwhile wait for the whole table: marked
    loaded before the imports finished, a second thread saw a half-filled registry ("unknown resource
    type 'directory'")."""
    if _LOADED:
        return
    import importlib

    with _LOAD_LOCK:
        if _LOADED or _LOADING:
            return
        _LOADING.append(True)
        try:
            for mod in type_modules():
                importlib.import_module(f"driftctl.resources.{mod}")
            _LOADED.append(True)
        finally:
            _LOADING.clear()


def resource_types_for(resources: list[Resource]) -> dict[str, type[ResourceType]]:
    types = all_types()
    return {r.type: types[r.type] for r in resources}
