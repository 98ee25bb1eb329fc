#!/usr/bin/env python3
"""Benchmark file contents: one large `source:` file (controller and agent peak RSS) and many small files.

    .venv/bin/python bench/bench_content.py --large-mb 2048 --small 10000

Large: a file of random bytes under the role's files/, applied to a fresh fleet host. The controller's
peak RSS is the CLI process's (wait4); the agent's is read from /proc/<pid>/status VmHWM on the host
while it runs (polled through podman exec). Small: N templated files of a few bytes in 100 directories,
first apply and second (no-op) apply. Results: a table and bench/results/content-<date>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_converge import REPO, fleet_library, run

AGENT_PEAK = (
    "for p in $(pgrep -f zlib.decompress); do grep -h VmHWM /proc/$p/status 2>/dev/null; done"
)


def large_site(root: Path, mb: int) -> None:
    role = root / "roles" / "big"
    (role / "files").mkdir(parents=True)
    with open(role / "files" / "big.bin", "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    (root / "site.yaml").write_text("- hosts: all\n  roles: [big]\n")
    (role / "resources.yaml").write_text(
        "resources:\n  - directory: /srv/big\n  - file: /srv/big/big.bin\n    source: big.bin\n    mode: \"0644\"\n")


def small_site(root: Path, n: int) -> None:
    role = root / "roles" / "small"
    role.mkdir(parents=True)
    (root / "site.yaml").write_text("- hosts: all\n  roles: [small]\n")
    (role / "defaults.yaml").write_text(f"small_files: {list(range(n))}\n")
    lines = ["resources:", "  - directory: /srv/small"]
    lines += [f"  - directory: /srv/small/d{d}" for d in range(100)]
    lines += ["  - file: \"/srv/small/d{{ item % 100 }}/f{{ item }}\"", "    content: \"file {{ item }}\\n\"",
              "    loop: \"{{ small_files }}\""]
    (role / "resources.yaml").write_text("\n".join(lines) + "\n")


def watch_agent(host, stop: threading.Event, peaks: list[int]) -> None:
    while not stop.is_set():
        r = host.sh(AGENT_PEAK)
        for line in r.stdout_text.splitlines():
            peaks.append(int(line.split()[1]))  # kB
        time.sleep(0.3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-mb", type=int, default=2048)
    parser.add_argument("--small", type=int, default=10000)
    ns = parser.parse_args()
    fleetlib = fleet_library()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="driftctl-bench-content-") as tmp:
        tmpdir = Path(tmp)
        fleet_id = "benchcontent"
        fleetlib.down(fleet_id)
        fleet = fleetlib.start_fleet(fleet_id, 1, inventory_dir=tmpdir / "inv", known_hosts=tmpdir / "kh",
                                     owner=fleetlib.current_owner())
        host = fleet.hosts[0]
        inv = str(fleet.inventory_dir)
        try:
            if ns.large_mb:
                site = tmpdir / "large"
                large_site(site, ns.large_mb)
                stop, peaks = threading.Event(), []
                watcher = threading.Thread(target=watch_agent, args=(host, stop, peaks), daemon=True)
                watcher.start()
                r = run(["apply", inv, "-m", str(site)], tmpdir / "state-large")
                stop.set()
                watcher.join()
                on_host = (host.sh("sha256sum /srv/big/big.bin").stdout_text.split() or ["missing"])[0]
                h = hashlib.sha256()
                with open(site / "roles" / "big" / "files" / "big.bin", "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                results["large"] = {
                    "mb": ns.large_mb, "rc": r["rc"], "wall_s": r["wall_s"],
                    "controller_peak_rss_mb": r["peak_rss_mb"],
                    "agent_peak_rss_mb": round(max(peaks) / 1024, 1) if peaks else None,
                    "same_on_host": on_host == h.hexdigest(), "stderr": r["stderr"],
                }
                print(f"large {ns.large_mb} MB: {r['wall_s']}s rc={r['rc']} controller {r['peak_rss_mb']} MB, "
                      f"agent {results['large']['agent_peak_rss_mb']} MB, same on host: "
                      f"{results['large']['same_on_host']}", flush=True)
                host.sh("rm -rf /srv/big")
            if ns.small:
                site = tmpdir / "small"
                small_site(site, ns.small)
                for label in ("first_apply", "second_apply"):
                    r = run(["apply", inv, "-m", str(site)], tmpdir / "state-small")
                    results.setdefault("small", {"files": ns.small})[label] = {
                        "rc": r["rc"], "wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}
                    print(f"small {ns.small} files {label}: {r['wall_s']}s rc={r['rc']} peak {r['peak_rss_mb']} MB",
                          flush=True)
        finally:
            fleetlib.down(fleet_id)
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"content-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
