"""Layered settings: defaults < user file < project file < DRIFTCTL_* environment < command-line flags.

User file: ``$XDG_CONFIG_HOME/driftctl/config.yaml`` (default ``~/.config/driftctl/config.yaml``).
Project file: ``driftctl.yaml`` in the current directory. Both are optional YAML mappings of the
fields of ``Settings``; unknown keys are errors naming the file. A file another user could have
written is ignored with a warning: world-writable, owned by a user other than you or root, or (the
project file) in a world-writable directory, as Ansible ignores ``ansible.cfg`` there.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from driftctl.errors import ConfigError, Location


def _xdg(var: str, default: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / default)


@dataclass(frozen=True)
class Settings:
    state_dir: str = field(default_factory=lambda: str(_xdg("XDG_STATE_HOME", ".local/state") / "driftctl"))
    manifests: str = "manifests"  # the manifest tree; site.yaml inside it
    parallel: int = 10
    connect_timeout: float = 10.0
    command_timeout: float = 300.0
    # a running command's host silent this long (no output, no answer to an SSH keepalive) is lost; an
    # apply's agent stops by itself after as long without a word from the controller (D47)
    link_timeout: float = 60.0
    known_hosts: tuple[str, ...] = ()  # extra known_hosts files (~/.ssh/known_hosts is always read)
    accept_new_host_keys: bool = False
    ssh_config: str | None = None
    state: str | None = None  # store URL: a path (sqlite) or postgresql://...
    backup_dir: str = "/var/lib/driftctl/backup"
    # backups of replaced files on each host: per managed path keep at most this many, none older
    backup_keep: int = 5
    backup_max_age_days: float = 30.0
    # the store: `driftctl prune` removes runs older than this (0 keeps every run)
    store_keep_days: float = 90.0
    # one resource's time limit on the host (a package install waiting for the dpkg lock, an exec)
    resource_timeout: float = 600.0
    # a rendered value or file larger than this is an error at its file:line
    max_render_bytes: int = 64 * 1024 * 1024
    # keep rendered template files in <state_dir>/render-cache for the next runs (D53)
    render_cache: bool = True
    # SSH algorithms allowed beyond the safe defaults, e.g. "ciphers=+aes128-cbc,macs=+hmac-sha1"
    # (see docs/transport.md); every host that needs them is warned about on every run
    ssh_algorithms: str | None = None
    # Ansible Vault: password files (or executables printing the password) and `label@source` vault ids
    vault_password_file: tuple[str, ...] = ()
    vault_ids: tuple[str, ...] = ()
    # how hosts run: "threads" (on this machine) or "celery" (on `driftctl worker`s; docs/scale.md)
    executor: str = "threads"
    broker: str | None = None  # the celery executor's broker (and result backend): redis://HOST:PORT/DB
    worker_key: str | None = None  # the key file tasks and results are sealed with (driftctl worker --new-key)
    # a started task without a result for this long fails its host (0: the host's connect + command
    # timeout + visibility_timeout); a task no worker takes within queue_timeout fails its host too
    task_timeout: float = 0.0
    queue_timeout: float = 3600.0
    # a task a worker took and never acknowledged (the worker died) is delivered again after this long
    visibility_timeout: float = 600.0

    @property
    def own_known_hosts(self) -> str:
        return str(Path(self.state_dir) / "known_hosts")

    @property
    def store_url(self) -> str:
        return self.state or str(Path(self.state_dir) / "driftctl.sqlite")


_INT = {"parallel", "backup_keep", "max_render_bytes"}
_FLOAT = {"connect_timeout", "command_timeout", "link_timeout", "backup_max_age_days", "store_keep_days",
          "resource_timeout", "task_timeout", "queue_timeout", "visibility_timeout"}
EXECUTORS = ("threads", "celery")
_BOOL = {"accept_new_host_keys", "render_cache"}
_TUPLE = {"known_hosts", "vault_password_file", "vault_ids"}


def _coerce(name: str, value: Any, where: Location) -> Any:
    try:
        if name in _INT:
            return int(value)
        if name in _FLOAT:
            return float(value)
        if name in _BOOL:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if name == "ssh_algorithms" and value is not None:
            from driftctl.transport import sshpolicy

            sshpolicy.parse(str(value), where=where)  # an unknown algorithm is an error naming its source
            return str(value)
        if name == "executor" and str(value) not in EXECUTORS:
            raise ConfigError(f"setting executor: {value!r} is not one of {', '.join(EXECUTORS)}", where)
        if name in _TUPLE:
            if isinstance(value, str):
                return tuple(v for v in value.split(os.pathsep) if v)
            return tuple(str(v) for v in value)
        return None if value is None else str(value)
    except ConfigError:
        raise  # already says what is wrong and where (an unknown SSH algorithm...)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: invalid value {value!r}", where) from None


def _untrusted(path: Path, directory_too: bool) -> str | None:
    """Why a settings file must not be read, or None: settings choose known_hosts files, the state
    store and ssh config, so a file another user could have written or planted is ignored."""
    st = path.stat()
    if directory_too:
        cwd = path.parent
        if cwd.stat().st_mode & stat.S_IWOTH:
            return (f"ignored: its directory {cwd} is writable by every user "
                    f"(mode {stat.S_IMODE(cwd.stat().st_mode):04o}), so anyone could have put it there "
                    "(Ansible ignores ansible.cfg there too)")
    if st.st_mode & stat.S_IWOTH:
        return f"ignored: writable by every user (mode {stat.S_IMODE(st.st_mode):04o}); chmod o-w it"
    if st.st_uid not in (os.geteuid(), 0):
        return f"ignored: owned by another user (uid {st.st_uid}), not by you or root"
    return None


def _from_file(path: Path, warn: Callable[[str], None] | None = None, directory_too: bool = False) -> dict[str, Any]:
    """The settings in ``path`` ({} if it does not exist, or with a warning if it cannot be trusted)."""
    if not path.is_file():
        return {}
    why = _untrusted(path, directory_too)
    if why is not None:
        if warn is not None:
            warn(f"{path}: {why}")
        return {}
    from driftctl.patterns import nearest
    from driftctl.yamlsrc import load_file, location_of

    data = load_file(path, ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping of settings", location_of(data, Location(str(path), 1)))
    known = sorted(f.name for f in fields(Settings))
    out = {}
    for key, value in data.items():
        where = data.loc(key) if hasattr(data, "loc") else Location(str(path))
        if key not in known:
            close = nearest(str(key), known)
            raise ConfigError(f"unknown setting {key!r}", where,
                              f"did you mean {close!r}?" if close else "docs/configuration.md lists every setting")
        out[key] = _coerce(key, value, where)
    return out


def load(overrides: dict[str, Any] | None = None, cwd: Path | None = None,
         warn: Callable[[str], None] | None = None) -> Settings:
    """Settings from every layer; ``overrides`` are command-line flags (None values are ignored).

    A settings file another user could have written (world-writable, owned by someone else than you
    or root, or a ``driftctl.yaml`` in a world-writable directory) is ignored; ``warn`` is told why.
    """
    values: dict[str, Any] = {}
    values.update(_from_file(_xdg("XDG_CONFIG_HOME", ".config") / "driftctl" / "config.yaml", warn))
    values.update(_from_file((cwd or Path.cwd()) / "driftctl.yaml", warn, directory_too=True))
    for f in fields(Settings):
        env = os.environ.get(f"DRIFTCTL_{f.name.upper()}")
        if env is not None:
            values[f.name] = _coerce(f.name, env, Location(f"DRIFTCTL_{f.name.upper()}"))
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, Location(f"--{key.replace('_', '-')}"))
    return replace(Settings(), **values)
