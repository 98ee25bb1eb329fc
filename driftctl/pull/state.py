"""What a host remembers between pulls, and its outbox of report documents.

``state.json`` (0600): the outbox's identity and counter, the last good commit (the one a run falls
back on when SOURCE is away), and the last successful apply (commit and facts, for
``--only-if-changed``). The outbox holds one report document per recorded run, ``<seq>.json``, 0600,
in a 0700 directory: the controller's next probe collects them (driftctl/agent/_main.py, outbox_collect) and they
are removed once its store committed them (the probe after names them as collected).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftctl.fileio import write_atomic
from driftctl.pull.cache import Cache, read_json

OUTBOX_KEEP = 1000  # reports kept for a controller that never comes: the oldest go first


def facts_digest(facts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class PullState:
    outbox_id: str = ""
    seq: int = 0
    last_good: dict[str, Any] = field(default_factory=dict)  # commit, ref, source, at
    last_apply: dict[str, Any] = field(default_factory=dict)  # commit, facts, at

    @classmethod
    def load(cls, cache: Cache) -> PullState:
        data = read_json(cache.state_file)
        state = cls(
            outbox_id=str(data.get("outbox_id") or ""),
            seq=int(data.get("seq") or 0),
            last_good=dict(data.get("last_good") or {}),
            last_apply=dict(data.get("last_apply") or {}),
        )
        if not state.outbox_id:
            # a new outbox identity (state.json removed, to force an apply, or lost): number after the
            # reports still waiting, never over one (each also names the id and number it was written
            # under, so the controller stores none of them twice)
            state.outbox_id = secrets.token_hex(8)
            state.seq = max(state.seq, _highest(cache.root / "outbox"))
        return state

    def save(self, cache: Cache) -> None:
        data = {"outbox_id": self.outbox_id, "seq": self.seq, "last_good": self.last_good,
                "last_apply": self.last_apply}
        write_atomic(cache.state_file, json.dumps(data, indent=1, sort_keys=True) + "\n", mode=0o600)

    def good(self, commit: str, ref: str | None, source: str) -> None:
        self.last_good = {"commit": commit, "ref": ref, "source": source, "at": time.time()}

    def applied(self, commit: str, facts: str) -> None:
        self.last_apply = {"commit": commit, "facts": facts, "at": time.time()}

    def unchanged(self, commit: str, facts: str) -> bool:
        return self.last_apply.get("commit") == commit and self.last_apply.get("facts") == facts


def _highest(outbox: Path) -> int:
    try:
        names = [p.name for p in outbox.iterdir()] if outbox.is_dir() and not outbox.is_symlink() else []
    except OSError:
        return 0
    return max((int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()), default=0)


def post(cache: Cache, state: PullState, doc: dict[str, Any]) -> int:
    """Put ``doc`` into the outbox under the next number (the state is saved by the caller)."""
    state.seq += 1
    doc.setdefault("pull", {}).update(outbox=state.outbox_id, seq=state.seq)
    outbox = cache.outbox
    write_atomic(outbox / "id", state.outbox_id, mode=0o600)  # first: a report is never under another id
    write_atomic(outbox / f"{state.seq:012d}.json", json.dumps(doc, separators=(",", ":")), mode=0o600)
    kept = sorted(p for p in outbox.iterdir() if p.name.endswith(".json") and not p.name.startswith("."))
    for p in kept[:-OUTBOX_KEEP]:
        p.unlink(missing_ok=True)
    return state.seq


def pending(cache: Cache) -> list[Path]:
    """The reports in the outbox, oldest first."""
    outbox = cache.outbox
    return sorted(p for p in outbox.iterdir() if p.name.endswith(".json") and not p.name.startswith("."))


def read_outbox(path: Path) -> dict[str, Any]:
    return read_json(path)


__all__ = ["OUTBOX_KEEP", "PullState", "facts_digest", "pending", "post", "read_outbox"]
