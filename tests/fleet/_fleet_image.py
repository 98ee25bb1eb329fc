"""The fleet's two images, built without any registry and rebuilt only when their recipe changes.

- ``localhost/driftctl-base:bookworm``: mmdebstrap from this machine's own apt sources (fed on stdin,
  so no mirror address is written into the recipe) with fleet/base-packages.txt, imported into podman.
  The apt lists are kept: a package test can ``apt-get install`` at once, without an ``apt-get update``
  of its own. Lists go stale when the mirror moves on, so the base is also rebuilt after MAX_AGE.
- ``localhost/driftctl-fleet:latest``: fleet/Dockerfile on top (per-container host keys, key-only root
  login). No key is baked in: the podman fleet mounts the project key at run time, so one image serves
  every checkout on the machine.

Each image carries the sha256 of its recipe in a label; a build happens under a machine-wide lock so
concurrent test sessions build once and the others wait and reuse it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _fleet_podman import BASE_IMAGE, FLEET_IMAGE, LABEL_BUILT, LABEL_RECIPE, FleetError, podman

ROOT = Path(__file__).resolve().parents[2]
RECIPE_DIR = ROOT / "fleet"
# deb822 (Debian 12's default) or, on older installs, the one-line format: mmdebstrap reads either
APT_SOURCES = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
LOCK_FILE = Path("/run/lock/driftctl-fleet-image.lock")
MAX_AGE = 7 * 24 * 3600  # apt lists older than this may name packages the mirror no longer has
SUITE = "bookworm"

# Hooks run by mmdebstrap on the finished tree ("$1" is its root).
CUSTOMIZE_HOOKS = [
    # host keys are made per container (fleet/driftctl-hostkeys.service); none may ship in an image
    'rm -f "$1"/etc/ssh/ssh_host_*',
    # an empty machine-id makes systemd create a new one at every container's first boot
    'truncate -s 0 "$1"/etc/machine-id',
]


@dataclass
class ImageStatus:
    """What ensure_images() did: ``built`` lists the images it (re)built, with the seconds each took."""

    base_recipe: str
    fleet_recipe: str
    built: dict[str, float]


def _packages() -> list[str]:
    lines = (RECIPE_DIR / "base-packages.txt").read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _apt_sources() -> bytes:
    """The machine's deb822 sources without comments (mmdebstrap reads them on stdin)."""
    for path in APT_SOURCES:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
        if any(ln.strip() for ln in lines):
            return "".join(ln + "\n" for ln in lines).encode()
    names = " or ".join(str(p) for p in APT_SOURCES)
    raise FleetError(f"no apt sources in {names}: the base image is built from this machine's apt sources")


def _mmdebstrap_argv(target: str) -> list[str]:
    argv = [
        "mmdebstrap",
        "--quiet",
        "--variant=apt",
        "--skip=cleanup/apt/lists",
        "--include=" + ",".join(_packages()),
    ]
    argv += [f"--customize-hook={hook}" for hook in CUSTOMIZE_HOOKS]
    return [*argv, SUITE, target, "-"]


def base_recipe() -> str:
    h = hashlib.sha256()
    h.update(repr(_mmdebstrap_argv("TARGET")).encode())
    h.update(_apt_sources())
    return h.hexdigest()[:16]


def fleet_recipe(base: str) -> str:
    h = hashlib.sha256(base.encode())
    for name in ("Dockerfile", "driftctl-hostkeys.service", "sshd-fleet.conf"):
        h.update(name.encode() + b"\0" + (RECIPE_DIR / name).read_bytes())
    return h.hexdigest()[:16]


def _labels(image: str) -> dict[str, str] | None:
    result = podman(["image", "inspect", "--format", "json", image], check=False)
    if not result.ok:
        return None
    data = json.loads(result.text)
    labels = (data[0].get("Labels") if data else None) or {}
    return {str(k): str(v) for k, v in labels.items()}


def _fresh(image: str, recipe: str, max_age: float | None) -> bool:
    labels = _labels(image)
    if labels is None or labels.get(LABEL_RECIPE) != recipe:
        return False
    if max_age is not None:
        try:
            return time.time() - float(labels.get(LABEL_BUILT, "0")) < max_age
        except ValueError:
            return False
    return True


def _build_base(recipe: str) -> None:
    with tempfile.TemporaryDirectory(prefix="driftctl-fleet-", dir="/var/tmp") as tmp:
        tar = str(Path(tmp) / "base.tar")
        try:
            proc = subprocess.run(
                _mmdebstrap_argv(tar), input=_apt_sources(), capture_output=True, timeout=1800, check=False
            )
        except FileNotFoundError as e:
            raise FleetError("mmdebstrap is not installed (run scripts/setup)") from e
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-10:]
            raise FleetError("mmdebstrap failed (is it installed? run scripts/setup):\n" + "\n".join(tail))
        podman(
            [
                "import",
                "--quiet",
                "--change",
                f"LABEL {LABEL_RECIPE}={recipe}",
                "--change",
                f"LABEL {LABEL_BUILT}={int(time.time())}",
                "--change",
                'CMD ["/sbin/init"]',
                tar,
                BASE_IMAGE,
            ],
            timeout=900,
        )


def _build_fleet(recipe: str) -> None:
    podman(
        [
            "build",
            "--quiet",
            "--runtime",
            "runc",
            "--pull=never",
            "--label",
            f"{LABEL_RECIPE}={recipe}",
            "--label",
            f"{LABEL_BUILT}={int(time.time())}",
            "-t",
            FLEET_IMAGE,
            "-f",
            str(RECIPE_DIR / "Dockerfile"),
            str(RECIPE_DIR),
        ],
        timeout=900,
    )


def ensure_images(rebuild: bool = False) -> ImageStatus:
    """Make sure both images exist and match their recipes; build what is missing or stale."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session building now: wait, then reuse its image
        base = base_recipe()
        fleet = fleet_recipe(base)
        built: dict[str, float] = {}
        if rebuild or not _fresh(BASE_IMAGE, base, MAX_AGE):
            start = time.monotonic()
            _build_base(base)
            built[BASE_IMAGE] = time.monotonic() - start
        if rebuild or BASE_IMAGE in built or not _fresh(FLEET_IMAGE, fleet, None):
            start = time.monotonic()
            _build_fleet(fleet)
            built[FLEET_IMAGE] = time.monotonic() - start
        if built:
            # the previous versions lose their tags; drop them unless a running container still uses them
            podman(["image", "prune", "-f", "--filter", f"label={LABEL_RECIPE}"], check=False)
        return ImageStatus(base_recipe=base, fleet_recipe=fleet, built=built)
