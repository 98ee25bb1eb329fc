"""The store around a run, for the commands that record runs (drift, apply): open it, take the run's
view, say what happened to the spool. See driftctl/store/runstate.py and docs/store.md."""

from __future__ import annotations

from driftctl.cli import ui
from driftctl.config import Settings
from driftctl.store import Store, open_store
from driftctl.store.db import StoreUnavailable
from driftctl.store.runstate import RunState, Saved


def open_run_store(settings: Settings) -> Store:
    """The store a run needs before it starts (its lock and converged state live there). When it is
    unreachable the run does not start, as Terraform refuses to run without its backend: exit 32."""
    try:
        return open_store(settings.store_url)
    except StoreUnavailable as e:
        raise StoreUnavailable(f"{e}; nothing was run (a run needs the store for its lock and state)") from e


def begin_run(store: Store, state_dir: str, key: str) -> RunState:
    """The run's view of the store (read now, written by ``finish()``), after storing the runs an
    unreachable store left in the spool; each one stored or moved aside is said on stderr."""
    try:
        view = RunState.begin(store, state_dir, key)
    except StoreUnavailable as e:
        raise StoreUnavailable(f"{e}; nothing was run") from e
    for path, run_id in view.ingested.stored:
        ui.err.print(f"stored run #{run_id} kept in the spool while the store was unavailable ({path.name})",
                     markup=False, highlight=False)
    for path, why in view.ingested.corrupt:
        ui.warn(f"spooled run {path.name} not stored: {why}")
    return view


def say_saved(saved: Saved, store_url: str) -> int:
    """Tell the user when the run's results went to the spool; the exit bits to add (32 or 0)."""
    message = saved.message(store_url)
    if message:
        ui.error(message)
    return saved.exit_bits
