"""``driftctl init [DIR]``: scaffold a site (a role with one template) and an inventory to start from.

What it writes is what docs/first-manifest.md walks through: ``driftctl inventory inventory/dev`` and
``driftctl plan inventory/dev`` accept it as written; only the host's address is an example.
Nothing is ever overwritten: if any file exists, init names them, exits 1 and writes nothing.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click

from driftctl.cli import ui
from driftctl.errors import InputError

# relative path -> contents; written in this order
FILES: dict[str, str] = {
    "manifests/site.yaml": """\
# Which hosts get which roles (docs/manifests.md). Patterns are the --limit language:
# names, groups, globs, ~regex, !exclude, &and.
- hosts: all
  roles: [base]
""",
    "manifests/roles/base/defaults.yaml": """\
# The role's variables at their lowest precedence: group_vars and host_vars override them.
motd_banner: "managed by driftctl: changes made by hand are reported as drift"
motd_contact: "nobody yet (set motd_contact in inventory/dev/group_vars/all.yml)"
""",
    "manifests/roles/base/resources.yaml": """\
# The role's resources (docs/resources.md lists every type and its fields).
resources:
  - file: /etc/motd
    template: motd.j2          # manifests/roles/base/templates/motd.j2, rendered per host
    owner: root
    group: root
    mode: "0644"
""",
    "manifests/roles/base/templates/motd.j2": """\
{{ motd_banner }}

  host     {{ inventory_hostname }}
  contact  {{ motd_contact }}
""",
    "inventory/dev/hosts.yaml": """\
# The hosts of the dev environment, in Ansible's YAML inventory format (docs/inventory.md).
# Replace the address with your host's: driftctl connects with ssh as ansible_user and
# checks the host key against ~/.ssh/known_hosts (--accept-new-host-keys trusts a new one).
all:
  children:
    dev:
      hosts:
        web1:
          ansible_host: 192.0.2.10   # an example address (TEST-NET-1): put your host's here
          ansible_user: root
""",
    "inventory/dev/group_vars/all.yml": """\
# Variables for every host of inventory/dev; they override the roles' defaults.
motd_contact: "ops team <ops@example.com>"
""",
}


def scaffold(directory: Path) -> list[Path]:
    """Write FILES under ``directory`` (created if missing); refuse, writing nothing, if any exists."""
    targets = [directory / rel for rel in FILES]
    existing = [p for p in targets if p.exists() or p.is_symlink()]
    if existing:
        names = ", ".join(str(p) for p in existing)
        raise InputError(f"init would overwrite {names}", hint="init writes only new files: "
                         "choose another directory or move these away")
    blocked = [p for p in targets for parent in p.parents
               if parent != directory and parent.is_relative_to(directory) and parent.exists() and not parent.is_dir()]
    if blocked:
        raise InputError(f"init cannot create {', '.join(str(p) for p in blocked)}: a parent is not a directory")
    written = []
    for path, text in zip(targets, FILES.values(), strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # never replaces a file raced in
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        written.append(path)
    return written


@click.command("init")
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False, path_type=Path))
def init_cmd(directory: Path) -> int:
    """Create a site to start from in DIRECTORY (default: here): manifests/ with a role and a template,
    and an inventory, inventory/dev.

    Never overwrites: if any of the files exists, nothing is written (exit 1). Then edit the host's
    address in inventory/dev/hosts.yaml and run `driftctl plan inventory/dev` there
    (docs/first-manifest.md).
    """
    for path in scaffold(directory):
        ui.out.print(f"wrote {path}", markup=False, highlight=False)
    where = "" if directory == Path(".") else f"cd {shlex.quote(str(directory))} && "  # pasteable
    ui.out.print(f"next: edit the address in {directory / 'inventory/dev/hosts.yaml'}, then "
                 f"{where}driftctl plan inventory/dev", markup=False, highlight=False)
    return 0


def register(group: click.Group) -> None:
    group.add_command(init_cmd)
