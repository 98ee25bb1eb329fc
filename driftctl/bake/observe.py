"""Observe and verify an image against a catalog, with the agent's own observe() code.

``image_observe`` answers exactly what the agent's ``probe`` answers for a live host
(``{id: {"observed": {...}} | {"error": "..."}}``) so the engine can put an image where a host
would be (``driftctl drift INVENTORY --against IMAGE``), and ``verify`` decides in sync / changed with
each type's ``desired()`` and ``diff()``: the very functions check and drift use.

What only a running system knows is answered from the files that decide it at boot: a service is
enabled (and so will run) when its install links exist, a sysctl's value is what the image's sysctl.d
files set, a package is installed when dpkg's database says so, a user crontab is its spool file.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from driftctl.bake.fs import ImageFS
from driftctl.bake.imageos import agent_namespace
from driftctl.bake.oci import Image, open_image
from driftctl.bake.units import dpkg_installed, image_unit_systemd, unit_enabled
from driftctl.bake.writers import CRONTABS, crontab_text, sysctl_boot_values
from driftctl.errors import BakeError
from driftctl.model import Catalog, ConnectionSpec, Host, Resource, ResourceResult

# system files every observer may read (accounts, unit files, dpkg): their contents are loaded eagerly
_SYSTEM_PREFIXES = ("/etc/", "/usr/lib/systemd/system/", "/lib/systemd/system/", "/usr/local/lib/systemd/",
                    "/var/spool/cron/", "/usr/lib/sysctl.d/", "/lib/sysctl.d/")
_SYSTEM_FILES = ("/var/lib/dpkg/status",)


def wanted_paths(catalog: Catalog | None) -> Callable[[str], bool]:
    """Which file contents to keep while reading an image's layers: system files and catalog paths."""
    exact = set(_SYSTEM_FILES)
    if catalog is not None:
        for r in catalog.resources:
            for key in ("path", "file"):
                value = r.params.get(key)
                if isinstance(value, str) and value.startswith("/"):
                    exact.add(value)

    def want(path: str) -> bool:
        return path in exact or path.startswith(_SYSTEM_PREFIXES)

    return want


def image_facts(fs: ImageFS, hostname: str = "") -> dict[str, Any]:
    """The agent's facts (driftctl/agent/facts.py keys) as far as an image can tell them.

    What belongs to the machine an image will run on rather than to the image (kernel, cpus) gets a
    neutral value: an empty kernel, one cpu. ``hostname`` is the host the image is baked for.
    """
    release: dict[str, str] = {}
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        text = fs.read_text(fs.resolve(path, follow_last=True))
        if text:
            for line in text.splitlines():
                key, sep, value = line.partition("=")
                if sep and not line.startswith("#"):
                    release[key.strip()] = value.strip().strip('"').strip("'")
            break

    def exists(path: str) -> bool:
        return fs.get(fs.resolve(path, follow_last=True)) is not None

    python = ""
    if fs.get("/var/lib/dpkg/status") is not None:
        version = dpkg_installed(fs).get("python3", "")
        python = version.split(":")[-1].split("-")[0]
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(str((fs.image.config if fs.image else {}).get(
        "architecture", "")), "")
    return {
        "os": "linux",
        "distribution": release.get("ID", "unknown"),
        "distribution_like": release.get("ID_LIKE", "").split(),
        "distribution_version": release.get("VERSION_ID", ""),
        "distribution_codename": release.get("VERSION_CODENAME", ""),
        "distribution_pretty": release.get("PRETTY_NAME", ""),
        "kernel": "",
        "architecture": arch,
        "hostname": hostname.split(".")[0],
        "fqdn": hostname,
        "python": python,
        "python_executable": "/usr/bin/python3" if exists("/usr/bin/python3") else "",
        "init": "systemd" if exists("/lib/systemd/systemd") else "unknown",
        "package_manager": "apt" if exists("/usr/bin/apt-get") else "dnf" if exists("/usr/bin/dnf") else (
            "apk" if exists("/sbin/apk") else None),
        "cpus": 1,
        "uid": 0,
        "container": "oci-image",
    }


class _ImageServices:
    name = "image"  # a provider's name: what the agent's prefetch answers are kept under (none here)

    def __init__(self, fs: ImageFS, failure: type[Exception]) -> None:
        self.fs, self.failure = fs, failure

    def state(self, name: str) -> dict[str, Any]:
        enabled = unit_enabled(self.fs, name)
        if enabled is None:
            raise self.failure(f"no such service: {name} (the image has no unit file for it)")
        # an image runs nothing: what is enabled is what runs once the container boots
        return {"enabled": enabled, "running": enabled, "loaded": True, "masked": False}


class _ImagePackages:
    name = "image"

    def __init__(self, fs: ImageFS, failure: type[Exception]) -> None:
        if fs.get("/var/lib/dpkg/status") is None:
            raise failure("the image has no dpkg database: packages cannot be observed in it")
        self.db = dpkg_installed(fs)

    def installed(self, name: str) -> str | None:
        return self.db.get(name) or None

    def candidate(self, name: str) -> str | None:
        return None  # what a mirror would install cannot be known from an image


def _point_at_image(ns: dict[str, Any], fs: ImageFS) -> None:
    """Swap the agent functions that ask a running system for ones that read the image's files."""
    failure = ns["Failure"]
    ns["service_provider"] = lambda params, facts: _ImageServices(fs, failure)
    ns["package_provider"] = lambda params, facts: _ImagePackages(fs, failure)
    ns["unit_systemd"] = image_unit_systemd(fs)
    boot: dict[str, str] | None = None

    def sysctl_live(key: str) -> str | None:
        nonlocal boot
        if boot is None:
            boot = sysctl_boot_values(fs)
        return boot.get(ns["sysctl_relpath"](key))

    def cron_read_user(params: dict[str, Any]) -> str | None:
        """A user's crontab is its spool file (what ``crontab -l`` prints); None: no such user."""
        user = params.get("user") or "root"
        try:
            ns["pwd"].getpwnam(user)
        except KeyError:
            return None
        return crontab_text(fs.read_text(fs.resolve(posixpath.join(CRONTABS, user))))

    ns["sysctl_live"] = sysctl_live
    ns["cron_read_user"] = cron_read_user


def agent_item(r: Resource, catalog: Catalog) -> dict[str, Any]:
    """The params the agent gets for ``r``, exactly as the engine sends them in a probe."""
    from driftctl.engine import planned, probe_item

    return dict(probe_item(planned(r), catalog)["params"])


class ImageObserver:
    """The engine's observer for an image: the agent's own observe code over the image's layers.

    ``probe(request)`` answers a probe request as the agent does on a host (driftctl/engine.py
    ``Observer``), so an image goes through the same plan loop as a host: bake-verify is a plan with
    this observer, ``drift --against IMAGE`` takes its converged fingerprints from the same plan.
    Nothing runs and nothing is written. The watch scan is answered only with ``watch=True``.
    """

    def __init__(self, image: Image | ImageFS | str, catalog: Catalog, watch: bool = False) -> None:
        self.image = image
        self.catalog = catalog
        self.watch = watch

    def probe(self, request: dict[str, Any]) -> dict[str, Any]:
        fs, close = _as_fs(self.image, self.catalog)
        try:
            ns = agent_namespace(fs)
            _point_at_image(ns, fs)
            facts = image_facts(fs, self.catalog.host)
            ctx = ns["Ctx"](facts=facts, want_content=True)
            answer: dict[str, Any] = {
                "resources": {item["id"]: _observe_one(ns, ctx, item) for item in request.get("resources", [])},
            }
            if request.get("facts"):
                answer["facts"] = facts
            if self.watch and request.get("watch"):
                answer["watch"] = ns["scan_watch"](request["watch"], ns["Ctx"](facts=facts, want_content=False))
            return answer
        finally:
            close()


def image_observe(image: Image | ImageFS | str, catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Observe every resource of ``catalog`` in ``image`` (an Image, an ImageFS or an image ref).

    Returns the agent's probe shape: ``{resource id: {"observed": {...}, "refuse"?: "..."}}`` (the
    refusal is the type's ``precheck``: why apply would refuse that state), or ``{"error": "..."}``
    for a resource that cannot be observed in an image (an exec's ``unless`` command, ...).
    """
    from driftctl.engine import ManagedPaths, planned, probe_item

    managed = ManagedPaths(catalog.resources)
    items = [probe_item(planned(r), catalog, managed) for r in catalog.resources]
    answer = ImageObserver(image, catalog).probe({"resources": items})
    resources: dict[str, dict[str, Any]] = answer["resources"]
    return resources


def _observe_one(ns: dict[str, Any], ctx: Any, item: dict[str, Any]) -> dict[str, Any]:
    """One resource as the agent's probe answers it (driftctl/agent/_main.py ``_observe``)."""
    handler = ns["TYPES"].get(item["type"])
    if handler is None:
        return {"error": f"the agent has no resource type {item['type']!r}"}
    params = item["params"]
    try:
        observed = handler.observe(params, ctx)
        seen: dict[str, Any] = {"observed": observed}
        precheck = getattr(handler, "precheck", None)
        refusal = precheck(params, observed, ctx) if precheck is not None else None
        if refusal:
            seen["refuse"] = refusal
        return seen
    except (ns["Failure"], BakeError) as e:
        return {"error": str(e)}
    except Exception as e:  # an observer met something the image view lacks: this resource only
        return {"error": f"{type(e).__name__}: {e}"}


def image_watch(image: Image | ImageFS | str, catalog: Catalog) -> dict[str, Any]:
    """The agent's ``watch`` answer (unmanaged-drift baseline of ``catalog.watch``) for the image:
    ``{"entries": {path: entry}, "truncated": [...], "missing": [...]}``, as a probe returns it."""
    from driftctl.engine import watch_request

    answer = ImageObserver(image, catalog, watch=True).probe({"resources": [], "watch": watch_request(catalog)})
    watch: dict[str, Any] = answer.get("watch", {})
    return watch


def _as_fs(image: Image | ImageFS | str, catalog: Catalog | None) -> tuple[ImageFS, Callable[[], None]]:
    if isinstance(image, ImageFS):
        return image, lambda: None
    if isinstance(image, Image):
        return ImageFS.load(image, wanted_paths(catalog)), lambda: None
    opened = open_image(image)
    try:
        return ImageFS.load(opened, wanted_paths(catalog)), opened.close
    except BaseException:
        opened.close()
        raise


def verify(image: Image | ImageFS | str, catalog: Catalog) -> list[ResourceResult]:
    """Per resource: ``ok`` ("in sync") or ``changed`` (what the image lacks) or ``failed``.

    A plan of ``catalog`` with the image as its observer (the engine's one plan loop): the same
    ``desired``/``diff``, masking, refusals (``failed`` with changes: apply would refuse them) and
    redaction as check; nothing runs, nothing is written. ``changed`` means: applying the catalog to a
    container of this image would change it.
    """
    from driftctl.engine import plan_catalog, plan_results, redact_result

    plan = plan_catalog(image_host(catalog), catalog, ImageObserver(image, catalog))
    return [redact_result(r, catalog.secrets) for r in plan_results(plan)]


def image_host(catalog: Catalog) -> Host:
    """The host an image stands for in a plan: the catalog's host name, reached by nothing."""
    return Host(catalog.host, {}, (), ConnectionSpec(address=catalog.host, transport="image"))
