"""The pure half of bench_converge.py: phase rows, the issue's targets, the table, the correctness checks.

Nothing here runs a command or touches a host; tests/unit/test_bench_phases.py covers it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

INTERPRETER_S = 0.3  # what a CLI pays for Python's start over the in-process floor (the allowance)
RATIO_LIMIT = 1.5
FIRST_CONVERGE_LIMIT_S = 7.0  # at 40 hosts
RSS_LIMIT_MB = {40: 100.0, 100: 150.0}
DRIFT_STORE_LIMIT_KB = 50.0  # a 40-host drift with nothing drifted
FIRST_CONVERGE_STORE_LIMIT_KB = 1024.0  # at 40 hosts
RATIO_SIZES = (40, 100)  # where the issue sets the ratio target

PHASES = ("plan", "first_apply", "noop_apply", "check", "drift", "floor")
READ_ONLY = ("noop_apply", "check", "drift", "floor")  # repeated --repeat times; the median is reported
RATIO_PHASES = ("noop_apply", "check", "drift")


@dataclass
class Sample:
    """One run of one phase."""

    wall_s: float
    rc: int
    peak_rss_mb: float = 0.0
    wire_rx: int = 0  # bytes the hosts received (controller -> hosts), all hosts
    wire_tx: int = 0  # bytes the hosts sent
    wire_by_host: dict[str, int] = field(default_factory=dict)  # rx + tx per host
    store_growth: int = 0  # bytes
    output_bytes: int = 0
    cpu_s: float = 0.0  # the controller's CPU seconds (the CLI process; the floor: the bench's own)
    hosts_cpu_s: float | None = None  # CPU seconds the fleet's containers used (None: no cgroup counters)
    floor_s: float | None = None  # the floor measured just before this run, in the same round (paired)


@dataclass
class PhaseRow:
    """A phase at one fleet size: the median of its samples (the worst RSS and exit code)."""

    hosts: int
    phase: str
    samples: list[Sample]
    floor_s: float | None = None

    @property
    def wall_s(self) -> float:
        return statistics.median(s.wall_s for s in self.samples)

    @property
    def rc(self) -> int:
        return max(s.rc for s in self.samples)

    @property
    def peak_rss_mb(self) -> float:
        return max(s.peak_rss_mb for s in self.samples)

    @property
    def wire_per_host_kb(self) -> float:
        return statistics.median(s.wire_rx + s.wire_tx for s in self.samples) / self.hosts / 1024

    def median_sample(self) -> Sample:
        ordered = sorted(self.samples, key=lambda s: s.wall_s)
        return ordered[(len(ordered) - 1) // 2]

    @property
    def cpu(self) -> tuple[float, float | None]:
        """(controller, hosts) CPU seconds, the medians of the runs."""
        hosts = [s.hosts_cpu_s for s in self.samples if s.hosts_cpu_s is not None]
        return (statistics.median(s.cpu_s for s in self.samples),
                statistics.median(hosts) if len(hosts) == len(self.samples) else None)

    @property
    def store_growth_kb(self) -> float:
        return statistics.median(s.store_growth for s in self.samples) / 1024

    @property
    def output_kb(self) -> float:
        return statistics.median(s.output_bytes for s in self.samples) / 1024

    @property
    def ratio(self) -> float | None:
        """wall / (floor + the interpreter's allowance). Runs paired with a floor measured just before
        them (the read-only phases' rounds) give the median of their own ratios: the machine's speed
        moves by tens of percent within minutes here, and a floor taken minutes from the run it divides
        measures that drift, not driftctl."""
        if self.phase == "floor":
            return None
        paired = [s.wall_s / (s.floor_s + INTERPRETER_S) for s in self.samples if s.floor_s is not None]
        if paired and len(paired) == len(self.samples):
            return statistics.median(paired)
        if self.floor_s is None:
            return None
        return self.wall_s / (self.floor_s + INTERPRETER_S)

    def targets(self) -> list[Target]:
        return targets_for(self)

    def as_dict(self) -> dict[str, Any]:
        return {"hosts": self.hosts, "phase": self.phase, "wall_s": round(self.wall_s, 3), "rc": self.rc,
                "floor_s": None if self.floor_s is None else round(self.floor_s, 3),
                "ratio": None if self.ratio is None else round(self.ratio, 2),
                "wire_per_host_kb": round(self.wire_per_host_kb, 1), "peak_rss_mb": round(self.peak_rss_mb, 1),
                "store_growth_kb": round(self.store_growth_kb, 1), "output_kb": round(self.output_kb, 1),
                "cpu_s": round(self.cpu[0], 2), "hosts_cpu_s": None if self.cpu[1] is None else round(self.cpu[1], 2),
                "targets": [asdict(t) for t in self.targets()], "samples": [asdict(s) for s in self.samples]}


def host_spread_kb(row: PhaseRow) -> tuple[float, float]:
    """The least and the most bytes one host carried in the phase's median-wall run, in KB."""
    per_host = row.median_sample().wire_by_host.values()
    return (min(per_host) / 1024, max(per_host) / 1024) if per_host else (0.0, 0.0)


@dataclass(frozen=True)
class Target:
    name: str
    limit: float
    value: float
    met: bool

    def __str__(self) -> str:
        return f"{self.name} {'ok' if self.met else 'MISS'}"


def targets_for(row: PhaseRow) -> list[Target]:
    """The issue's targets that apply to this row (none at sizes the issue does not name)."""
    out: list[Target] = []

    def add(name: str, limit: float, value: float | None) -> None:
        if value is not None:
            out.append(Target(name, limit, round(value, 3), value <= limit))

    if row.phase in RATIO_PHASES and row.hosts in RATIO_SIZES:
        add("ratio", RATIO_LIMIT, row.ratio)
    if row.phase == "first_apply" and row.hosts == 40:
        add("wall", FIRST_CONVERGE_LIMIT_S, row.wall_s)
        add("store", FIRST_CONVERGE_STORE_LIMIT_KB, row.store_growth_kb)
    if row.phase == "drift" and row.hosts == 40:
        add("store", DRIFT_STORE_LIMIT_KB, row.store_growth_kb)
    if row.hosts in RSS_LIMIT_MB and row.phase != "floor":
        add("rss", RSS_LIMIT_MB[row.hosts], row.peak_rss_mb)
    return out


COLUMNS = ("hosts", "phase", "wall s", "floor s", "ratio", "targets", "CPU s ctl+hosts", "wire KB/host",
           "peak RSS MB", "store +KB", "output KB", "rc")


def cpu_cell(row: PhaseRow) -> str:
    ctl, hosts = row.cpu
    return f"{ctl:.1f}+{hosts:.1f}" if hosts is not None else f"{ctl:.1f}+?"


def cells(row: PhaseRow) -> list[str]:
    targets = row.targets()
    return [
        str(row.hosts), row.phase, f"{row.wall_s:.2f}",
        "" if row.floor_s is None else f"{row.floor_s:.2f}",
        "" if row.ratio is None else f"{row.ratio:.2f}",
        ", ".join(str(t) for t in targets) if targets else "-",
        cpu_cell(row),
        f"{row.wire_per_host_kb:.1f}",
        "" if row.phase == "floor" else f"{row.peak_rss_mb:.0f}",
        "" if row.phase == "floor" else f"{row.store_growth_kb:.1f}",
        "" if row.phase == "floor" else f"{row.output_kb:.1f}",
        "" if row.phase == "floor" else str(row.rc),
    ]


def markdown_table(rows: Iterable[PhaseRow]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def text_table(rows: Iterable[PhaseRow]) -> str:
    body = [list(COLUMNS)] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in body) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) if i != 1 and i != 5 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(line, widths, strict=True))).rstrip()
                     for line in body) + "\n"


# ---- correctness: the report documents (driftctl.report/v1) compared with what the bench knows


def changed_ids(doc: Mapping[str, Any]) -> dict[str, set[str]]:
    """Per host, the ids of resources the run changed (apply) or would change (plan)."""
    return {h["name"]: {r["id"] for r in h.get("resources") or [] if r.get("status") == "changed"}
            for h in doc["hosts"]}


def drifted_ids(doc: Mapping[str, Any]) -> dict[str, set[str]]:
    """Per host, the ids of resources a drift run reports as drifted (not covered by an ignore rule)."""
    return {h["name"]: {r["id"] for r in h.get("resources") or [] if r.get("drift") and not r.get("ignored")}
            for h in doc["hosts"]}


def unmanaged_paths(doc: Mapping[str, Any]) -> dict[str, set[str]]:
    return {h["name"]: {u["path"] for u in h.get("unmanaged") or [] if not u.get("ignored")} for h in doc["hosts"]}


def failed_hosts(doc: Mapping[str, Any]) -> list[str]:
    """Hosts that failed or were unreachable, or had a failed resource: every other check is moot there."""
    return [f"{h['name']}: {h['status']} {h.get('error') or ''}".rstrip() for h in doc["hosts"]
            if h["status"] in ("failed", "unreachable") or any(r.get("status") == "failed"
                                                               for r in h.get("resources") or [])]


def compare(label: str, want: Mapping[str, set[str]], got: Mapping[str, set[str]]) -> list[str]:
    """What differs between two per-host id sets, one line per host and direction; [] when equal.

    A host missing from one side counts as an empty set there, so ``want`` need only name the hosts
    where something is expected.
    """
    problems = []
    for host in sorted(set(want) | set(got)):
        w, g = want.get(host, set()), got.get(host, set())
        if missing := sorted(w - g):
            problems.append(f"{label}: {host}: expected but not reported: {', '.join(missing)}")
        if extra := sorted(g - w):
            problems.append(f"{label}: {host}: reported but not expected: {', '.join(extra)}")
    return problems


def expect_hosts(label: str, doc: Mapping[str, Any], hosts: Iterable[str]) -> list[str]:
    got = sorted(h["name"] for h in doc["hosts"])
    want = sorted(hosts)
    return [] if got == want else [f"{label}: the report covers hosts {got}, the fleet has {want}"]
