"""The agent: stdlib-only Python that runs on a host for one request and leaves nothing behind.

Everything in this package ships to hosts; nothing here runs on the controller but as imported
functions (the controller's types share pure helpers with it). The program is assembled from these
modules by driftctl/ship.py, each after the modules it imports, ``_main`` last.

Rules for agent modules (they are concatenated into one program):
- stdlib only, python >= 3.8 syntax; ``from __future__ import annotations`` is emitted once on top,
  so annotations are never evaluated on the host;
- imports of this package (``from driftctl.agent._core import ...``) are stripped when shipped:
  every module sees the names of the modules before it (a test checks the shipped modules import
  only the standard library and each other);
- every top-level name carries its module's prefix (the modules share one namespace);
- a resource type registers itself with ``register(name, observe, apply, refresh=None, precheck=None)``.

Protocol 2 (driftctl/agent/_main.py): a request line, then frames; records and a final answer as
JSON lines.
"""
