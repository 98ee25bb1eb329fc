"""Put a baked image into a local container engine (podman, else docker), when one is installed.

Building never needs this: it is the optional last step of ``driftctl bake --load``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from driftctl.errors import BakeError


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BakeError(f"{' '.join(argv[:2])} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc.stdout


def _full_name(name: str) -> str:
    last = name.rpartition("/")[2]
    name = name if ":" in last or "@" in last else f"{name}:latest"
    return name if "/" in name.partition(":")[0] else f"localhost/{name}"


def load_image(path: str | Path, format: str, name: str, tag: str | None = None) -> str:
    """Load the image at ``path`` (written in ``format``) as ``name``; returns the engine used.

    With podman and skopeo the image is copied straight into podman's storage under ``name``;
    otherwise ``podman load`` / ``docker load`` read an archive and the image is tagged ``name``.
    """
    path = Path(path)
    name = _full_name(name)
    if shutil.which("podman"):
        if shutil.which("skopeo"):
            source = {
                "oci-dir": f"oci:{path}" + (f":{tag}" if tag else ""),
                "oci-archive": f"oci-archive:{path}" + (f":{tag}" if tag else ""),
                "docker-archive": f"docker-archive:{path}",
            }[format]
            _run(["skopeo", "copy", "--quiet", source, f"containers-storage:{name}"])
            return "podman"
        loaded = _run(["podman", "load", "-q", "-i", str(path)])
        ref = loaded.strip().splitlines()[-1].split(": ", 1)[-1] if loaded.strip() else ""
        if ref:
            _run(["podman", "tag", ref, name])
        return "podman"
    if shutil.which("docker"):
        if format != "docker-archive":
            raise BakeError("docker loads docker-archive images only: bake with --format docker-archive")
        loaded = _run(["docker", "load", "-q", "-i", str(path)])
        ref = loaded.strip().splitlines()[-1].split(": ", 1)[-1] if loaded.strip() else ""
        if ref:
            _run(["docker", "tag", ref, name])
        return "docker"
    raise BakeError("--load needs podman or docker, and neither is installed (the image was written)")
