"""A host's ConnectionSpec from its merged variables: driftctl's own names, then Ansible's.

For each setting the first variable that is set wins, in the order listed in ``SETTINGS``:
driftctl's name first, then Ansible's current name, then its older spellings. A value of the
wrong type is an InventoryError at the file:line where that variable was written.
Values that are Jinja2 templates (``ansible_host: "{{ inventory_hostname }}.example.com"``,
common in Ansible inventories) are rendered, sandboxed, against the host's variables.
"""

from __future__ import annotations

import functools
import os.path
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from driftctl.errors import InventoryError, Location
from driftctl.model import ConnectionSpec
from driftctl.secret import REDACTED, Secret, collect, redact

if TYPE_CHECKING:
    import jinja2
    import jinja2.sandbox


@dataclass(frozen=True)
class Setting:
    """One ConnectionSpec field and the variables that can set it, strongest first."""

    field: str
    names: tuple[str, ...]
    kind: str  # str, int, bool, float, path, transport, python


SETTINGS: tuple[Setting, ...] = (
    Setting("address", ("driftctl_host", "ansible_host", "ansible_ssh_host"), "str"),
    Setting("port", ("driftctl_port", "ansible_port", "ansible_ssh_port"), "port"),
    Setting("user", ("driftctl_user", "ansible_user", "ansible_ssh_user"), "str"),
    Setting("key_file", ("driftctl_key_file", "ansible_ssh_private_key_file", "ansible_private_key_file"), "path"),
    Setting("password", ("driftctl_password", "ansible_password", "ansible_ssh_pass", "ansible_ssh_password"), "str"),
    Setting("become", ("driftctl_become", "ansible_become"), "bool"),
    Setting("become_user", ("driftctl_become_user", "ansible_become_user"), "str"),
    Setting("become_password", ("driftctl_become_password", "ansible_become_password", "ansible_become_pass"), "str"),
    Setting("python", ("driftctl_python", "ansible_python_interpreter"), "python"),
    Setting("proxy_jump", ("driftctl_proxy_jump",), "str"),
    Setting("known_hosts", ("driftctl_known_hosts",), "path"),
    Setting("transport", ("driftctl_transport", "ansible_connection"), "transport"),
    Setting("connect_timeout", ("driftctl_connect_timeout", "ansible_ssh_timeout", "ansible_timeout"), "float"),
    Setting("command_timeout", ("driftctl_command_timeout",), "float"),
    Setting("link_timeout", ("driftctl_link_timeout",), "float"),
    Setting("ssh_algorithms", ("driftctl_ssh_algorithms",), "str"),
)

#: Variables whose values are credentials: always redacted when shown.
SECRET_VARS = frozenset(
    name for s in SETTINGS if s.field in ("password", "become_password") for name in s.names
)
#: Every variable that feeds the ConnectionSpec.
CONNECTION_VARS = frozenset(name for s in SETTINGS for name in s.names) | {
    "ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_become_method",
}

_TRUE = {"y", "yes", "on", "1", "true", "t"}
_FALSE = {"n", "no", "off", "0", "false", "f"}
_TRANSPORTS = {
    "ssh": "ssh", "paramiko": "ssh", "paramiko_ssh": "ssh", "smart": "ssh",
    "ansible.builtin.ssh": "ssh", "ansible.builtin.paramiko_ssh": "ssh", "ansible.netcommon.libssh": "ssh",
    "local": "local", "ansible.builtin.local": "local",
    "podman": "podman", "containers.podman.podman": "podman",
}
_AUTO_PYTHON = {"auto", "auto_silent", "auto_legacy", "auto_legacy_silent"}


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    import jinja2  # only an inventory with a templated connection value pays for it (~20 ms)
    import jinja2.sandbox

    return jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)


@functools.lru_cache(maxsize=512)
def _compiled(text: str) -> jinja2.Template:
    """One compiled template per text: 1,000 hosts of a group sharing ``{{ inventory_hostname }}.dc3``
    compile it once (compiling costs ~1 ms, rendering ~20 us). A template holds no host's data."""
    return _environment().from_string(text)


@dataclass
class HostVars:
    """What the connection builder needs to know about one host."""

    name: str
    values: Mapping[str, Any]
    sources: Mapping[str, Location]
    groups: tuple[str, ...]
    fallback: Location  # where the host itself is defined


class _Builder:
    def __init__(self, host: HostVars, warn: Callable[[str], None]) -> None:
        self.host = host
        self.warn = warn

    def where(self, var: str) -> Location:
        return self.host.sources.get(var, self.host.fallback)

    def hide(self, text: str) -> str:
        """``text`` with the host's secret values redacted: a value rendered from a template that
        uses a vaulted variable (``ansible_port: "{{ vault_port }}"``) is a plain string again."""
        return redact(text, collect(dict(self.host.values)))

    def fail(self, var: str, value: Any, expected: str) -> InventoryError:
        shown = REDACTED if var in SECRET_VARS or isinstance(value, Secret) else self.hide(repr(value))
        return InventoryError(f"{var} for host {self.host.name!r}: {shown} is not {expected}", self.where(var))

    def render(self, var: str, value: Any) -> Any:
        """Render a templated value (recursively, like Ansible's lazy templating, with a depth limit)."""
        if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
            return value
        from jinja2 import TemplateError

        context = dict(self.host.values)
        context.update(
            inventory_hostname=self.host.name,
            inventory_hostname_short=self.host.name.split(".")[0],
            group_names=sorted(g for g in self.host.groups if g != "all"),
        )
        text = value
        for _ in range(10):
            if "{{" not in text and "{%" not in text:
                return text
            try:
                text = _compiled(text).render(context)
            except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as e:
                # a TypeError ({{ port + 1 }} on a string) is the user's template too, not a crash
                raise InventoryError(self.hide(f"{var} for host {self.host.name!r}: cannot render {value!r}: {e}"),
                                     self.where(var)) from None
        raise InventoryError(f"{var} for host {self.host.name!r}: template does not settle (recursive?)",
                             self.where(var))

    def convert(self, var: str, value: Any, kind: str) -> Any:
        value = self.render(var, value)
        if kind in ("str", "path", "python"):
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise self.fail(var, value, "a string")
            text = str(value) if not isinstance(value, str) else value
            if kind == "python" and text in _AUTO_PYTHON:
                return None  # Ansible's interpreter discovery: driftctl's default (python3) is the equivalent
            if kind == "path":
                return os.path.expanduser(text)
            return text
        if kind == "port":
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
                raise self.fail(var, value, "a port number (1-65535)")
            return value
        if kind == "float":
            if isinstance(value, bool):
                raise self.fail(var, value, "a number of seconds")
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                raise self.fail(var, value, "a number of seconds") from None
            if not seconds > 0:
                raise self.fail(var, value, "a positive number of seconds")
            return seconds
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise self.fail(var, value, "a boolean (true/false, yes/no)")
        if kind == "transport":
            if isinstance(value, str) and value.strip().lower() in _TRANSPORTS:
                return _TRANSPORTS[value.strip().lower()]
            raise self.fail(var, value, "a supported connection (ssh, local or podman)")
        raise AssertionError(kind)

    def proxy_jump_from_ssh_args(self) -> str | None:
        """Ansible inventories put the jump host in ansible_ssh_common_args: ``-o ProxyJump=h`` or ``-J h``."""
        for var in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
            raw = self.host.values.get(var)
            if raw is None:
                continue
            text = self.render(var, raw)
            if not isinstance(text, str):
                raise self.fail(var, text, "a string of ssh options")
            try:
                args = shlex.split(text)
            except ValueError as e:
                raise InventoryError(f"{var} for host {self.host.name!r}: {e}", self.where(var)) from None
            jump, ignored = _parse_ssh_args(args)
            if ignored:
                # a vaulted value is split and unquoted here: redacting it by value would miss it
                shown = "its options (not shown: the value is secret)" if isinstance(raw, Secret) else " ".join(ignored)
                self.warn(self.hide(f"{self.where(var)}: {var}: driftctl ignores {shown} "
                                    "(it connects with paramiko; use driftctl_* variables and driftctl's own "
                                    "settings)"))
            if jump:
                return jump
        return None


def _parse_ssh_args(args: list[str]) -> tuple[str | None, list[str]]:
    """The ProxyJump in an ssh argument list, and the arguments that mean nothing to driftctl."""
    jump: str | None = None
    ignored: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-J", "-o") and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif arg.startswith(("-J", "-o")) and len(arg) > 2:
            value, i = arg[2:], i + 1
        else:
            ignored.append(arg)
            i += 1
            continue
        if arg.startswith("-J"):
            jump = value
            continue
        key, _, option = value.replace("=", " ", 1).partition(" ")
        if key.lower() == "proxyjump" and option.strip():
            jump = option.strip()
        else:
            ignored.append(f"-o {value}")
    return jump, ignored


def build(host: HostVars, warn: Callable[[str], None]) -> ConnectionSpec:
    """The ConnectionSpec for ``host``; the address defaults to the host's name."""
    b = _Builder(host, warn)
    kwargs: dict[str, Any] = {}
    for setting in SETTINGS:
        for var in setting.names:
            if host.values.get(var) is not None:
                value = b.convert(var, host.values[var], setting.kind)
                if value is not None:
                    kwargs[setting.field] = value
                break
    if "proxy_jump" not in kwargs:
        jump = b.proxy_jump_from_ssh_args()
        if jump:
            kwargs["proxy_jump"] = jump
    method = host.values.get("ansible_become_method")
    if method is not None and str(b.render("ansible_become_method", method)) not in ("sudo", "ansible.builtin.sudo"):
        warn(f"{b.where('ansible_become_method')}: ansible_become_method {method!r} is not supported; "
             "driftctl becomes another user with sudo")
    kwargs.setdefault("address", host.name)
    if kwargs.get("transport") != "local":  # local: the address goes nowhere
        _check_address(b, kwargs["address"])
    return ConnectionSpec(**kwargs)


# an address that starts with '-' is an option to whatever gets it as an argument (`podman exec -l`
# is the latest container, `ssh -oProxyCommand=...` runs a command); blanks, control characters and
# shell metacharacters are in no host name, IP address or container name
_BAD_ADDRESS = re.compile(r"^-|[\s\x00-\x1f\x7f;|&$`<>()'\"\\*?!{}]")


def _check_address(b: _Builder, address: str) -> None:
    bad = _BAD_ADDRESS.search(address)
    if bad is None:
        return
    names = next(s.names for s in SETTINGS if s.field == "address")
    var = next((v for v in names if b.host.values.get(v) is not None), None)
    why = "starts with '-'" if bad.group() == "-" and bad.start() == 0 else f"holds {bad.group()!r}"
    what = f"{var} for host {b.host.name!r}" if var else f"host name {b.host.name!r} (its address)"
    raise InventoryError(b.hide(f"{what}: {address!r} is not a host name, IP address or container name: it {why}"),
                         b.where(var) if var else b.host.fallback,
                         "a script or template that builds addresses must not pass other text through")
