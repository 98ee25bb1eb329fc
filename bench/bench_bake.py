"""Bake benchmark: bake time and image size, a rebuild, verify, and the time to load into podman.

    .venv/bin/python bench/bench_bake.py                  # base localhost/driftctl-base:bookworm
    .venv/bin/python bench/bench_bake.py --base IMAGE --repeat 3

Cases:
- site:     the example site (manifests/ + inventory/prod, host web01): its packages (nginx, curl,
            vim-tiny) run in a podman build container; needs the Debian mirror.
- one file: a single file resource: the fixed cost of exporting, indexing and writing the base.
- files100: 100 file resources of 1 MB each (100 MB of incompressible, seeded-random data) onto the
            Debian base, then the same catalog again (a byte-identical rebuild).
- podman load: the files100 image copied into podman's storage (skopeo), oci-dir.

Times are wall-clock seconds (median of --repeat), on whatever else the machine is doing: see the
load average printed with them. Results go to stdout and bench/results/bake.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from driftctl.bake import bake, load_image, verify  # noqa: E402
from driftctl.errors import Location  # noqa: E402
from driftctl.model import Catalog, Resource  # noqa: E402
from driftctl.resources.base import get_type  # noqa: E402

EPOCH = 1_700_000_000


def res(type_: str, name: str, **params: Any) -> Resource:
    rtype = get_type(type_)
    assert rtype is not None
    validated = rtype.validate({rtype.namevar: name, **params}, Location("bench", 1))
    return Resource(type_, rtype.title(validated), validated, Location("bench", 1))


def files_catalog(count: int, size: int) -> Catalog:
    rng = random.Random(42)  # seeded: the same bytes every run, so rebuilds can be compared
    resources = [res("directory", "/srv/data")]
    for i in range(count):
        resources.append(res("file", f"/srv/data/blob-{i:03d}.bin", content=rng.randbytes(size), mode="0644"))
    return Catalog("bench", resources)


def site_catalog() -> tuple[Catalog, Callable[[dict[str, Any]], Catalog], Path]:
    from driftctl.inventory import load_inventory
    from driftctl.manifest import compile_catalog, load_site

    inventory = load_inventory(ROOT / "inventory" / "prod")
    [host] = [h for h in inventory.select("web01.prod.example.com")]
    site = load_site(ROOT / "manifests")
    catalog = compile_catalog(site, inventory, host, None)
    return catalog, lambda facts: compile_catalog(site, inventory, host, facts), ROOT / "manifests"


def verify_rendered(image: Path, catalog: Catalog, render: Callable[[dict[str, Any]], Catalog]) -> list[Any]:
    """verify() with the catalog rendered as bake rendered it: with the image's facts."""
    from driftctl.bake import open_image
    from driftctl.bake.fs import ImageFS
    from driftctl.bake.observe import image_facts, wanted_paths

    with open_image(str(image)) as img:
        fs = ImageFS.load(img, wanted_paths(catalog))
        return verify(fs, render(image_facts(fs, catalog.host)) if catalog.uses_facts else catalog)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.monotonic()
        result = fn()
        times.append(time.monotonic() - started)
    return statistics.median(times), result


def du(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="localhost/driftctl-base:bookworm")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-site", action="store_true", help="no build container (no mirror needed)")
    args = parser.parse_args()
    out: dict[str, Any] = {"base": args.base, "load_average_before": os.getloadavg()[0]}
    work = Path(tempfile.mkdtemp(prefix="driftctl-bake-bench-"))
    try:
        if not args.skip_site:
            catalog, render, repo = site_catalog()
            secs, result = timed(lambda: bake(catalog, args.base, work / "site", epoch=EPOCH, repo=repo,
                                              render=render), args.repeat)
            vsecs, results = timed(lambda: verify_rendered(work / "site", catalog, render), 1)
            out["site"] = {
                "resources": len(catalog.resources), "bake_seconds": round(secs, 2),
                "image_bytes": du(work / "site"), "new_layer_digest": result.layer_digest,
                "built_in_container": result.labels.get("io.driftctl.converged-not-bit-reproducible"),
                "verify_seconds": round(vsecs, 2), "verify_in_sync": sum(r.status == "ok" for r in results),
            }
            print(f"site      {len(catalog.resources)} resources: bake {secs:.1f}s,"
                  f" image {du(work / 'site') / 1e6:.1f} MB,"
                  f" verify {vsecs:.1f}s ({out['site']['verify_in_sync']} in sync)")

        one = Catalog("bench", [res("file", "/etc/motd", content="baked\n")])
        secs, _ = timed(lambda: bake(one, args.base, work / "one", epoch=EPOCH), args.repeat)
        out["one_file"] = {"bake_seconds": round(secs, 2), "image_bytes": du(work / "one")}
        print(f"one file  the fixed cost (export the base, index it, write the layout): bake {secs:.1f}s")

        catalog = files_catalog(100, 1 << 20)
        secs, first = timed(lambda: bake(catalog, args.base, work / "files", epoch=EPOCH), args.repeat)
        rsecs, again = timed(lambda: bake(Catalog("bench", catalog.resources[::-1]), args.base, work / "files2",
                                          epoch=EPOCH), 1)
        layer = work / "files" / "blobs" / "sha256" / (first.layer_digest or "").partition(":")[2]
        vsecs, results = timed(lambda: verify(str(work / "files"), catalog), 1)
        out["files100"] = {
            "files": 100, "bytes": 100 << 20, "bake_seconds": round(secs, 2), "rebake_seconds": round(rsecs, 2),
            "identical_rebuild": first.digest == again.digest, "image_bytes": du(work / "files"),
            "new_layer_bytes": layer.stat().st_size, "verify_seconds": round(vsecs, 2),
            "verify_in_sync": sum(r.status == "ok" for r in results),
        }
        print(f"files100  100 x 1 MB: bake {secs:.1f}s"
              f" (rebuild {rsecs:.1f}s, identical: {first.digest == again.digest}),"
              f" new layer {layer.stat().st_size / 1e6:.1f} MB, image {du(work / 'files') / 1e6:.1f} MB,"
              f" verify {vsecs:.1f}s")

        if shutil.which("podman"):
            name = f"localhost/driftctl-bake-bench-{os.getpid()}:latest"
            try:
                lsecs, engine = timed(lambda: load_image(work / "files", "oci-dir", name), 1)
                out["podman_load_seconds"] = round(lsecs, 2)
                print(f"load      files100 image into {engine}: {lsecs:.1f}s")
            finally:
                subprocess.run(["podman", "rmi", "-f", name], capture_output=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["load_average_after"] = os.getloadavg()[0]
    print(f"load average {out['load_average_before']:.1f} -> {out['load_average_after']:.1f} (2 cores)")
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "bake.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
