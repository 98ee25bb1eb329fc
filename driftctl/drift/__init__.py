"""Drift: classify each resource against its converged state, and keep the history.

- ``run``: drift runs over many hosts (read-only probes, ``--remediate``), recording runs, accept;
- ``classify``: corrective / pending / both from three fingerprints, unmanaged changes and baselines;
- ``reference``: where the converged state comes from (the store's last apply, or a baked image).
"""

from driftctl.drift.reference import Reference, image_reference, store_reference
from driftctl.drift.run import (
    DriftRun,
    accept,
    facts_cache,
    inventory_key,
    open_store,
    record_run,
    run_lock,
)

__all__ = [
    "DriftRun", "Reference", "accept", "facts_cache", "image_reference", "inventory_key", "open_store",
    "record_run", "run_lock", "store_reference",
]
