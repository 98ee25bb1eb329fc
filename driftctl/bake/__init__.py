"""bake: reproducible OCI images from a host's catalog, without a daemon (docs/bake.md).

    from driftctl.bake import bake, verify, image_observe
    result = bake(catalog, "localhost/driftctl-base:bookworm", "out/web1", format="oci-dir")
    results = verify("out/web1", catalog)          # list[ResourceResult], nothing runs
    probe = image_observe("out/web1", catalog)     # the agent's probe answer, for the image
"""

from __future__ import annotations

from driftctl.bake.build import BakeResult, bake, canonical_order
from driftctl.bake.load import load_image
from driftctl.bake.observe import image_observe, image_watch, verify
from driftctl.bake.oci import FORMATS, Image, open_image

__all__ = ["FORMATS", "BakeResult", "Image", "bake", "canonical_order", "image_observe", "image_watch", "load_image",
           "open_image", "verify"]
