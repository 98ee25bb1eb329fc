"""Ansible-compatible inventories: ``load_inventory(path)`` -> Inventory -> ``select(pattern)`` -> [Host].

An inventory is a directory (``inventory/prod/`` with ``hosts.yaml``, ``hosts`` or ``hosts.ini``,
and ``group_vars/``, ``host_vars/``) or one hosts file, in Ansible's YAML or INI format. See
docs/inventory.md for the formats, the variable precedence and the connection variables.
"""

from __future__ import annotations

from driftctl.inventory.loader import HOSTS_FILES, load_inventory
from driftctl.inventory.model import Group, Inventory, VarSet

__all__ = ["HOSTS_FILES", "Group", "Inventory", "VarSet", "load_inventory"]
