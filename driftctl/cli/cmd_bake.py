"""driftctl bake / bake-verify / compare: a host's catalog as an OCI image, checked, and set against
the live host. See docs/bake.md."""

from __future__ import annotations

import calendar
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from driftctl.cli import ui
from driftctl.cli.common import inventory_argument, load_context
from driftctl.cli.options import (
    bake_host_option,
    connect_options,
    diff_option,
    inventory_input_options,
    json_option,
    manifests_option,
    verbose_option,
)
from driftctl.errors import ExitCode, InventoryError
from driftctl.model import Catalog, Host, HostResult, ResourceResult


@dataclass
class Prepared:
    host: Host
    site: Any
    inventory: Any
    catalog: Catalog
    manifests: Path
    context: Any = None

    def render(self, facts: dict[str, Any]) -> Catalog:
        from driftctl.manifest import compile_catalog

        catalog: Catalog = compile_catalog(self.site, self.inventory, self.host, facts)
        return catalog


def prepare(inventory: Path, host_name: str, manifests: Path | None, **flags: Any) -> Prepared:
    """The host and its catalog (rendered without facts); every input error is raised here."""
    from driftctl.manifest import compile_catalog, load_site

    ctx = load_context(inventory, host_name, manifests=str(manifests) if manifests else None, **flags)
    hosts = [h for h in ctx.hosts if h.name == host_name]
    if len(hosts) != 1:
        raise InventoryError(f"no host named {host_name!r} in {inventory} (--host takes one host's name)")
    root = Path(ctx.settings.manifests)
    site = load_site(root, max_render_bytes=ctx.settings.max_render_bytes)
    catalog = compile_catalog(site, ctx.inventory, hosts[0], None)
    return Prepared(hosts[0], site, ctx.inventory, catalog, root, ctx)


def _repo(path: Path) -> Path | None:
    return path if path.is_dir() else None


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


# ---------------------------------------------------------------- bake


@click.command("bake")
@inventory_argument
@bake_host_option
@click.option("--base", required=True, metavar="IMAGE",
              help="Base image: OCI layout dir, OCI/docker archive, or a local podman image; NAME@sha256:... pins it.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Where to write the image (a directory for oci-dir, a file for the archives).")
@click.option("--format", "fmt", type=click.Choice(["oci-dir", "oci-archive", "docker-archive"]), default="oci-dir",
              show_default=True)
@click.option("--tag", metavar="NAME", help="Image name (default localhost/driftctl-HOST:latest).")
@click.option("--load", is_flag=True, help="Also put the image into podman (or docker) as --tag.")
@click.option("--build-container/--no-build-container", "engine", default=None,
              help="Run packages and execs the base lacks in a podman build container (default: when podman "
                   "is installed); --no-build-container refuses them, keeping the image bit-reproducible.")
@manifests_option
@inventory_input_options
@json_option
def bake_command(inventory: Path, host_name: str, base: str, output: Path, fmt: str, tag: str | None, load: bool,
                 engine: bool | None, manifests: Path | None, as_json: bool, **inputs: Any) -> int:
    """Bake HOST's converged state onto a base image, as a reproducible OCI image. No daemon needed.

    Same manifests + same base -> the same image digest (timestamps from SOURCE_DATE_EPOCH, else the
    manifest tree's last commit). Packages and commands the base lacks run in a podman build
    container, and the image is then marked converged-not-bit-reproducible (docs/bake.md).
    """
    from driftctl.bake import bake, load_image

    p = prepare(inventory, host_name, manifests, **inputs)
    name = tag or f"localhost/driftctl-{p.host.name}:latest"
    result = bake(p.catalog, base, output, fmt, tag=name, repo=_repo(p.manifests), render=p.render, engine=engine)
    loaded = load_image(output, fmt, name) if load else None
    if as_json:
        doc = {k: v for k, v in asdict(result).items() if k != "resources"}
        doc.update(out=str(result.out), loaded=loaded, name=name,
                   resources=[{"id": r.id, "status": r.status, "reason": r.reason} for r in result.resources])
        ui.print_json(doc)
        return ExitCode.OK
    counts = {s: sum(1 for r in result.resources if r.status == s) for s in ("changed", "ok", "skipped")}
    o = ui.out
    o.print(f"[bold]{escape(p.host.name)}[/] baked into {escape(str(output))} ({fmt})")
    o.print(f"  image    {result.digest}")
    o.print(f"  base     {escape(base)} @ {result.base_digest}")
    o.print(f"  layer    {result.layer_digest or '(none: the base already is the catalog)'}")
    o.print(f"  content  {counts['changed']} baked, {counts['ok']} in sync in the base"
            + (f", {counts['skipped']} skipped" if counts["skipped"] else ""))
    revision = result.labels.get("org.opencontainers.image.revision")
    o.print(f"  created  {result.created}" + (f"  revision {revision[:12]}" if revision else ""))
    o.print(f"  size     {_size(result.size)}  in {result.duration:.1f}s")
    ran = result.labels.get("io.driftctl.converged-not-bit-reproducible")
    if ran:
        o.print(f"  [yellow]built in a container (not bit-reproducible): {escape(ran)}[/]")
    for r in result.resources:
        if r.status == "skipped":
            o.print(f"  [magenta]-[/] {escape(r.id)}: {escape(r.reason)}")
    if loaded:
        o.print(f"  loaded   into {loaded} as {escape(name)}")
    return ExitCode.OK


# ---------------------------------------------------------------- bake-verify


def _verify_operands(operands: tuple[str, ...], inventory: Path | None) -> tuple[Path, str]:
    """INVENTORY IMAGE, as every command takes the inventory first; the older ``IMAGE -i INVENTORY`` too."""
    if inventory is not None:
        if len(operands) != 1:
            raise click.UsageError("with -i INVENTORY give one IMAGE (or drop -i: bake-verify INVENTORY IMAGE)")
        return inventory, operands[0]
    if len(operands) != 2:
        raise click.UsageError(f"bake-verify takes INVENTORY IMAGE, got {len(operands)} argument(s)")
    return Path(operands[0]), operands[1]


@click.command("bake-verify")
@click.argument("operands", metavar="INVENTORY IMAGE", nargs=-1)
@click.option("-i", "--inventory", type=click.Path(path_type=Path), hidden=True,
              help="The inventory (older form: bake-verify IMAGE -i INVENTORY).")
@bake_host_option
@manifests_option
@json_option
@diff_option
@verbose_option
@inventory_input_options
def verify_command(operands: tuple[str, ...], inventory: Path | None, host_name: str, manifests: Path | None,
                   as_json: bool, diff: bool | None, verbose: bool, **inputs: Any) -> int:
    """Check IMAGE against HOST's manifests, without running it: exit 0 in sync, 2 differs, 4 failed.

    Uses the agent's own observe code on the image's files and each resource type's own diff, so a
    verdict here is the verdict check would give on a host booted from the image.
    """
    from driftctl.bake import open_image, verify
    from driftctl.bake.fs import ImageFS
    from driftctl.bake.observe import image_facts, wanted_paths
    from driftctl.cli.render import host_section

    inventory, image = _verify_operands(operands, inventory)
    p = prepare(inventory, host_name, manifests, **inputs)
    started = time.monotonic()
    with open_image(image) as img:
        fs = ImageFS.load(img, wanted_paths(p.catalog))
        catalog = p.render(image_facts(fs, p.host.name)) if p.catalog.uses_facts else p.catalog
        results = verify(fs, catalog)
    status = "failed" if any(r.status == "failed" for r in results) else (
        "changed" if any(r.status == "changed" for r in results) else "ok")
    host = HostResult(p.host.name, status, resources=results, duration=time.monotonic() - started)  # type: ignore[arg-type]
    if as_json:
        ui.print_json({"image": image, "host": p.host.name, "status": status, "exit": host.exit_code,
                       "resources": [_result_doc(r) for r in results]})
    else:
        host_section(ui.out, host, "check", diff, verbose)
    return host.exit_code


def _result_doc(r: ResourceResult) -> dict[str, Any]:
    return {"id": r.id, "status": r.status, "reason": r.reason, "error": r.error,
            "changes": [{"field": c.field, "before": c.before, "after": c.after} for c in r.changes]}


# ---------------------------------------------------------------- compare


@dataclass
class Row:
    """One resource set side by side: the live host, the image, and what differs between them."""

    id: str
    host: str  # in sync | N changes | error: ...
    image: str
    differs: list[str] = field(default_factory=list)  # "mode: host 0600, image 0644"


def live_plan(p: Prepared) -> tuple[Any, HostResult]:
    """Probe the live host through the engine (read-only: the plan half of check)."""
    from driftctl.engine import Engine

    ctx = p.context
    engine = Engine(p.site, p.inventory, ctx.settings, ctx.transport_options)
    return engine.probe_host(p.host)


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return f"sha256:{value[:12]}"
    return str(value)


def compare_rows(plan: Any, image_probe: dict[str, dict[str, Any]]) -> list[Row]:
    """One row per resource of the live plan; values of secret variables never shown."""
    from driftctl.fingerprint import managed_state
    from driftctl.secret import redact

    rows = []
    for item in plan.items:
        rtype, desired, resource = item.rtype, item.desired, item.resource
        got = image_probe.get(item.id, {})
        host_text = f"error: {item.error}" if item.error else (
            f"{len(item.changes)} to change" if item.changes else "in sync")
        if "error" in got:
            rows.append(Row(item.id, redact(host_text, plan.catalog.secrets),
                            redact(f"error: {got['error']}", plan.catalog.secrets)))
            continue
        img_obs = got.get("observed", {})
        img_changes = rtype.diff(desired, img_obs, resource.sensitive)
        image_text = f"{len(img_changes)} to change" if img_changes else "in sync"
        differs: list[str] = []
        if item.observed is not None:
            live_state, img_state = managed_state(desired, item.observed), managed_state(desired, img_obs)
            for key in live_state:
                if live_state[key] != img_state.get(key):
                    secret = resource.sensitive or key in rtype.secret_fields
                    shown = ("(secret)", "(secret)") if secret else (_show(live_state[key]), _show(img_state.get(key)))
                    differs.append(f"{key}: host {shown[0]}, image {shown[1]}")
        secrets = plan.catalog.secrets
        rows.append(Row(item.id, redact(host_text, secrets), redact(image_text, secrets),
                        [redact(d, secrets) for d in differs]))
    return rows


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size * 2:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@click.command("compare")
@inventory_argument
@bake_host_option
@click.option("--image", required=True, metavar="IMAGE", help="The baked image (any form bake reads).")
@manifests_option
@inventory_input_options
@json_option
@connect_options
def compare_command(inventory: Path, host_name: str, image: str, manifests: Path | None, as_json: bool,
                    accept_new_host_keys: bool | None, known_hosts: tuple[str, ...],
                    connect_timeout: float | None, **inputs: Any) -> int:
    """Set the live HOST beside its baked IMAGE: what each has, what differs, how old the image is.

    Exit 0 when host and image agree on every managed attribute, 2 when they differ, 4 when a resource
    could not be observed, 8 when the host is unreachable. Changes nothing anywhere.
    """
    from driftctl.bake import image_observe, open_image
    from driftctl.bake.fs import ImageFS
    from driftctl.bake.observe import wanted_paths
    from driftctl.bake.provenance import L_CATALOG, L_CREATED, L_REVISION

    p = prepare(inventory, host_name, manifests, accept_new_host_keys=accept_new_host_keys,
                known_hosts=known_hosts, connect_timeout=connect_timeout, **inputs)
    with open_image(image) as img:
        fs = ImageFS.load(img, wanted_paths(p.catalog))
        labels, digest = img.labels, img.digest
        plan, live = live_plan(p)
        if plan is None:
            rows: list[Row] = []
        else:
            rows = compare_rows(plan, image_observe(fs, plan.catalog))
    created = labels.get(L_CREATED)
    # epoch 0 means the bake had no SOURCE_DATE_EPOCH and no git history: its time is unknown
    stamp = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")) if created else 0
    age = time.time() - stamp if stamp else None
    moved = plan is not None and labels.get(L_CATALOG) not in (None, _digest(plan.catalog))
    failed = any(r.host.startswith("error") or r.image.startswith("error") for r in rows)
    code = ExitCode.UNREACHABLE if live.status == "unreachable" else (
        (ExitCode.CHANGES if any(r.differs for r in rows) else ExitCode.OK)
        | (ExitCode.FAILED if failed or live.status == "failed" else ExitCode.OK))
    if as_json:
        ui.print_json({"host": p.host.name, "image": image, "digest": digest, "created": created,
                       "age_seconds": age, "revision": labels.get(L_REVISION), "manifests_moved": moved,
                       "host_status": live.status, "host_error": live.error, "exit": code,
                       "resources": [asdict(r) for r in rows]})
        return code
    o = ui.out
    o.print(f"[bold]{escape(p.host.name)}[/] vs [bold]{escape(image)}[/]  {digest[:19]}")
    revision = f", revision {labels[L_REVISION][:12]}" if L_REVISION in labels else ""
    if age is not None:
        o.print(f"  baked {created} ({_ago(age)} ago){revision}")
    else:
        o.print(f"  baked at an unknown time (no SOURCE_DATE_EPOCH, no git history){revision}")
    if moved:
        o.print("  [yellow]the manifests changed since this image was baked[/] (catalog digest differs)")
    if live.status == "unreachable" or plan is None:
        o.print(f"  host [bold red]{live.status}[/]: {escape(live.error or '')}")
        return code
    table = Table(box=None, pad_edge=False)
    for col in ("resource", "host", "image", "host vs image"):
        table.add_column(col)
    for r in rows:
        table.add_row(escape(r.id), _styled(r.host), _styled(r.image),
                      "[yellow]" + escape("; ".join(r.differs)) + "[/]" if r.differs else "[green]same[/]")
    o.print(table)
    n = sum(1 for r in rows if r.differs)
    o.print(f"{n} of {len(rows)} resource(s) differ between the host and the image (exit {code})")
    return code


def _digest(catalog: Catalog) -> str:
    from driftctl.bake.provenance import catalog_digest

    return catalog_digest(catalog)


def _styled(text: str) -> str:
    style = "green" if text == "in sync" else "bold red" if text.startswith("error") else "yellow"
    return f"[{style}]{escape(text)}[/]"


def register(group: click.Group) -> None:
    for command in (bake_command, verify_command, compare_command):
        group.add_command(command)
