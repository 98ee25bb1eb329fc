"""Shared fixtures: the test fleet of real sshd hosts in podman containers (see tests/fleet/fleet.py).

- ``fleet`` (session): ``fleet.hosts`` -> [FleetHost], ``fleet.inventory_dir`` (Ansible-style YAML with
  hosts fleet1..N in groups web/db), ``fleet.known_hosts``. Size ``DRIFTCTL_TEST_FLEET_SIZE`` (default
  4). ``DRIFTCTL_TEST_REUSE_FLEET=1`` uses the hand-started fleet (``fleet.py up``) instead, and then
  leaves it running.
- ``fresh_host`` (function): one brand-new host for destructive tests, removed afterwards.

FleetHost: ``.name .port .container .groups .host() .exec(argv) .sh(script) .agent(request)
.testinfra()``. ``exec``/``sh``/``agent`` go through ``podman exec``, not through driftctl's SSH code.

Every session has its own fleet id, so concurrent pytest runs on one machine never share containers;
containers carry the session's pid so a later session removes what a crashed one left behind.
Tests using these fixtures are marked ``fleet`` automatically; a ``fleet`` test fails (never skips)
when podman or the images are missing, so a broken machine cannot hide the fleet suite.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest


def _load_fleet_library() -> Any:
    # Loaded by path under a name of its own: "fleet" would clash with the tests/fleet directory
    # (and with a tests/fleet/__init__.py, should one appear). Tests can `import driftctl_test_fleet`.
    name = "driftctl_test_fleet"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parent / "fleet" / "fleet.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fleetlib = _load_fleet_library()
FleetHost = fleetlib.FleetHost
Fleet = fleetlib.Fleet
FleetError = fleetlib.FleetError

_FLEET_FIXTURES = {"fleet", "fresh_host"}
_SESSION_ID = fleetlib.new_session_id("t")
_SESSION_DIR = fleetlib.STATE_DIR / "sessions" / _SESSION_ID


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fresh_host(net_sysctls=False): options of the fresh_host fixture; net_sysctls=True makes the "
        "container's network sysctls writable (NET_ADMIN; kernel/vm/fs tables hidden, host degraded)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the fleet fixtures ``fleet`` (so ``-m 'not fleet'`` deselects them)."""
    for item in items:
        if _FLEET_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.fleet)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("fleet") and shutil.which("podman") is None:
        pytest.fail("this test needs the podman fleet, and podman is not installed (run scripts/setup)")


def _fail(what: str, e: Exception) -> NoReturn:
    pytest.fail(f"{what}: {e}\n(run scripts/setup; `.venv/bin/python tests/fleet/fleet.py image` builds images)")


@pytest.fixture(scope="session")
def _fleet_session() -> Iterator[None]:
    """Reap containers of dead sessions once, and remove this session's state directory at the end."""
    try:
        fleetlib.reap()
    except FleetError as e:
        _fail("could not list fleet containers", e)
    yield
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def fleet(_fleet_session: None) -> Iterator[Any]:
    """A fleet of running hosts for the whole session (read-mostly: use ``fresh_host`` to break things)."""
    if os.environ.get("DRIFTCTL_TEST_REUSE_FLEET") == "1":
        try:
            found = fleetlib.discover()
        except FleetError as e:
            _fail("DRIFTCTL_TEST_REUSE_FLEET=1 but the running fleet is not usable", e)
        if found is None:
            pytest.fail("DRIFTCTL_TEST_REUSE_FLEET=1 but no fleet is running (start one: tests/fleet/fleet.py up -n 4)")
        yield found
        for h in found.hosts:
            h.close()
        return
    size = int(os.environ.get("DRIFTCTL_TEST_FLEET_SIZE", "4"))
    fleet_id = _SESSION_ID
    try:
        started = fleetlib.start_fleet(
            fleet_id,
            size,
            inventory_dir=_SESSION_DIR / "inventory",
            known_hosts=_SESSION_DIR / "known_hosts",
            owner=fleetlib.current_owner(),
        )
    except FleetError as e:
        fleetlib.down(fleet_id)
        _fail("could not start the test fleet", e)
    try:
        yield started
    finally:
        for h in started.hosts:
            h.close()
        fleetlib.down(fleet_id)


_fresh_counter = 0


@pytest.fixture
def fresh_host(request: pytest.FixtureRequest, _fleet_session: None) -> Iterator[Any]:
    """A brand-new host (its own container, keys and known_hosts), removed after the test.

    ``@pytest.mark.fresh_host(net_sysctls=True)`` gives a host where ``sysctl -w net.*`` works (inside
    its own network namespace only); see fleet.NET_SYSCTL_ARGS for what it costs.
    """
    global _fresh_counter
    marker = request.node.get_closest_marker("fresh_host")
    options = dict(marker.kwargs) if marker else {}
    extra = fleetlib.NET_SYSCTL_ARGS if options.pop("net_sysctls", False) else []
    if options:
        pytest.fail(f"unknown fresh_host options: {sorted(options)}")
    _fresh_counter += 1
    fleet_id = f"{_SESSION_ID}-x{_fresh_counter}"
    state = _SESSION_DIR / f"fresh{_fresh_counter}"
    try:
        started = fleetlib.start_fleet(
            fleet_id,
            1,
            inventory_dir=state / "inventory",
            known_hosts=state / "known_hosts",
            owner=fleetlib.current_owner(),
            extra_args=extra,
            host_prefix="fresh",
        )
    except FleetError as e:
        fleetlib.down(fleet_id)
        _fail("could not start a fresh host", e)
    try:
        yield started.hosts[0]
    finally:
        started.hosts[0].close()
        fleetlib.down(fleet_id)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def gpg_homes() -> Iterator[Callable[[str], Path]]:
    """GnuPG homes at short paths: with no /run/user/UID gpg's agent socket is in the home, and pytest's
    tmp_path under `-n 2` is deeper than a socket path may be (key generation failed there)."""
    made: list[Path] = []

    def make(name: str) -> Path:
        made.append(Path(tempfile.mkdtemp(prefix=f"dg-{name}.")))
        return made[-1]

    yield make
    for home in made:
        subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": str(home)}, check=False)
        shutil.rmtree(home, ignore_errors=True)
