"""Every example of ``driftctl COMMAND --help`` (driftctl/cli/examples.py) run as written, in a shell,
against the repository's demo site (inventory/prod, manifests/), so an example that names a group,
option or file the demo does not have is caught, not only one that click cannot parse
(tests/unit/test_cli_help.py).

No traffic leaves loopback: the copy of inventory/prod has every host at 127.0.0.1 port 1 (refused at
once) and no proxy jump, checked with ``driftctl inventory --json`` before anything runs. So the
commands that contact hosts get as far as connecting: their exit is "unreachable" (8), never an input
error (1) or a usage error (2). ``crontab`` is a stand-in on PATH, HOME is the test's own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from e2ehelp import REPO

from driftctl.cli.examples import EXAMPLES, ROOT_EXAMPLES, split_example

# examples that need what a test cannot have: a base image from a registry, an image, systemd units
# installed on this machine, a report directory written outside the test's tree (schedule install only
# puts --report-dir into the crontab line: it runs)
NOT_RUN = ("driftctl bake ", "driftctl bake-verify ", "driftctl compare ", "--systemd",
           "driftctl drift inventory/prod --report-dir", "COMMAND",
           # run on a host, as root: a git source and /var/lib/driftctl/pull, units or /etc/cron.d here
           "driftctl pull ", "schedule install --pull",
           # a broker and workers (tests/distributed/ runs them)
           "driftctl worker", "--executor celery")
# examples that refer, on purpose, to what the demo store or site does not have; the error they give
ILLUSTRATIVE = {
    "driftctl report inventory/prod -f junit --run 42 -o drift.xml": "no run 42 in",
    # the demo's hosts are unreachable, so the plan saved by the plan example holds no host to apply
    "driftctl apply release.plan": "the plan has no host to apply",
}
UNREACHABLE = 8


def examples() -> list[str]:
    lines = [*ROOT_EXAMPLES, *(line for group in EXAMPLES.values() for line in group)]
    out = []
    for line in lines:
        command = split_example(line)[0]
        if not any(skip in command for skip in NOT_RUN) and command not in out:
            out.append(command)
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("examples")
    work = root / "work"
    shutil.copytree(REPO / "inventory" / "prod", work / "inventory" / "prod")
    shutil.copytree(REPO / "manifests", work / "manifests")
    shutil.copytree(REPO / "manifests", root / "site" / "manifests")  # plan -m ../site/manifests
    hosts = work / "inventory" / "prod" / "hosts.yaml"
    text = re.sub(r"ansible_host: .*", "ansible_host: 127.0.0.1", hosts.read_text())
    hosts.write_text(re.sub(r"ansible_port: .*", "ansible_port: 1", text))
    for path in (work / "inventory" / "prod" / "group_vars").rglob("*.y*ml"):
        path.write_text(re.sub(r"(?m)^driftctl_proxy_jump:.*$", "", path.read_text()))
    with (work / "inventory" / "prod" / "group_vars" / "all.yaml").open("a") as f:
        f.write("\nansible_host: 127.0.0.1\nansible_port: 1\n")
    home, fake = root / "home", root / "bin"
    for d in (home / ".local/share/bash-completion/completions", home / ".zfunc", home / ".config/fish/completions",
              fake):
        d.mkdir(parents=True)
    table = root / "crontab.txt"
    (fake / "crontab").write_text(
        f'#!/bin/sh\nf="{table}"\ncase "$1" in\n'
        '  -l) if [ -f "$f" ]; then cat "$f"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;\n'
        '  -) cat > "$f" ;;\n  *) echo "unexpected: $*" >&2; exit 2 ;;\nesac\n')
    (fake / "crontab").chmod(0o755)
    (fake / "driftctl").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m driftctl "$@"\n')
    (fake / "driftctl").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
    env.update(PATH=f"{fake}:{env['PATH']}", HOME=str(home), NO_COLOR="1", PYTHONPATH=str(REPO),
               DRIFTCTL_STATE_DIR=str(root / "state"), DRIFTCTL_CONNECT_TIMEOUT="5")
    shown = subprocess.run(["driftctl", "inventory", "inventory/prod", "--json"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    for name, host in json.loads(shown.stdout)["hosts"].items():
        conn = host["connection"]
        assert (conn["address"], conn["port"], conn["proxy_jump"]) == ("127.0.0.1", 1, None), name
    return work, env


@pytest.mark.parametrize("command", examples())
def test_the_example_runs_as_written_against_the_demo_site(demo: tuple[Path, dict[str, str]], command: str) -> None:
    work, env = demo
    if command.startswith(("driftctl ignore remove", "driftctl report")):
        # a rule 3 to remove, a drift run to report on: what the examples before them leave
        for i in range(3):
            subprocess.run(["driftctl", "ignore", "add", "inventory/prod", "--target", f"file:/etc/x{i}",
                            "--reason", "r", "--expires", "2099-01-01"], cwd=work, env=env, check=True,
                           capture_output=True, timeout=120)
        subprocess.run(["driftctl", "drift", "inventory/prod", "-l", "bastion*"], cwd=work, env=env,
                       capture_output=True, timeout=300)
    if command.startswith("driftctl schedule remove"):
        subprocess.run(["driftctl", "schedule", "install", "inventory/prod", "--every", "30m"], cwd=work, env=env,
                       check=True, capture_output=True, timeout=120)
    cwd = work
    if command.startswith("driftctl init"):  # into a directory of its own, as a new user would
        cwd = work.parent / f"init-{len(list(work.parent.glob('init-*')))}"
        cwd.mkdir()
    proc = subprocess.run(["bash", "-c", command.replace("~", env["HOME"])], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    said = proc.stderr.strip()[-600:]
    if command in ILLUSTRATIVE:
        assert ILLUSTRATIVE[command] in proc.stderr, said
        return
    assert proc.returncode in (0, 2, UNREACHABLE) or proc.returncode & UNREACHABLE, f"rc {proc.returncode}: {said}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert all("connection refused by 127.0.0.1:1" in line for line in errors), said
