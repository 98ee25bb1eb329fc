"""Running podman for the test fleet: one place that builds argv, runs it and reports failures.

The fleet is test tooling, so its errors are FleetError (not driftctl's errors): they say what podman
answered and how to fix the machine, and pytest shows them as failures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Every container and image of the fleet carries this prefix: nothing else is ever stopped or removed.
PREFIX = "driftctl-fleet"
BASE_IMAGE = "localhost/driftctl-base:bookworm"
FLEET_IMAGE = "localhost/driftctl-fleet:latest"

LABEL_FLEET = "driftctl.fleet"  # the fleet id: "main" for the CLI fleet, a per-session id in tests
LABEL_HOST = "driftctl.host"  # the inventory name inside the fleet (fleet1, ...)
LABEL_OWNER = "driftctl.owner"  # "<pid>:<start time>" of the test session; absent for the CLI fleet
LABEL_RECIPE = "driftctl.recipe"  # sha256 of what an image was built from
LABEL_BUILT = "driftctl.built"  # unix time of the build

# runc and modest ulimits: crun fails on this machine's hybrid cgroups and raising rlimits is refused.
# /etc/containers/containers.conf says the same (scripts/setup writes it); passing them here too keeps
# the fleet working on a machine where it is missing.
RUNTIME_ARGS = ["--runtime", "runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


class FleetError(RuntimeError):
    """The fleet could not be built, started, reached or removed."""


@dataclass
class PodmanResult:
    argv: list[str]
    rc: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace").strip()


def podman_path() -> str:
    path = shutil.which("podman")
    if path is None:
        raise FleetError("podman is not installed (run scripts/setup, or: apt-get install -y podman runc)")
    return path


def podman(
    args: Sequence[str],
    *,
    stdin: bytes | None = None,
    timeout: float | None = 300,
    check: bool = True,
) -> PodmanResult:
    """Run ``podman ARGS``; with ``check`` a non-zero exit raises FleetError naming the command."""
    argv = [podman_path(), *args]
    try:
        proc = subprocess.run(
            argv,
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise FleetError(f"podman {' '.join(args[:3])} timed out after {timeout} s") from e
    result = PodmanResult(argv, proc.returncode, proc.stdout, proc.stderr)
    if check and not result.ok:
        raise FleetError(f"podman {' '.join(args[:4])} failed (exit {result.rc}): {result.err}")
    return result


def podman_json(args: Sequence[str]) -> Any:
    out = podman(args).text.strip()
    return json.loads(out) if out else []


def list_containers(*label_filters: str) -> list[dict[str, Any]]:
    """Containers (running or not) whose labels match every ``key=value`` filter, as podman's JSON."""
    args = ["ps", "-a", "--format", "json"]
    for f in label_filters:
        args += ["--filter", f"label={f}"]
    found = podman_json(args)
    # Belt and braces: whatever the filters say, only containers with our prefix are ours to touch.
    return [c for c in found if any(n.startswith(PREFIX + "-") for n in c.get("Names", []))]


def container_name(c: dict[str, Any]) -> str:
    return str(c["Names"][0])


def published_ssh_port(c: dict[str, Any]) -> int | None:
    """The host port podman published for the container's port 22 (from ``podman ps`` JSON)."""
    for p in c.get("Ports") or []:
        if p.get("container_port") == 22 and p.get("host_port"):
            return int(p["host_port"])
    return None


def remove_containers(names: Sequence[str]) -> None:
    """Remove these containers (forcefully, no grace period: they are throwaway test hosts)."""
    names = [n for n in names if n.startswith(PREFIX + "-")]
    if names:
        podman(["rm", "-f", "-t", "0", "--ignore", *names], timeout=120)


def process_start_time(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot), to tell a live owner from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def owner_label(pid: int | None = None) -> str:
    pid = pid if pid is not None else os.getpid()
    return f"{pid}:{process_start_time(pid) or '?'}"


def owner_alive(label: str) -> bool:
    pid_text, _, start = label.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    return process_start_time(pid) == start
