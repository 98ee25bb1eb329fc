#!/usr/bin/env python3
"""The phases bench of issue 10: plan, first apply, no-op apply, check, drift and the SSH floor.

For each fleet size: brand-new fleet hosts (so the first apply really is the first), the workload of
bench/workload.py (119 resources per host), then in order: plan, first apply, and ``--repeat``
rounds of: the floor (bench/floor.py), a no-op apply, a check, a drift. Every driftctl command runs as
a user types it (a subprocess of the CLI, ``--parallel`` = hosts, default output); the median of the
rounds is reported, and each read-only run's ratio is taken against the floor of its own round.
Per phase: wall, exit code, the controller's peak RSS, bytes on the wire (each host's interface
counters, checked against a known transfer), store growth, output size.

Correctness, checked on every run (any mismatch: exit 1 and what differed):
- plan --json's changed resource ids per host == those the first apply changed (its stored report);
- the no-op apply changes nothing; check and drift exit 0 after converge;
- known hand changes on 2 hosts (workload.INJECTIONS): drift --json reports exactly those resource
  ids on exactly those hosts; apply --json repairs exactly those; drift is clean again;
- ``--drift-runs`` more drift runs find nothing (0 false positives).

    .venv/bin/python bench/bench_converge.py                       # 1, 10, 40, 100 hosts, --repeat 3
    .venv/bin/python bench/bench_converge.py --hosts 1,3 --repeat 1
Results: a table on stdout, bench/results/converge-<stamp>.md and .json (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
import floor
import phases
import workload
from benchlib import CliRun, WireMeter
from phases import PhaseRow, Sample

REPO = workload.REPO
RESULTS = REPO / "bench" / "results"
fleet_library = workload.fleet_library  # bench_content.py imports these three from here
write_manifests = workload.write_manifests


def run(args: list[str], state: Path) -> dict[str, Any]:
    """One CLI command as a dict (the shape bench_content.py reads): rc, wall_s, peak_rss_mb, output tails."""
    r = benchlib.run_cli(args, state)
    return {"rc": r.rc, "wall_s": round(r.wall_s, 2), "peak_rss_mb": round(r.peak_rss_mb, 1),
            "stdout": r.stdout.decode(errors="replace")[-400:], "stderr": r.stderr.decode(errors="replace")[-400:],
            "stdout_full": r.stdout.decode(errors="replace")}


@dataclass
class SizeResult:
    hosts: int
    fleet_start_s: float = 0.0
    rows: list[PhaseRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # correctness checks that passed, for the record
    wire_check: str = ""
    floor_errors: list[str] = field(default_factory=list)
    floor_host_mean_s: list[float] = field(default_factory=list)  # per floor run: the mean per-host round trip


class Bench:
    """One fleet size: its fleet, state dir, wire meter, and the phases run against them."""

    def __init__(self, n: int, fleet: Any, manifests: Path, state: Path, out: SizeResult, code: Path) -> None:
        self.n = n
        self.code = code
        self.fleet = fleet
        self.inv = str(fleet.inventory_dir)
        self.manifests = manifests
        self.state = state
        self.out = out
        self.hosts = [h.name for h in fleet.hosts]
        self.meter = WireMeter({h.name: h.container for h in fleet.hosts})
        self.hosts_cpu = benchlib.HostsCpu(list(self.meter.pids.values()))

    # ---- measuring

    def cli(self, command: str, *extra: str) -> CliRun:
        return benchlib.run_cli([command, self.inv, "-m", str(self.manifests), "--parallel", str(self.n), *extra],
                                self.state, code=self.code)

    def sample(self, command: str, *extra: str) -> tuple[Sample, CliRun]:
        store_before = benchlib.store_bytes(self.state)
        wire_before = self.meter.read()
        hosts_before = self.hosts_cpu.read()
        r = self.cli(command, *extra)
        hosts_cpu = self.hosts_cpu.since(hosts_before)
        wire = WireMeter.delta(wire_before, self.meter.read())
        s = Sample(wall_s=r.wall_s, rc=r.rc, peak_rss_mb=r.peak_rss_mb, wire_rx=wire.rx, wire_tx=wire.tx,
                   wire_by_host=wire.by_host, store_growth=benchlib.store_bytes(self.state) - store_before,
                   output_bytes=r.output_bytes, cpu_s=r.cpu_s, hosts_cpu_s=hosts_cpu)
        return s, r

    def phase(self, name: str, command: str, repeat: int, after: Callable[[CliRun, int], None]) -> PhaseRow:
        samples = []
        for i in range(repeat):
            s, r = self.sample(command)
            samples.append(s)
            after(r, i)
        return self.report(PhaseRow(self.n, name, samples))

    def report(self, row: PhaseRow) -> PhaseRow:
        self.out.rows.append(row)
        print(f"{self.n:>4} hosts  {row.phase:<12} {row.wall_s:6.2f} s  rc={row.rc}  peak {row.peak_rss_mb:.0f} MB  "
              f"wire {row.wire_per_host_kb:.1f} KB/host  store +{row.store_growth_kb:.1f} KB  "
              f"output {row.output_kb:.1f} KB", flush=True)
        return row

    def floor_sample(self) -> Sample:
        """One run of the floor (bench/floor.py) on this fleet, in this process."""
        targets = floor.targets_from_inventory(self.fleet.inventory_dir)
        observed = workload.managed_paths()
        before = self.meter.read()
        hosts_before, own_before = self.hosts_cpu.read(), os.times()
        res = floor.measure(targets, observed.paths, observed.users, observed.groups, repeat=1,
                            packages=observed.packages, services=observed.services)
        hosts_cpu, own_after = self.hosts_cpu.since(hosts_before), os.times()
        wire = WireMeter.delta(before, self.meter.read())
        self.out.floor_errors += res.errors
        self.out.floor_host_mean_s.append(round(res.host_mean_s, 3))
        absent = [h.name for run in res.runs for h in run.hosts if h.ok and h.absent]
        if absent:
            self.problem(f"floor: managed paths absent on converged hosts {sorted(set(absent))}")
        own = (own_after.user - own_before.user) + (own_after.system - own_before.system)
        return Sample(wall_s=res.wall_s, rc=0 if res.ok else 1, wire_rx=wire.rx, wire_tx=wire.tx,
                      wire_by_host=wire.by_host, cpu_s=own, hosts_cpu_s=hosts_cpu)

    def rounds(self, repeat: int, phases_: list[tuple[str, str, Callable[[CliRun, int], None]]]) -> PhaseRow:
        """``repeat`` rounds of: the floor, then one run of each of ``phases_`` (name, command, check),
        each run paired with that round's floor (its ratio is taken against it); the floor's row."""
        floors: list[Sample] = []
        samples: dict[str, list[Sample]] = {name: [] for name, _, _ in phases_}
        for i in range(repeat):
            f = self.floor_sample()
            floors.append(f)
            for name, command, after in phases_:
                s, r = self.sample(command)
                s.floor_s = f.wall_s
                samples[name].append(s)
                after(r, i)
        for name, _, _ in phases_:
            self.report(PhaseRow(self.n, name, samples[name]))
        row = PhaseRow(self.n, "floor", floors)
        self.out.rows.append(row)
        print(f"{self.n:>4} hosts  {'floor':<12} {row.wall_s:6.2f} s  wire {row.wire_per_host_kb:.1f} KB/host",
              flush=True)
        if self.out.floor_errors:
            self.problem("floor: " + "; ".join(self.out.floor_errors))
        return row

    # ---- checking

    def problem(self, text: str) -> None:
        self.out.problems.append(f"{self.n} hosts: {text}")
        print(f"  PROBLEM: {text}", flush=True)

    def passed(self, text: str) -> None:
        self.out.checks.append(text)

    def expect_rc(self, label: str, r: CliRun, want: int) -> bool:
        if r.rc != want:
            self.problem(f"{label}: exit {r.rc}, expected {want}\n{r.tail()}")
            return False
        return True

    def doc_of(self, label: str, r: CliRun) -> dict[str, Any] | None:
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            self.problem(f"{label}: --json printed no JSON (exit {r.rc})\n{r.tail()}")
            return None
        return self.sound(label, doc)

    def stored(self, label: str, command: str) -> dict[str, Any] | None:
        doc = benchlib.stored_run(self.state, self.inv, command, self.code)
        if doc is None:
            self.problem(f"{label}: no stored {command} run")
            return None
        return self.sound(label, doc)

    def sound(self, label: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        bad = phases.expect_hosts(label, doc, self.hosts) + [f"{label}: {f}" for f in phases.failed_hosts(doc)]
        for b in bad:
            self.problem(b)
        return None if bad else doc

    def same(self, label: str, want: dict[str, set[str]], got: dict[str, set[str]]) -> None:
        diffs = phases.compare(label, want, got)
        for d in diffs:
            self.problem(d)
        if not diffs:
            self.passed(label)

    def nothing(self) -> dict[str, set[str]]:
        return {h: set() for h in self.hosts}


def run_size(n: int, ns: argparse.Namespace, tmpdir: Path, manifests: Path) -> SizeResult:
    fleetlib = workload.fleet_library()
    fleet_id = f"bench{n}"
    out = SizeResult(hosts=n)
    fleetlib.down(fleet_id)
    try:
        t0 = time.monotonic()
        fleet = fleetlib.start_fleet(fleet_id, n, inventory_dir=tmpdir / f"inv{n}", known_hosts=tmpdir / f"kh{n}",
                                     owner=fleetlib.current_owner())
        out.fleet_start_s = round(time.monotonic() - t0, 1)
        b = Bench(n, fleet, manifests, tmpdir / f"state{n}", out, ns.code)
        first = fleet.hosts[0]
        check = benchlib.calibrate(b.meter, first.name, first.address, first.port, str(first.key_file),
                                   str(fleet.known_hosts))
        out.wire_check = check.describe()
        print(f"{n:>4} hosts  fleet up in {out.fleet_start_s} s; wire: {out.wire_check}", flush=True)
        if not check.ok:
            b.problem(f"wire counters: {out.wire_check}")
        run_phases(b, ns)
        run_correctness(b, ns)
    except Exception as e:  # a size that cannot run is reported; the other sizes still run
        out.problems.append(f"{n} hosts: bench aborted: {type(e).__name__}: {e}")
        print(f"  PROBLEM: bench aborted: {type(e).__name__}: {e}", flush=True)
    finally:
        fleetlib.down(fleet_id)
    return out


def run_phases(b: Bench, ns: argparse.Namespace) -> None:
    all_ids = {h: workload.resource_ids() for h in b.hosts}
    plan_ids: dict[str, set[str]] = {}

    def after_plan(r: CliRun, _: int) -> None:
        b.expect_rc("plan", r, 0)  # a plan made exits 0 with changes (D41); its --json below lists them
        # the same question as --json, untimed: which resources would the first apply change?
        doc = b.doc_of("plan --json", b.cli("plan", "--json"))
        if doc is not None:
            plan_ids.update(phases.changed_ids(doc))
            b.same("plan --json covers the workload's resources",
                   all_ids, {h["name"]: {x["id"] for x in h["resources"]} for h in doc["hosts"]})

    def after_first_apply(r: CliRun, _: int) -> None:
        b.expect_rc("first apply", r, 2)
        doc = b.stored("first apply (stored report)", "apply")
        if doc is not None and plan_ids:
            b.same("plan --json's changed ids == first apply's changed ids", plan_ids, phases.changed_ids(doc))

    def after_noop(r: CliRun, i: int) -> None:
        b.expect_rc(f"no-op apply #{i + 1}", r, 0)
        doc = b.stored(f"no-op apply #{i + 1} (stored report)", "apply")
        if doc is not None:
            b.same(f"no-op apply #{i + 1} changes nothing", b.nothing(), phases.changed_ids(doc))

    def after_check(r: CliRun, i: int) -> None:
        if b.expect_rc(f"check #{i + 1} after converge", r, 0):
            b.passed(f"check #{i + 1} exits 0 after converge")

    def after_drift(r: CliRun, i: int) -> None:
        b.expect_rc(f"drift #{i + 1} after converge", r, 0)
        doc = b.stored(f"drift #{i + 1} (stored report)", "drift")
        if doc is not None:
            b.same(f"drift #{i + 1} after converge finds nothing", b.nothing(), phases.drifted_ids(doc))

    b.phase("plan", "plan", 1, after_plan)
    b.phase("first_apply", "apply", 1, after_first_apply)
    floor_row = b.rounds(ns.repeat, [("noop_apply", "apply", after_noop), ("check", "check", after_check),
                                     ("drift", "drift", after_drift)])
    for row in b.out.rows:
        row.floor_s = floor_row.wall_s


def run_correctness(b: Bench, ns: argparse.Namespace) -> None:
    hosts = b.fleet.hosts
    want: dict[str, set[str]] = {}
    for inj in workload.INJECTIONS:
        host = hosts[min(inj.host, len(hosts) - 1)]
        r = host.sh(inj.script)
        if r.rc != 0:
            b.problem(f"injection '{inj.what}' on {host.name} failed ({r.rc}): {r.stderr_text[-300:]}")
            return
        want.setdefault(host.name, set()).add(inj.resource)
    if ns.plant_undeclared:  # a self-test of the bench: a change it does not expect must fail the run
        r = hosts[0].sh(f"chmod 640 {workload.file_path(4)}")
        print(f"  planted an undeclared change on {hosts[0].name}: chmod 640 {workload.file_path(4)} (rc {r.rc})")
    doc = b.doc_of("drift --json after hand changes", b.cli("drift", "--json"))
    if doc is not None:
        b.same("drift finds exactly the hand changes", want, phases.drifted_ids(doc))
        b.same("drift after hand changes: no unmanaged change", b.nothing(), phases.unmanaged_paths(doc))
        if doc["exit_code"] != 2:
            b.problem(f"drift after hand changes: exit code {doc['exit_code']}, expected 2")
    r = b.cli("apply", "--json")
    b.expect_rc("apply after hand changes", r, 2)
    doc = b.doc_of("apply --json after hand changes", r)
    if doc is not None:
        b.same("apply repairs exactly the hand changes", want, phases.changed_ids(doc))
    false_positives = 0
    for i in range(1 + ns.drift_runs):  # the first: clean again after the repair; then --drift-runs more
        label = "drift --json after repair" if i == 0 else f"extra drift run #{i}"
        r = b.cli("drift", "--json")
        doc = b.doc_of(label, r)
        if doc is None:
            continue
        found = phases.drifted_ids(doc)
        unmanaged = phases.unmanaged_paths(doc)
        false_positives += sum(len(v) for v in found.values()) + sum(len(v) for v in unmanaged.values())
        b.same(f"{label} finds nothing", b.nothing(), found)
        b.expect_rc(label, r, 0)
    b.passed(f"{ns.drift_runs} extra drift runs: {false_positives} false positive(s)")


def environment(code: Path) -> dict[str, Any]:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "driftctl"], cwd=code,
                           capture_output=True, text=True).stdout.strip()
    return {"git": rev + (" + uncommitted changes in driftctl/" if dirty else ""), "code": str(code),
            "cpus": os.cpu_count(),
            "loadavg_at_start": os.getloadavg(), "python": platform.python_version(),
            "paramiko": floor.paramiko.__version__}


def _floor_walls(s: SizeResult) -> str:
    floor_rows = [r for r in s.rows if r.phase == "floor"]
    return ", ".join(f"{x.wall_s:.2f}" for x in floor_rows[0].samples) + " s" if floor_rows else "not measured"


def _load(avg: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.1f}" for x in avg)


def write_results(stamp: str, env: dict[str, Any], ns: argparse.Namespace, sizes: list[SizeResult]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    env["loadavg_at_end"] = os.getloadavg()
    rows = [r for s in sizes for r in s.rows]
    doc = {"stamp": stamp, "environment": env, "args": vars(ns),
           "sizes": [{**{k: v for k, v in asdict(s).items() if k != "rows"}, "rows": [r.as_dict() for r in s.rows]}
                     for s in sizes]}
    (RESULTS / f"converge-{stamp}.json").write_text(json.dumps(doc, indent=2, default=str))
    problems = [p for s in sizes for p in s.problems]
    busy = max(env["loadavg_at_start"][0], env["loadavg_at_end"][0]) > (env["cpus"] or 1)
    md = [f"# bench_converge {stamp}", "",
          f"driftctl {env['git']}, {env['cpus']} CPUs, load average {_load(env['loadavg_at_start'])} at start, "
          f"{_load(env['loadavg_at_end'])} at end{' (busier than its CPUs: walls are inflated)' if busy else ''}, "
          f"`--hosts {ns.hosts} --repeat {ns.repeat} --drift-runs {ns.drift_runs}`; workload "
          f"{workload.resource_count()} resources per host. Median of --repeat for no-op apply, check, drift "
          f"and the floor, run in rounds (floor, no-op apply, check, drift); ratio = wall / (floor + "
          f"{phases.INTERPRETER_S} s), for those three the median of each run's ratio to its round's floor.", "",
          phases.markdown_table(rows), "## Correctness", ""]
    for p in problems:
        first, *rest = p.splitlines()
        md += [f"- FAILED: {first}"] + (["", "  ```", *(f"  {ln}" for ln in rest), "  ```"] if rest else [])
    if not problems:
        md.append("- every check passed")
    md += ["", "## Floor", ""] + [f"- {s.hosts} hosts: fleet wall {_floor_walls(s)}; mean per-host round trip "
                                  f"{', '.join(f'{x:.2f}' for x in s.floor_host_mean_s)} s" for s in sizes]
    md += ["", "## Wire counters", ""] + [f"- {s.hosts} hosts: {s.wire_check}" for s in sizes]
    md += ["", "KB per host, least / most (of the median run):", ""]
    md += [f"- {r.hosts} hosts {r.phase}: {lo:.1f} / {hi:.1f}" for r in rows for lo, hi in [phases.host_spread_kb(r)]]
    md += ["", "## Checks passed", ""] + [f"- {s.hosts} hosts: {c}" for s in sizes for c in s.checks]
    out = RESULTS / f"converge-{stamp}.md"
    out.write_text("\n".join(md) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hosts", default="1,10,40,100", help="fleet sizes, comma-separated (default 1,10,40,100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each read-only phase; the median is reported")
    parser.add_argument("--drift-runs", type=int, default=3,
                        help="extra drift runs on the repaired fleet, each must find nothing")
    parser.add_argument("--code", type=Path, default=REPO,
                        help="the checkout whose driftctl runs (default this one; e.g. a git worktree of a commit, "
                             "so edits in progress do not change the code mid-run)")
    parser.add_argument("--plant-undeclared", action="store_true",
                        help="self-test: also make a hand change the checks are not told about (the run must fail)")
    ns = parser.parse_args(argv)
    sizes = [int(x) for x in ns.hosts.split(",")]
    if ns.repeat < 1 or any(n < 1 for n in sizes):
        parser.error("--repeat and every size must be >= 1")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    env = environment(ns.code)
    results = []
    with tempfile.TemporaryDirectory(prefix="driftctl-bench-") as tmp:
        tmpdir = Path(tmp)
        manifests = tmpdir / "manifests"
        workload.write_manifests(manifests)
        for n in sizes:
            results.append(run_size(n, ns, tmpdir, manifests))
    print()
    print(phases.text_table([r for s in results for r in s.rows]), end="")
    problems = [p for s in results for p in s.problems]
    out = write_results(stamp, env, ns, results)
    print(f"\nwrote {out} and {out.with_suffix('.json').name}")
    if problems:
        print(f"\nCORRECTNESS FAILED ({len(problems)}; in full above and in {out.name}):")
        for p in problems:
            lines = [ln for ln in p.splitlines() if ln.strip()]
            print(f"  {lines[0]}" + (f"\n      ... {lines[-1].strip()}" if len(lines) > 1 else ""))
        return 1
    print("correctness: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
