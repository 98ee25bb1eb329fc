"""bench/floor.py's pure parts: its agent program run locally through ``python3 -c``, its answer check."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import floor  # noqa: E402
import workload  # noqa: E402


def run_agent(paths: list[str], users: list[str], groups: list[str], packages: list[str] | None = None,
              services: list[str] | None = None) -> dict[str, list[str]]:
    """The agent exactly as the floor sends it (its command line through a shell), on this machine."""
    request = floor.request_line(paths, users, groups, packages, services)
    r = subprocess.run(["sh", "-c", floor.agent_command()], input=request, capture_output=True, check=True)
    assert r.stdout.endswith(b"\n") and r.stdout.count(b"\n") == 1  # one line
    return floor.parse_answer(r.stdout, len(paths), len(users), len(groups), len(packages or []),
                              len(services or []))


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    f = tmp_path / "f.conf"
    f.write_text("option = 1\n")
    d = tmp_path / "d"
    d.mkdir()
    link = tmp_path / "current"
    link.symlink_to(d)
    return {"file": f, "dir": d, "link": link, "missing": tmp_path / "gone"}


def test_agent_answers_one_short_hash_per_path_and_dash_for_absent(tree: dict[str, Path]) -> None:
    paths = [str(tree[k]) for k in ("file", "dir", "link", "missing")]
    answer = run_agent(paths, ["root", "no-such-user-xyz"], ["root"])
    assert [len(h) for h in answer["p"][:3]] == [16, 16, 16]
    assert answer["p"][3] == "-"
    assert len(set(answer["p"][:3])) == 3
    assert answer["u"][1] == "-" and len(answer["u"][0]) == 16
    passwd_root = next(ln for ln in Path("/etc/passwd").read_bytes().splitlines(keepends=True)
                       if ln.split(b":", 1)[0] == b"root")
    assert answer["u"][0] == hashlib.sha256(passwd_root).hexdigest()[:16]


def test_agent_hash_follows_content_mode_and_link_target(tree: dict[str, Path]) -> None:
    paths = [str(tree["file"]), str(tree["link"])]
    before = run_agent(paths, [], [])["p"]
    tree["file"].write_text("option = 2\n")
    after_content = run_agent(paths, [], [])["p"]
    os.chmod(tree["file"], 0o600)
    after_mode = run_agent(paths, [], [])["p"]
    tree["link"].unlink()
    tree["link"].symlink_to(tree["file"])
    after_target = run_agent(paths, [], [])["p"]
    assert len({before[0], after_content[0], after_mode[0]}) == 3
    assert before[1] == after_content[1] == after_mode[1] != after_target[1]
    assert run_agent(paths, [], [])["p"] == after_target  # same state, same answer


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg")
def test_agent_asks_dpkg_once_for_its_packages_and_follows_their_state() -> None:
    """One dpkg-query for all the packages (as driftctl's probe): an answer a package each, and "-" for
    each when one of them is not installed (the call fails; a converged host has none)."""
    installed = run_agent([], [], [], ["dpkg", "coreutils"])["k"]
    assert [len(h) for h in installed] == [16, 16] and installed[0] != installed[1]
    assert run_agent([], [], [], ["dpkg", "coreutils"])["k"] == installed
    assert run_agent([], [], [], ["dpkg", "no-such-package-xyz"])["k"] == ["-", "-"]
    assert run_agent([], [], [])["k"] == [] and run_agent([], [], [])["s"] == []


def test_agent_answers_a_service_from_systemctl_or_dash_without_it() -> None:
    answer = run_agent([], [], [], services=["cron"])["s"]
    assert len(answer) == 1 and (answer[0] == "-" or len(answer[0]) == 16)


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_keys_are_read_once_and_each_host_gets_its_own(tmp_path: Path) -> None:
    keys = {}
    for name in ("a", "b", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
        keys[name] = (tmp_path / f"{name}.pub").read_text().split()[:2]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:4001 {' '.join(keys['a'])}\n[127.0.0.1]:4002 {' '.join(keys['b'])}\n")

    def target(name: str, port: int) -> floor.Target:
        return floor.Target(name, "127.0.0.1", port, "root", str(tmp_path / "client"), str(kh))

    loaded = floor.load_keys([target("h1", 4001), target("h2", 4002)])
    assert {n: [k.get_base64() for k in v.host_keys.values()] for n, v in loaded.items()} == {
        "h1": [keys["a"][1]], "h2": [keys["b"][1]]}
    assert loaded["h1"].client_key is loaded["h2"].client_key  # parsed once
    with pytest.raises(ValueError, match=r"h3: no key of \[127.0.0.1\]:4003"):
        floor.load_keys([target("h3", 4003)])


def test_agent_is_stdlib_only_and_imports_nothing_of_driftctl() -> None:
    first = floor.AGENT.strip().splitlines()[0]
    assert first == "import hashlib, json, os, stat, sys"
    assert "driftctl" not in floor.AGENT


def test_answer_of_the_wrong_shape_is_refused() -> None:
    good = json.dumps({"p": ["a", "b"], "u": [], "g": ["c"], "k": [], "s": []}).encode()
    assert floor.parse_answer(good, 2, 0, 1)["g"] == ["c"]
    with pytest.raises(ValueError, match="'p'"):
        floor.parse_answer(good, 3, 0, 1)
    with pytest.raises(ValueError, match="not an object"):
        floor.parse_answer(b"[]", 0, 0, 0)


def test_workload_paths_cover_every_path_resource() -> None:
    observed = workload.managed_paths()
    assert len(observed.paths) == len(set(observed.paths)) == 1 + workload.DIRS + workload.FILES + 2
    assert workload.resource_count() == (len(observed.paths) + len(observed.users) + len(observed.groups)
                                         + len(observed.packages) + len(observed.services))
    assert {f"package:{p}" for p in observed.packages} | {f"service:{s}" for s in observed.services} \
        <= workload.resource_ids()


def test_format_result_names_errors() -> None:
    trip = floor.HostTrip("h1", 0.5, False, error="SSHException: refused")
    result = floor.FloorResult(hosts=1, repeat=1, wall_s=0.5, host_mean_s=0.0, runs=[floor.FloorRun(0.5, [trip])],
                               errors=["run 1 h1: SSHException: refused"])
    text = floor.format_result(result)
    assert "wall 0.50 s" in text and "error: run 1 h1: SSHException: refused" in text
    assert not result.ok


def test_targets_from_a_fleet_inventory(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yaml").write_text(
        "all:\n  children:\n    web:\n      hosts:\n        fleet1: {ansible_host: 127.0.0.1, ansible_port: 4001}\n"
        "        fleet10: {ansible_host: 127.0.0.1, ansible_port: 4010}\n"
        "    db:\n      hosts:\n        fleet2: {ansible_host: 127.0.0.1, ansible_port: 4002, ansible_user: admin}\n")
    (tmp_path / "group_vars" / "all.yaml").write_text(
        "ansible_user: root\nansible_ssh_private_key_file: /k/id\ndriftctl_known_hosts: /k/known_hosts\n")
    targets = floor.targets_from_inventory(tmp_path)
    assert [(t.name, t.port, t.user) for t in targets] == [("fleet1", 4001, "root"), ("fleet2", 4002, "admin"),
                                                           ("fleet10", 4010, "root")]
    assert {(t.address, t.key_file, t.known_hosts) for t in targets} == {("127.0.0.1", "/k/id", "/k/known_hosts")}
