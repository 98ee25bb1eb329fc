"""Shared fixtures: the test fleet of real sshd hosts in podman containers (see tests/fleet/fleet.py).

- ``fleet`` (session): ``fleet.hosts`` -> [FleetHost], ``fleet.inventory_dir`` (Ansible-style YAML with
  hosts fleet1..N in groups web/db), ``fleet.known_hosts``. Size ``DRIFTCTL_TEST_FLEET_SIZE`` (default
  4). ``DRIFTCTL_TEST_REUSE_FLEET=1`` uses the hand-started fleet (``fleet.py up``) instead, and then
  leaves it running.
- ``fresh_host`` (function): one brand-new host for destructive tests, removed afterwards (booted in
  the background while the test before it runs, and removed in the background: see _FreshHosts).

FleetHost: ``.name .port .container .groups .host() .exec(argv) .sh(script) .agent(request)
.testinfra()``. ``exec``/``sh``/``agent`` go through ``podman exec``, not through driftctl's SSH code.

Every session has its own fleet id, so concurrent pytest runs on one machine never share containers;
containers carry the session's pid so a later session removes what a crashed one left behind.
Tests using these fixtures are marked ``fleet`` automatically; a ``fleet`` test fails (never skips)
when podman or the images are missing, so a broken machine cannot hide the fleet suite.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
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


def pytest_collection_finish(session: pytest.Session) -> None:
    _fresh_hosts.plan(session.items)


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
    _fresh_hosts.close()
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


def _fresh_options(item: pytest.Item) -> tuple[str, ...] | None:
    """The extra podman arguments of the fresh host ``item`` takes, or None if it takes none."""
    if "fresh_host" not in getattr(item, "fixturenames", ()):
        return None
    marker = item.get_closest_marker("fresh_host")
    options = dict(marker.kwargs) if marker else {}
    extra = fleetlib.NET_SYSCTL_ARGS if options.pop("net_sysctls", False) else []
    if options:
        pytest.fail(f"unknown fresh_host options: {sorted(options)}")
    return tuple(extra)


@dataclass
class _Starting:
    """A fresh host being started (or removed) on a background thread, and where its state lives."""

    fleet_id: str
    state: Path
    extra: tuple[str, ...]
    future: Future[Any]


class _FreshHosts:
    """Fresh hosts are started one test ahead: while a test uses its host, the host of the next test
    that takes one boots on a background thread (about 3-6 s of podman run and systemd boot that no
    test waits for any more), and a used host is removed in the background too. Every test still gets
    a container nobody else has touched; the spare is made with the options the next test asks for.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._spare: _Starting | None = None
        self._removals: list[Future[Any]] = []
        self._later: dict[str, tuple[str, ...]] = {}  # nodeid -> options of the next fresh-host test after it

    def plan(self, items: list[pytest.Item]) -> None:
        nxt: tuple[str, ...] | None = None
        for item in reversed(items):
            if nxt is not None:
                self._later[item.nodeid] = nxt
            try:
                options = _fresh_options(item)
            except pytest.fail.Exception:  # bad options: that test fails when it runs, nothing is started for it
                continue
            if options is not None:
                nxt = options

    def _background(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="fresh-host")
        return self._pool

    def _begin(self, extra: tuple[str, ...]) -> _Starting:
        global _fresh_counter
        _fresh_counter += 1
        fleet_id = f"{_SESSION_ID}-x{_fresh_counter}"
        state = _SESSION_DIR / f"fresh{_fresh_counter}"

        def start() -> Any:
            try:
                return fleetlib.start_fleet(
                    fleet_id,
                    1,
                    inventory_dir=state / "inventory",
                    known_hosts=state / "known_hosts",
                    owner=fleetlib.current_owner(),
                    extra_args=list(extra),
                    host_prefix="fresh",
                )
            except FleetError:
                fleetlib.down(fleet_id)
                raise

        return _Starting(fleet_id, state, extra, self._background().submit(start))

    def _remove(self, starting: _Starting) -> None:
        def remove() -> None:
            with contextlib.suppress(Exception):  # wait for a start still under way; a failed one left nothing
                starting.future.result()
            fleetlib.down(starting.fleet_id)
            shutil.rmtree(starting.state, ignore_errors=True)

        self._removals.append(self._background().submit(remove))

    def take(self, nodeid: str, extra: tuple[str, ...]) -> _Starting:
        """The host for test ``nodeid`` (the spare if it fits), and the next test's spare started."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.extra != extra:  # tests run in another order (-p, -n): not ours
            self._remove(spare)
            spare = None
        mine = spare or self._begin(extra)
        if nodeid in self._later:
            self._spare = self._begin(self._later[nodeid])
        return mine

    def give_back(self, starting: _Starting) -> None:
        if starting.future.done() and starting.future.exception() is None:
            for h in starting.future.result().hosts:
                h.close()
        self._remove(starting)

    def close(self) -> None:
        if self._spare is not None:
            self._remove(self._spare)
            self._spare = None
        for f in self._removals:
            with contextlib.suppress(Exception):
                f.result()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


_fresh_hosts = _FreshHosts()


@pytest.fixture
def fresh_host(request: pytest.FixtureRequest, _fleet_session: None) -> Iterator[Any]:
    """A brand-new host (its own container, keys and known_hosts), removed after the test.

    ``@pytest.mark.fresh_host(net_sysctls=True)`` gives a host where ``sysctl -w net.*`` works (inside
    its own network namespace only); see fleet.NET_SYSCTL_ARGS for what it costs.
    """
    extra = _fresh_options(request.node)
    assert extra is not None
    starting = _fresh_hosts.take(request.node.nodeid, extra)
    try:
        started = starting.future.result()
    except FleetError as e:
        _fresh_hosts.give_back(starting)
        _fail("could not start a fresh host", e)
    try:
        yield started.hosts[0]
    finally:
        _fresh_hosts.give_back(starting)


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


MACHINE_APPLY_LOCK = Path(tempfile.gettempdir()) / "driftctl-tests-machine-apply.lock"


@pytest.fixture(autouse=True)
def _one_apply_here_at_a_time(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                              tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests marked ``applies_here`` apply to this machine through the local transport (or pull mode),
    and so take its host lock, /run/driftctl/apply.lock, as a real run does. Under two workers (D51)
    two such tests could meet there, and the second would be told "host is being changed": they take
    turns instead, across workers, by an flock of their own. The files they replace are backed up in a
    temporary directory (DRIFTCTL_BACKUP_DIR, for settings read in this process), not in this
    machine's /var/lib/driftctl/backup."""
    if request.node.get_closest_marker("applies_here") is None:
        yield
        return
    monkeypatch.setenv("DRIFTCTL_BACKUP_DIR", str(tmp_path_factory.mktemp("backup")))
    # never through a link planted at that name in the shared /tmp; read-only: an flock needs no more
    fd = os.open(MACHINE_APPLY_LOCK, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
