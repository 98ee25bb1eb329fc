"""Fixtures of the distributed tests: a PostgreSQL cluster and a Redis server of their own (started once
for the session: every test takes a new database, and ``broker`` empties Redis before each test), and a
fleet of ``DRIFTCTL_TEST_DIST_FLEET_SIZE`` hosts (default 20; ``small_dist_fleet``: 2) started by the
module and downed at its end (tests/fleet/fleet.py's start_fleet)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dist import PgServer, RedisServer


def _serving(kind: Any, prefix: str) -> Iterator[Any]:
    """A server of the test's own (``kind(base).start()``) in a fresh directory, stopped and removed after."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    server = kind(base)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    yield from _serving(PgServer, "driftctl-dist-pg-")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    yield from _serving(RedisServer, "driftctl-dist-redis-")


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The module's Redis, running and empty before each test whatever the last one did to it."""
    if not redis_server.ping():
        redis_server.start()
    redis_server.client().flushall()
    yield redis_server
    if not redis_server.ping():
        redis_server.start()


@pytest.fixture(scope="module")
def dist_fleet(_fleet_session: None) -> Iterator[Any]:
    yield from _fleet(int(os.environ.get("DRIFTCTL_TEST_DIST_FLEET_SIZE", "20")), "dist")


@pytest.fixture(scope="module")
def small_dist_fleet(_fleet_session: None) -> Iterator[Any]:
    """A fleet of 2 hosts (DRIFTCTL_TEST_DIST_SMALL_FLEET_SIZE), one per zone, for the tests that need
    real hosts but not many."""
    yield from _fleet(int(os.environ.get("DRIFTCTL_TEST_DIST_SMALL_FLEET_SIZE", "2")), "dists")


def _fleet(size: int, prefix: str) -> Iterator[Any]:
    fleetlib = sys.modules["driftctl_test_fleet"]  # loaded by tests/conftest.py
    fleet_id = fleetlib.new_session_id("d")
    state = fleetlib.STATE_DIR / "sessions" / fleet_id
    try:
        started = fleetlib.start_fleet(fleet_id, size, inventory_dir=state / "inventory",
                                       known_hosts=state / "known_hosts", owner=fleetlib.current_owner(),
                                       host_prefix=prefix)
    except fleetlib.FleetError as e:
        fleetlib.down(fleet_id)
        pytest.fail(f"could not start the distributed test fleet: {e}")
    try:
        yield started
    finally:
        for h in started.hosts:
            h.close()
        fleetlib.down(fleet_id)
        shutil.rmtree(state, ignore_errors=True)
