"""Saved plans: ``driftctl plan -o plan.json`` writes one, ``driftctl apply plan.json`` applies exactly it.

A saved plan records what the plan saw and what it would change, per host and resource: the resource
id, the changes (redacted as every output is), the desired fingerprint and, above all, the OBSERVED
fingerprint. It also records every input that shaped the catalogs: the inventory and the manifest
tree (a sha256 per file), each host's variables (a hash), the catalog digest each host was planned
with, and the facts it was rendered with (a hash).

Applying is refused, before any host is contacted, when the file is not a plan this driftctl wrote
(not JSON, truncated, its checksum does not match, another format or driftctl version), or when the
configuration moved since (a file of the inventory or manifest tree, a host's variables, a catalog).
On a host whose observed state no longer matches what the plan saw, nothing is applied (a stale
plan, as Terraform refuses one); see docs/plans.md.

The plan file never decides what is applied: apply plans again from the current manifests and
compares; the file can only make it refuse. An edited file is refused by its checksum, and even one
whose checksum was recomputed can only narrow what a plain ``apply`` would do, never widen it.

The core never prints: errors are raised, the CLI (driftctl/cli/cmd_saved.py) shows them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftctl import __version__, fingerprint
from driftctl.errors import ConfigError, InputError, Location
from driftctl.fileio import write_atomic
from driftctl.model import Catalog, Host, HostResult, ResourceResult, RunResult
from driftctl.secret import redact_data
from driftctl.tags import TagSelection

KIND = "driftctl-plan"
FORMAT = 1
# Where ``is_plan_file`` looks for the kind: plans are written with it as their first key.
SNIFF_BYTES = 4096
# A secret at least this long found anywhere in a plan about to be written stops the write (a bug
# guard behind the redaction: shorter values occur in hex digests by chance).
LEAK_GUARD_MIN = 10
SHOWN_FILES = 8


class PlanFileError(InputError):
    """A saved plan that cannot be applied: unreadable, edited, from another version, or made from
    configuration that changed since. Raised before any host is contacted."""


# ---- the inputs: files of the inventory and the manifest tree


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def tree_files(roots: Sequence[Path], base: Path, exclude: Iterable[Path] = ()) -> dict[str, str]:
    """relative path -> ``sha256:...`` of every regular file under ``roots`` (a root may be a file),
    ``unreadable`` for one that cannot be read. Symlinks are followed, as the inventory loader and
    the manifests follow them (``group_vars/all -> ../../shared/all.yml`` is common): a link's entry
    is ``link:TARGET`` plus what it points to, so retargeting it or editing the target both count; a
    directory is walked once however many links reach it. Hidden names (``.git``, editor files) are
    left out, as is every path in ``exclude`` (the plan file itself, if it sits inside)."""
    skip = {os.path.realpath(p) for p in exclude}
    out: dict[str, str] = {}
    walked: set[str] = set()

    def name(path: Path) -> str:
        return path.relative_to(base).as_posix() if path != base else path.name

    def add_file(path: Path) -> None:
        if os.path.realpath(path) in skip:
            return
        try:
            link = "link:" + os.readlink(path) + " " if path.is_symlink() else ""
            if path.is_file():
                out[name(path)] = link + _sha256_file(path)
            elif link:
                out[name(path)] = link.strip() + (" (dangling)" if not path.exists() else "")
        except OSError:
            out[name(path)] = "unreadable"

    def walk(directory: Path, root: bool = False) -> None:
        real = os.path.realpath(directory)
        if real in walked:  # a loop, or a second link to the same directory
            out[name(directory)] = "link:" + os.readlink(directory) if directory.is_symlink() else "walked"
            return
        walked.add(real)
        if directory.is_symlink() and not root:  # a root is named as the user gave it
            out[name(directory)] = "link:" + os.readlink(directory)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            out[name(directory)] = "unreadable"
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = directory / entry.name
            if path.is_dir():
                walk(path)
            else:
                add_file(path)

    for root in roots:
        if root.is_dir():
            walk(root, root=True)
        elif root.exists() or root.is_symlink():
            add_file(root)
    return dict(sorted(out.items()))


def inventory_roots(inventory: Path) -> tuple[list[Path], Path]:
    """What an inventory is read from (as driftctl/inventory/loader.py reads it) and the base the
    file names are relative to: a directory whole, or a hosts file with its group_vars/host_vars."""
    if inventory.is_dir():
        return [inventory], inventory
    base = inventory.parent
    return [inventory, base / "group_vars", base / "host_vars"], base


def check_out_path(out: Path, inventory: Path) -> None:
    """A ConfigError when ``out`` would be read back as part of the inventory: a ``.json`` file in an
    inventory directory is an inventory source, and one in group_vars/ or host_vars/ a variables file."""
    roots, _ = inventory_roots(inventory)
    dirs = roots if inventory.is_dir() else roots[1:]
    where = Path(os.path.realpath(out.parent))
    for d in dirs:
        real = Path(os.path.realpath(d))
        if where == real or where.is_relative_to(real):
            raise ConfigError(f"-o {out}: inside the inventory ({d}), where it would be read as part of it",
                              hint="write the plan outside the inventory directory")


def digest_files(files: Mapping[str, str]) -> str:
    return "sha256:" + fingerprint.of(dict(files))


@dataclass
class Inputs:
    """One input tree as a plan records it: the path as given, and its files' hashes."""

    path: str
    files: dict[str, str]
    key: str = ""  # the inventory's store key (inventory_key), for the inventory

    @property
    def digest(self) -> str:
        return digest_files(self.files)

    def doc(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.key:
            out["key"] = self.key
        out["digest"] = self.digest
        out["files"] = self.files
        return out


def inventory_inputs(inventory: Path, exclude: Iterable[Path] = ()) -> Inputs:
    from driftctl.drift import inventory_key

    roots, base = inventory_roots(inventory)
    return Inputs(str(inventory), tree_files(roots, base, exclude), inventory_key(inventory))


def manifest_inputs(manifests: Path, exclude: Iterable[Path] = ()) -> Inputs:
    return Inputs(str(manifests), tree_files([manifests], manifests, exclude))


def changed_files(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """``path (changed|added|removed)`` for every file that differs, sorted by path."""
    out = []
    for name in sorted(set(before) | set(after)):
        if name not in after:
            out.append(f"{name} (removed)")
        elif name not in before:
            out.append(f"{name} (added)")
        elif before[name] != after[name]:
            out.append(f"{name} (changed)")
    return out


# ---- hashes of what shaped a host's catalog


def _plain(value: Any) -> Any:
    """JSON data with string keys (YAML allows others), for hashing variables."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=str)
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return str(value) if isinstance(value, str) else value
    return str(value)


def vars_hash(host: Host) -> str:
    """A hash of a host's merged variables (connection variables included: another address is another
    machine). Secrets in them are hashed with the rest, never written."""
    return "sha256:" + fingerprint.of({"vars": _plain(host.vars)})


def facts_hash(facts: Mapping[str, Any]) -> str:
    return "sha256:" + fingerprint.of({"facts": _plain(facts)})


# ---- what a plan says per resource


def effect(r: ResourceResult) -> str:
    """Terraform's words for a planned change, as every report counts them (report.document.action):
    ``add``, ``change``, ``remove``, or ``none`` (in sync, failed, skipped)."""
    from driftctl.report.document import action

    return action(r, "plan") or "none"


def _fields(r: ResourceResult) -> list[str]:
    return sorted({c.field for c in r.changes})


@dataclass(frozen=True)
class SavedResource:
    id: str
    status: str
    fields: tuple[str, ...]
    desired_fingerprint: str | None
    observed_fingerprint: str | None


@dataclass
class SavedHost:
    name: str
    vars_sha256: str
    catalog_digest: str
    uses_facts: bool
    facts_sha256: str
    resources: list[SavedResource]


@dataclass
class SavedPlan:
    path: Path
    driftctl_version: str
    created: str
    inventory: Inputs
    manifests: Inputs
    hosts: list[SavedHost]
    not_planned: list[dict[str, Any]] = field(default_factory=list)
    # --tags/--skip-tags the plan ran with (None: no selection at all); apply runs with the same
    tags: TagSelection | None = None
    created_by: str = ""
    summary: dict[str, int] = field(default_factory=dict)  # add / change / remove

    def host(self, name: str) -> SavedHost | None:
        return next((h for h in self.hosts if h.name == name), None)


# ---- writing


def build(run: RunResult, catalogs: Mapping[str, Catalog], hosts: Sequence[Host], inventory: Inputs,
          manifests: Inputs, created_by: str = "", tags: TagSelection | None = None) -> dict[str, Any]:
    """The plan document of a ``plan`` run. Hosts that were not planned (unreachable, or failed as a
    whole) are listed apart: applying the plan does not touch them."""
    from driftctl.report.document import change_doc

    if run.aborted:
        raise PlanFileError("the plan was interrupted: no plan file was written")
    by_name = {h.name: h for h in hosts}
    planned: list[dict[str, Any]] = []
    not_planned: list[dict[str, Any]] = []
    totals = {"add": 0, "change": 0, "remove": 0}
    for h in run.hosts:
        host = by_name.get(h.host)
        catalog = catalogs.get(h.host)
        if host is None or catalog is None or not _was_planned(h):
            not_planned.append({"name": h.host, "status": h.status, "error": h.error})
            continue
        secrets = h.secrets | catalog.secrets
        resources = []
        counts = {"add": 0, "change": 0, "remove": 0}
        for r in h.resources:
            kind = effect(r)
            if kind != "none":
                counts[kind] += 1
            resources.append({
                "id": r.id, "type": r.type, "status": r.status, "effect": kind,
                "changes": redact_data([change_doc(c) for c in r.changes], secrets),
                "reason": redact_data(r.reason, secrets), "error": redact_data(r.error, secrets),
                "desired_fingerprint": r.desired_fingerprint, "observed_fingerprint": r.observed_fingerprint,
            })
        for k, v in counts.items():
            totals[k] += v
        planned.append({
            "name": h.host, "status": h.status,
            "vars_sha256": vars_hash(host), "catalog_digest": h.catalog_digest,
            "uses_facts": catalog.uses_facts, "facts_sha256": facts_hash(h.facts),
            "summary": counts, "resources": resources,
        })
    doc: dict[str, Any] = {
        "kind": KIND,
        "format": FORMAT,
        "driftctl_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "created_by": created_by,
        "summary": totals,
        "inventory": inventory.doc(),
        "manifests": manifests.doc(),
        "tags": None if tags is None else {"only": sorted(tags.only), "skip": sorted(tags.skip)},
        "hosts": planned,
        "not_planned": not_planned,
    }
    _guard_secrets(doc, [c.secrets for c in catalogs.values()] + [h.secrets for h in run.hosts])
    return doc


def _was_planned(h: HostResult) -> bool:
    """A host the plan observed: reached, and its resources reported (a host that failed as a whole,
    for example an agent that could not run, has no observations to hold an apply to)."""
    return (h.status != "unreachable" and h.catalog_digest is not None and h.interrupted is None
            and not (h.error and not h.resources))


def _guard_secrets(doc: dict[str, Any], secret_sets: Iterable[frozenset[str]]) -> None:
    text = json.dumps(doc, ensure_ascii=False, default=str)
    for secrets in secret_sets:
        for s in secrets:
            if len(s) >= LEAK_GUARD_MIN and s in text:
                # the redaction above missed a sink: refuse to write rather than leak (a bug to report)
                raise PlanFileError("internal error: a secret value would be written to the plan file; "
                                    "no plan file was written (please report this)")


def checksum(doc: Mapping[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return "sha256:" + fingerprint.of(body)


def dumps(doc: dict[str, Any]) -> str:
    """The file's text: ``kind`` first (``is_plan_file`` looks there), the checksum last."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    body["checksum"] = checksum(body)
    return json.dumps(body, indent=1, ensure_ascii=False, default=str) + "\n"


def write(path: Path, doc: dict[str, Any]) -> Path:
    """Atomically (readers see the old plan or the new one), mode 0600: a plan describes the hosts."""
    return write_atomic(path, dumps(doc), mode=0o600)


# ---- reading


def is_plan_file(path: Path) -> bool:
    """Whether ``path`` is a regular file that starts as a driftctl plan does (a JSON object whose
    first key is ``"kind": "driftctl-plan"``). Reads at most SNIFF_BYTES: an inventory can be a
    single YAML or INI file, and a truncated or edited plan is still recognised as one (and refused
    by ``load`` with the reason)."""
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return False
    text = head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    if not text.startswith("{"):
        return False
    squeezed = "".join(text[:256].split())
    return squeezed.startswith('{"kind":"' + KIND + '"')


def _fail(path: Path, message: str, line: int | None = None, hint: str | None = None) -> PlanFileError:
    return PlanFileError(message, Location(str(path), line), hint or "make a new plan with driftctl plan ... -o FILE")


def load(path: Path) -> SavedPlan:
    """Read and check a plan file; PlanFileError naming the file (and line) for anything wrong."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PlanFileError(f"cannot read the plan file: {e.strerror or e}", Location(str(path))) from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise _fail(path, "not a driftctl plan: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        # a plan file ends with its object's closing brace: without it, it was cut short
        what = "the file is truncated" if not data.rstrip().endswith(b"}") else "not valid JSON"
        raise _fail(path, f"cannot read the plan: {what} ({e.msg})", e.lineno) from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise _fail(path, f"not a driftctl plan (no \"kind\": \"{KIND}\")")
    if doc.get("format") != FORMAT:
        raise _fail(path, f"plan format {doc.get('format')!r} is not one this driftctl reads ({FORMAT})")
    version = doc.get("driftctl_version")
    if version != __version__:
        # fingerprints and diffs are this version's: another version could compare them differently
        raise _fail(path, f"the plan was made by driftctl {version}, this is driftctl {__version__}",
                    hint="plan again with this version")
    if doc.get("checksum") != checksum(doc):
        raise _fail(path, "the plan file was modified after it was written (its checksum does not match)",
                    hint="a plan is applied as written or not at all; make a new plan")
    try:
        return _parse(path, doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _fail(path, f"not a valid driftctl plan: {type(e).__name__}: {e}") from None


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("files must map paths to hashes")
    return dict(value)


def _inputs(value: Any, what: str) -> Inputs:
    if not isinstance(value, dict) or not isinstance(value.get("path"), str):
        raise ValueError(f"{what}: a path is required")
    inputs = Inputs(value["path"], _str_map(value["files"]), str(value.get("key", "")))
    if value.get("digest") != inputs.digest:
        raise ValueError(f"{what}: the digest does not match its files")
    return inputs


def _opt_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value


def _parse(path: Path, doc: dict[str, Any]) -> SavedPlan:
    hosts = []
    for h in doc["hosts"]:
        resources = []
        for r in h["resources"]:
            changes = r["changes"]
            if not isinstance(changes, list):
                raise TypeError("changes must be a list")
            resources.append(SavedResource(
                str(r["id"]), str(r["status"]), tuple(sorted({str(c["field"]) for c in changes})),
                _opt_str(r["desired_fingerprint"]), _opt_str(r["observed_fingerprint"])))
        hosts.append(SavedHost(str(h["name"]), str(h["vars_sha256"]), str(h["catalog_digest"]),
                               bool(h["uses_facts"]), str(h["facts_sha256"]), resources))
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise ValueError("a host is listed twice")
    not_planned = doc.get("not_planned", [])
    if not isinstance(not_planned, list):
        raise TypeError("not_planned must be a list")
    tags = doc["tags"]
    if tags is not None:
        tags = TagSelection(frozenset(map(str, tags["only"])), frozenset(map(str, tags["skip"])))
    return SavedPlan(path, str(doc["driftctl_version"]), str(doc.get("created", "")),
                     _inputs(doc["inventory"], "inventory"), _inputs(doc["manifests"], "manifests"),
                     hosts, [dict(x) for x in not_planned], tags, str(doc.get("created_by", "")),
                     {k: int(doc["summary"][k]) for k in ("add", "change", "remove")})


# ---- applying: the checks


def check_inputs(plan: SavedPlan, exclude: Iterable[Path] = ()) -> None:
    """Refuse (PlanFileError) when the inventory or the manifest tree is not what the plan was made
    from: a missing path, or any file changed, added or removed. Reads files; contacts no host."""
    exclude = [plan.path, *exclude]
    inventory = Path(plan.inventory.path)
    manifests = Path(plan.manifests.path)
    if not inventory.exists():
        raise _fail(plan.path, f"the plan's inventory {plan.inventory.path} does not exist here",
                    hint="apply from the directory the plan was made in")
    if not manifests.is_dir():
        raise _fail(plan.path, f"the plan's manifest tree {plan.manifests.path} does not exist here",
                    hint="apply from the directory the plan was made in")
    problems = []
    for what, saved, now in (("inventory", plan.inventory, inventory_inputs(inventory, exclude)),
                             ("manifests", plan.manifests, manifest_inputs(manifests, exclude))):
        if now.digest != saved.digest:
            changed = changed_files(saved.files, now.files)
            shown = ", ".join(changed[:SHOWN_FILES]) + (
                f" and {len(changed) - SHOWN_FILES} more" if len(changed) > SHOWN_FILES else "")
            problems.append(f"{what} {saved.path}: {shown}")
    if problems:
        raise _fail(plan.path, "the configuration changed since the plan was made, so it is not the plan "
                               "to apply: " + "; ".join(problems),
                    hint="review the change and make a new plan")


def check_hosts(plan: SavedPlan, hosts: Sequence[Host], catalogs: Mapping[str, Catalog]) -> None:
    """Refuse (PlanFileError) when a planned host is not selected, or its variables or its catalog
    (rendered before any connection; a catalog that uses facts is compared on the host) differ from
    the plan's: extra variables, vault values or a dynamic inventory can move them without a file."""
    by_name = {h.name: h for h in hosts}
    problems = []
    for saved in plan.hosts:
        host = by_name.get(saved.name)
        if host is None:
            problems.append(f"{saved.name}: not in the inventory any more")
            continue
        if vars_hash(host) != saved.vars_sha256:
            problems.append(f"{saved.name}: its variables differ (extra variables, vault, a dynamic inventory?)")
            continue
        catalog = catalogs.get(saved.name)
        if catalog is not None and not saved.uses_facts and catalog.digest != saved.catalog_digest:
            problems.append(f"{saved.name}: its catalog differs")
    if problems:
        raise _fail(plan.path, "the configuration changed since the plan was made: " + "; ".join(problems),
                    hint="apply with the same extra variables, vault and tag options as the plan, or make a new plan")


@dataclass
class Staleness:
    """Why a host's plan no longer holds: host-level reasons, and the resources that changed since."""

    reasons: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)  # ids
    notes: dict[str, str] = field(default_factory=dict)  # id -> why, when it is not simply "changed"

    def __bool__(self) -> bool:
        return bool(self.reasons or self.resources)

    def message(self) -> str:
        parts = list(self.reasons)
        if self.resources:
            named = [f"{rid} ({self.notes[rid]})" if rid in self.notes else rid for rid in self.resources]
            shown = ", ".join(named[:SHOWN_FILES]) + (
                f" and {len(named) - SHOWN_FILES} more" if len(named) > SHOWN_FILES else "")
            parts.append(f"changed since the plan: {shown}")
        return "stale plan: " + "; ".join(parts) + "; nothing was applied on this host (make a new plan)"


def staleness(saved: SavedHost, catalog: Catalog, facts: Mapping[str, Any],
              results: Sequence[ResourceResult]) -> Staleness:
    """Compare a fresh probe (``results`` of ``engine.plan_results``) with what the plan saw."""
    out = Staleness()
    if saved.uses_facts and facts_hash(facts) != saved.facts_sha256:
        out.reasons.append("the host's facts changed (its catalog renders with them)")
    if catalog.digest != saved.catalog_digest:
        out.reasons.append("its catalog differs from the plan's")
    fresh = {r.id: r for r in results}
    for s in saved.resources:
        r = fresh.pop(s.id, None)
        if r is None:
            out.resources.append(s.id)
            out.notes[s.id] = "not in the catalog any more"
        elif (r.observed_fingerprint != s.observed_fingerprint or r.desired_fingerprint != s.desired_fingerprint
              or r.status != s.status or tuple(_fields(r)) != s.fields):
            out.resources.append(s.id)
            if s.status == "changed" and r.status == "ok":
                out.notes[s.id] = "in sync now: was the plan applied already?"
    for rid in fresh:
        out.resources.append(rid)
        out.notes[rid] = "not in the plan"
    return out
