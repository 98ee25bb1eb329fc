"""Helpers for end-to-end tests: run the CLI as a user types it, write inventories for fleet hosts,
and snapshot a host's filesystem independently of driftctl's code (through podman exec)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"


@dataclass
class CLIResult:
    rc: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli_env(state_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the CLI runs in: this one without DRIFTCTL_* settings, no colour, its own state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
    # a loaded test machine can take more than the default 10 s to finish an SSH handshake
    env.update({"DRIFTCTL_STATE_DIR": str(state_dir), "NO_COLOR": "1", "DRIFTCTL_CONNECT_TIMEOUT": "60",
                **(extra or {})})
    return env


def driftctl(*args: str | os.PathLike[str], state_dir: Path, cwd: Path = REPO, timeout: float = 900,
             env: dict[str, str] | None = None) -> CLIResult:
    """``driftctl ARGS`` in a subprocess: no TTY, no colour, its own state directory."""
    proc = subprocess.run(
        [sys.executable, "-m", "driftctl", *map(str, args)],
        cwd=cwd, env=cli_env(state_dir, env), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return CLIResult(proc.returncode, proc.stdout, proc.stderr)


def started(args: Sequence[str | os.PathLike[str]], state: Path, extra_env: dict[str, str] | None = None
            ) -> subprocess.Popen[str]:
    """``driftctl ARGS`` started in the background (as ``driftctl()`` runs it), for a test to signal."""
    return subprocess.Popen([sys.executable, "-m", "driftctl", *map(str, args)], cwd=REPO,
                            env=cli_env(state, extra_env), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def one_role_site(directory: Path, resources: str, role: str = "r") -> Path:
    """``directory/manifests``: a site.yaml giving every host one role, whose resources.yaml is
    ``resources`` (YAML text). Returns the manifests directory."""
    site = directory / "manifests"
    (site / "roles" / role).mkdir(parents=True)
    (site / "site.yaml").write_text(f"- hosts: all\n  roles: [{role}]\n")
    (site / "roles" / role / "resources.yaml").write_text(resources)
    return site


def write_inventory(directory: Path, hosts: Sequence[Any], host_vars: dict[str, str] | None = None,
                    all_vars: str = "") -> Path:
    """An Ansible-style inventory for fleet hosts; ``host_vars``/``all_vars`` are YAML texts."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["all:", "  hosts:"]
    for h in hosts:
        lines += [
            f"    {h.name}:",
            f"      ansible_host: {h.address}",
            f"      ansible_port: {h.port}",
            "      ansible_user: root",
            f"      ansible_ssh_private_key_file: {h.key_file}",
            f"      driftctl_known_hosts: {h.known_hosts}",
        ]
    (directory / "hosts.yaml").write_text("\n".join(lines) + "\n")
    if all_vars:
        (directory / "group_vars").mkdir(exist_ok=True)
        (directory / "group_vars" / "all.yaml").write_text(all_vars)
    for name, text in (host_vars or {}).items():
        (directory / "host_vars").mkdir(exist_ok=True)
        (directory / "host_vars" / f"{name}.yaml").write_text(text)
    return directory


SNAPSHOT_ROOTS = ("/etc", "/root", "/home", "/var/spool/cron", "/var/lib/driftctl", "/var/tmp", "/usr/local",
                  "/run/lock")


def snapshot(host: Any, roots: Sequence[str] = SNAPSHOT_ROOTS) -> str:
    """Every path under ``roots`` with type, mode, owner, size, mtime and content hash, via podman exec."""
    script = (
        "for r in " + " ".join(roots) + "; do [ -e \"$r\" ] || continue; "
        "find \"$r\" -xdev -printf '%p %y %m %u %g %s %T@ %l\\n'; "
        "find \"$r\" -xdev -type f -exec sha256sum {} + ; done 2>/dev/null | sort"
    )
    result = host.sh(script)
    assert result.stdout, f"empty snapshot of {host.name}: {result.stderr_text}"
    return result.stdout_text


def changes_of(doc: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(host, resource id) -> sorted changed fields, for every resource that changed."""
    out = {}
    for h in doc["hosts"]:
        for r in h["resources"]:
            if r["status"] == "changed":
                out[(h["name"], r["id"])] = sorted(c["field"] for c in r["changes"])
    return out


def agent_processes(host: Any) -> str:
    """Processes on the host that belong to a driftctl run (the agent, or the commands it started)."""
    r = host.sh("ps -eo pid,args | grep -E 'driftctl-agent|zlib.decompress|sleep [0-9]|/root/steps' "
                "| grep -v grep || true")
    return str(r.stdout_text).strip()


def assert_nothing_left(host: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (left := agent_processes(host)) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not left, f"still running on {host.name}:\n{left}"
