"""The agent's directory fsyncs: one per directory between two writes to the controller, and each
before the record that reports what it made durable.

A file's data is fsynced before its rename, so the name holds the old file or the whole new one after
a crash; the rename itself reaches the disk with its directory's fsync. That fsync now waits until the
agent next writes to the controller (records wait up to FLUSH_AFTER anyway), so a hundred files in ten
directories cost ten of them, not a hundred. Watched here with strace on the real agent, run by the
engine over the local transport: what the kernel was asked, in the order it was asked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from driftctl import config
from driftctl.engine import Engine
from driftctl.inventory import load_inventory
from driftctl.manifest import load_site
from driftctl.transport.base import TransportOptions


def _strace_works() -> bool:
    """strace is installed and may trace here (a container without ptrace cannot)."""
    if shutil.which("strace") is None:
        return False
    return subprocess.run(["strace", "-qq", "-o", "/dev/null", "true"], capture_output=True).returncode == 0


pytestmark = [pytest.mark.skipif(not _strace_works(), reason="needs strace that may trace (scripts/setup installs it)"),
              pytest.mark.applies_here]

DIRS, FILES = 3, 8  # files per directory

SYSCALL = re.compile(r"^(\d+) +(\w+)\((.*)$")
RESUMED = re.compile(r"^(\d+) +<\.\.\. (\w+) resumed>(.*)$")
FD = r"(\d+)<([^>]*)>"
RENAME = re.compile(rf'^{FD}, "([^"]*)", {FD}, "([^"]*)"')
MKDIR_OR_LINK = re.compile(rf'^(?:"[^"]*", )?{FD}, "([^"]*)"')  # mkdirat(fd, name) / symlinkat(target, fd, name)
FSYNC = re.compile(rf"^{FD}\)")


def traced_apply(tmp_path: Path) -> tuple[list[Call], Path]:
    """Apply a site of DIRS directories of FILES files each, a link and an unlink, with the agent run
    under strace; (the agent's calls as (name, arguments), in order; the target directory)."""
    target = tmp_path / "target"
    target.mkdir()
    (target / "old").write_text("to remove\n")
    log = tmp_path / "trace"
    wrapper = tmp_path / "python3-traced"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec strace -f -qq -y -s 65536 -o "{log}.$$" '
        "-e trace=fsync,write,rename,renameat,renameat2,mkdir,mkdirat,symlink,symlinkat,unlink,unlinkat "
        'python3 "$@"\n')
    wrapper.chmod(0o755)
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yaml").write_text(
        f"all:\n  hosts:\n    ctl:\n      driftctl_transport: local\n      driftctl_python: {wrapper}\n")
    site = tmp_path / "manifests"
    (site / "roles" / "r").mkdir(parents=True)
    (site / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    lines = ["resources:"]
    for d in range(DIRS):
        lines += [f"  - directory: {target}/d{d}"]
        lines += [f"  - file: {target}/d{d}/f{i}\n    content: \"file {d}.{i}\\n\"" for i in range(FILES)]
    lines += [f"  - symlink: {target}/link\n    target: d0/f0", f"  - file: {target}/old\n    ensure: absent"]
    (site / "roles" / "r" / "resources.yaml").write_text("\n".join(lines) + "\n")
    inventory = load_inventory(inv)
    settings = config.load({"state_dir": str(tmp_path / "state"), "backup_dir": str(tmp_path / "backup")})
    result = Engine(load_site(site), inventory, settings, TransportOptions()).run("apply", inventory.select(None))
    assert result.exit_code == 2, result.hosts[0].error
    assert (target / "d2" / f"f{FILES - 1}").read_text() == f"file 2.{FILES - 1}\n"
    assert not (target / "old").exists() and (target / "link").is_symlink()
    traces = [p for p in tmp_path.glob("trace.*") if "renameat" in p.read_text() or "rename(" in p.read_text()]
    assert len(traces) == 1, traces  # the apply's agent: the only one that wrote anything
    return parse(traces[0].read_text()), target


@dataclass
class Call:
    name: str
    args: str
    start: int  # where it began and ended among the lines: two threads' calls can interleave
    end: int


def parse(trace: str) -> list[Call]:
    """strace's lines as calls in the order they began; a call another thread interrupted (``<unfinished
    ...>``, then ``<... name resumed>``) is one call, begun at its first line and ended at its second."""
    calls: list[Call] = []
    pending: dict[str, Call] = {}
    for i, line in enumerate(trace.splitlines()):
        if m := RESUMED.match(line):
            call = pending.pop(m.group(1))
            call.args += m.group(3)
            call.end = i
        elif m := SYSCALL.match(line):
            call = Call(m.group(2), m.group(3), i, i)
            calls.append(call)
            if line.endswith("<unfinished ...>"):
                call.args = call.args[: -len("<unfinished ...>")].rstrip()
                pending[m.group(1)] = call
    return calls


def test_each_directory_is_fsynced_once_per_write_to_the_controller(tmp_path: Path) -> None:
    calls, target = traced_apply(tmp_path)
    synced_since_write: set[str] = set()
    dir_syncs = entries = 0
    for call in calls:
        name, args = call.name, call.args
        if name == "write" and args.startswith("1<"):
            synced_since_write.clear()
        elif name == "fsync":
            m = FSYNC.match(args)
            assert m, args
            path = m.group(2)
            if Path(path).is_dir():
                assert path not in synced_since_write, f"{path} fsynced twice before the controller heard"
                synced_since_write.add(path)
                dir_syncs += 1
        elif name.startswith(("rename", "mkdir", "symlink", "unlink")) and str(target) in args:
            entries += 1
    made = DIRS + DIRS * FILES + 2  # the directories, their files, the link, the removal
    assert entries >= made
    assert dir_syncs < made / 2, (dir_syncs, made)  # was one per entry


def test_what_a_record_reports_is_on_disk_before_the_record_leaves(tmp_path: Path) -> None:
    calls, target = traced_apply(tmp_path)
    made_in: dict[str, list[int]] = defaultdict(list)  # a directory -> when entries made in it were done
    synced: dict[str, list[Call]] = defaultdict(list)
    reported: dict[str, int] = {}  # a resource's path -> when the write to the controller reporting it began
    for call in calls:
        name, args = call.name, call.args
        if name.startswith("rename"):
            m = RENAME.match(args)
            assert m, args
            made_in[m.group(5)].append(call.end)
        elif name.startswith(("mkdir", "symlink", "unlink")):
            m = MKDIR_OR_LINK.match(args)
            if m:
                made_in[m.group(2)].append(call.end)
        elif name == "fsync":
            m = FSYNC.match(args)
            assert m, args
            synced[m.group(2)].append(call)
        elif name == "write" and args.startswith("1<"):
            for path in re.findall(r'\\"done\\":\\"(?:file|directory|symlink):([^\\]*)\\"', args):
                reported.setdefault(path, call.start)
    paths = [f"{target}/d{d}" for d in range(DIRS)]
    paths += [f"{target}/d{d}/f{i}" for d in range(DIRS) for i in range(FILES)]
    paths += [f"{target}/link", f"{target}/old"]
    assert sorted(reported) == sorted(paths)
    for path, told in reported.items():
        parent = str(Path(path).parent)
        made = [i for i in made_in[parent] if i < told]
        assert made, f"no entry made in {parent} before {path} was reported"
        assert any(made[-1] < s.start and s.end < told for s in synced[parent]), (
            f"{path} was reported before {parent} was fsynced after its last change")
