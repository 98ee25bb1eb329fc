"""Ansible's YAML inventory format.

```yaml
all:
  vars: {ntp_server: ntp.example.com}
  children:
    web:
      hosts:
        web[01:03]:                 # a range: web01, web02, web03
        web-canary:
          ansible_host: 10.0.0.9
      vars: {http_port: 80}
```

Top-level keys are groups (normally just ``all``). A group holds only ``hosts``, ``children`` and
``vars``; anything else is an error here (Ansible only warns, and a typo such as ``host:`` then
silently drops hosts). Host and group values are mappings or empty. A plain string is accepted
where Ansible accepts one (``hosts: web1``).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from driftctl import yamlsrc
from driftctl.errors import InventoryError, Location
from driftctl.inventory import hostpattern
from driftctl.inventory.builder import Builder
from driftctl.secret import conceal
from driftctl.yamlsrc import YamlMap

GROUP_KEYS = ("hosts", "children", "vars")


def _loc(data: Any, key: Any, default: Location) -> Location:
    if isinstance(data, YamlMap):
        return data.loc(key)
    return default


def _type_name(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool):
        return f"the boolean {value}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return type(value).__name__


def _as_mapping(value: Any, what: str, where: Location) -> dict[Any, Any]:
    """``None`` and Ansible's single-name shorthand (``hosts: web1``) become mappings."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {value: None}
    if not isinstance(value, dict):
        raise InventoryError(f"{what} must be a mapping, not {_type_name(value)}", where)
    return value


def load(path: Path, builder: Builder, source: tuple[str, bool] | None = None) -> None:
    """Read one YAML (or JSON) inventory file into ``builder``. A whole vault-encrypted file is
    decrypted; the variables it sets are secrets (host and group names are not). ``source``: the
    file's text and whether it was vault-encrypted, when the caller has read it already
    (``yamlsrc.read_source``, to tell YAML from INI by the decrypted text)."""
    text, vaulted = source if source is not None else yamlsrc.read_source(path, InventoryError)
    data = yamlsrc.load_text(text, str(path), InventoryError, cache=not vaulted)
    top = Location(str(path), 1)
    if data is None:
        return  # an empty file defines nothing; the loader warns when the inventory has no hosts
    if not isinstance(data, dict):
        raise InventoryError(
            f"a YAML inventory must be a mapping of groups (all: ...), not {_type_name(data)}",
            yamlsrc.location_of(data, top),
        )
    if "plugin" in data:
        raise InventoryError(
            "this is an inventory plugin configuration (plugin: ...); driftctl reads static inventories only",
            _loc(data, "plugin", top),
        )
    for name, value in data.items():
        _group(builder, name, value, _loc(data, name, top), vaulted)


def _check_name(name: Any, where: Location) -> None:
    if not isinstance(name, str) or not name:
        raise InventoryError(f"group name {name!r} must be a non-empty string", where)


def _group(builder: Builder, name: Any, value: Any, where: Location, vaulted: bool = False) -> None:
    _check_name(name, where)
    if value is not None and not isinstance(value, dict):
        raise InventoryError(
            f"group {name!r} must be a mapping of hosts/children/vars, not {_type_name(value)}", where
        )
    builder.group(name, where)
    if not value:
        return
    for key in value:
        if key not in GROUP_KEYS:
            close = difflib.get_close_matches(str(key), GROUP_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "a group holds only hosts, children and vars"
            raise InventoryError(f"unknown key {key!r} in group {name!r}", _loc(value, key, where), hint)

    if "vars" in value:
        vars_ = value["vars"]
        vars_where = _loc(value, "vars", where)
        if vars_ is not None and not isinstance(vars_, dict):
            raise InventoryError(f"vars of group {name!r} must be a mapping, not {_type_name(vars_)}", vars_where)
        for var, v in (vars_ or {}).items():
            builder.set_group_var(name, var, conceal(v) if vaulted else v, _loc(vars_, var, vars_where))

    if "hosts" in value:
        hosts_where = _loc(value, "hosts", where)
        hosts = _as_mapping(value["hosts"], f"hosts of group {name!r}", hosts_where)
        for pattern, host_vars in hosts.items():
            host_where = _loc(hosts, pattern, hosts_where)
            if isinstance(pattern, (int, float)) and not isinstance(pattern, bool):
                pattern = str(pattern)  # Ansible turns a numeric host name into text
            if not isinstance(pattern, str):
                raise InventoryError(f"host name {pattern!r} must be a string", host_where)
            if host_vars is not None and not isinstance(host_vars, dict):
                raise InventoryError(
                    f"host {pattern!r} in group {name!r} must be a mapping of variables or empty, "
                    f"not {_type_name(host_vars)}",
                    host_where,
                    "write 'host:' alone, or 'host: {var: value}'",
                )
            definition = hostpattern.expand(pattern, host_where)
            for host in definition.names:
                new = host not in builder.hosts
                builder.add_host(name, host, host_where)
                # Ansible sets the port of NAME:PORT only where the host first appears
                if definition.port is not None and new:
                    builder.set_host_var(host, "ansible_port", definition.port, host_where)
                for var, v in (host_vars or {}).items():
                    builder.set_host_var(host, var, conceal(v) if vaulted else v, _loc(host_vars, var, host_where))

    if "children" in value:
        children_where = _loc(value, "children", where)
        children = _as_mapping(value["children"], f"children of group {name!r}", children_where)
        for child, child_value in children.items():
            child_where = _loc(children, child, children_where)
            _check_name(child, child_where)
            # The edge goes in before the child's own body, so a cycle is reported at the line that closes it.
            builder.add_child(name, child, child_where)
            _group(builder, child, child_value, child_where, vaulted)
