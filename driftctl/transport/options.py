"""Controller-side transport settings, one group per transport that has any (only SSH has, today).

``TransportOptions`` is what the CLI builds once per run and hands to every host's transport; each
transport reads its own group (``options.ssh``) and nothing else. The SSH settings may still be given
as keywords of ``TransportOptions`` itself (``TransportOptions(use_agent=False, connect_retries=0)``),
as before the groups existed: they fill ``ssh``. A transport that grows settings of its own adds a
group here (a dataclass and a field), and nothing on the base class.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace


@dataclass(frozen=True)
class SSHOptions:
    """Settings only the SSH transport uses (driftctl/transport/ssh_connect.py)."""

    known_hosts: list[str] = field(default_factory=list)  # extra known_hosts files to trust
    own_known_hosts: str | None = None  # driftctl's own file: where accepted new keys are recorded
    accept_new_host_keys: bool = False  # trust on first use, only when asked
    ssh_config: str | None = None  # default ~/.ssh/config
    use_agent: bool = True
    connect_retries: int = 2  # retries of refused/reset connects, while the connect timeout lasts
    # SSH algorithms allowed beyond the safe defaults, e.g. "ciphers=+aes128-cbc" (transport/sshpolicy.py)
    ssh_algorithms: str | None = None


SSH_SETTINGS = tuple(f.name for f in fields(SSHOptions))


@dataclass(init=False)
class TransportOptions:
    """Every transport's settings: ``ssh`` (SSHOptions). Local and podman have none.

    ``TransportOptions(ssh=SSHOptions(...))``, or the SSH settings as keywords (they fill ``ssh``; an
    unknown keyword is a TypeError, as for any dataclass). Reading them through the old attribute
    names (``options.connect_retries``) still works and reads ``options.ssh``; setting one replaces
    ``options.ssh`` with a copy that has the new value.
    """

    ssh: SSHOptions

    def __init__(self, *, ssh: SSHOptions | None = None, **ssh_settings: object) -> None:
        unknown = sorted(set(ssh_settings) - set(SSH_SETTINGS))
        if unknown:
            raise TypeError(f"TransportOptions got unexpected keyword argument(s): {', '.join(unknown)}")
        ssh = ssh or SSHOptions()
        self.ssh = replace(ssh, **ssh_settings) if ssh_settings else ssh  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        # only called for names not found normally: the old flat attributes, read from the SSH group
        if name in SSH_SETTINGS:
            return getattr(self.ssh, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: object) -> None:
        if name in SSH_SETTINGS:
            name, value = "ssh", replace(self.ssh, **{name: value})  # type: ignore[arg-type]
        super().__setattr__(name, value)
