"""Where a host's converged state comes from: the store (the last apply) or a baked image.

The image reference takes its fingerprints from a plan of the catalog with the image as observer,
the same plan loop as every other command (driftctl/engine.py ``plan_catalog``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftctl.engine import HostPlan, plan_catalog
from driftctl.model import Host


@dataclass
class Reference:
    """Where the converged state of a host comes from: the store (last apply) or an image."""

    converged: Callable[[Host, HostPlan], dict[str, str]]  # resource id -> converged fingerprint
    label: str = "last apply"


def store_reference(store: Any, inventory: str) -> Reference:
    def converged(host: Host, plan: HostPlan) -> dict[str, str]:
        fingerprints: dict[str, str] = store.converged_fingerprints(inventory, host.name)
        return fingerprints

    return Reference(converged)


def image_reference(image: str | Path) -> Reference:
    """The state baked into an image (read from its layers, no container) as the converged state."""
    from driftctl.bake.observe import ImageObserver

    def converged(host: Host, plan: HostPlan) -> dict[str, str]:
        baked = plan_catalog(host, plan.catalog, ImageObserver(str(image), plan.catalog))  # the same plan loop
        return {p.id: fp for p in baked.items if (fp := p.observed_fingerprint) is not None}

    return Reference(converged, label=f"image {image}")
