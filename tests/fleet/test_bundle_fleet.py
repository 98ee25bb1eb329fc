"""The bundle on real hosts: ``driftctl bundle -o`` runs with a host's own python3 (never importing an SSH
or crypto library), ``driftctl bundle install`` puts it and its pull timer on a fresh systemd host over
SSH, a second install changes nothing, the timer's service started by systemd runs a pull, a manual pull
during the timer's pull gets 75, ``--cron`` replaces the timer by /etc/cron.d, and ``bundle remove`` takes
away everything install wrote. The hosts are checked through podman exec (files, modes, ``systemctl``),
never with driftctl's own code.
"""

from __future__ import annotations

import hashlib
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2ehelp import CLIResult, driftctl, write_inventory

from driftctl.schemas import validator

PYZ = "/usr/local/lib/driftctl/driftctl.pyz"
WRAPPER = "/usr/local/bin/driftctl"
REPO = "/srv/infra.git"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "driftctl.pyz"
    r = driftctl("bundle", "-o", out, state_dir=out.parent / "state")
    assert r.rc == 0, r.output
    assert out.stat().st_size > 0 and "runs with python3 >= 3." in r.stdout
    return out


def sh(host: Any, script: str, ok: bool = True) -> str:
    r = host.sh(script)
    if ok:
        assert r.rc == 0, f"{script}\nexit {r.rc}\n{r.stdout_text}\n{r.stderr_text}"
    return r.stdout_text


def put(host: Any, path: str, data: bytes) -> None:
    r = host.exec(["sh", "-c", f"cat > {shlex.quote(path)}"], stdin=data)
    assert r.rc == 0, r.stderr_text


def test_the_bundle_runs_with_the_hosts_python3_and_never_imports_ssh_or_crypto(fleet: Any, bundle: Path) -> None:
    host = fleet.hosts[0]
    put(host, "/var/tmp/test-driftctl.pyz", bundle.read_bytes())
    try:
        version = sh(host, "python3 -I /var/tmp/test-driftctl.pyz --version")
        assert version.startswith("driftctl, version ")
        r = host.sh("python3 -I -X importtime /var/tmp/test-driftctl.pyz pull --help")
        assert r.rc == 0, r.stderr_text
        assert "Usage: driftctl pull [OPTIONS] SOURCE" in r.stdout_text
        imported = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr_text.splitlines()
                    if line.startswith("import time:")}
        assert "driftctl" in imported and "click" in imported
        assert not imported & {"paramiko", "cryptography", "bcrypt", "nacl", "_yaml"}, imported
        # every module came from the archive, none from the host's own site-packages
        where = sh(host, "python3 -I -c 'import sys; sys.path.insert(0, sys.argv[1]); import driftctl.cli, "
                         "jinja2, yaml, rich, click, markupsafe; "
                         "print(*[m.__file__ for m in (driftctl, jinja2, yaml, rich, click, markupsafe)])' "
                         "/var/tmp/test-driftctl.pyz")
        assert all(p.startswith("/var/tmp/test-driftctl.pyz/") for p in where.split()), where
    finally:
        host.sh("rm -f /var/tmp/test-driftctl.pyz")


def test_a_vaulted_value_on_a_host_without_cryptography_is_a_clear_error(fleet: Any, bundle: Path) -> None:
    """The host's python3 has no cryptography (not in the bundle: compiled): a pull meeting a vaulted value
    says what to install, exit 1, nothing changed; the same pull without one works."""
    from driftctl.vault import encrypt_string

    host = fleet.hosts[0]
    assert host.sh("python3 -c 'import cryptography'").rc != 0, "this test needs a host without cryptography"
    tmp = "/var/tmp/test-bundle-vault"
    put(host, f"{tmp}.pyz", bundle.read_bytes())
    secret = encrypt_string("db_password", "hunter2", "vault-pass")
    files = {
        "inventory/hosts.yaml": f"all:\n  hosts:\n    {host.name}: {{}}\n",
        "inventory/host_vars/" + host.name + ".yaml": secret,
        "manifests/site.yaml": "- hosts: all\n  manifests: [m.yaml]\n",
        "manifests/m.yaml": f"resources:\n    - file: {tmp}-out\n      content: \"x\\n\"\n",
    }
    script = ["set -e", f"rm -rf {tmp}", f"mkdir -p {tmp}", f"cd {tmp}", "git init -q"]
    for path, text in files.items():
        script += [f"mkdir -p {shlex.quote(str(Path(path).parent))}", f"printf %s {shlex.quote(text)} > {path}"]
    script += ["git add -A", "git -c user.email=t@example.com -c user.name=t commit -q -m v",
               "printf %s vault-pass > /var/tmp/test-bundle-vault.pass", "chmod 600 /var/tmp/test-bundle-vault.pass"]
    try:
        sh(host, "\n".join(script))
        r = host.sh(f"python3 -I {tmp}.pyz pull {tmp} --host {host.name} --cache-dir {tmp}-cache "
                    f"--vault-password-file {tmp}.pass")
        assert r.rc == 1, r.stdout_text + r.stderr_text
        assert "vaulted values need the cryptography library in this host's python3" in r.stderr_text
        assert "apt-get install python3-cryptography" in r.stderr_text
        assert "Traceback" not in r.stderr_text
        assert host.sh(f"test -e {tmp}-out").rc != 0
    finally:
        host.sh(f"rm -rf {tmp} {tmp}.pyz {tmp}.pass {tmp}-cache {tmp}-out")


# -- install, schedule, pull, remove on a fresh host ---------------------------------------------------------


def make_repo(host: Any, marker_text: str, sleep: int = 0) -> None:
    """A bare repository on the host with an inventory naming it and a manifest writing /etc/pulled-by-timer
    (and, with ``sleep``, an exec that touches /run/pull-started and holds the apply until /run/pull-release
    exists, for ``sleep`` seconds at most)."""
    slow = ("    - exec: hold\n      command: sh -c 'touch /run/pull-started; i=0; while [ ! -e /run/pull-release ]"
            f" && [ $i -lt {sleep * 10} ]; do sleep 0.1; i=$((i+1)); done'\n" if sleep else "")
    files = {
        "inventory/hosts.yaml": f"all:\n  hosts:\n    {host.name}: {{}}\n",
        "manifests/site.yaml": "- hosts: all\n  manifests: [pulled.yaml]\n",
        "manifests/pulled.yaml": f"resources:\n    - file: /etc/pulled-by-timer\n      content: \"{marker_text}\\n\"\n"
                                 + slow,
    }
    script = ["set -e", f"rm -rf {REPO} /var/tmp/work", f"git init -q --bare {REPO}",
              "git init -q /var/tmp/work", "cd /var/tmp/work"]
    for path, text in files.items():
        script += [f"mkdir -p {shlex.quote(str(Path(path).parent))}",
                   f"printf %s {shlex.quote(text)} > {shlex.quote(path)}"]
    script += ["git add -A", "git -c user.email=t@example.com -c user.name=t commit -q -m infra",
               f"git push -q {REPO} HEAD:refs/heads/main", f"git -C {REPO} symbolic-ref HEAD refs/heads/main"]
    sh(host, "\n".join(script))


def bundle_cli(*args: Any, tmp_path: Path, inventory: Path) -> CLIResult:
    return driftctl("bundle", *args, inventory, state_dir=tmp_path / "state")


def installed(host: Any) -> dict[str, str]:
    """path -> "mode owner:group" of what bundle install may have written (absent paths left out)."""
    paths = ["/usr/local/lib/driftctl", PYZ, WRAPPER, "/etc/systemd/system/driftctl-pull.service",
             "/etc/systemd/system/driftctl-pull.timer", "/etc/cron.d/driftctl-pull"]
    out = sh(host, f"for p in {' '.join(paths)}; do [ -e $p ] && stat -c '%n %a %U:%G' $p; done; true")
    return {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines()}


@pytest.mark.slow
def test_install_twice_run_the_timers_pull_then_cron_then_remove(fresh_host: Any, bundle: Path, tmp_path: Path) -> None:
    host = fresh_host
    inventory = write_inventory(tmp_path / "inv", [host])
    make_repo(host, "converged by a timer's pull")

    r = bundle_cli("install", "--bundle", bundle, "--source", REPO, "--ref", "main", "--every", "30m", "--splay",
                   "10m", tmp_path=tmp_path, inventory=inventory)
    assert r.rc == 2, r.output  # changes made
    assert installed(host) == {
        "/usr/local/lib/driftctl": "755 root:root", PYZ: "644 root:root", WRAPPER: "755 root:root",
        "/etc/systemd/system/driftctl-pull.service": "644 root:root",
        "/etc/systemd/system/driftctl-pull.timer": "644 root:root",
    }
    assert sh(host, f"sha256sum < {PYZ}").split()[0] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert sh(host, "systemctl is-enabled driftctl-pull.timer").strip() == "enabled"
    assert sh(host, "systemctl is-active driftctl-pull.timer").strip() == "active"
    timers = sh(host, "systemctl list-timers --all --no-legend driftctl-pull.timer")
    assert "driftctl-pull.timer" in timers and "driftctl-pull.service" in timers
    timer = sh(host, "systemctl cat driftctl-pull.timer")
    assert "RandomizedDelaySec=600s" in timer and "Persistent=true" in timer and "OnCalendar=" in timer
    exec_start = sh(host, "systemctl show -p ExecStart --value driftctl-pull.service")
    assert f"path={WRAPPER}" in exec_start.replace(" ", "") or WRAPPER in exec_start
    assert f"pull {REPO} --ref main --host {host.name}" in sh(host, "systemctl cat driftctl-pull.service")
    assert sh(host, "driftctl --version").startswith("driftctl, version ")  # the wrapper on root's PATH

    again = bundle_cli("install", "--bundle", bundle, "--source", REPO, "--ref", "main", "--every", "30m",
                       "--splay", "10m", tmp_path=tmp_path, inventory=inventory)
    assert again.rc == 0, again.output
    assert "bundle install: no changes" in again.stdout

    # the timer's service, started by systemd, runs the pull: the repository's manifest is applied
    assert host.sh("test -e /etc/pulled-by-timer").rc != 0
    started = host.sh("systemctl start driftctl-pull.service")  # oneshot: returns when the pull is done
    journal = sh(host, "journalctl -u driftctl-pull.service --no-pager -o cat")
    assert started.rc == 0, journal
    assert sh(host, "cat /etc/pulled-by-timer") == "converged by a timer's pull\n", journal
    result = sh(host, "systemctl show -p Result --value driftctl-pull.service").strip()
    assert result == "success", journal
    # a whole pull (read-only here) imports no SSH library (cryptography: only the bundle's stand-in)
    r = host.sh(f"python3 -I -X importtime {PYZ} pull {REPO} --ref main --host {host.name} --check")
    assert r.rc == 0, r.stderr_text[-3000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr_text.splitlines()
                if line.startswith("import time:")}
    assert "driftctl" in imported and not imported & {"paramiko", "bcrypt", "nacl"}, imported

    # --cron: the timer goes, /etc/cron.d/driftctl-pull comes, with this host's stable delay
    r = bundle_cli("install", "--bundle", bundle, "--source", REPO, "--ref", "main", "--every", "30m", "--splay",
                   "10m", "--cron", tmp_path=tmp_path, inventory=inventory)
    assert r.rc == 2, r.output
    now = installed(host)
    assert "/etc/systemd/system/driftctl-pull.timer" not in now and "/etc/cron.d/driftctl-pull" in now
    assert now["/etc/cron.d/driftctl-pull"] == "644 root:root"
    from driftctl.schedule import host_delay, parse_splay

    cron = sh(host, "cat /etc/cron.d/driftctl-pull")
    assert f"sleep {host_delay(host.name, parse_splay('10m'))};" in cron
    assert " root exec >>/var/log/driftctl/pull.log " in cron
    assert sh(host, "systemctl list-timers --all --no-legend 'driftctl-pull*'").strip() == ""
    listed = sh(host, "driftctl schedule list")
    assert "pull  cron  every 30m splay 10m" in listed, listed
    # without a splay, the line runs at once: run it as cron does (/bin/sh -c, a bare environment, \% -> %)
    r = bundle_cli("install", "--bundle", bundle, "--source", REPO, "--ref", "main", "--every", "30m", "--cron",
                   tmp_path=tmp_path, inventory=inventory)
    assert r.rc == 2, r.output
    line = sh(host, "grep -v '^#' /etc/cron.d/driftctl-pull").strip().split(None, 6)
    assert line[5] == "root" and "sleep" not in line[6]
    command = line[6].replace("\\%", "%")
    ran = host.exec(["env", "-i", "HOME=/root", "LOGNAME=root", "SHELL=/bin/sh", "PATH=/usr/bin:/bin", "/bin/sh",
                     "-c", command])
    log = sh(host, "cat /var/log/driftctl/pull.log")
    assert ran.rc == 0, log
    assert f"pull {REPO} at " in log and "=== exit 0" in log and "driftctl-schedule pull" in log, log

    r = bundle_cli("remove", tmp_path=tmp_path, inventory=inventory)
    assert r.rc == 2, r.output
    assert installed(host) == {}
    assert host.sh("command -v driftctl").rc != 0
    assert sh(host, "systemctl list-units --all --no-legend 'driftctl-pull*'").strip() == ""
    r = bundle_cli("remove", tmp_path=tmp_path, inventory=inventory)
    assert r.rc == 0 and "bundle remove: no changes" in r.stdout, r.output
    r = bundle_cli("remove", "--json", tmp_path=tmp_path, inventory=inventory)
    assert r.rc == 0, r.output
    validator("report").validate(r.json())  # the run report, as apply --json prints it
    assert [(h["name"], h["status"]) for h in r.json()["hosts"]] == [(host.name, "ok")]


@pytest.mark.slow
def test_a_manual_pull_during_the_timers_pull_gets_75(fresh_host: Any, bundle: Path, tmp_path: Path) -> None:
    host = fresh_host
    inventory = write_inventory(tmp_path / "inv", [host])
    make_repo(host, "slow pull", sleep=20)
    r = bundle_cli("install", "--bundle", bundle, "--source", REPO, "--every", "1h", tmp_path=tmp_path,
                   inventory=inventory)
    assert r.rc == 2, r.output
    sh(host, "rm -f /run/pull-started /run/pull-release; systemctl start --no-block driftctl-pull.service")
    deadline = time.monotonic() + 240
    while host.sh("test -e /run/pull-started").rc != 0:  # the timer's pull is applying: it holds the lock
        assert time.monotonic() < deadline, sh(host, "journalctl -u driftctl-pull.service --no-pager -o cat")
        time.sleep(0.5)
    manual = host.sh(f"driftctl pull {REPO} --host {host.name}")
    assert manual.rc == 75, manual.stdout_text + manual.stderr_text
    assert "lock" in manual.stderr_text
    # the timer's own pull finishes on its own and succeeds (released now: it held at most 20 s anyway)
    sh(host, "touch /run/pull-release")
    deadline = time.monotonic() + 240
    while sh(host, "systemctl show -p ActiveState --value driftctl-pull.service").strip() == "activating":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    journal = sh(host, "journalctl -u driftctl-pull.service --no-pager -o cat")
    assert sh(host, "systemctl show -p Result --value driftctl-pull.service").strip() == "success", journal
    assert sh(host, "cat /etc/pulled-by-timer") == "slow pull\n"


@pytest.mark.slow
def test_schedule_install_pull_on_the_host_itself(fresh_host: Any, bundle: Path, tmp_path: Path) -> None:
    """What `bundle install` does from the controller, by hand on the host: the same units."""
    host = fresh_host
    put(host, "/var/tmp/driftctl.pyz", bundle.read_bytes())
    run = "python3 -I /var/tmp/driftctl.pyz"
    out = sh(host, f"{run} schedule install --pull {REPO} --every 15m --splay 5m --host {host.name} --check")
    assert "driftctl-pull.timer enabled and started" in out, out
    timer = sh(host, "systemctl cat driftctl-pull.timer")
    assert "RandomizedDelaySec=300s" in timer and "Persistent=true" in timer
    service = sh(host, "systemctl cat driftctl-pull.service")
    # no wrapper installed: the schedule runs this very archive with its python3
    assert f"ExecStart=/usr/bin/python3 -I /var/tmp/driftctl.pyz pull {REPO} --host {host.name} --check" in service
    assert sh(host, "systemctl is-active driftctl-pull.timer").strip() == "active"
    listed = sh(host, f"{run} schedule list")
    assert "pull  systemd  every 15m splay 5m" in listed and "(enabled)" in listed, listed

    out = sh(host, f"{run} schedule install --pull {REPO} --every 15m --splay 5m --host {host.name} --cron "
                   "--name pull-cron")
    assert "/etc/cron.d/driftctl-pull-cron" in out
    assert sh(host, "stat -c '%a %U' /etc/cron.d/driftctl-pull-cron").strip() == "644 root"

    for name in ("pull", "pull-cron"):
        sh(host, f"{run} schedule remove {name}")
    assert host.sh("ls /etc/cron.d/driftctl-* /etc/systemd/system/driftctl-*").rc != 0
    assert sh(host, "systemctl list-timers --all --no-legend 'driftctl-pull*'").strip() == ""
    r = host.sh(f"{run} schedule remove pull")
    assert r.rc == 1 and "no schedule named pull" in r.stderr_text
