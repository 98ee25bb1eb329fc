"""``driftctl schedule`` against the real ``crontab`` command, and the installed line run as cron runs it.

Crontabs are those of a throwaway local user (``useradd``, removed afterwards, crontab included):
the machine's own crontabs are never touched. The installed line is then executed the way cron
executes it: the five time fields cut off, ``%`` handled as crontab(5) says, the crontab's variable
lines applied over cron's minimal environment (``env -i`` HOME, LOGNAME, SHELL=/bin/sh,
PATH=/usr/bin:/bin), ``$SHELL -c`` in a new session (``setsid``: no controlling terminal), stdin empty.
It runs as root, because this installation of driftctl lives under /root (mode 0700), which the
throwaway user cannot read.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2ehelp import driftctl, write_inventory
from prometheus_client.parser import text_string_to_metric_families

CRON_PATH = "/usr/bin:/bin"  # Debian cron's default PATH for user crontabs
SEED = (b"# my own jobs\nMAILTO=\"\"\n"
        b"0 5 * * * /usr/bin/backup --label 'nightly 50\\% off'   \n\n"
        b"# driftctl-schedule-notes: not a marker of ours\n@reboot echo hi\n")


def crontab(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which("crontab")
    assert exe, "crontab is missing: install cron (scripts/setup does)"
    return subprocess.run([exe, *args], input=stdin, capture_output=True, timeout=60, check=False,
                          env=dict(os.environ, LC_ALL="C"))


@pytest.fixture
def cron_user() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("these tests create a throwaway user: run them as root")
    name = f"driftctl-sched-{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-m", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        crontab("-u", name, "-r")  # userdel leaves the spool file behind
        subprocess.run(["userdel", "-r", name], capture_output=True, check=False)
    assert not Path("/var/spool/cron/crontabs", name).exists()


def table(user: str) -> bytes:
    p = crontab("-u", user, "-l")
    if p.returncode != 0 and b"no crontab" in p.stderr:
        return b""
    assert p.returncode == 0, p.stderr
    return p.stdout


@dataclass
class CronRun:
    rc: int
    stdout: bytes
    stderr: bytes


def entry_line(user: str, name: str) -> str:
    lines = table(user).decode().splitlines()
    i = lines.index(next(line for line in lines if line.startswith(f"# driftctl-schedule: {name} ")))
    return lines[i + 1]


def cron_environment(user_table: str, home: str, logname: str) -> dict[str, str]:
    """What cron gives a job: its minimal environment, then the crontab's NAME=value lines."""
    env = {"HOME": home, "LOGNAME": logname, "SHELL": "/bin/sh", "PATH": CRON_PATH}
    for line in user_table.splitlines():
        m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$", line)
        if m:
            value = m.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[m.group(1)] = value
    return env


def split_percent(command: str) -> tuple[str, str]:
    """crontab(5): an unescaped % ends the command, the rest (with % as newlines) is stdin; \\% is %."""
    out: list[str] = []
    escaped = False
    for i, ch in enumerate(command):
        if escaped:
            if ch == "%":
                out[-1] = "%"
            else:
                out.append(ch)
            escaped = False
            continue
        if ch == "%":
            return "".join(out), command[i + 1:].replace("%", "\n")
        escaped = ch == "\\"
        out.append(ch)
    return "".join(out), ""


def run_like_cron(line: str, user_table: str, timeout: float = 900) -> CronRun:
    fields = line.split(None, 5)
    assert len(fields) == 6, line
    command, stdin = split_percent(fields[5])
    root = pwd.getpwuid(0)
    env = cron_environment(user_table, root.pw_dir, root.pw_name)
    argv = ["setsid", "--wait", "env", "-i", *(f"{k}={v}" for k, v in env.items()), env["SHELL"], "-c", command]
    p = subprocess.run(argv, input=stdin.encode(), capture_output=True, timeout=timeout, check=False, cwd="/")
    return CronRun(p.returncode, p.stdout, p.stderr)


def project_with(tmp_path: Path, hosts_yaml: str | None = None, resources: str = "") -> Path:
    project = tmp_path / "proj ect"
    (project / "manifests").mkdir(parents=True)
    (project / "manifests" / "site.yaml").write_text("- hosts: all\n  manifests: [sched.yaml]\n")
    (project / "manifests" / "sched.yaml").write_text("resources:\n" + (resources or (
        "  - file: /etc/driftctl-sched-unused.conf\n    content: \"x\\n\"\n")))
    if hosts_yaml is not None:
        (project / "inv").mkdir()
        (project / "inv" / "hosts.yaml").write_text(hosts_yaml)
    return project


# -- crontab mechanics ----------------------------------------------------------------------------


def test_install_list_replace_remove_keep_other_lines(cron_user: str, tmp_path: Path) -> None:
    project = project_with(tmp_path, "all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n")
    state = tmp_path / "state"
    assert crontab("-u", cron_user, "-", stdin=SEED).returncode == 0
    seed = table(cron_user)

    def cli(*args: str) -> object:
        return driftctl("schedule", *args, state_dir=state, cwd=project)

    r = cli("install", "inv", "--every", "30m", "--name", "a", "--user", cron_user)
    assert r.rc == 0, r.output
    assert f"installed schedule a in the crontab of {cron_user}" in r.stdout
    r = cli("install", "inv", "--every", "7m", "--name", "b", "--user", cron_user)
    assert r.rc == 1 and "cron cannot run that evenly" in r.stderr
    r = cli("install", "inv", "--every", "1d", "--name", "b", "--remediate", "--user", cron_user)
    assert r.rc == 0, r.output
    after = table(cron_user)
    assert after.startswith(seed)
    added = after[len(seed):].decode().splitlines()
    assert [line for line in added if line.startswith("#")] == ["# driftctl-schedule: a every=30m",
                                                               "# driftctl-schedule: b every=1d"]
    assert len(added) == 4
    assert "--remediate" in added[3] and "--remediate" not in added[1]

    r = cli("install", "inv", "--every", "15m", "--name", "a", "--user", cron_user)
    assert r.rc == 0 and "replaced schedule a" in r.stdout
    after = table(cron_user)
    assert after.count(b"# driftctl-schedule: a ") == 1 and b"# driftctl-schedule: a every=15m" in after
    assert after.startswith(seed)

    r = cli("list", "--user", cron_user, "--json")
    assert r.rc == 0, r.output
    listed = r.json()
    assert [(s["name"], s["kind"], s["every"]) for s in listed] == [("b", "cron", "1d"), ("a", "cron", "15m")]
    a = listed[1]
    assert a["when"].endswith("* * * *") and a["when"].split()[0].endswith("/15")
    assert str(project / "manifests") in a["command"]  # shell-quoted absolute paths (the project has a space)

    assert cli("remove", "a", "--user", cron_user).rc == 0
    assert table(cron_user) == seed + "\n".join(added[2:]).encode() + b"\n"
    assert cli("remove", "b", "--user", cron_user).rc == 0
    assert table(cron_user) == seed
    r = cli("remove", "b", "--user", cron_user)
    assert r.rc == 1 and "no schedule named b" in r.stderr
    assert table(cron_user) == seed


def test_install_into_an_empty_crontab_and_list_nothing(cron_user: str, tmp_path: Path) -> None:
    project = project_with(tmp_path, "all:\n  hosts: {}\n")
    state = tmp_path / "state"
    r = driftctl("schedule", "list", "--user", cron_user, state_dir=state, cwd=project)
    assert r.rc == 0 and "no driftctl schedules" in r.stdout
    r = driftctl("schedule", "install", "inv", "--every", "1h", "--user", cron_user, state_dir=state, cwd=project)
    assert r.rc == 0, r.output
    assert table(cron_user).decode().startswith("# driftctl-schedule: drift-inv every=1h\n")
    assert (state / "logs").is_dir()


def test_concurrent_installs_lose_no_entry(cron_user: str, tmp_path: Path) -> None:
    # crontab does not lock: 16 simultaneous read-modify-writes kept 2 entries without driftctl's lock
    import threading

    from driftctl import schedule
    from driftctl.config import Settings

    project = project_with(tmp_path, "all:\n  hosts: {}\n")
    crontab("-u", cron_user, "-", stdin=SEED)
    seed = table(cron_user)
    jobs = [schedule.make_job(Path("inv"), "1h", Settings(state_dir=str(tmp_path / "state")), name=f"c{i}",
                              project_dir=project) for i in range(16)]
    errors: list[BaseException] = []

    def install(job: schedule.Job) -> None:
        try:
            schedule.install_cron(job, cron_user, lock_dir=tmp_path / "state" / "locks")
        except BaseException as e:  # collected: asserted empty below
            errors.append(e)

    threads = [threading.Thread(target=install, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    after = table(cron_user)
    assert after.startswith(seed)
    assert sorted(s.name for s in schedule.list_cron(cron_user)) == sorted(f"c{i}" for i in range(16))


# -- the installed line, run as cron runs it ------------------------------------------------------


ODD = "rep 'q' \"d\" $HOME `x` 100% ;x"


def test_installed_line_runs_under_cron_with_an_unreachable_host(cron_user: str, tmp_path: Path) -> None:
    # port 9 on loopback: nothing listens, the host is unreachable (exit 8), and no fleet is needed
    project = project_with(tmp_path, "all:\n  hosts:\n    lost1:\n      ansible_host: 127.0.0.1\n"
                                     "      ansible_port: 9\n      ansible_user: root\n")
    state, reports = tmp_path / "state", tmp_path / ODD
    crontab("-u", cron_user, "-", stdin=SEED + b"SHELL=/bin/bash\n")
    r = driftctl("schedule", "install", "inv", "--every", "5m", "--name", "lost", "--report-dir", str(reports),
                 "--user", cron_user, state_dir=state, cwd=project)
    assert r.rc == 0, r.output
    line = entry_line(cron_user, "lost")
    run = run_like_cron(line, table(cron_user).decode())
    assert run.rc == 8, (run.stdout, run.stderr, (state / "logs" / "lost.log").read_text())
    assert run.stdout == b"" and run.stderr == b""  # everything went to the log, nothing for cron to mail
    junit = ET.parse(reports / "driftctl-report.xml").getroot()
    assert (junit.get("tests"), junit.get("errors")) == ("1", "1")
    prom = (reports / "driftctl.prom").read_text()
    up = {s.labels["host"]: s.value for f in text_string_to_metric_families(prom) for s in f.samples
          if s.name == "driftctl_host_up"}
    assert up == {"lost1": 0}
    log = (state / "logs" / "lost.log").read_text()
    assert re.search(r"^=== \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ driftctl-schedule lost$", log, re.MULTILINE)
    assert log.rstrip().endswith("=== exit 8")
    assert "lost1" in log and "\x1b" not in log  # plain text: no colour, no cursor movement
    # the run is stored under the inventory as typed: `driftctl report inv` finds it from the project
    rep = driftctl("report", "inv", "-f", "json", state_dir=state, cwd=project)
    assert rep.rc == 0, rep.output
    assert rep.json()["hosts"][0]["status"] == "unreachable"


def test_scheduled_drift_against_the_fleet(cron_user: str, fleet: object, tmp_path: Path) -> None:
    hosts = fleet.hosts[:2]  # type: ignore[attr-defined]
    tag = uuid.uuid4().hex[:8]
    path = f"/etc/driftctl-sched-{tag}.conf"
    project = project_with(tmp_path, resources=(
        f"  - file: {path}\n    content: \"scheduled {{{{ inventory_hostname }}}}\\n\"\n    mode: \"0644\"\n"))
    write_inventory(project / "inv", hosts)
    state, reports = tmp_path / "state", tmp_path / "reports 100%"
    try:
        applied = driftctl("apply", "inv", state_dir=state, cwd=project)
        assert applied.rc == 2, applied.output
        victim = hosts[0]
        victim.exec(["sh", "-c", f"echo 'edited by hand' > {path}"])

        r = driftctl("schedule", "install", "inv", "--every", "30m", "--name", f"fleet-{tag}", "--report-dir",
                     str(reports), "--user", cron_user, state_dir=state, cwd=project)
        assert r.rc == 0, r.output
        run = run_like_cron(entry_line(cron_user, f"fleet-{tag}"), table(cron_user).decode())
        log = (state / "logs" / f"fleet-{tag}.log").read_text()
        assert run.rc == 2, log
        assert log.rstrip().endswith("=== exit 2") and "\x1b" not in log

        junit = ET.parse(reports / "driftctl-report.xml").getroot()
        failure = junit.find(f"testsuite[@name='{victim.name}']/testcase[@name='file:{path}']/failure")
        assert failure is not None and failure.get("type") == "corrective"
        assert "edited by hand" in failure.text
        other = junit.find(f"testsuite[@name='{hosts[1].name}']")
        assert other.get("failures") == "0" and other.get("tests") == "1"
        prom = (reports / "driftctl.prom").read_text()
        drifted = {(s.labels["host"], s.labels["class"]): s.value for f in text_string_to_metric_families(prom)
                   for s in f.samples if s.name == "driftctl_drifted_resources"}
        assert drifted[(victim.name, "corrective")] == 1
        assert drifted[(hosts[1].name, "corrective")] == 0
        doc = json.loads((reports / "driftctl-report.json").read_text())
        assert doc["exit_code"] == 2 and doc["inventory"] == "inv"
        assert "edited by hand" in (reports / "driftctl-report.html").read_text()

        # the same NAME re-installed with --remediate: the next run puts the file back
        r = driftctl("schedule", "install", "inv", "--every", "30m", "--name", f"fleet-{tag}", "--remediate",
                     "--user", cron_user, state_dir=state, cwd=project)
        assert r.rc == 0 and "replaced" in r.stdout
        run = run_like_cron(entry_line(cron_user, f"fleet-{tag}"), table(cron_user).decode())
        assert run.rc == 2, (state / "logs" / f"fleet-{tag}.log").read_text()
        fixed = victim.exec(["cat", path])
        assert fixed.stdout_text == f"scheduled {victim.name}\n"
    finally:
        for h in hosts:
            h.exec(["rm", "-f", path])


# -- the real cron daemon -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_real_cron_daemon_runs_the_installed_line(cron_user: str, tmp_path: Path) -> None:
    """Debian's cron itself, in a mount namespace of its own where the only crontab is our entry (the
    machine's /etc/crontab, /etc/cron.d and spool are hidden): it runs the line at the next minute.
    This checks the emulation above against the real thing (%, quoting, environment). Up to ~2 min."""
    cron = shutil.which("cron") or "/usr/sbin/cron"
    assert Path(cron).exists() and shutil.which("unshare"), "needs cron and util-linux's unshare"
    project = project_with(tmp_path, "all:\n  hosts:\n    lost1:\n      ansible_host: 127.0.0.1\n"
                                     "      ansible_port: 9\n      ansible_user: root\n")
    state, reports = tmp_path / "state", tmp_path / ODD
    r = driftctl("schedule", "install", "inv", "--every", "1m", "--name", "real", "--report-dir", str(reports),
                 "--user", cron_user, state_dir=state, cwd=project)
    assert r.rc == 0, r.output
    spool, empty = tmp_path / "spool", tmp_path / "empty"
    spool.mkdir()
    empty.mkdir()
    (tmp_path / "no-crontab").write_text("")
    # the user's table, run as root (this driftctl lives under /root, which the user cannot read)
    (spool / "root").write_bytes(b'MAILTO=""\n' + table(cron_user))
    (spool / "root").chmod(0o600)
    script = (f"mount --bind {shlex.quote(str(empty))} /etc/cron.d && "
              f"mount --bind {shlex.quote(str(tmp_path / 'no-crontab'))} /etc/crontab && "
              f"mount --bind {shlex.quote(str(spool))} /var/spool/cron/crontabs && "
              f"mount -t tmpfs tmpfs /run && exec {shlex.quote(cron)} -f")
    daemon = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    log = state / "logs" / "real.log"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and "=== exit" not in (log.read_text() if log.exists() else ""):
            assert daemon.poll() is None, daemon.stdout.read() if daemon.stdout else b""
            time.sleep(1)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    text = log.read_text()
    assert re.search(r"^=== \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ driftctl-schedule real$", text, re.MULTILINE), text
    assert "=== exit 8" in text and "\x1b" not in text
    junit = ET.parse(reports / "driftctl-report.xml").getroot()
    assert (junit.get("tests"), junit.get("errors")) == ("1", "1")
