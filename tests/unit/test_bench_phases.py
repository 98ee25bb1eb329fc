"""bench/phases.py and the pure parts of bench/benchlib.py: medians, the issue's targets, the table,
the correctness comparisons of report documents, the /proc/net/dev parser."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import benchlib  # noqa: E402
import phases  # noqa: E402
import workload  # noqa: E402
from phases import PhaseRow, Sample  # noqa: E402


def row(hosts: int, phase: str, walls: list[float], floor_s: float | None = 1.0, **kw: float) -> PhaseRow:
    return PhaseRow(hosts, phase, [Sample(wall_s=w, rc=0, **kw) for w in walls], floor_s=floor_s)  # type: ignore[arg-type]


def test_row_reports_the_median_and_the_ratio_to_floor_plus_interpreter() -> None:
    r = row(40, "drift", [9.0, 1.95, 2.1], floor_s=1.0, peak_rss_mb=90.0)
    assert r.wall_s == 2.1
    assert r.ratio == pytest.approx(2.1 / 1.3)
    assert row(40, "floor", [1.0]).ratio is None


def test_wire_is_per_host_median_of_both_directions() -> None:
    r = PhaseRow(4, "check", [Sample(1, 0, wire_rx=4096, wire_tx=4096), Sample(1, 0, wire_rx=8192, wire_tx=8192),
                              Sample(1, 0, wire_rx=0, wire_tx=40960)])
    assert r.wire_per_host_kb == pytest.approx(16384 / 4 / 1024)


def test_worst_rc_and_rss_are_kept() -> None:
    r = PhaseRow(1, "check", [Sample(1, 0, peak_rss_mb=50), Sample(1, 2, peak_rss_mb=70), Sample(1, 0, peak_rss_mb=60)])
    assert (r.rc, r.peak_rss_mb) == (2, 70)


def test_targets_at_40_hosts() -> None:
    drift = row(40, "drift", [1.9], floor_s=1.0, peak_rss_mb=120.0, store_growth=40 * 1024)
    assert [str(t) for t in drift.targets()] == ["ratio ok", "store ok", "rss MISS"]
    first = row(40, "first_apply", [7.5], peak_rss_mb=99.0, store_growth=2 * 1024 * 1024)
    assert [str(t) for t in first.targets()] == ["wall MISS", "store MISS", "rss ok"]


def test_targets_at_100_hosts_and_none_at_sizes_the_issue_does_not_name() -> None:
    check = row(100, "check", [2.0], floor_s=1.0, peak_rss_mb=149.0)
    assert [str(t) for t in check.targets()] == ["ratio MISS", "rss ok"]
    assert row(10, "drift", [9.0]).targets() == []
    assert row(40, "floor", [1.0]).targets() == []
    assert row(40, "plan", [1.0], peak_rss_mb=1.0).targets()[0].name == "rss"


def test_runs_paired_with_their_rounds_floor_give_the_median_of_their_own_ratios() -> None:
    """A slow round slows its floor too: each run is divided by its own round's floor, not the median
    floor, so a machine that slows between rounds does not show as driftctl's ratio."""
    runs = [Sample(wall_s=3.0, rc=0, floor_s=1.7), Sample(wall_s=4.6, rc=0, floor_s=2.7),
            Sample(wall_s=3.4, rc=0, floor_s=1.7)]
    paired = PhaseRow(40, "check", runs, floor_s=1.7)
    assert paired.ratio == pytest.approx(4.6 / 3.0)  # ratios 1.5, 1.53, 1.7: their median (median walls: 1.7)
    assert PhaseRow(40, "check", [Sample(wall_s=4.6, rc=0)], floor_s=1.7).ratio == pytest.approx(4.6 / 2.0)
    half = PhaseRow(40, "check", [Sample(wall_s=3.0, rc=0, floor_s=1.7), Sample(wall_s=4.6, rc=0)], floor_s=1.7)
    assert half.ratio == pytest.approx(3.8 / 2.0)  # not all paired: the median wall over the median floor


def test_table_has_a_column_per_header_and_blank_driftctl_cells_for_the_floor() -> None:
    rows = [row(40, "noop_apply", [1.5], floor_s=1.0, peak_rss_mb=80.0, output_bytes=2048), row(40, "floor", [1.0])]
    md = phases.markdown_table(rows).splitlines()
    assert md[0].startswith("| hosts | phase | wall s | floor s | ratio | targets |")
    assert all(line.count("|") == len(phases.COLUMNS) + 1 for line in md)
    assert md[2] == "| 40 | noop_apply | 1.50 | 1.00 | 1.15 | ratio ok, rss ok | 0.0+? | 0.0 | 80 | 0.0 | 2.0 | 0 |"
    assert md[3] == "| 40 | floor | 1.00 | 1.00 |  | - | 0.0+? | 0.0 |  |  |  |  |"
    text = phases.text_table(rows).splitlines()
    assert len(text) == 3 and text[0].split()[:3] == ["hosts", "phase", "wall"]


def test_cpu_is_the_median_of_the_runs_for_the_controller_and_the_hosts_and_unknown_if_a_run_lacks_it() -> None:
    r = PhaseRow(40, "check", [Sample(3.0, 0, cpu_s=2.0, hosts_cpu_s=4.0), Sample(3.1, 0, cpu_s=2.4, hosts_cpu_s=5.0),
                               Sample(3.2, 0, cpu_s=1.0, hosts_cpu_s=4.5)])
    assert r.cpu == (2.0, 4.5)
    assert phases.cpu_cell(r) == "2.0+4.5"
    assert r.as_dict()["hosts_cpu_s"] == 4.5
    partial = PhaseRow(40, "check", [Sample(3.0, 0, cpu_s=2.0, hosts_cpu_s=4.0), Sample(3.0, 0, cpu_s=2.0)])
    assert partial.cpu[1] is None and phases.cpu_cell(partial) == "2.0+?"


def test_as_dict_is_json_ready() -> None:
    import json

    d = row(40, "drift", [2.0], peak_rss_mb=10.0).as_dict()
    assert json.loads(json.dumps(d))["targets"][0] == {"name": "ratio", "limit": 1.5, "value": 1.538, "met": False}


def doc(*hosts: dict) -> dict:
    return {"hosts": list(hosts)}


def host(name: str, *resources: dict, status: str = "ok", unmanaged: list | None = None) -> dict:
    return {"name": name, "status": status, "error": None, "resources": list(resources), "unmanaged": unmanaged}


def res(rid: str, status: str = "ok", drift: str | None = None, ignored: str | None = None) -> dict:
    return {"id": rid, "status": status, "drift": drift, "ignored": ignored}


def test_changed_and_drifted_ids_per_host() -> None:
    d = doc(host("a", res("file:/x", "changed"), res("file:/y")),
            host("b", res("file:/x", drift="corrective"), res("line:l", drift="both"), res("user:u", drift="pending",
                                                                                             ignored="until monday")))
    assert phases.changed_ids(d) == {"a": {"file:/x"}, "b": set()}
    assert phases.drifted_ids(d) == {"a": set(), "b": {"file:/x", "line:l"}}


def test_compare_names_what_is_missing_and_what_is_extra_per_host() -> None:
    want = {"a": {"file:/x", "file:/y"}}
    got = {"a": {"file:/x", "file:/z"}, "b": {"user:u"}}
    assert phases.compare("drift", want, got) == [
        "drift: a: expected but not reported: file:/y",
        "drift: a: reported but not expected: file:/z",
        "drift: b: reported but not expected: user:u",
    ]
    assert phases.compare("drift", {"a": set()}, {"a": set(), "b": set()}) == []


def test_failed_or_missing_hosts_are_problems() -> None:
    d = doc(host("a", res("file:/x", "failed")), host("b", status="unreachable"), host("c"))
    assert phases.failed_hosts(d) == ["a: ok", "b: unreachable"]
    assert phases.expect_hosts("x", d, ["a", "b", "c"]) == []
    assert phases.expect_hosts("x", d, ["a", "b"]) != []


def test_unmanaged_paths_skip_ignored() -> None:
    d = doc(host("a", unmanaged=[{"path": "/etc/x", "ignored": None}, {"path": "/etc/y", "ignored": "r"}]),
            host("b", unmanaged=None))
    assert phases.unmanaged_paths(d) == {"a": {"/etc/x"}, "b": set()}


def test_injections_name_resources_of_the_workload_on_two_hosts() -> None:
    ids = workload.resource_ids()
    assert len(ids) == workload.resource_count()
    assert {i.resource for i in workload.INJECTIONS} <= ids
    assert len({i.resource for i in workload.INJECTIONS}) == len(workload.INJECTIONS)
    assert {i.host for i in workload.INJECTIONS} == {0, 1}


NET_DEV = (Path(__file__).parent / "data" / "bench_net_dev.txt").read_text()  # a container's /proc/PID/net/dev


def test_read_net_dev_and_delta() -> None:
    assert benchlib.read_net_dev(NET_DEV) == (1012276, 1018243)
    with pytest.raises(ValueError):
        benchlib.read_net_dev(NET_DEV, "eth1")
    d = benchlib.WireMeter.delta({"a": (10, 20), "b": (0, 0)}, {"a": (15, 120), "b": (1, 2)})
    assert (d.rx, d.tx, d.by_host) == (6, 102, {"a": 105, "b": 3})


def test_wire_check_accepts_only_a_few_percent_of_overhead() -> None:
    ok = benchlib.WireCheck(1000, 1030, 1040, 2.0, 10.0)
    assert ok.ok and "ok" in ok.describe()
    assert not benchlib.WireCheck(1000, 999, 1040, 2.0, 10.0).ok  # counting less than was sent: wrong interface
    assert not benchlib.WireCheck(1000, 1030, 1100, 2.0, 10.0).ok  # other traffic counted too


def test_store_bytes_counts_the_database_after_a_checkpoint(tmp_path: Path) -> None:
    assert benchlib.store_bytes(tmp_path) == 0
    con = sqlite3.connect(tmp_path / benchlib.STORE_FILE)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (x BLOB)")
    con.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    con.commit()
    assert (tmp_path / f"{benchlib.STORE_FILE}-wal").stat().st_size > 100_000  # still in the WAL
    size = benchlib.store_bytes(tmp_path)
    assert (tmp_path / f"{benchlib.STORE_FILE}-wal").stat().st_size == 0
    assert size == (tmp_path / benchlib.STORE_FILE).stat().st_size >= 100_000
    con.close()


def test_run_cli_runs_the_real_cli_and_measures_it(tmp_path: Path) -> None:
    r = benchlib.run_cli(["--version"], tmp_path / "state")
    assert r.rc == 0 and r.stdout.strip() and r.output_bytes == len(r.stdout) + len(r.stderr)
    assert r.wall_s > 0 and r.peak_rss_mb > 1


def test_run_cli_measures_commands_with_bytecode_as_an_installed_copy_has_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a PYTHONDONTWRITEBYTECODE in the bench's own environment must not make each measured command
    # compile the sources again: the code under test is compiled once, and the CLI may keep bytecode
    code = tmp_path / "code"
    (code / "driftctl").mkdir(parents=True)
    (code / "driftctl" / "__init__.py").write_text("")
    (code / "driftctl" / "__main__.py").write_text("import os\nprint(os.environ.get('PYTHONDONTWRITEBYTECODE'))\n")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    r = benchlib.run_cli([], tmp_path / "state", code=code)
    assert r.rc == 0 and r.stdout.strip() == b"None"
    assert {p.name.split(".")[0] for p in (code / "driftctl" / "__pycache__").glob("*.pyc")} == {"__init__", "__main__"}


def test_run_cli_kills_a_command_past_its_timeout(tmp_path: Path) -> None:
    r = benchlib.run_cli(["--help"], tmp_path / "state", timeout=0.001)  # the interpreter alone takes longer
    assert r.rc == -9


def test_host_spread_is_of_the_median_run() -> None:
    r = PhaseRow(2, "drift", [Sample(5.0, 0, wire_by_host={"a": 1024, "b": 9 * 1024}),
                              Sample(1.0, 0, wire_by_host={"a": 0, "b": 0}),
                              Sample(2.0, 0, wire_by_host={"a": 2048, "b": 4096})])
    assert phases.host_spread_kb(r) == (2.0, 4.0)
    assert phases.host_spread_kb(PhaseRow(1, "x", [Sample(1.0, 0)])) == (0.0, 0.0)


def test_cgroup_cpu_counters_are_read_in_seconds_in_both_cgroup_versions(tmp_path: Path) -> None:
    v1 = tmp_path / "cpuacct.usage"
    v1.write_text("2500000000\n")
    v2 = tmp_path / "cpu.stat"
    v2.write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert benchlib.read_cpu_s(v1) == 2.5
    assert benchlib.read_cpu_s(v2) == 1.5
    assert benchlib.HostsCpu([]).read() is None  # no counters: unknown, never 0
    assert benchlib.HostsCpu([]).since(1.0) is None


def test_a_running_process_cpu_counter_is_found_and_grows() -> None:
    import os

    counter = benchlib.cgroup_cpu_file(os.getpid())
    if counter is None:
        pytest.skip("this machine exposes no cgroup CPU counter for the test process")
    before = benchlib.read_cpu_s(counter)
    sum(i * i for i in range(2_000_000))
    assert benchlib.read_cpu_s(counter) > before
