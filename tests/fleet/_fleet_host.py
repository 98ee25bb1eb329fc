"""The objects tests hold: a fleet host (FleetHost), a fleet (Fleet) and the project key (KeyPair).

Created by tests/fleet/fleet.py; tests get them from the fixtures in tests/conftest.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _fleet_podman import podman

from driftctl import ship as agentlib
from driftctl.model import ConnectionSpec, Host
from driftctl.transport.base import CommandResult

ADDRESS = "127.0.0.1"


@dataclass(frozen=True)
class KeyPair:
    """The project's SSH key (ed25519, no passphrase) and the directory mounted into every host."""

    private: Path
    public: Path
    authorized_dir: Path  # holds "root": mounted at /etc/ssh/fleet_authorized_keys (see fleet/)


@dataclass
class FleetHost:
    """One fleet host. ``exec`` and ``agent`` go through ``podman exec``, independent of driftctl's SSH."""

    name: str
    container: str
    port: int
    groups: tuple[str, ...]
    key_file: Path
    known_hosts: Path
    host_keys: list[str] = field(default_factory=list)  # "type base64" as read inside the container
    address: str = ADDRESS
    _testinfra: Any = field(default=None, repr=False, compare=False)

    def host(self, **connection: Any) -> Host:
        """A driftctl Host for this machine over SSH as root (``connection`` overrides ConnectionSpec)."""
        spec = ConnectionSpec(
            address=self.address,
            port=self.port,
            user="root",
            key_file=str(self.key_file),
            known_hosts=str(self.known_hosts),
            **connection,
        )
        return Host(name=self.name, vars={}, groups=self.groups, connection=spec)

    def exec(self, argv: Sequence[str], *, stdin: bytes = b"", timeout: float = 300) -> CommandResult:
        """Run ``argv`` in the container as root (no shell unless argv asks for one)."""
        start = time.monotonic()
        result = podman(["exec", "-i", self.container, *argv], stdin=stdin, timeout=timeout, check=False)
        return CommandResult(
            argv=list(argv),
            rc=result.rc,
            stdout=result.stdout,
            stderr=result.stderr,
            duration=time.monotonic() - start,
        )

    def sh(self, script: str, *, stdin: bytes = b"", timeout: float = 300) -> CommandResult:
        """Run a shell script in the container (for injecting drift and checking state in tests)."""
        return self.exec(["sh", "-c", script], stdin=stdin, timeout=timeout)

    def agent(self, request: dict[str, Any], *, timeout: float = 300) -> dict[str, Any]:
        """Run driftctl's agent on this host exactly as driftctl does, through ``podman exec -i``.

        The answer is returned as parsed, ``"ok": false`` included; output that is not JSON raises
        AssertionError with the agent's stderr.
        """
        # protocol 1: one answer document (protocol 2 streams a record per resource; see agent/_main.py)
        payload = json.dumps({"v": 1, **request}, separators=(",", ":")).encode()
        result = self.exec(agentlib.command(), stdin=agentlib.program_bytes() + payload, timeout=timeout)
        try:
            answer = json.loads(result.stdout)
        except ValueError:
            raise AssertionError(
                f"agent on {self.name} answered no JSON (exit {result.rc}):\n"
                f"stdout: {result.stdout_text[-2000:]}\nstderr: {result.stderr_text[-2000:]}"
            ) from None
        if not isinstance(answer, dict):
            raise AssertionError(f"agent on {self.name} answered {type(answer).__name__}, not an object")
        return answer

    def testinfra(self) -> Any:
        """A pytest-testinfra host over paramiko that checks the host key against the fleet's known_hosts."""
        if self._testinfra is None:
            from _fleet_testinfra import verified_host

            self._testinfra = verified_host(self.address, self.port, "root", str(self.key_file), str(self.known_hosts))
        return self._testinfra

    def close(self) -> None:
        """Close the testinfra SSH connection, if one was opened."""
        if self._testinfra is not None:
            client = self._testinfra.backend.__dict__.get("client")  # cached_property: set once connected
            if client is not None:
                client.close()
            self._testinfra = None

    def known_hosts_lines(self) -> list[str]:
        return [f"[{self.address}]:{self.port} {key}" for key in self.host_keys]


@dataclass
class Fleet:
    """A set of fleet hosts with their known_hosts file and generated inventory directory."""

    id: str
    hosts: list[FleetHost]
    inventory_dir: Path
    known_hosts: Path
    key: KeyPair

    def __iter__(self) -> Iterator[FleetHost]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def by_name(self, name: str) -> FleetHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def group(self, name: str) -> list[FleetHost]:
        return [h for h in self.hosts if name in h.groups]
