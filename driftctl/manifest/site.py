"""Loading a manifest tree: ``site.yaml``, roles and manifest files. Structure only, no rendering.

``!vault |`` values (Ansible Vault text) decrypt to secrets while loading, as ``!secret`` values are
secrets; a role's ``defaults.yaml`` may be vault-encrypted as a whole (see docs/secrets.md).

Everything a user can get wrong without knowing the host is checked here, with file:line: bad YAML,
unknown keys (did-you-mean), roles and files that do not exist, unknown resource types, and
``template:``/``source:`` paths that leave the manifest tree (also through symlinks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftctl.errors import Location, ManifestError, ManifestErrors
from driftctl.fsperms import tree_warning
from driftctl.manifest.render import DEFAULT_MAX_BYTES, Renderer
from driftctl.manifest.rendercache import RenderCache
from driftctl.resources.base import META_PARAMS, ResourceType, all_types, did_you_mean, not_text, yaml_text_error
from driftctl.yamlsrc import YamlMap, YamlSeq, load_file, load_vars_file

SITE_KEYS = ("hosts", "roles", "manifests")
FILE_KEYS = ("vars", "secrets", "watch", "resources")
# parameters whose value is a path in the manifest tree, with the directory they resolve against
ASSET_PARAMS = {"template": "templates", "source": "files"}
_ROLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def has_jinja(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


@dataclass
class ResourceDecl:
    """One resource as written: ``body`` is the mapping (type key first), not rendered yet."""

    type: str
    body: YamlMap
    location: Location
    file: ManifestFile = field(repr=False)

    @property
    def title(self) -> Any:
        return self.body[self.type]


@dataclass
class ManifestFile:
    """A manifest file: a role's ``resources.yaml`` or a plain file named in the site file.

    ``defaults`` are the role's ``defaults.yaml`` (empty for plain files); ``search`` the directories
    that ``template:`` and ``source:`` resolve against.
    """

    path: Path
    vars: dict[str, Any]
    secrets: list[str]
    watch: list[Any]
    watch_locations: list[Location]
    resources: list[ResourceDecl]
    templates: Path
    files: Path
    role: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def location(self) -> Location:
        return Location(str(self.path))


@dataclass
class Role:
    name: str
    path: Path
    defaults: dict[str, Any]
    manifest: ManifestFile


@dataclass
class SiteEntry:
    """``- hosts: PATTERN`` with the manifest files it brings: its roles first, then its manifests."""

    hosts: str
    files: list[ManifestFile]
    location: Location


@dataclass
class Site:
    """A loaded manifest tree. ``root`` is as given (for messages), ``tree`` the resolved directory."""

    root: Path
    tree: Path
    entries: list[SiteEntry]
    roles: dict[str, Role] = field(default_factory=dict)
    files: dict[Path, ManifestFile] = field(default_factory=dict)
    # Settings.max_render_bytes: no rendered value or file, nor anything built on the way, is larger
    max_render_bytes: int = DEFAULT_MAX_BYTES
    # things worth saying that are not errors (a tree other users can write)
    warnings: list[str] = field(default_factory=list)
    _renderer: Renderer | None = field(default=None, repr=False, compare=False)
    # rendered template files kept across runs (driftctl/manifest/rendercache.py, D53); None: none kept
    render_cache: RenderCache | None = field(default=None, repr=False, compare=False)
    # per inventory: each entry's selection and the groups variable (see compile._view)
    _inventory_views: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)
    # (base, rel) -> the file resolve_inside found: hosts name the same files, resolved once per run
    resolved: dict[tuple[Path, str], Path] = field(default_factory=dict, repr=False, compare=False)

    @property
    def renderer(self) -> Renderer:
        """The site's renderer: one per site, so compiled templates are shared by every host."""
        if self._renderer is None:
            self._renderer = Renderer(self.tree, self.display, self.max_render_bytes)
        return self._renderer

    def display(self, path: Path) -> str:
        """How a resolved path inside the tree is named in messages: under ``root`` as given."""
        try:
            return str(self.root / path.relative_to(self.tree))
        except ValueError:
            return str(path)


def resolve_inside(site: Site, base: Path, rel: str, location: Location, what: str) -> Path:
    """``base/rel`` resolved (symlinks too); an error unless it is a file inside the manifest tree."""
    if not rel or "\0" in rel:
        raise ManifestError(f"{what}: empty or invalid path {rel!r}", location)
    found = site.resolved.get((base, rel))
    if found is not None:  # every host of a run names the same files: resolve each once
        return found
    path = (base / rel).resolve()
    if not path.is_relative_to(site.tree):
        raise ManifestError(f"{what}: {rel!r} is outside the manifest tree {site.root}", location,
                            f"files must be under {site.display(base)}")
    if not path.is_file():
        existing = sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()) if base.is_dir() else []
        raise ManifestError(f"{what}: {rel!r} not found in {site.display(base)}", location,
                            did_you_mean(rel, existing))
    site.resolved[(base, rel)] = path
    return path


def _expect(value: Any, kind: type, what: str, location: Location) -> Any:
    if not isinstance(value, kind):
        names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
        want = names.get(kind, kind.__name__)
        raise ManifestError(f"{what} must be {want}, not {type(value).__name__}", location)
    return value


def _check_keys(mapping: YamlMap, allowed: tuple[str, ...], what: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise ManifestError(f"{what}: unknown key {key!r}", mapping.loc(key),
                                did_you_mean(str(key), allowed) or f"allowed: {', '.join(allowed)}")


def _str_list(value: Any, what: str, location: Location) -> list[tuple[str, Location]]:
    """A list of strings (a single string is a list of one) with each item's location."""
    if isinstance(value, str):
        return [(value, location)]
    seq = _expect(value, list, what, location)
    out = []
    for i, item in enumerate(seq):
        loc = seq.loc(i) if isinstance(seq, YamlSeq) else location
        out.append((_expect(item, str, f"{what} item", loc), loc))
    return out


class _SiteLoader:
    def __init__(self, site: Site, types: Mapping[str, type[ResourceType]]) -> None:
        self.site = site
        self.types = types
        self.errors: list[ManifestError] = []  # mistakes in resources: all reported at the end

    def load_all(self) -> None:
        """``load``, then every mistake found in resources at once (a mistake in the structure of a
        file stops at once: what follows it cannot be read)."""
        try:
            self.load()
        except ManifestError as e:
            self.errors.append(e)
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            from driftctl.manifest.compile import MAX_ERRORS

            raise ManifestErrors(self.errors[:MAX_ERRORS], len(self.errors[MAX_ERRORS:]))

    def load(self) -> None:
        site = self.site
        path = site.root / "site.yaml"
        data = load_file(path, ManifestError)
        loc = Location(str(path), 1)
        if data is None:
            raise ManifestError("the site file is empty: expected a list of '- hosts: PATTERN' entries", loc)
        seq = _expect(data, list, "the site file", getattr(data, "location", loc))
        for i, entry in enumerate(seq):
            entry_loc = seq.loc(i)
            entry = _expect(entry, dict, "a site entry", entry_loc)
            _check_keys(entry, SITE_KEYS, "site entry")
            if "hosts" not in entry:
                raise ManifestError("site entry: 'hosts' (a host pattern) is required", entry_loc)
            hosts = _expect(entry["hosts"], str, "hosts", entry.loc("hosts"))
            if not hosts.strip():
                raise ManifestError("hosts: empty host pattern", entry.loc("hosts"))
            files: list[ManifestFile] = []
            for name, name_loc in _str_list(entry.get("roles") or [], "roles", entry.loc("roles")):
                files.append(self.role(name, name_loc).manifest)
            for rel, rel_loc in _str_list(entry.get("manifests") or [], "manifests", entry.loc("manifests")):
                file_path = resolve_inside(site, site.tree, rel, rel_loc, "manifests")
                files.append(self.manifest_file(file_path, site.tree / "templates", site.tree / "files"))
            site.entries.append(SiteEntry(hosts, files, entry_loc))

    def role(self, name: str, location: Location) -> Role:
        site = self.site
        if name in site.roles:
            return site.roles[name]
        roles_dir = site.tree / "roles"
        existing = sorted(p.name for p in roles_dir.iterdir() if p.is_dir()) if roles_dir.is_dir() else []
        if not _ROLE_NAME.match(name):
            raise ManifestError(f"roles: {name!r} is not a role name", location)
        path = (roles_dir / name).resolve()
        if not path.is_relative_to(site.tree):
            raise ManifestError(f"roles: role {name!r} is outside the manifest tree {site.root}", location)
        if not path.is_dir():
            raise ManifestError(f"roles: no role {name!r} in {site.display(roles_dir)}", location,
                                did_you_mean(name, existing) or (f"roles: {', '.join(existing)}" if existing else None))
        resources = path / "resources.yaml"
        if not resources.is_file():
            raise ManifestError(f"roles: role {name!r} has no {site.display(resources)}", location)
        defaults: dict[str, Any] = {}
        defaults_path = path / "defaults.yaml"
        if defaults_path.is_file():
            # a role's defaults may be vault-encrypted as a whole (as an Ansible role's vars may): secret values
            data = load_vars_file(site.display(defaults_path), ManifestError)
            if data is not None:
                defaults = _expect(data, dict, "defaults.yaml", getattr(data, "location", Location(str(defaults_path))))
                self._check_var_names(defaults, "defaults.yaml")
        manifest = self.manifest_file(resources.resolve(), path / "templates", path / "files", name, defaults)
        role = Role(name, path, defaults, manifest)
        site.roles[name] = role
        return role

    @staticmethod
    def _check_var_names(variables: Mapping[str, Any], what: str) -> None:
        for key in variables:
            if not isinstance(key, str) or not _VAR_NAME.match(key):
                loc = variables.loc(key) if isinstance(variables, YamlMap) else None
                raise ManifestError(f"{what}: {key!r} is not a variable name (letters, digits, _)", loc)

    def manifest_file(
        self, path: Path, templates: Path, files: Path, role: str | None = None, defaults: dict[str, Any] | None = None
    ) -> ManifestFile:
        site = self.site
        if path in site.files:
            return site.files[path]
        shown = site.display(path)
        data = load_file(shown, ManifestError)
        top = Location(shown, 1)
        if data is None:
            data = YamlMap()
            data.location, data.key_locations = top, {}
        if isinstance(data, list):
            raise ManifestError("a manifest file is a mapping with 'resources:' (and vars, secrets, watch)",
                                getattr(data, "location", top), "put the list under 'resources:'")
        data = _expect(data, dict, "a manifest file", top)
        _check_keys(data, FILE_KEYS, "manifest file")
        variables = data.get("vars") or {}
        _expect(variables, dict, "vars", data.loc("vars"))
        self._check_var_names(variables, "vars")
        secrets = [s for s, _ in _str_list(data.get("secrets") or [], "secrets", data.loc("secrets"))]
        watch = _str_list(data.get("watch") or [], "watch", data.loc("watch"))
        mf = ManifestFile(
            path=path, vars=dict(variables), secrets=secrets,
            watch=[w for w, _ in watch], watch_locations=[loc for _, loc in watch],
            resources=[], templates=templates, files=files, role=role, defaults=dict(defaults or {}),
        )
        resources = data.get("resources") or []
        seq = _expect(resources, list, "resources", data.loc("resources"))
        for i, item in enumerate(seq):
            try:
                mf.resources.append(self.resource(item, seq.loc(i) if isinstance(seq, YamlSeq) else top, mf))
            except ManifestError as e:
                self.errors.append(e)  # the next resource can still be read
        site.files[path] = mf
        return mf

    def resource(self, item: Any, location: Location, mf: ManifestFile) -> ResourceDecl:
        body = _expect(item, dict, "a resource", location)
        if not body:
            raise ManifestError("empty resource: write '- TYPE: TITLE' and its parameters", location)
        type_name = next(iter(body))
        type_loc = body.loc(type_name)
        cls = self.types.get(type_name) if isinstance(type_name, str) else None
        if cls is None:
            hint = did_you_mean(str(type_name), list(self.types))
            if type_name in META_PARAMS:
                hint = "the first key of a resource is its type, e.g. '- file: /etc/motd'"
            raise ManifestError(f"unknown resource type {type_name!r}", type_loc,
                                hint or f"types: {', '.join(self.types)}")
        if body[type_name] is None:
            raise ManifestError(f"{type_name}: the title is missing ('- {type_name}: {cls.namevar.upper()}')", type_loc)
        self._check_literals(type_name, cls, body)
        for key, value in body.items():
            if key == type_name:
                continue
            if key != cls.namevar and key not in cls.params and key not in META_PARAMS:
                raise ManifestError(f"{type_name}: unknown parameter {key!r}", body.loc(key),
                                    did_you_mean(str(key), [*cls.params, *META_PARAMS])
                                    or f"{type_name} takes: {', '.join(sorted(cls.params))}")
            if key == cls.namevar:
                raise ManifestError(f"{type_name}: {key} is the title ('- {type_name}: ...'); give it once",
                                    body.loc(key))
            if key in ASSET_PARAMS and key in cls.params and isinstance(value, str) and not has_jinja(value):
                base = mf.templates if key == "template" else mf.files
                resolve_inside(self.site, base, value, body.loc(key), key)
        return ResourceDecl(type_name, body, location, mf)

    @staticmethod
    def _check_literals(type_name: str, cls: type[ResourceType], body: YamlMap) -> None:
        """A YAML number, boolean or date written where a parameter takes text is an error here, with
        the text as written: ``ensure: 1.10`` would otherwise become "1.1" (compile turns an
        expression's number into its text, and the literal's spelling is lost by then)."""
        title = body[type_name]
        what = f"{type_name}:{title}" if isinstance(title, str) else type_name
        for key, value in body.items():
            name = cls.namevar if key == type_name else key
            spec = cls.params.get(name) if isinstance(name, str) else None
            if spec is None or value is None:
                continue
            kind = not_text(spec, value)
            if kind is not None:
                text = body.text(key) or str(value)
                raise ManifestError(yaml_text_error(what if key != type_name else "", str(key), text, value, kind),
                                    body.loc(key))


def load_site(root: str | Path, types: Mapping[str, type[ResourceType]] | None = None,
              max_render_bytes: int = DEFAULT_MAX_BYTES) -> Site:
    """Load ``root/site.yaml`` and every role and manifest file it names (structure only).

    ``types`` defaults to every registered resource type (tests pass their own);
    ``max_render_bytes`` is ``Settings.max_render_bytes``.
    Raises ManifestError with file:line for every mistake that does not depend on a host.
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError("manifest tree not found (a directory with site.yaml)", Location(str(root)))
    site = Site(root=root, tree=root.resolve(), entries=[], max_render_bytes=max_render_bytes)
    writable = tree_warning(root, "manifest tree")
    if writable:
        site.warnings.append(writable)
    _SiteLoader(site, types if types is not None else all_types()).load_all()
    return site
