"""Scheduling logic: intervals as cron fields (checked by expanding the fields independently over a
week), OnCalendar specs (checked by the real ``systemd-analyze calendar``), crontab editing that keeps
other lines byte for byte, and unit files checked by the real ``systemd-analyze verify``."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from driftctl import schedule
from driftctl.config import Settings
from driftctl.errors import ConfigError

NAMES = ("drift-prod", "a", "stage.eu-west", "x" * 64)
EVEN = ["1m", "2m", "5m", "10m", "15m", "20m", "30m", "60m", "1h", "2h", "3h", "4h", "6h", "8h", "12h", "24h",
        "1d", "7d", "1w"]
WEEK = 7 * 24 * 60


def expand(field: str, low: int, high: int) -> set[int]:
    """One cron field (``*``, ``*/n``, ``a-b/n``, ``a-b``, ``n``, lists) -> the values it matches."""
    out: set[int] = set()
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            start, end = (int(x) for x in part.split("-"))
        else:
            start = end = int(part)
        out.update(range(start, end + 1, step))
    return out


def fire_minutes(fields: str) -> list[int]:
    """Minutes of a week (Monday 00:00 = 0) at which cron runs an entry with these five fields."""
    minute, hour, dom, month, dow = fields.split()
    assert (dom, month) == ("*", "*")
    minutes, hours, days = expand(minute, 0, 59), expand(hour, 0, 23), expand(dow, 0, 6)
    days = {d % 7 for d in days}
    # minute m of the week falls on weekday (m // 1440 + 1) % 7 in cron's numbering (Sunday = 0)
    return [m for m in range(WEEK) if (m % 60) in minutes and (m // 60) % 24 in hours
            and ((m // 1440) + 1) % 7 in days]


@pytest.mark.parametrize("every", EVEN)
@pytest.mark.parametrize("name", NAMES)
def test_cron_fields_fire_exactly_every_interval(every: str, name: str) -> None:
    e = schedule.parse_every(every)
    fields = schedule.cron_schedule(e, name)
    fires = fire_minutes(fields)
    assert fires, fields
    # the gaps between runs, including the one across the end of the week, are all the interval
    gaps = {b - a for a, b in zip(fires, [*fires[1:], fires[0] + WEEK], strict=True)}
    assert gaps == {e.minutes}, (every, fields)


def test_the_offset_is_stable_per_name_and_spreads_names() -> None:
    e = schedule.parse_every("1h")
    assert schedule.cron_schedule(e, "drift-prod") == schedule.cron_schedule(e, "drift-prod")
    minutes = {schedule.cron_schedule(e, f"inv{i}").split()[0] for i in range(20)}
    assert len(minutes) > 5


@pytest.mark.parametrize("every", ["7m", "45m", "90m", "5h", "7h", "2d", "3d", "2w"])
def test_intervals_cron_cannot_run_evenly_are_refused(every: str) -> None:
    with pytest.raises(ConfigError) as info:
        schedule.cron_schedule(schedule.parse_every(every), "drift-prod")
    text = str(info.value)
    assert text.startswith(f"--every: {every}: cron cannot run that evenly")
    assert "--systemd" in text and "1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60 minutes" in text


@pytest.mark.parametrize("text", ["", "0m", "30", "m", "1.5h", "10s", "-5m", "5 minutes", "1y"])
def test_bad_every(text: str) -> None:
    with pytest.raises(ConfigError, match="write a number and a unit"):
        schedule.parse_every(text)


def test_every_units() -> None:
    assert schedule.parse_every("15min") == schedule.Every("15m", 900)
    assert schedule.parse_every(" 2h ").seconds == 7200
    assert schedule.parse_every("1w").seconds == 604800


def _calendar(spec: str, iterations: int) -> list[datetime]:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is part of systemd (installed on every controller we support)"
    out = subprocess.run([exe, "calendar", f"--iterations={iterations}", spec], capture_output=True, text=True,
                         check=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"}).stdout
    times = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", out)
    return [datetime.fromisoformat(t) for t in times]


@pytest.mark.parametrize("every", ["5m", "15m", "30m", "1h", "6h", "12h", "1d", "1w"])
def test_calendar_spec_runs_at_crons_minutes(every: str) -> None:
    e = schedule.parse_every(every)
    spec = schedule.calendar_spec(e, "drift-prod")
    assert spec is not None
    times = _calendar(spec, 6)
    assert len(times) == 6
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(times)} == {e.seconds}
    cron = set(fire_minutes(schedule.cron_schedule(e, "drift-prod")))
    for t in times:  # the same minutes of the week as the cron entry
        assert t.weekday() * 1440 + t.hour * 60 + t.minute in cron


def test_calendar_spec_is_none_for_uneven_intervals() -> None:
    assert schedule.calendar_spec(schedule.parse_every("7m"), "x") is None


# -- crontab text -------------------------------------------------------------------------------

OTHER = (b"# m h dom mon dow command\nMAILTO=\"\"\nSHELL=/bin/bash\n"
         b"0 5 * * * /usr/bin/backup --label 'caf\xe9 50\\% off'   \n\n"
         b"# driftctl-schedule-notes: not a marker of ours\n@reboot echo hi\r\n")


def entry(name: str, cmd: str = "/opt/driftctl drift inv") -> bytes:
    return f"# driftctl-schedule: {name} every=1h\n7 * * * * {cmd}\n".encode()


def test_without_entry_keeps_every_other_line_byte_for_byte() -> None:
    content = OTHER + entry("a") + b"*/5 * * * * keep me\n" + entry("b")
    rest, found = schedule.without_entry(content, "a")
    assert found
    assert rest == OTHER + b"*/5 * * * * keep me\n" + entry("b")
    rest, found = schedule.without_entry(rest, "b")
    assert found and rest == OTHER + b"*/5 * * * * keep me\n"
    assert schedule.without_entry(rest, "c") == (rest, False)


def test_an_orphan_marker_goes_alone() -> None:
    content = OTHER + b"# driftctl-schedule: a every=1h\n0 1 * * * /usr/bin/unrelated\n"
    rest, found = schedule.without_entry(content, "a")
    assert found and rest == OTHER + b"0 1 * * * /usr/bin/unrelated\n"


def test_names_are_checked() -> None:
    for bad in ("", "-x", ".hidden", "a b", "a/b", "x" * 65, "naïve", "a%b"):
        with pytest.raises(ConfigError):
            schedule.validate_name(bad)
    assert schedule.default_name(Path("inventory/prod")) == "drift-prod"
    assert schedule.default_name(Path("/srv/inv ent/prod eu/")) == "drift-prod-eu"


# -- the job and its command lines ----------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "inventory" / "prod").mkdir(parents=True)
    (tmp_path / "inventory" / "prod" / "hosts.yaml").write_text("all:\n  hosts: {}\n")
    (tmp_path / "manifests").mkdir()
    return tmp_path


def test_job_pins_absolute_paths_and_settings(project: Path) -> None:
    settings = Settings(state_dir="state", manifests="manifests", state="db/driftctl.sqlite",
                        known_hosts=("kh",), ssh_config="~/ssh_config")
    job = schedule.make_job(Path("inventory/prod/"), "30m", settings, remediate=True, report_dir=Path("out"),
                            project_dir=project)
    argv = job.argv()
    assert argv[len(job.executable):] == [
        "drift", "inventory/prod", "--manifests", str(project / "manifests"), "--state-dir", str(project / "state"),
        "--state", str(project / "db" / "driftctl.sqlite"), "--known-hosts", str(project / "kh"),
        "--ssh-config", str(Path.home() / "ssh_config"), "--remediate", "--report-dir", str(project / "out")]
    assert Path(job.executable[0]).is_absolute()
    assert job.log_file == project / "state" / "logs" / "drift-prod.log"
    pg = schedule.make_job(Path("inventory/prod"), "1h", Settings(state="postgresql://u@db/driftctl"),
                           project_dir=project)
    assert pg.state == "postgresql://u@db/driftctl"


def test_job_pins_vault_passwords_by_absolute_path_and_refuses_a_prompt(project: Path) -> None:
    settings = Settings(vault_password_file=("pass.txt",), vault_ids=("prod@secrets/prod.sh", "plain.txt"))
    job = schedule.make_job(Path("inventory/prod"), "1h", settings, project_dir=project)
    argv = job.argv()
    assert argv[argv.index("--vault-password-file") + 1] == str(project / "pass.txt")
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--vault-id"] == [
        f"prod@{project / 'secrets' / 'prod.sh'}", f"default@{project / 'plain.txt'}"]
    with pytest.raises(ConfigError, match="nobody to answer a prompt"):
        schedule.make_job(Path("inventory/prod"), "1h", Settings(vault_ids=("default@prompt",)), project_dir=project)


def test_job_refuses_missing_inventory_and_manifests(project: Path) -> None:
    with pytest.raises(ConfigError, match="inventory inventory/typo not found"):
        schedule.make_job(Path("inventory/typo"), "1h", Settings(), project_dir=project)
    with pytest.raises(ConfigError, match=r"manifest tree .* not found"):
        schedule.make_job(Path("inventory/prod"), "1h", Settings(manifests="nope"), project_dir=project)


def test_cron_entry_escapes_percent_and_refuses_long_lines(project: Path) -> None:
    job = schedule.make_job(Path("inventory/prod"), "1h", Settings(state_dir=str(project / "st")),
                            report_dir=Path("100% reports"), project_dir=project)
    text = schedule.cron_entry(job).decode()
    marker, line = text.splitlines()
    assert marker == "# driftctl-schedule: drift-prod every=1h"
    assert "%" not in line.replace("\\%", "")  # every % escaped for cron
    deep = project / ("d" * 200) / ("e" * 200) / ("f" * 200)
    with pytest.raises(ConfigError, match="cron accepts at most 998"):
        schedule.cron_entry(schedule.make_job(Path("inventory/prod"), "1h", Settings(state_dir=str(deep)),
                                              report_dir=deep / "r", project_dir=project))


# -- systemd units --------------------------------------------------------------------------------


def test_units_are_written_and_pass_systemd_analyze_verify(project: Path) -> None:
    assert shutil.which("systemd-analyze")
    units = project / "units"
    for every, when in (("30m", "OnCalendar="), ("7m", "OnUnitActiveSec=420s")):
        job = schedule.make_job(Path("inventory/prod"), every, Settings(state_dir=str(project / "st")),
                                name="prod 100%".replace(" ", "-").replace("%", "pct"),
                                report_dir=Path("r $HOME 100%"), project_dir=project)
        result = schedule.install_systemd(job, units)
        assert result.verified and not result.enabled and "--unit-dir" in result.note
        service = (units / "driftctl-prod-100pct.service").read_text()
        timer = (units / "driftctl-prod-100pct.timer").read_text()
        assert "Type=oneshot" in service and f"WorkingDirectory={project}" in service
        assert '"' + str(project / "r $$HOME 100%%") + '"' in service  # specifiers and variables escaped
        assert when in timer and "WantedBy=timers.target" in timer
        assert ("Persistent=true" in timer) == (when == "OnCalendar=")
    listed = schedule.list_systemd(units)
    assert [(s.name, s.every, s.enabled) for s in listed] == [("prod-100pct", "7m", False)]
    assert schedule.remove_systemd("prod-100pct", units) == [units / "driftctl-prod-100pct.timer",
                                                             units / "driftctl-prod-100pct.service"]
    assert list(units.iterdir()) == []


def test_verify_rejects_a_unit_systemd_would_refuse(project: Path) -> None:
    job = schedule.make_job(Path("inventory/prod"), "1h", Settings(state_dir=str(project / "st")),
                            project_dir=project)
    broken = schedule.Job(**{**job.__dict__, "executable": ("/nonexistent/driftctl",)})
    with pytest.raises(schedule.ScheduleError, match="not executable"):
        schedule.install_systemd(broken, project / "units")
    assert not (project / "units").exists()  # nothing written when verification fails


def test_systemd_quoting_reads_back_as_the_same_path(project: Path) -> None:
    # verify checks that ExecStart's first word is an executable file: a path with a space, $ and % passes
    # only if systemd parses our quoting back into exactly that path
    odd_dir = project / "my bin $X 50%"
    odd_dir.mkdir()
    exe = odd_dir / "driftctl"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    job = schedule.make_job(Path("inventory/prod"), "1h", Settings(state_dir=str(project / "st")),
                            project_dir=project)
    odd = schedule.Job(**{**job.__dict__, "executable": (str(exe),)})
    assert schedule.install_systemd(odd, project / "units").verified
    assert f'ExecStart="{project}/my bin $X 50%%/driftctl" drift' in (
        project / "units" / "driftctl-drift-prod.service").read_text()
    # the same quoting with a file that is not there is caught: verify reads the path we meant
    gone = schedule.Job(**{**job.__dict__, "executable": (str(odd_dir / "gone"),)})
    with pytest.raises(schedule.ScheduleError, match="not executable"):
        schedule.install_systemd(gone, project / "units2")
    # systemd refuses quotes in an executable's path: said before anything is written
    quoted = schedule.Job(**{**job.__dict__, "executable": (str(odd_dir / "drift'ctl"),)})
    with pytest.raises(ConfigError, match="systemd refuses an executable path with quotes"):
        schedule.install_systemd(quoted, project / "units3")
    assert not (project / "units3").exists()
