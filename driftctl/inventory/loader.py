"""``load_inventory(path)``: read an inventory directory or file, merge variables, build the hosts.

Variable precedence is Ansible's (``hash_behaviour = replace``: a later value replaces the whole
earlier one), lowest first:

1. the inventory files' ``all`` vars, then every other group's vars from the inventory files,
   ordered by (depth, ``ansible_group_priority``, name): parents before children;
2. ``group_vars/all``, then ``group_vars/<group>`` in the same group order;
3. the host's own vars from the inventory files (a later line wins over an earlier one);
4. ``host_vars/<host>``;
5. extra variables (``-e``, driftctl.inventory.extravars), above everything.

So a ``group_vars/`` file wins over the hosts file's vars for any group, as in Ansible.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from driftctl import fsperms
from driftctl.errors import InventoryError, Location
from driftctl.inventory import connection, dynamic, ini_format, varfiles, yaml_format
from driftctl.inventory.builder import ALL, Builder, HostEntry
from driftctl.inventory.model import Built, Group, Hosts, Inventory, VarSet, _Sources
from driftctl.model import Host
from driftctl.patterns import nearest
from driftctl.yamlsrc import read_source

_PATTERN_CHARS = ":,!&~[]*?"
HOSTS_FILES = ("hosts.yaml", "hosts.yml", "hosts", "hosts.ini")
_YAML_EXT = {".yaml", ".yml", ".json"}
_IGNORED_EXT = {".md", ".txt", ".rst", ".orig", ".cfg", ".retry", ".bak", ".swp", ".pyc", ".pyo", ".rpm", ".j2"}


def _inventory_files(directory: Path, warnings: list[str]) -> list[Path]:
    """The inventory sources of a directory: files only (group_vars/ and host_vars/ are not sources)."""
    found: list[Path] = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir():
            if entry.name not in ("group_vars", "host_vars"):
                warnings.append(f"{entry}: ignored (driftctl does not read inventories in subdirectories)")
            continue
        if not entry.is_file() or entry.suffix in _IGNORED_EXT:
            continue
        # an executable with #! is a dynamic inventory whatever its name (ec2.py, inventory.sh)
        if entry.suffix in _YAML_EXT or entry.suffix == ".ini" or not entry.suffix or dynamic.is_script(entry):
            found.append(entry)
        elif _starts_with_shebang(entry):
            warnings.append(f"{entry}: ignored: a script, but not executable (chmod +x it to have it run as a dynamic "
                            "inventory, as Ansible runs executable scripts)")
        else:
            warnings.append(f"{entry}: ignored (not an inventory file: expected .yaml, .yml, .ini or no extension)")
    if not found:
        raise InventoryError(
            "no inventory file in this directory", Location(str(directory)),
            f"expected one of {', '.join(HOSTS_FILES)} or other *.yaml files",
        )
    return found


def _starts_with_shebang(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def _read(path: Path, builder: Builder) -> None:
    """Read one source, choosing the format by extension, or by its first line when it has none."""
    if path.suffix in _YAML_EXT:
        yaml_format.load(path, builder)
        return
    text, vaulted = read_source(path, InventoryError)  # a whole vault-encrypted file: its plaintext
    text = text.removeprefix("\ufeff")  # a byte-order mark from a Windows editor
    if text.startswith("#!"):
        raise InventoryError(
            "this is a dynamic inventory script, but it is not executable", Location(str(path), 1),
            "chmod +x it to have it run with --list, as Ansible runs executable scripts",
        )
    if path.suffix == ".ini" or _looks_like_ini(text):
        ini_format.load(path, builder, text, secret=vaulted)
    else:
        yaml_format.load(path, builder, (text, vaulted))


_YAML_FIRST_LINE = re.compile(r"^(---|%|\{|[^\s=\[#;:]+:(\s|$))")


def _looks_like_ini(text: str) -> bool:
    """A file called ``hosts`` may be either. YAML starts with a mapping key (``all:``); INI with a
    ``[section]`` or a host line (``web1``, ``web1:2222``, ``web1 ansible_host=10.0.0.1``)."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        return not _YAML_FIRST_LINE.match(line)
    return True


def load_inventory(path: str | Path, *, lazy: bool = False, extra_vars: VarSet | None = None,
                   script_timeout: float = dynamic.TIMEOUT) -> Inventory:
    """Load an Ansible-compatible inventory: a directory (``inventory/prod/``) or one hosts file.

    Raises InventoryError, with the file and line, for any mistake; contacts no host. Every host is
    built (variables merged, connection checked) and ``warnings`` covers them all.

    ``lazy=True`` reads and checks the files and the group tree only: a host is built when it is
    first read (``inv.hosts[name]``, ``inv.select(...)``), so ``--limit`` on 10,000 hosts builds the
    ones it selects, and a mistake in another host's connection variables does not stop it (as in
    Ansible). ``warnings`` then holds what the files say; ``warnings_for(hosts)`` adds the hosts'.

    ``extra_vars`` (``-e``) apply to every host above every other variable. An executable inventory
    script (driftctl.inventory.dynamic) is run with ``--list`` and stopped after ``script_timeout`` s.
    """
    path = Path(path)
    warnings: list[str] = []
    if path.is_dir():
        sources, base = _inventory_files(path, warnings), path
    elif path.is_file():
        sources, base = [path], path.parent
    else:
        raise InventoryError("inventory not found", Location(str(path)), "give a directory such as inventory/prod")

    builder = Builder()
    for source in sources:
        if dynamic.is_script(source):
            warnings += dynamic.load(source, builder, script_timeout)
        else:
            _read(source, builder)
    builder.reconcile()

    group_files = varfiles.load(base / "group_vars", builder.groups, "group_vars")
    host_files = varfiles.load(base / "host_vars", builder.hosts, "host_vars")
    warnings += group_files.warnings + host_files.warnings
    for name, vs in group_files.by_name.items():
        builder.groups[name].file_vars = vs
        builder.groups[name].var_files = group_files.files[name]
    for name, vs in host_files.by_name.items():
        builder.hosts[name].file_vars = vs
        builder.hosts[name].var_files = host_files.files[name]

    _priorities(builder, warnings)
    for g in builder.groups.values():
        if any(c in g.name for c in _PATTERN_CHARS):
            warnings.append(f"{g.location}: group name {g.name!r} contains one of {_PATTERN_CHARS!r}, "
                            "so --limit and site files cannot name it")
    for g in builder.groups.values():
        merged = VarSet()
        merged.update(g.inventory_vars)
        merged.update(g.file_vars)
        g.vars = merged.values

    factory = _HostFactory(builder, extra_vars or VarSet())
    hosts = Hosts(builder.hosts, factory.groups_of, factory.build)
    inv = Inventory(path=path, hosts=hosts, groups=builder.groups, var_sources=_Sources(hosts),
                    files=[str(s) for s in sources])
    inv.files += [f for fs in group_files.files.values() for f in fs]
    inv.files += [f for fs in host_files.files.values() for f in fs]
    inv._written = [vs for g in builder.groups.values() for vs in (g.inventory_vars, g.file_vars)]
    inv._written += [vs for h in builder.hosts.values() for vs in (h.inventory_vars, h.file_vars)]
    if extra_vars:
        inv._written.append(extra_vars)
    late: list[str] = []
    if not builder.hosts:
        late.append(f"{path}: the inventory has no hosts")
    writable = _writable_warning(path, base)
    if writable:
        late.append(writable)
    if lazy:
        inv.warnings = list(dict.fromkeys(warnings + late))
        return inv
    for name in hosts:  # in inventory order, as the warnings were always listed
        warnings += hosts.built(name).warnings
    warnings += late + _same_address(hosts.values())
    # Several hosts often share a group's bad ssh args: say it once.
    inv.warnings = list(dict.fromkeys(warnings))
    return inv


class _HostFactory:
    """Builds one host: its groups in precedence order, its merged variables, its connection.

    What hosts in the same groups share (the ordered groups and the merged group variables) is
    computed once per set of groups: 10,000 hosts in 100 groups merge group variables 100 times.
    """

    def __init__(self, builder: Builder, extra_vars: VarSet) -> None:
        self.builder = builder
        self.extra_vars = extra_vars
        self._by_groups: dict[frozenset[str], tuple[tuple[str, ...], VarSet]] = {}

    def _shared(self, entry: HostEntry) -> tuple[tuple[str, ...], VarSet]:
        key = frozenset(entry.groups)
        found = self._by_groups.get(key)
        if found is None:
            b = self.builder
            member_of = b.ancestors(entry.groups)
            ordered: list[Group] = sorted(
                (b.groups[g] for g in member_of if g != ALL), key=lambda g: g.precedence_key
            )
            root = b.groups[ALL]
            merged = VarSet()
            for layer in ([root.inventory_vars], [g.inventory_vars for g in ordered],
                          [root.file_vars], [g.file_vars for g in ordered]):
                for vs in layer:
                    merged.update(vs)
            found = self._by_groups[key] = ((ALL, *(g.name for g in ordered)), merged)
        return found

    def groups_of(self, name: str) -> tuple[str, ...]:
        return self._shared(self.builder.hosts[name])[0]

    def build(self, name: str) -> Built:
        entry = self.builder.hosts[name]
        groups, shared = self._shared(entry)
        values, sources = dict(shared.values), dict(shared.sources)
        for vs in (entry.inventory_vars, entry.file_vars, self.extra_vars):
            values.update(vs.values)
            sources.update(vs.sources)
        warnings: list[str] = []
        spec = connection.build(connection.HostVars(name, values, sources, groups, entry.location), warnings.append)
        return Built(Host(name, values, groups, spec, entry.location), sources, warnings)


def warnings_for(inv: Inventory, hosts: Iterable[Host]) -> list[str]:
    """The inventory's warnings and those of ``hosts`` (building them if they are not yet), for a run of
    these hosts: two of them sharing one address is a warning, a host outside the run is not looked at."""
    chosen = list(hosts)
    out = list(inv.warnings)
    if isinstance(inv.hosts, Hosts):
        for h in chosen:
            out += inv.hosts.built(h.name).warnings
    out += _same_address(chosen)
    return list(dict.fromkeys(out))


def _writable_warning(path: Path, base: Path) -> str | None:
    """An inventory others can write chooses the hosts (and their ansible_become_password): warn.
    A directory inventory is walked once; a single hosts file is checked with its group_vars/host_vars."""
    if path.is_dir():
        return fsperms.tree_warning(path, "inventory")
    for p in (path, base / "group_vars", base / "host_vars"):
        if p.exists():
            warning = fsperms.tree_warning(p, "inventory")
            if warning:
                return warning
    return None


def _same_address(hosts: Iterable[Host]) -> list[str]:
    """Two names for one SSH endpoint: each name gets its own catalog, and both are applied to one
    machine (resources fight, drift flaps). Hosts behind different jump hosts are different machines."""
    by_endpoint: dict[tuple[str, int, str | None], list[Host]] = {}
    for h in hosts:
        c = h.connection
        if c.transport == "ssh":
            by_endpoint.setdefault((c.address.lower(), c.port, c.proxy_jump), []).append(h)
    out = []
    for (address, port, _), same in by_endpoint.items():
        if len(same) > 1:
            named = [f"{h.name} ({h.source})" if h.source else h.name for h in same]
            both = "both" if len(same) == 2 else "all"
            out.append(f"hosts {', '.join(named[:-1])} and {named[-1]} {both} connect to {address} port {port}: "
                       "one machine under several names gets several catalogs applied to it")
    return out


def _priorities(builder: Builder, warnings: list[str]) -> None:
    """``ansible_group_priority`` counts only in the inventory files, as in Ansible."""
    key = "ansible_group_priority"
    for g in builder.groups.values():
        if key in g.file_vars.values:
            warnings.append(f"{g.file_vars.sources[key]}: {key} has no effect in group_vars (as in Ansible); "
                            "set it in the inventory file")
        if key not in g.inventory_vars.values:
            continue
        value = g.inventory_vars.values[key]
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InventoryError(f"{key} of group {g.name!r} must be an integer, not {value!r}",
                                 g.inventory_vars.sources[key])
        g.priority = value
        # Ansible keeps the priority on the group, not among its variables.
        del g.inventory_vars.values[key]
        del g.inventory_vars.sources[key]


def suggest(name: str, candidates: list[str]) -> str | None:
    close = nearest(name, candidates)
    return f"did you mean {close!r}?" if close else None
