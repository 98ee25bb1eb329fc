"""A pytest-testinfra host over paramiko that verifies the host key.

testinfra's paramiko backend accepts any host key (paramiko.WarningPolicy, and it loads no
known_hosts file), and its ssh_config support has no UserKnownHostsFile. Checking fleet hosts that
way would prove nothing about who answered, so this backend connects with the fleet's own
known_hosts file and paramiko.RejectPolicy: an unknown or changed key is an error.
"""

from __future__ import annotations

import functools
from typing import Any

import paramiko
import testinfra.host
from testinfra.backend.paramiko import ParamikoBackend


class VerifiedParamikoBackend(ParamikoBackend):
    """testinfra's paramiko backend with a known_hosts file and no trust on first use."""

    def __init__(self, hostspec: str, *, known_hosts: str, key_file: str, timeout: int = 10) -> None:
        super().__init__(hostspec, ssh_identity_file=key_file, timeout=timeout)
        self.known_hosts = known_hosts

    @functools.cached_property
    def client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.load_host_keys(self.known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            hostname=self.host.name,
            port=int(self.host.port or 22),
            username=self.host.user,
            key_filename=self.ssh_identity_file,
            timeout=self.timeout,
            allow_agent=False,
            look_for_keys=False,
        )
        return client


def verified_host(address: str, port: int, user: str, key_file: str, known_hosts: str) -> Any:
    """A ``testinfra.host.Host`` for ``user@address:port`` that checks the key against ``known_hosts``."""
    backend = VerifiedParamikoBackend(f"{user}@{address}:{port}", known_hosts=known_hosts, key_file=key_file)
    return testinfra.host.Host(backend)
