"""Compiling a host's catalog: render, validate, check claims, resolve relations, order, digest.

``compile_catalog(site, inventory, host, facts)`` is the whole of step 2 of the data flow for one
host. With ``facts=None`` it is a *preflight*: facts are placeholders (see render.FactsPlaceholder),
values that depend on them skip the checks that need the real value, and ``Catalog.uses_facts``
tells the engine to compile again once the facts are known.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftctl import graph
from driftctl.content import read_source
from driftctl.errors import InventoryError, Location, ManifestError, ManifestErrors
from driftctl.manifest.canonical import digest, mentions_secret, secret_strings
from driftctl.manifest.render import FactsPlaceholder, FactsUse, TrackedFacts, contains_placeholder
from driftctl.manifest.rendercache import Shard
from driftctl.manifest.site import ASSET_PARAMS, ManifestFile, ResourceDecl, Site, resolve_inside
from driftctl.model import Catalog, Host, Resource
from driftctl.resources.base import ResourceType, all_types, check_abs_path, did_you_mean
from driftctl.secret import Secret, collect, mentions, redact, secret_title

RELATIONS = ("require", "before", "notify", "subscribe")
MAX_ERRORS = 20  # reported at once per run; the rest are counted
# types that are the whole thing at their path: another of them there is a claim conflict, not an edit
_WHOLE_PATH_TYPES = ("file", "directory", "symlink")
# what an editing resource's managed paths are computed from: unknown in preflight -> not checked
_PATH_KEYS = frozenset({"path", "file", "persist", "user"})
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class _Item:
    """A rendered resource plus what preflight could not know about it."""

    resource: Resource
    cls: type[ResourceType]
    decl: ResourceDecl
    uncertain: set[str] = field(default_factory=set)  # keys whose value depends on unknown facts
    maybe: bool = False  # its existence (when/loop) depends on unknown facts
    relation_locations: dict[str, Location] = field(default_factory=dict)

    @property
    def certain(self) -> bool:
        return not self.uncertain and not self.maybe


@dataclass
class _InventoryView:
    """What every host of one inventory shares: each site entry's selection and the ``groups``
    variable. Computed once per (site, inventory), not once per host (that would be quadratic)."""

    inventory: Any  # held, so the id() it is cached under cannot be reused while cached
    selected: dict[int, frozenset[str]]  # site entry index -> host names
    groups: dict[str, list[str]]


def _view(site: Site, inventory: Any) -> _InventoryView:
    cache = site._inventory_views
    view = cache.get(id(inventory))
    if view is None or view.inventory is not inventory:
        selected = {}
        for i, entry in enumerate(site.entries):
            try:
                # A site file serves several inventories: a part naming a group this inventory
                # lacks selects nobody here (strict=False); a malformed pattern is an error.
                names = inventory.select_names(entry.hosts, strict=False, location=entry.location)
            except InventoryError as e:
                raise ManifestError(f"hosts: {e.message}", e.location or entry.location, e.hint) from None
            selected[i] = frozenset(names)
        groups = inventory.groups_var()  # builds no host
        view = _InventoryView(inventory, selected, groups)
        if len(cache) > 8:
            cache.clear()
        cache[id(inventory)] = view
    return view


def applicable_files(site: Site, inventory: Any, host: Host) -> list[ManifestFile]:
    """The manifest files for ``host``, in site order, each once (a role in two entries applies once)."""
    view = _view(site, inventory)
    out: list[ManifestFile] = []
    seen: set[Path] = set()
    for i, entry in enumerate(site.entries):
        if host.name in view.selected[i]:
            for mf in entry.files:
                if mf.path not in seen:
                    seen.add(mf.path)
                    out.append(mf)
    return out


def magic_variables(site: Site, inventory: Any, host: Host, facts: Any) -> dict[str, Any]:
    return {
        "inventory_hostname": host.name,
        "group_names": sorted(g for g in host.groups if g != "all"),
        "groups": _view(site, inventory).groups,
        "facts": facts,
    }


class _Compiler:
    def __init__(self, site: Site, inventory: Any, host: Host, facts: Mapping[str, Any] | None,
                 types: Mapping[str, type[ResourceType]]) -> None:
        self.site = site
        self.inventory = inventory
        self.host = host
        self.types = types
        self.renderer = site.renderer
        self.use = FactsUse()
        self.preflight = facts is None
        facts_value: Any = FactsPlaceholder("facts", self.use) if facts is None else TrackedFacts(facts, self.use)
        self.magic = magic_variables(site, inventory, host, facts_value)
        self.files = applicable_files(site, inventory, host)
        self.secrets: set[str] = set()
        self.items: list[_Item] = []
        self.watch: list[str] = []
        self.unknown_titles = 0
        self._shard: Shard | None = None

    # ---- rendering
    def _render(self, value: Any, variables: Mapping[str, Any], location: Location, what: str) -> tuple[Any, bool]:
        """Render ``value``; the flag says it depends on unknown facts (preflight only).

        In preflight an error raised after facts were used is not reported: the value may be fine
        for the real facts, and the engine renders again with them (then errors are the host's).
        """
        self.use.reset()
        try:
            out = self.renderer.value(value, variables, location, what)
        except ManifestError:
            if self.preflight and self.use.touched:
                return None, True
            raise
        touched = self.use.reset()
        return out, self.preflight and (touched or contains_placeholder(out))

    def _resolve(self, variables: dict[str, Any], mf: ManifestFile) -> dict[str, Any]:
        """Variables whose values are templates rendered with the others, as Ansible has them
        (driftctl/manifest/varsolve.py); magic variables are never templates."""
        from driftctl.manifest.varsolve import is_template, resolve

        names = {n for n, v in variables.items() if n not in self.magic and is_template(v)}
        if not names:
            return variables

        def where(name: str) -> Location:
            for source in (mf.vars, mf.defaults):
                if name in source and hasattr(source, "loc"):
                    return source.loc(name)
            source_of = getattr(self.inventory, "var_source", None)
            found = source_of(self.host.name, name) if source_of and name in self.host.vars else None
            return found or mf.location

        def render(name: str, value: Any, scope: Mapping[str, Any]) -> Any:
            out, unknown = self._render(value, scope, where(name), f"variable {name}")
            return FactsPlaceholder(f"variable {name}", self.use) if unknown else out

        return resolve(variables, names, self.renderer.env(), render, where)

    def run(self) -> Catalog:
        try:
            return self._run()
        except ManifestError as e:
            # a message may quote a rendered value (a claim, a choice, a relation): never a secret
            if self.secrets:
                for one in [e, *getattr(e, "errors", [])]:
                    one.message = redact(one.message, self.secrets)
                    one.hint = redact(one.hint, self.secrets) if one.hint else one.hint
                    one.args = (str(one),)
            raise
        finally:
            if self._shard is not None:
                self._shard.release()  # its texts are the catalog's now (or wait for the flush)

    def _run(self) -> Catalog:
        # every secret first: a title or relation is checked against all of them, whichever file
        # declared them
        scopes = []
        for mf in self.files:
            variables = self._resolve({**mf.defaults, **mf.vars, **self.host.vars, **self.magic}, mf)
            collect({k: v for k, v in variables.items() if k not in self.magic}, self.secrets)
            for name in mf.secrets:
                if name in variables:
                    secret_strings(variables[name], self.secrets)
            for decl in mf.resources:
                collect(decl.body, self.secrets)
            scopes.append((mf, variables))
        errors: list[ManifestError] = []  # every mistake of the pass, as a compiler reports them
        for mf, variables in scopes:
            for w, loc in zip(mf.watch, mf.watch_locations, strict=True):
                try:
                    self._watch(w, loc, variables)
                except ManifestError as e:
                    errors.append(e)
            for decl in mf.resources:
                try:
                    self.expand(decl, variables)
                except ManifestError as e:
                    errors.append(e)
        if errors:
            raise errors[0] if len(errors) == 1 else ManifestErrors(errors[:MAX_ERRORS], len(errors[MAX_ERRORS:]))
        self.check_claims()
        self.resolve_relations()
        self.autorequire()
        resources = self.order()
        for r in resources:
            if not r.sensitive and self.secrets and mentions_secret(r.params, self.secrets):
                r.sensitive = True  # a secret in a value: never show its diff, whatever the manifest says
        catalog = Catalog(host=self.host.name, resources=resources, watch=self.watch,
                          secrets=frozenset(self.secrets), uses_facts=self.use.ever)
        catalog.digest = digest(catalog)
        return catalog

    def _watch(self, w: Any, loc: Location, variables: Mapping[str, Any]) -> None:
        path, unknown = self._render(w, variables, loc, "watch")
        if unknown:
            return
        try:
            path = check_abs_path(path)
        except ValueError as e:
            raise ManifestError(f"watch: {e}", loc) from None
        if path not in self.watch:
            self.watch.append(path)

    def expand(self, decl: ResourceDecl, variables: Mapping[str, Any]) -> None:
        """One resource declaration -> zero or more items (``loop:``, ``when:``)."""
        body = decl.body
        loop_var = body.get("loop_var", "item")
        if not isinstance(loop_var, str) or not _IDENT.match(loop_var):
            raise ManifestError(f"loop_var must be a variable name, not {loop_var!r}", body.loc("loop_var"))
        if loop_var in self.magic:
            raise ManifestError(f"loop_var {loop_var!r} would hide the variable of the same name", body.loc("loop_var"))
        if "loop_var" in body and "loop" not in body:
            raise ManifestError("loop_var without loop", body.loc("loop_var"))
        maybe = False
        elements: list[Any] = [None]
        if "loop" in body:
            loop, maybe = self._render(body["loop"], variables, body.loc("loop"), "loop")
            if maybe:
                elements = [FactsPlaceholder(f"{loop_var}", self.use)]
            elif not isinstance(loop, list):
                raise ManifestError(f"loop must be a list, not {type(loop).__name__} ({loop!r})", body.loc("loop"))
            else:
                elements = loop
        for element in elements:
            scope = dict(variables)
            if "loop" in body:
                scope[loop_var] = element
            self.item(decl, scope, maybe)

    def item(self, decl: ResourceDecl, scope: Mapping[str, Any], maybe: bool) -> None:
        body, cls = decl.body, self.types[decl.type]
        if "when" in body:
            when = body["when"]
            self.use.reset()
            if isinstance(when, str):
                try:
                    result = self.renderer.expression(when, scope, body.loc("when"), "when")
                except ManifestError:
                    if not (self.preflight and self.use.touched):
                        raise
                    result = True
            elif isinstance(when, bool):
                result = when
            else:
                raise ManifestError(f"when must be an expression or true/false, not {when!r}", body.loc("when"))
            if self.preflight and self.use.reset():
                maybe = True
            elif not result:
                return
        raw: dict[str, Any] = {}
        key_locations: dict[str, Location] = {}
        uncertain: set[str] = set()
        relations: dict[str, list[str]] = {k: [] for k in RELATIONS}
        relation_locations: dict[str, Location] = {}
        sensitive = False
        tags: list[str] = []
        for key, value in body.items():
            loc = body.loc(key)
            if key in ("when", "loop", "loop_var"):
                continue
            name = cls.namevar if key == decl.type else key
            rendered, unknown = self._render(value, scope, loc, name)
            if key in RELATIONS:
                relation_locations[key] = loc
                if not unknown:
                    relations[key] = self._ids(rendered, key, loc)
                    self._check_relation_secrets(relations[key], key, loc)
            elif key == "sensitive":
                if unknown:
                    sensitive = True
                elif not isinstance(rendered, bool):
                    raise ManifestError(f"sensitive must be true or false, not {rendered!r}", loc)
                else:
                    sensitive = rendered
            elif key == "tags":
                if isinstance(rendered, str) and not unknown:
                    rendered = rendered.split(",")  # tags: web or "web,db", as Ansible allows
                if not unknown and not (isinstance(rendered, list) and all(isinstance(t, str) for t in rendered)):
                    raise ManifestError("tags must be a list of strings", loc)
                if not unknown:
                    tags = [t.strip() for t in rendered if t.strip()]
            else:
                if unknown:
                    uncertain.add(name)
                spec = cls.params.get(name)
                if spec is not None and spec.kind is str and isinstance(rendered, int) \
                        and not isinstance(rendered, bool):
                    # "{{ port }}" for a text parameter: its text, as people expect. A float is refused by
                    # validation instead: 1.10 has already become 1.1, and its text is gone.
                    rendered = str(rendered)
                raw[name] = None if unknown else rendered
                key_locations[name] = loc
        params = self._validate(cls, raw, decl.location, key_locations, uncertain)
        if params is None:
            # preflight only: the type's checks tripped on a value that depends on facts. Keep the
            # resource as written so relations to it resolve; the real render validates it.
            params, maybe = dict(raw), True
        self._assets(decl, cls, params, scope, key_locations, uncertain, sensitive)
        if cls.namevar in uncertain:
            self.unknown_titles += 1  # unique, so the preflight graph has one node per resource
            name = f"<{cls.namevar} from facts #{self.unknown_titles}>"
        else:
            name = self.shown_title(decl.type, cls.title(params), params.get(cls.namevar))
        resource = Resource(decl.type, name, params, decl.location, sensitive=sensitive, tags=tags, **relations)
        self.items.append(_Item(resource, cls, decl, uncertain, maybe, relation_locations))

    def _validate(self, cls: type[ResourceType], raw: dict[str, Any], location: Location,
                  key_locations: dict[str, Location], uncertain: set[str]) -> dict[str, Any] | None:
        try:
            return cls.validate(raw, location, key_locations)
        except ManifestError as e:
            # a check across parameters may have tripped on a placeholder (None) of an unknown value
            if uncertain and (e.location == location or e.location in {key_locations[k] for k in uncertain}):
                return None
            raise
        except (TypeError, ValueError, AttributeError, KeyError):
            if uncertain:
                return None  # the type's normalize() choked on a placeholder: the real render checks it
            raise

    def _assets(self, decl: ResourceDecl, cls: type[ResourceType], params: dict[str, Any],
                scope: Mapping[str, Any], key_locations: dict[str, Location], uncertain: set[str],
                sensitive: bool) -> None:
        """``template:`` is rendered and ``source:`` read into ``content`` (str / bytes). A sensitive
        file's text never goes through the render cache."""
        mf = decl.file
        for key in ASSET_PARAMS:
            rel = params.get(key)
            if key not in cls.params or not rel or key in uncertain:
                continue
            if not isinstance(rel, str):
                raise ManifestError(f"{key} must be a path in the manifest tree, not {rel!r}", key_locations[key])
            base = mf.templates if key == "template" else mf.files
            path = resolve_inside(self.site, base, rel, key_locations[key], key)
            if key == "source":
                params["content"] = read_source(path)  # a large file is streamed at apply, never held
                continue
            self.use.reset()
            try:
                from driftctl.resources.file import template_options  # file imports the renderer

                text = self.renderer.template_file(rel, (base,), scope, template_options(params),
                                                   cache=None if sensitive else self.cache_shard())
            except ManifestError as e:
                if self.preflight and self.use.touched:
                    uncertain.add("content")
                    params["content"] = None
                    continue
                rid = decl.type if cls.namevar in uncertain else \
                    f"{decl.type}:{self.shown_title(decl.type, cls.title(params), params.get(cls.namevar))}"
                e.hint = e.hint or f"rendering {key} {rel!r} for {rid} at {decl.location}"
                raise
            if self.preflight and self.use.reset():
                uncertain.add("content")
            params["content"] = text

    def cache_shard(self) -> Shard | None:
        """This host's shard of the site's render cache (D53), once its secrets are all known."""
        if self._shard is None and self.site.render_cache is not None:
            self._shard = self.site.render_cache.shard(self.site.tree, self.host.name, self.secrets)
        return self._shard

    def shown_title(self, type_name: str, title: str, value: Any = None) -> str:
        """``title``, or its hash when it holds a secret (an exec titled by its command, say): ids are
        in every output, the store and the history, where redaction by value comes too late."""
        if isinstance(value, Secret) or mentions(title, self.secrets):
            return secret_title(type_name, title)
        return title

    def shown_id(self, rid: str) -> str:
        type_name, _, title = rid.partition(":")
        return f"{type_name}:{self.shown_title(type_name, title)}"

    def _check_relation_secrets(self, ids: list[str], key: str, location: Location) -> None:
        for rid in ids:
            if mentions(rid, self.secrets):
                type_name = rid.partition(":")[0]
                raise ManifestError(
                    f"{key}: {redact(rid, self.secrets)!r} names a resource by a title that holds a secret",
                    location,
                    f"such a resource shows as {type_name}:secret-<hash> everywhere; give it a name of its own "
                    f"(an exec: `- exec: my-name` with the command in `command:`) and refer to "
                    f"{type_name}:my-name")

    @staticmethod
    def _ids(value: Any, key: str, location: Location) -> list[str]:
        ids = [value] if isinstance(value, str) else value
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ManifestError(f"{key} must be a resource id or a list of them ('type:title')", location)
        for rid in ids:
            if ":" not in rid:
                raise ManifestError(f"{key}: {rid!r} is not a resource id ('type:title', e.g. 'package:nginx')",
                                    location)
        return list(dict.fromkeys(ids))

    # ---- catalog-wide checks
    def check_claims(self) -> None:
        ids: dict[str, _Item] = {}
        claims: dict[str, _Item] = {}
        if self.preflight:
            # resources whose existence depends on facts may share an id (one per distribution):
            # the preflight catalog keeps the first; the real facts keep at most one of them
            seen: set[str] = {it.resource.id for it in self.items if it.certain}
            kept = []
            for it in self.items:
                if it.certain or it.resource.id not in seen:
                    seen.add(it.resource.id)
                    kept.append(it)
            self.items = kept
        for it in self.items:
            r = it.resource
            if not it.certain:
                continue  # may not exist, or its identity is not known yet
            first = ids.get(r.id)
            if first is not None:
                raise ManifestError(f"duplicate resource {r.id}: also declared at {first.resource.source}", r.source)
            ids[r.id] = it
            for claim in it.cls.claims(r.params):
                first = claims.get(claim)
                if first is not None:
                    raise ManifestError(
                        f"{r.id} and {first.resource.id} (at {first.resource.source}) both manage {claim}",
                        r.source, "a thing on a host can have one resource only")
                claims[claim] = it
        self.check_content_owners()

    def check_content_owners(self) -> None:
        """A file with its whole content given, and a line/block/cron/... editing that same file,
        undo each other on every apply: an error naming both."""
        owners: dict[str, _Item] = {}
        for it in self.items:
            p = it.resource.params
            if it.resource.type != "file" or it.maybe or "path" in it.uncertain or p.get("ensure") == "absent":
                continue
            if "content" in it.uncertain or any(p.get(k) is not None for k in ("content", *ASSET_PARAMS)):
                owners.setdefault(p["path"], it)
        if not owners:
            return
        for it in self.items:
            r = it.resource
            if r.type in _WHOLE_PATH_TYPES or it.maybe or it.uncertain & _PATH_KEYS:
                continue
            for path in it.cls.managed_paths(r.params):
                owner = owners.get(path)
                if owner is not None:
                    o = owner.resource
                    raise ManifestError(
                        f"{o.id} at {o.source} manages the whole content of {path}, {r.id} at {r.source} "
                        "edits it: they would undo each other on every apply",
                        r.source,
                        f"put what {r.id} adds into the content of {o.id}, or drop its content and "
                        "keep only the edits")

    def resolve_relations(self) -> None:
        known = {it.resource.id for it in self.items}
        unknown_types = {it.resource.type for it in self.items if it.cls.namevar in it.uncertain}
        for it in self.items:
            r = it.resource
            for key in RELATIONS:
                kept = []
                for rid in getattr(r, key):
                    if rid in known:
                        kept.append(rid)
                        continue
                    if self.preflight and rid.partition(":")[0] in unknown_types:
                        continue  # may name a resource whose title depends on facts
                    raise ManifestError(f"{key}: no resource {rid!r} in the catalog",
                                        it.relation_locations.get(key, r.source),
                                        did_you_mean(rid, sorted(known)))
                setattr(r, key, kept)

    def autorequire(self) -> None:
        """Add a type's implied dependencies (a file's parent directory, ...) that are in the catalog,
        unless the manifest already orders them the other way (autorequire never makes a cycle)."""
        resources = [it.resource for it in self.items]
        known = {r.id for r in resources}
        after = graph.edges(resources)

        def reaches(start: str, goal: str) -> bool:
            stack, seen = [start], {start}
            while stack:
                rid = stack.pop()
                if rid == goal:
                    return True
                for t in after[rid]:
                    if t not in seen:
                        seen.add(t)
                        stack.append(t)
            return False

        for it in self.items:
            if it.uncertain:
                continue
            r = it.resource
            for dep in map(self.shown_id, it.cls.autorequire(r.params)):
                if dep in known and dep != r.id and dep not in r.require and not reaches(r.id, dep):
                    r.require.append(dep)
                    if r.id not in after[dep]:
                        after[dep].append(r.id)

    def order(self) -> list[Resource]:
        resources = [it.resource for it in self.items]
        try:
            return graph.order(resources)
        except graph.CycleError as e:
            by_id = {it.resource.id: it for it in self.items}
            if self.preflight and not all(by_id[r.id].certain for r in e.cycle if r.id in by_id):
                return resources  # the cycle involves resources that may not exist with the real facts
            raise


def compile_catalog(site: Site, inventory: Any, host: Host, facts: Mapping[str, Any] | None = None,
                    types: Mapping[str, type[ResourceType]] | None = None) -> Catalog:
    """The validated, ordered catalog of ``host``.

    ``facts=None`` is a preflight (no connection needed): values that depend on facts are not checked
    and ``Catalog.uses_facts`` is set; compile again with the host's facts before using the catalog.
    Raises ManifestError/TemplateError with file:line.
    """
    return _Compiler(site, inventory, host, facts, types if types is not None else all_types()).run()


def preflight(site: Site, inventory: Any, hosts: Sequence[Host],
              types: Mapping[str, type[ResourceType]] | None = None,
              on_catalog: Callable[[str, Catalog], None] | None = None,
              stop: Callable[[], bool] | None = None) -> dict[str, Catalog]:
    """Compile every host without facts, before any connection.

    Returns ``host name -> Catalog``; ``on_catalog`` is told of each as soon as it is compiled (until
    an error is met). Errors are collected over all hosts: one error is raised as is; several become
    one ManifestError listing each (the same mistake for many hosts is listed once, with the hosts it
    hits). ``stop()`` is asked before each host: once it says yes (the run was interrupted), the hosts
    not compiled yet are left out, and only the errors already met are raised.
    """
    types = types if types is not None else all_types()
    catalogs: dict[str, Catalog] = {}
    errors: dict[str, tuple[ManifestError, list[str]]] = {}
    for host in hosts:
        if stop is not None and stop():
            break
        try:
            catalogs[host.name] = catalog = compile_catalog(site, inventory, host, None, types)
        except ManifestError as e:
            for one in e.errors if isinstance(e, ManifestErrors) else [e]:
                errors.setdefault(str(one), (one, []))[1].append(host.name)
        else:
            if on_catalog is not None and not errors:
                on_catalog(host.name, catalog)
    if not errors:
        return catalogs
    if len(errors) == 1:
        raise next(iter(errors.values()))[0]
    shown_errors = list(errors.items())[:MAX_ERRORS]
    lines = [f"{len(errors)} errors in the manifests:"]
    for text, (_, names) in shown_errors:
        hosts_text = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        lines.append(f"  {text} [hosts: {hosts_text}]")
    if len(errors) > MAX_ERRORS:
        lines.append(f"  ... and {len(errors) - MAX_ERRORS} more (fix these first)")
    raise ManifestError("\n".join(lines))


def site_tags(site: Site) -> tuple[set[str], bool]:
    """Every tag written in the manifests (all files, every host), and whether some are templated
    (``"{{ ... }}"``: known only once the catalogs are rendered). No rendering, no host."""
    known: set[str] = set()
    templated = False
    for mf in _site_files(site):
        for decl in mf.resources:
            if "tags" not in decl.body:
                continue
            value = decl.body["tags"]
            values = value if isinstance(value, list) else [value]
            for v in values:
                if not isinstance(v, str):
                    continue
                if "{{" in v or "{%" in v:
                    templated = True
                    continue
                known.update(t.strip() for t in (v.split(",") if value is v else [v]) if t.strip())
    return known, templated


def _site_files(site: Site) -> list[ManifestFile]:
    files: dict[int, ManifestFile] = {}
    for entry in site.entries:
        for mf in entry.files:
            files[id(mf)] = mf
    for mf in site.files.values():
        files[id(mf)] = mf
    for role in site.roles.values():
        files[id(role.manifest)] = role.manifest
    return list(files.values())
