"""Scheduled pulls (``schedule install --pull``), the pure parts: unit files (checked by the real
``systemd-analyze verify``), the /etc/cron.d line and its per-host delay, and the mistakes refused
before anything is written. On real hosts: tests/fleet/test_bundle_fleet.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from driftctl.errors import ConfigError
from driftctl.schedule import (
    host_delay,
    install_pull_cron,
    install_systemd,
    list_pull_cron,
    list_systemd,
    make_pull_job,
    parse_splay,
    pull_cron_file,
    pull_unit_files,
    remove_pull_cron,
    remove_systemd,
)
from driftctl.schemas import validator

REPO = Path(__file__).resolve().parents[2]
URL = "https://git.example.com/infra.git"


def job(**kw: object):  # type: ignore[no-untyped-def]
    args = {"source": URL, "every": "30m", "splay": "10m"}
    args.update(kw)
    return make_pull_job(args.pop("source"), args.pop("every"), args.pop("splay"), **args)  # type: ignore[arg-type]


def test_service_runs_the_pull_with_its_options_and_counts_2_and_75_as_success() -> None:
    j = job(ref="release", host="web01", inventory="inventory/prod", manifests="site", mode="check",
            verify_keys=["/etc/driftctl/keys.asc"], cache_dir="/var/cache/pull")
    service = pull_unit_files(j)["driftctl-pull.service"]
    assert service.startswith("# driftctl-schedule: pull every=30m splay=10m kind=pull\n")
    exec_start = re.search(r"^ExecStart=(.*)$", service, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert exec_start == (f"/usr/local/bin/driftctl pull {URL} --ref release --host web01 -i inventory/prod -m site "
                          "--check --verify-commit /etc/driftctl/keys.asc --cache-dir /var/cache/pull")
    assert "Type=oneshot" in service and "SuccessExitStatus=2 75" in service
    assert "After=network-online.target" in service and "NO_COLOR=1" in service


def test_timer_at_crons_minutes_with_a_random_splay_and_persistent() -> None:
    timer = pull_unit_files(job())["driftctl-pull.timer"]
    assert re.search(r"^OnCalendar=\*-\*-\* \*:\d\d/30:00$", timer, re.MULTILINE), timer
    assert "Persistent=true" in timer and "RandomizedDelaySec=600s" in timer
    assert "Unit=driftctl-pull.service" in timer and "WantedBy=timers.target" in timer


def test_uneven_interval_counts_from_the_last_run_and_no_splay_means_no_delay() -> None:
    timer = pull_unit_files(job(every="7m", splay=None))["driftctl-pull.timer"]
    assert "OnUnitActiveSec=420s" in timer and "OnCalendar" not in timer
    assert "RandomizedDelaySec" not in timer
    assert parse_splay("0") is None and parse_splay(None) is None


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_pass_systemd_analyze_verify_and_list_and_remove(tmp_path: Path) -> None:
    # verify wants the executable to exist: this Python stands in for the bundle's wrapper
    j = job(source="/srv/repo with space.git", host="db01", executable=(sys.executable, "-m", "driftctl"))
    tmp_path = tmp_path / "units"
    result = install_systemd(j, tmp_path)  # raises when systemd-analyze rejects them
    assert result.verified and not result.enabled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["driftctl-pull.service", "driftctl-pull.timer"]
    assert '"/srv/repo with space.git"' in (tmp_path / "driftctl-pull.service").read_text()
    [listed] = list_systemd(tmp_path)
    assert (listed.name, listed.every, listed.extra) == ("pull", "30m", {"splay": "10m", "pull": "true"})
    assert remove_systemd("pull", tmp_path) and list(tmp_path.iterdir()) == []


def test_cron_file_waits_a_stable_per_host_delay(tmp_path: Path) -> None:
    j = job(host="web01", log_dir=tmp_path / "log")
    text = pull_cron_file(j, "web01")
    marker, note, line = text.splitlines()
    assert marker == "# driftctl-schedule: pull every=30m splay=10m kind=pull"
    delay = host_delay("web01", parse_splay("10m"))
    assert note == f"# host web01: {delay}s after the minute (splay 10m)"
    fields = line.split(None, 6)
    assert re.fullmatch(r"(\d+-59/30|\*/30)", fields[0]) and fields[1:5] == ["*", "*", "*", "*"]
    assert fields[5] == "root"
    assert f"sleep {delay}; " in line and f">>{tmp_path}/log/pull.log" in line
    assert "\\%Y-\\%m-\\%dT" in line  # crontab(5): % escaped
    assert line.endswith('; rc=$?; echo "=== exit $rc"; exit $rc')


def test_the_delay_is_stable_within_the_splay_and_spreads_hosts() -> None:
    splay = parse_splay("10m")
    delays = [host_delay(f"web{i:02d}", splay) for i in range(200)]
    assert delays == [host_delay(f"web{i:02d}", splay) for i in range(200)]
    assert all(0 <= d < 600 for d in delays)
    assert len(set(delays)) > 150 and min(delays) < 60 and max(delays) > 540
    assert host_delay("web01", None) == 0


def test_the_cron_line_runs_as_sh_runs_it(tmp_path: Path) -> None:
    """The line's command, as cron hands it to /bin/sh, runs a stand-in driftctl with the pull's argv."""
    fake = tmp_path / "driftctl"
    fake.write_text('#!/bin/sh\nprintf "%s|" "$@"\nexit 2\n')
    fake.chmod(0o755)
    j = job(splay=None, host="h1", ref="main", log_dir=tmp_path / "log", executable=(str(fake),))
    line = pull_cron_file(j, "h1").splitlines()[-1].split(None, 6)[6]
    command = line.replace("\\%", "%")
    (tmp_path / "log").mkdir()
    rc = subprocess.run(["/bin/sh", "-c", command], env={"PATH": "/usr/bin:/bin"}, timeout=60).returncode
    assert rc == 2
    log = (tmp_path / "log" / "pull.log").read_text()
    assert f"pull|{URL}|--ref|main|--host|h1|" in log and "=== exit 2" in log
    assert re.search(r"^=== \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ driftctl-schedule pull$", log, re.MULTILINE)


def test_cron_files_install_list_remove(tmp_path: Path) -> None:
    cron_dir = tmp_path / "cron.d"
    cron_dir.mkdir()
    (cron_dir / "driftctl-other").write_text("# someone else's\n* * * * * root true\n")
    path = install_pull_cron(job(log_dir=tmp_path / "log"), "web01", cron_dir)
    assert path == cron_dir / "driftctl-pull" and oct(path.stat().st_mode & 0o777) == "0o644"
    assert (tmp_path / "log").is_dir()
    [listed] = list_pull_cron(cron_dir)
    assert (listed.name, listed.kind, listed.every, listed.extra["splay"]) == ("pull", "cron", "30m", "10m")
    assert listed.command.startswith("exec >>")
    assert remove_pull_cron("other", cron_dir) is None  # not ours: kept
    assert remove_pull_cron("pull", cron_dir) == path and not path.exists()
    assert (cron_dir / "driftctl-other").exists()


@pytest.mark.parametrize(("kw", "message"), [
    ({"every": "7x"}, "write a number and a unit"),
    ({"splay": "soon"}, "--splay: 'soon'"),
    ({"splay": "1h"}, "1h is longer than --every 30m"),
    ({"mode": "check", "only_if_changed": True}, "--only-if-changed and --check exclude each other"),
    ({"source": ""}, "--pull needs the repository"),
    ({"source": "--ref"}, "a repository, not an option"),
    ({"ref": "main\nevil"}, "one line"),
    ({"vault_ids": ["prod@prompt"]}, "nobody to answer a prompt"),
    ({"name": "../x"}, "--name"),
    # a token would be in a cron file or unit anyone on the host reads
    ({"source": "https://deploy:glpat-s3cret@git.example.com/infra.git"}, "holds a password or token"),
])
def test_mistakes_are_input_errors(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        job(**kw)


def test_cron_refuses_a_name_cron_would_ignore() -> None:
    with pytest.raises(ConfigError, match=re.escape("cron ignores /etc/cron.d files with dots")):
        pull_cron_file(job(name="pull.prod"), "h")


def test_a_local_repository_is_pinned_by_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert job(source="repo.git").source == str(tmp_path / "repo.git")
    assert job(source="git@example.com:infra.git").source == "git@example.com:infra.git"


# -- the command line --------------------------------------------------------------------------------


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "DRIFTCTL_STATE_DIR": str(cwd / "state")}
    return subprocess.run([sys.executable, "-m", "driftctl", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_schedule_install_pull_writes_the_units_and_list_shows_the_splay(tmp_path: Path) -> None:
    units = tmp_path / "units"
    r = cli("schedule", "install", "--pull", URL, "--every", "1h", "--splay", "15m", "--host", "web01",
            "--drift", "--unit-dir", str(units), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"wrote {units}/driftctl-pull.service" in r.stdout and "not enabled" in r.stderr
    service = (units / "driftctl-pull.service").read_text()
    assert f" pull {URL} --host web01 --drift\n" in service
    r = cli("schedule", "list", "--unit-dir", str(units), cwd=tmp_path)
    assert "pull  systemd  every 1h splay 15m" in r.stdout, r.stdout
    r = cli("schedule", "list", "--unit-dir", str(units), "--json", cwd=tmp_path)
    found = [s for s in json.loads(r.stdout) if s["where"].startswith(str(units))]
    validator("schedule-list").validate(found)
    assert [(s["name"], s["extra"]) for s in found] == [("pull", {"splay": "15m", "pull": "true"})]


@pytest.mark.parametrize(("args", "message"), [
    (["inv", "--pull", URL], "--pull schedules a pull of this host; INVENTORY: only for scheduled drift runs"),
    (["--pull", URL, "--remediate"], "--remediate: only for scheduled drift runs"),
    (["inv", "--splay", "5m"], "--splay: only for a scheduled pull (--pull SOURCE)"),
    (["inv", "--check"], "--check/--drift: only for a scheduled pull"),
    ([], "give the INVENTORY to run drift on, or --pull SOURCE"),
    (["--pull", URL, "--cron", "--systemd"], "--systemd and --cron exclude each other"),
    (["--pull", URL, "--ask-vault-pass"], "nobody to answer a prompt"),
])
def test_schedule_install_mistakes_exit_1_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    r = cli("schedule", "install", "--every", "30m", *args, "--unit-dir", str(tmp_path / "units"), cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert message in r.stderr
    assert not (tmp_path / "units").exists()
