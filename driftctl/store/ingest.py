"""Derive the store's rows from one report document, inside the caller's transaction.

Rules (docs/store.md explains them for users):
- every run: a ``runs`` row, one ``host_results`` row per host, a ``resource_results`` row per resource
  that has something to say (not ``ok`` + in sync + unchanged; those an apply changed without anything
  else to say are only named, with their changed fields, in ``host_results.changed``), every unmanaged
  entry, and the whole
  document (compressed), split in two (``split_document``): each host's *state* (per resource: id, type,
  source, desired and observed fingerprints, observed values; the host's catalog digest and facts) is
  a content-addressed part, stored once per inventory while it does not change and named by its hash
  in ``host_results.part``; the run's own document keeps the rest (statuses, changes, reasons,
  since/runs...), most resources sharing one "what this run said" entry, and the states of the few
  resources that differ from the host's latest part (drift that comes and goes stores no new part).
  An unchanged host costs a run ~0.5 KB instead of ~10 KB (docs/store.md, "Growth").
- apply: each resource that ended ``ok`` or ``changed`` without error replaces its converged state and
  closes its open drift episode ("applied"). Failed and skipped resources keep the old converged state.
- drift: per reachable host, each drifted resource opens or extends an episode; a resource observed in
  sync closes it; a resource failed or skipped leaves it as it is; a resource no longer in the host's
  catalog closes it (unless the host ``failed``, or the document is ``partial`` and the host lists it in
  ``excluded``, or is ``partial`` without such a list). Watched paths work the
  same when the host's ``unmanaged`` list is present (null: the watch was not examined).
  ``since``/``runs`` are written into the document.
  A resource ``changed`` by a drift run (``--remediate``) is converged like an apply's and its episode,
  counted for this run, closes ("remediated"). Ignored drift has episodes like any other: when the rule
  expires, "since when" is still true.
- check and plan never touch converged state or episodes.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import zlib
from collections import Counter
from typing import Any

from driftctl.jsontext import compact
from driftctl.store import converged
from driftctl.store.db import Cursor
from driftctl.store.packing import dumps, xz
from driftctl.store.report import inventory_key, parse_time
from driftctl.store.types import iso

# xz at preset 1: its 1 MiB window spans many hosts of a document, whose sections repeat each other
# (a fleet is mostly alike). On a 2.9 MB document of 40 x 120 resources: 28 KB in 0.04 s, where
# zlib's 32 KB window gave 500 KB in 0.09 s. (bench/bench_store.py; docs/store.md)
DOCUMENT_ENCODING = "json+xz+parts"  # the run's document; its hosts' states are in document_parts
PART_ENCODING = "json+xz"
# A resource's state: what stays the same from run to run while the host does not change.
_STATE_KEYS = ("id", "type", "source", "desired_fingerprint", "observed_fingerprint", "observed")
_HOST_STATE_KEYS = ("catalog_digest", "facts")
# A host's state may differ from its previous part in this many resources (or a tenth of them) and still
# refer to it, those resources' states in the run's document: drift that comes and goes does not
# store a new part every run.
_INLINE_STATES = 8
_SAME_AS_OBSERVED = {"=": "observed_fingerprint"}  # marker: the converged fingerprint is the observed one
_PARTS = "_parts"  # a stored host's resources: {"part": hash, "said": {...}, "except": {index: {...}}}
_FILE_FIELDS = ("type", "sha256", "mode", "owner", "group", "size", "target")


def encode_document(report: dict[str, Any],
                    part_of: dict[str, tuple[str, dict[str, Any]]] | None = None) -> bytes:
    """xz of the compact JSON of ``report``, split as ``split_document`` splits it (with ``part_of``).

    Encoded and compressed a host at a time: the text is the one ``json.dumps`` gives the whole (split)
    document, but neither it nor the split hosts are ever held whole. A 100-host first converge held
    ~17 MB at once for it (the split copy of every resource, the JSON text, its bytes), the peak of
    the whole run. Preset 0 (256 KiB dictionary, ~3 MB to compress) not 1 (~9 MB): 5% larger.
    """
    packer = lzma.LZMACompressor(format=lzma.FORMAT_XZ, filters=[{"id": lzma.FILTER_LZMA2, "preset": 0}])
    out: list[bytes] = []

    def put(text: str) -> None:
        out.append(packer.compress(text.encode("utf-8")))

    put("{")
    for i, (key, value) in enumerate(report.items()):
        put(("," if i else "") + _compact_text(key) + ":")
        if key != "hosts" or not isinstance(value, list):
            put(_compact_text(value))
            continue
        put("[")
        for j, h in enumerate(value):
            put(("," if j else "") + _compact_text(split_host(h, part_of) if part_of else h))
        put("]")
    put("}")
    out.append(packer.flush())
    return b"".join(out)


def decode_document(encoding: str, body: bytes | memoryview,
                    parts: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A stored document as it was given to ``save``. ``json+xz+parts`` needs the parts its hosts name
    (hash -> ``decode_part``): a missing one is a ValueError."""
    if encoding == "json+xz+parts":
        split: dict[str, Any] = json.loads(lzma.decompress(bytes(body)).decode("utf-8"))
        return join_document(split, parts or {})
    if encoding == "json+xz":
        data = lzma.decompress(bytes(body))
    elif encoding == "json+zlib":  # the first encoding, before xz
        data = zlib.decompress(bytes(body))
    else:
        raise ValueError(f"unknown document encoding {encoding}")
    doc: dict[str, Any] = json.loads(data.decode("utf-8"))
    return doc


def _as_given(value: Any) -> str:
    """JSON with keys in the order given (a document read back has its keys in their order)."""
    return _given_text(value)


_given_text = compact(default=str)
_compact_text = compact()


def encode_part(part: dict[str, Any]) -> bytes:
    return xz(_as_given(part).encode("utf-8"))


def decode_part(encoding: str, body: bytes | memoryview) -> dict[str, Any]:
    if encoding != PART_ENCODING:
        raise ValueError(f"unknown part encoding {encoding}")
    part: dict[str, Any] = json.loads(lzma.decompress(bytes(body)).decode("utf-8"))
    return part


def host_part(inventory: str, host: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(hash, part): the host's state, content-addressed within the inventory; None for a host without
    a resource list. The same host state in two runs (any command) is the same part."""
    resources = host.get("resources")
    if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
        return None
    part = {
        "host": {k: host[k] for k in _HOST_STATE_KEYS if k in host},
        "resources": [{k: r[k] for k in _STATE_KEYS if k in r} for r in resources],
    }
    # The inventory is in the name: parts are never shared across inventories, so pruning one
    # inventory (under its save lock) can never delete a part another inventory's save is referring to.
    digest = hashlib.sha256(_as_given([inventory, part]).encode("utf-8")).hexdigest()
    return digest, part


def previous_part(cur: Cursor, inventory: str, host: str) -> tuple[str, dict[str, Any]] | None:
    """The part the host's latest stored run refers to (None: none, or one that cannot be read; the new
    part is then stored whole, which is always correct)."""
    row = cur.one(
        "SELECT p.hash AS hash, p.encoding AS encoding, p.body AS body FROM host_results x"
        " JOIN runs r ON r.id = x.run_id JOIN document_parts p ON p.hash = x.part"
        " WHERE x.host = ? AND r.inventory = ? ORDER BY x.run_id DESC LIMIT 1", (host, inventory))
    if row is None:
        return None
    try:
        return row["hash"], decode_part(row["encoding"], row["body"])
    except (ValueError, UnicodeDecodeError, lzma.LZMAError):
        return None


def inline_states(base: dict[str, Any], part: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """position -> state of the resources whose state differs from ``base``'s, when ``part`` can be
    stored as ``base`` and those (same host keys, same resources in the same order, few differ)."""
    if base["host"] != part["host"] or len(base["resources"]) != len(part["resources"]):
        return None
    if any(a.get("id") != b.get("id") for a, b in zip(base["resources"], part["resources"], strict=True)):
        return None
    states = {str(i): b for i, (a, b) in enumerate(zip(base["resources"], part["resources"], strict=True))
              if a != b or list(a) != list(b)}
    return states if len(states) <= max(_INLINE_STATES, len(part["resources"]) // 10) else None


def _said(r: dict[str, Any]) -> dict[str, Any]:
    """What one run said of a resource: everything but its state, whose keys stay (null) so that the
    joined entry has its keys in the same order."""
    said = {k: None if k in _STATE_KEYS else v for k, v in r.items()}
    converged = said.get("converged_fingerprint")
    if converged is not None and converged == r.get("observed_fingerprint"):
        said["converged_fingerprint"] = _SAME_AS_OBSERVED  # a fingerprint is never a dict
    return said


def split_document(report: dict[str, Any], part_of: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The run's own document: each host named in ``part_of`` (host name -> (part hash, states that differ
    from the part's)) keeps, instead of its resources, the part's hash, those states, the most common
    "what this run said" of its resources and the exceptions by position. ``join_document`` gives back
    the original. (The store encodes it a host at a time: ``encode_document``.)"""
    return dict(report, hosts=[split_host(h, part_of) for h in report["hosts"]])


def split_host(h: dict[str, Any], part_of: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One host of ``split_document``."""
    if h["name"] not in part_of:
        return h
    digest, states = part_of[h["name"]]
    said = [_said(r) for r in h["resources"]]
    texts = [dumps(x) for x in said]
    # (Counter, not texts.count per distinct text: in a first converge nearly every text differs)
    common = Counter(texts).most_common(1)[0][0] if texts else "{}"
    common_said = said[texts.index(common)] if texts else {}  # as given: its keys in their order
    # the state's keys stay (null), so that the joined host has its keys in the same order
    slim = {k: None if k in _HOST_STATE_KEYS or k == "resources" else v for k, v in h.items()}
    slim[_PARTS] = {
        "part": digest, "said": common_said, "state": states,
        "except": {str(i): x for i, (x, t) in enumerate(zip(said, texts, strict=True)) if t != common},
    }
    return slim


def join_document(doc: dict[str, Any], parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    hosts = []
    for h in doc.get("hosts", []):
        ref = h.get(_PARTS) if isinstance(h, dict) else None
        if ref is None:
            hosts.append(h)
            continue
        part = parts.get(ref["part"])
        if part is None:
            raise ValueError(f"part {ref['part'][:12]} of host {h.get('name')} is missing")
        resources = []
        inline = ref.get("state") or {}
        for i, stored in enumerate(part["resources"]):
            state = inline.get(str(i), stored)
            said = ref["except"].get(str(i), ref["said"])
            entry = {k: state.get(k) if k in _STATE_KEYS else v for k, v in said.items()}
            if said.get("converged_fingerprint") == _SAME_AS_OBSERVED:
                entry["converged_fingerprint"] = state.get("observed_fingerprint")
            resources.append(entry)
        hosts.append({
            k: resources if k == "resources" else part["host"].get(k) if k in _HOST_STATE_KEYS else v
            for k, v in h.items() if k != _PARTS
        })
    return dict(doc, hosts=hosts)


def advisory_key(text: str) -> int:
    """A signed 64-bit key for PostgreSQL advisory locks, stable across processes."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big", signed=True)


def _notable(r: dict[str, Any]) -> bool:
    return r.get("status") != "ok" or r.get("drift") is not None or bool(r.get("changes"))


def _field_names(r: dict[str, Any]) -> list[str]:
    return [str(c.get("field")) if isinstance(c, dict) else str(c) for c in r.get("changes") or []]


def _changed_fields(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    before, after = before or {}, after or {}
    return [f for f in _FILE_FIELDS if before.get(f) != after.get(f)]


def save(cur: Cursor, report: dict[str, Any], run_key: str | None = None) -> int:
    """Insert one run (the document has passed ``report.check``); returns the run id.

    ``run_key`` names the run uniquely (a save retried, a spooled run ingested): with one already
    stored, nothing is inserted and that run's id is returned.
    """
    if run_key is not None:
        existing = cur.scalar("SELECT id FROM runs WHERE run_key = ?", (run_key,))
        if existing is not None:
            return int(existing)
    inventory = inventory_key(report["inventory"])
    command = report["command"]
    started = parse_time(report["started"], "started")
    finished = parse_time(report["finished"], "finished") if report.get("finished") is not None else None
    run_id = int(cur.scalar(
        "INSERT INTO runs (command, inventory, started, finished, exit_code, username, controller, version,"
        " argv, summary, run_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (command, inventory, started, finished, report.get("exit_code"), report.get("user"),
         report.get("controller"), report.get("driftctl_version"), dumps(report.get("argv") or []),
         dumps(report.get("summary") or {}), run_key),
    ))
    if report.get("mode") == "pull":  # made on the host by `driftctl pull` (driftctl/drift/pulled.py)
        commit = report.get("commit")
        cur.execute("UPDATE runs SET mode = 'pull', source_commit = ? WHERE id = ?",
                    (commit if isinstance(commit, str) else None, run_id))
    part_of: dict[str, tuple[str, dict[str, Any]]] = {}  # host -> (its part, states inline)
    for host in report["hosts"]:
        stored: tuple[str, dict[str, Any]] | None = None  # this host's part as stored (one at a time in memory)
        found = host_part(inventory, host)
        if found is not None:
            digest, part = found
            stored, states = found, {}
            if cur.scalar("SELECT 1 AS x FROM document_parts WHERE hash = ?", (digest,)) is None:
                base = previous_part(cur, inventory, host["name"])
                inline = inline_states(base[1], part) if base is not None else None
                if base is not None and inline is not None:
                    stored, states = base, inline
                else:
                    cur.execute("INSERT INTO document_parts (hash, inventory, encoding, body) VALUES (?, ?, ?, ?)",
                                (digest, inventory, PART_ENCODING, encode_part(part)))
            part_of[host["name"]] = (stored[0], states)
        _save_host(cur, run_id, host, part_of[host["name"]][0] if host["name"] in part_of else None, command)
        if host["status"] == "unreachable":
            continue  # nothing was observed: converged state and episodes stay as they were
        own = found if stored is found else None  # stored as its own part, not inline beside the previous
        if command == "apply":
            _converge(cur, inventory, run_id, started, host, _applied(host, command), "applied", stored, own)
        elif command == "drift":
            _drift_episodes(cur, inventory, run_id, started, host, partial=bool(report.get("partial")))
            # Remediation is an apply of those resources: the drift was seen (above) and is now gone.
            _converge(cur, inventory, run_id, started, host, _applied(host, command), "remediated", stored, own)
    cur.execute(
        "INSERT INTO run_documents (run_id, encoding, body) VALUES (?, ?, ?)",
        (run_id, DOCUMENT_ENCODING, encode_document(report, part_of)),
    )
    return run_id


def _applied_plainly(r: dict[str, Any]) -> bool:
    """Changed by an apply and nothing else to say: listed in host_results.changed, not a row."""
    return (r.get("status") == "changed" and not r.get("error") and r.get("drift") is None
            and not r.get("ignored"))


def encode_changed(changed: dict[str, list[str]]) -> bytes | None:
    return xz(dumps(changed).encode("utf-8")) if changed else None


def decode_changed(body: bytes | memoryview) -> dict[str, list[str]]:
    changed: dict[str, list[str]] = json.loads(lzma.decompress(bytes(body)).decode("utf-8"))
    return changed


def _save_host(cur: Cursor, run_id: int, host: dict[str, Any], part: str | None, command: str) -> None:
    name = host["name"]
    resources = [r for r in host.get("resources") or [] if _notable(r)]
    plain = [r for r in resources if command == "apply" and _applied_plainly(r)]
    cur.execute(
        "INSERT INTO host_results (run_id, host, status, error, fingerprint, duration, round_trips, part, changed)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, name, host["status"], host.get("error"), host.get("fingerprint"), host.get("duration"),
         host.get("round_trips"), part, encode_changed({r["id"]: _field_names(r) for r in plain})),
    )
    rows = [r for r in resources if not (command == "apply" and _applied_plainly(r))]
    cur.executemany(
        "INSERT INTO resource_results (run_id, host, resource, type, status, drift, changes, reason, error,"
        " source, desired_fingerprint, observed_fingerprint, converged_fingerprint, ignored)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            # An index for history and drift_series, not a second copy of the document: the changed
            # fields' names (not their values), no reason, source or fingerprints (the document has them).
            # type: only when it is not the id's prefix.
            (run_id, name, r["id"], None if r.get("type") in (None, r["id"].split(":", 1)[0]) else r["type"],
             r["status"], r.get("drift"), dumps(_field_names(r)), None, r.get("error"), None, None, None, None,
             r.get("ignored"))
            for r in rows
        ],
    )
    cur.executemany(
        "INSERT INTO unmanaged_results (run_id, host, path, change, before, after, ignored)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (run_id, name, u["path"], u["change"],
             None if u.get("before") is None else dumps(u["before"]),
             None if u.get("after") is None else dumps(u["after"]), u.get("ignored"))
            for u in host.get("unmanaged") or []
        ],
    )


def _applied(host: dict[str, Any], command: str) -> list[dict[str, Any]]:
    """The resources this run converged: all that ended ok or changed in an apply; in a drift run with
    remediation, those it changed back."""
    wanted = ("ok", "changed") if command == "apply" else ("changed",)
    return [r for r in host.get("resources") or [] if r["status"] in wanted and not r.get("error")]


def _converge(
    cur: Cursor, inventory: str, run_id: int, when: float, host: dict[str, Any], done: list[dict[str, Any]],
    reason: str, part: tuple[str, dict[str, Any]] | None, own: tuple[str, dict[str, Any]] | None,
) -> None:
    """``part``: the host's state as stored (its own part, or the previous one its states are inline
    with); ``own``: the same when it is the host's own part."""
    name = host["name"]
    if done:
        _converge_states(cur, inventory, name, run_id, when, done, part, own)
    cur.executemany(
        "UPDATE drift_episodes SET closed = ?, closed_run = ?, close_reason = ?"
        " WHERE inventory = ? AND host = ? AND kind = 'resource' AND subject = ? AND closed IS NULL"
        " AND first_seen <= ?",
        [(when, run_id, reason, inventory, name, r["id"], when) for r in done],
    )


def _converge_states(
    cur: Cursor, inventory: str, name: str, run_id: int, when: float, done: list[dict[str, Any]],
    part: tuple[str, dict[str, Any]] | None, own: tuple[str, dict[str, Any]] | None,
) -> None:
    """The host as the apply left it (re-observed), on top of what earlier applies converged."""
    with converged.readable(name):  # a StoreError: the run is spooled, not lost
        stored = converged.read(cur, inventory, name).get(name)
        if own is not None and converged.covered_by(stored, own[1], own[0], done, when):
            # every resource converged by this run, nothing earlier kept: the state is the part itself
            converged.write_part(cur, inventory, name, converged.Base(own[0], own[1], run_id, when))
            return
        old = converged.decode(stored) if stored is not None else converged.HostConverged()
    states = dict(old.states)
    for r in done:
        earlier = states.get(r["id"])
        if earlier is not None and earlier[5] > when:
            continue  # a run older than the state (a pull report collected late, a spooled run): kept
        states[r["id"]] = converged.from_resource(r, run_id, when)
    candidates = [converged.Base(part[0], part[1], run_id, when)] if part is not None else []
    if old.base is not None:
        candidates.append(old.base)
    converged.write(cur, inventory, name, states, candidates)


def _drift_episodes(
    cur: Cursor, inventory: str, run_id: int, when: float, host: dict[str, Any], partial: bool
) -> None:
    name = host["name"]
    open_rows = cur.all(
        "SELECT id, kind, subject, first_seen, runs, fields FROM drift_episodes"
        " WHERE inventory = ? AND host = ? AND closed IS NULL",
        (inventory, name),
    )
    open_eps = {(row["kind"], row["subject"]): row for row in open_rows}
    # A partial run (tags) says which resources it left out: those stay as they are, and anything else
    # missing from the list is gone from the catalog. A partial document without that list (another
    # producer) closes nothing.
    left_out = host.get("excluded")
    complete = host["status"] != "failed" and (not partial or isinstance(left_out, list))
    kept = set(left_out) if isinstance(left_out, list) else set()

    observed: list[tuple[str, str, str | None, list[str], dict[str, Any]]] = []
    for r in host.get("resources") or []:
        if r["status"] in ("failed", "skipped"):
            open_eps.pop(("resource", r["id"]), None)  # unknown now: neither extended nor closed
            continue
        fields = [str(c.get("field")) for c in r.get("changes") or [] if isinstance(c, dict)]
        observed.append(("resource", r["id"], r.get("drift"), fields, r))
    unmanaged = host.get("unmanaged")
    if unmanaged is not None:
        for u in unmanaged:
            fields = [u["change"]]
            if u["change"] == "changed":
                fields += _changed_fields(u.get("before"), u.get("after"))
            observed.append(("path", u["path"], "unmanaged", fields, u))

    for kind, subject, drift, fields, entry in observed:
        ep = open_eps.pop((kind, subject), None)
        if drift is None:
            if ep is not None:
                _close(cur, ep["id"], when, run_id, "in sync")
            continue
        if ep is None:
            cur.execute(
                "INSERT INTO drift_episodes (inventory, host, kind, subject, drift_class, fields, first_seen,"
                " last_seen, runs, first_run, last_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                (inventory, name, kind, subject, drift, dumps(fields), when, when, run_id, run_id),
            )
            first_seen, runs = when, 1
        else:
            # Every field seen drifting during the episode, in the order first seen.
            seen = json.loads(ep["fields"])
            seen += [f for f in fields if f not in seen]
            cur.execute(
                "UPDATE drift_episodes SET drift_class = ?, fields = ?, last_seen = ?, runs = runs + 1,"
                " last_run = ? WHERE id = ?",
                (drift, dumps(seen), when, run_id, ep["id"]),
            )
            first_seen, runs = float(ep["first_seen"]), int(ep["runs"]) + 1
        entry["since"], entry["runs"] = iso(first_seen), runs

    # What is left open was not seen at all in this run.
    for (kind, subject), ep in open_eps.items():
        if kind == "resource" and complete and subject not in kept:
            _close(cur, ep["id"], when, run_id, "no longer in the catalog")
        elif kind == "path" and unmanaged is not None and host["status"] != "failed":
            _close(cur, ep["id"], when, run_id, "back to the baseline")


def _close(cur: Cursor, episode_id: int, when: float, run_id: int, reason: str) -> None:
    cur.execute(
        "UPDATE drift_episodes SET closed = ?, closed_run = ?, close_reason = ? WHERE id = ?",
        (when, run_id, reason, episode_id),
    )
