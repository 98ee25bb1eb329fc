"""Pull mode attacked: what a compromised host can make the controller store, secrets in SOURCE, the
cache's surroundings and permissions, git's command-running transports and root's own git config.

The controller's side is the real store (SQLite in a temp dir) fed the answers a host could forge; the
host's side is ``driftctl pull`` run as a user types it, on this machine."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_pull import _export, _gpg_key, commit, git, pull, resources

from driftctl.drift.pulled import MAX_REPORTS, collect
from driftctl.pull.git import shown_source
from driftctl.store import open_store
from driftctl.store.report import SCHEMA_ID


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    src, target = tmp_path / "src", tmp_path / "target"
    src.mkdir()
    target.mkdir()
    git(src, "init", "-q", "-b", "main")
    commit(src, {
        "inventory/hosts.yaml": "all:\n  hosts:\n    web1:\n",
        "manifests/site.yaml": "- hosts: all\n  roles: [r]\n",
        "manifests/roles/r/resources.yaml": resources(target),
    }, "first")
    return {"src": src, "target": target, "cache": tmp_path / "cache", "tmp": tmp_path}


# ---- the controller: what a host (root on it) can forge in its outbox ------------------------------------

def forged(**changes: Any) -> dict[str, Any]:
    now = time.time()
    doc: dict[str, Any] = {
        "schema": SCHEMA_ID, "command": "apply", "mode": "pull", "commit": "a" * 40, "source": "/srv/infra.git",
        "inventory": "inv", "started": now - 10, "finished": now - 9, "exit_code": 0,
        "summary": {"hosts": 1, "ok": 1}, "hosts": [{"name": "web1", "status": "ok", "resources": []}],
    }
    doc.update(changes)
    return doc


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = open_store(tmp_path / "state.sqlite")
    yield s
    s.close()


def test_a_report_number_that_is_no_number_is_passed_over_not_a_crash(store: Any) -> None:
    got = collect(store, "inv", "web1", {"id": "abc", "reports": [
        {"seq": "x", "doc": forged()}, {"seq": 2**70, "doc": forged()}, {"seq": True, "doc": forged()},
        {"seq": 1, "doc": forged()}]})
    assert len(got.stored) == 1 and got.cursor == ("abc", 1)
    assert store.pull_cursor("inv", "web1") == ("abc", 1)


def test_a_pull_part_or_commit_of_the_wrong_kind_is_refused_not_a_crash(store: Any) -> None:
    got = collect(store, "inv", "web1", {"id": "abc", "reports": [
        {"seq": 1, "doc": forged(pull="zz")}, {"seq": 2, "doc": forged(commit="\x1b]0;owned\x07")}]})
    assert got.stored == [] and got.cursor == ("abc", 2)
    assert "its pull part is not an object" in got.refused[0]
    assert "its commit is not a git commit id" in got.refused[1]


def test_a_report_dated_after_now_is_refused(store: Any) -> None:
    """It would stay the inventory's latest run (what `driftctl report` shows for the fleet) for ever."""
    later = time.time() + 86400 * 365
    got = collect(store, "inv", "web1", {"id": "abc", "reports": [
        {"seq": 1, "doc": forged(command="drift", started=later, finished=later)}]})
    assert got.stored == [] and "ahead of this controller's clock" in got.refused[0]
    assert store.runs("inv", command="drift") == []


def test_the_summary_stored_is_the_hosts_own_count_never_a_fleet(store: Any) -> None:
    got = collect(store, "inv", "web1", {"id": "abc", "reports": [
        {"seq": 1, "doc": forged(summary={"hosts": 500, "failed": 499, "ok": 1})}]})
    assert len(got.stored) == 1
    summary = store.runs("inv")[0].summary
    assert (summary["hosts"], summary["failed"], summary["ok"]) == (1, 0, 1)


def test_an_outbox_id_driftctl_never_makes_is_refused(store: Any) -> None:
    """The id goes into the run's key: an id of 400 characters would cut the host's name off it."""
    got = collect(store, "inv", "web1", {"id": "x" * 500, "reports": [{"seq": 1, "doc": forged()}]})
    assert got.stored == [] and store.pull_cursor("inv", "web1") is None
    got = collect(store, "inv", "web1", {"id": {"a": 1}, "reports": [{"seq": 1, "doc": forged()}]})
    assert got.stored == []


def test_more_reports_than_asked_or_numbers_before_the_cursor_are_not_taken(store: Any) -> None:
    many = [{"seq": n, "doc": forged()} for n in range(1, 3 * MAX_REPORTS)]
    got = collect(store, "inv", "web1", {"id": "abc", "reports": many, "more": False})
    assert len(got.stored) == MAX_REPORTS and got.more and got.cursor == ("abc", MAX_REPORTS)
    # the cursor never goes back: a report numbered before it is not stored again, nor the cursor moved
    again = collect(store, "inv", "web1", {"id": "abc", "reports": [{"seq": 3, "doc": forged(commit="b" * 40)}]})
    assert again.stored == [] and store.pull_cursor("inv", "web1") == ("abc", MAX_REPORTS)
    assert len(store.runs("inv", limit=100)) == MAX_REPORTS


# ---- secrets in SOURCE -------------------------------------------------------------------------------------

def test_shown_source_hides_a_password_holding_an_at_sign() -> None:
    from driftctl.pull.git import shown_text

    assert shown_source("https://ci:p@ss@git.example.com/infra.git") == "https://git.example.com/infra.git"
    assert shown_source("https://git.example.com/a@b.git") == "https://git.example.com/a@b.git"
    assert shown_text("fatal: unable to access 'https://tok3n@h/x/': refused") == \
        "fatal: unable to access 'https://h/x/': refused"


def test_a_sources_password_is_never_recorded_nor_shown(site: dict[str, Path]) -> None:
    """A run falling back to the last good commit is recorded with the argv the user typed: its URL
    carried the token into the outbox (and so the controller's history) and the host's store."""
    assert pull(site).returncode == 2
    url = "https://ci:s3cr3t-t0ken@127.0.0.1:1/infra.git"
    run = pull(site, "--json", source=url)  # type: ignore[arg-type]
    assert run.returncode == 0, run.stderr
    assert "unreachable" in run.stderr and "s3cr3t" not in run.stdout + run.stderr
    doc = json.loads(run.stdout)
    assert "https://127.0.0.1:1/infra.git" in doc["argv"] and "https://127.0.0.1:1/infra.git" in doc["pull"]["fallback"]
    for p in (site["cache"] / "outbox").glob("*.json"):
        assert "s3cr3t" not in p.read_text(), p
    db = sqlite3.connect(site["cache"] / "state.sqlite")
    try:
        runs = db.execute("SELECT argv FROM runs").fetchall()
    finally:
        db.close()
    assert runs and all("s3cr3t" not in str(r) for r in runs)
    assert "s3cr3t" not in (site["cache"] / "state.json").read_text()


# ---- the cache -------------------------------------------------------------------------------------------

def test_a_cache_under_a_directory_another_user_owns_is_refused(site: dict[str, Path]) -> None:
    """That user could rename the checked cache away and put a tree of manifests of theirs in its place."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory away")
    theirs = site["tmp"] / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)
    run = pull(site, cache=theirs / "cache")
    assert run.returncode == 1, run.stderr
    assert "refusing the pull cache" in run.stderr and "owned by uid 65534" in run.stderr
    assert not (theirs / "cache").exists() and not (site["target"] / "motd").exists()
    open_dir = site["tmp"] / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)  # writable by all, no sticky bit
    run = pull(site, cache=open_dir / "cache")
    assert run.returncode == 1 and "writable by others" in run.stderr
    os.chmod(open_dir, 0o1777)  # as /tmp: nobody may rename what is ours
    assert pull(site, cache=open_dir / "cache").returncode == 2


def test_under_umask_000_nothing_in_the_cache_is_open_to_others(site: dict[str, Path]) -> None:
    argv = ["sh", "-c", 'umask 000 && exec "$@"', "sh"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")} | {"NO_COLOR": "1"}
    run = subprocess.run([*argv, sys.executable, "-m", "driftctl", "pull", str(site["src"]),
                          "--cache-dir", str(site["cache"]), "--host", "web1"],
                         capture_output=True, text=True, env=env, cwd=site["tmp"], timeout=300)
    assert run.returncode == 2, run.stderr
    opened = []
    for root, dirs, files in os.walk(site["cache"]):
        for name in dirs + files:
            p = Path(root) / name
            if not p.is_symlink() and os.lstat(p).st_mode & 0o022:
                opened.append(f"{p.relative_to(site['cache'])} {os.lstat(p).st_mode & 0o777:o}")
    assert opened == []


# ---- git ---------------------------------------------------------------------------------------------------

def test_the_ext_transport_never_runs_even_when_roots_git_config_allows_it(site: dict[str, Path]) -> None:
    home = site["tmp"] / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[protocol]\n\tallow = always\n")
    planted = site["tmp"] / "planted"
    run = pull(site, source=f"ext::sh -c touch% {planted}", env={"HOME": str(home)})  # type: ignore[arg-type]
    assert run.returncode == 8, run.stderr
    assert not planted.exists()


@pytest.mark.skipif(shutil.which("gpg") is None or shutil.which("ssh-keygen") is None,
                    reason="needs gnupg and ssh-keygen")
def test_verify_commit_trusts_no_ssh_key_roots_git_config_names(site: dict[str, Path],
                                                               gpg_homes: Callable[[str], Path]) -> None:
    """git checks an SSH signature against gpg.ssh.allowedSignersFile of root's config, whatever keys
    --verify-commit was given."""
    ops_home = gpg_homes("ops")
    ops = _export(ops_home, _gpg_key(ops_home, "ops@example.com"), site["tmp"] / "ops.asc")
    sshkey = site["tmp"] / "id_mallory"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mallory", "-f", str(sshkey)], check=True)
    allowed = site["tmp"] / "allowed_signers"
    allowed.write_text(f"t@example.com {Path(str(sshkey) + '.pub').read_text()}")
    home = site["tmp"] / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[gpg \"ssh\"]\n\tallowedSignersFile = {allowed}\n")
    for name, text in {"manifests/roles/r/resources.yaml": resources(site["target"], "mallory\n")}.items():
        (site["src"] / name).write_text(text)
    git(site["src"], "add", "-A")
    git(site["src"], "-c", "gpg.format=ssh", "-c", f"user.signingkey={sshkey}", "commit", "-q", "-S", "-m", "ssh")
    assert git(site["src"], "-c", f"gpg.ssh.allowedSignersFile={allowed}", "verify-commit", "HEAD") == ""
    run = pull(site, "--verify-commit", str(ops), env={"HOME": str(home)})
    assert run.returncode == 1, run.stderr
    assert "is not signed by a key of --verify-commit" in run.stderr and "an SSH one" in run.stderr
    assert not (site["target"] / "motd").exists()


def test_what_a_run_that_died_left_in_the_cache_is_removed(site: dict[str, Path]) -> None:
    """A GnuPG home of --verify-commit (keys of the last run) or a half-made mirror, left by a kill."""
    site["cache"].mkdir(mode=0o700)
    (site["cache"] / ".gnupg.x1").mkdir()
    (site["cache"] / ".gnupg.x1" / "pubring.kbx").write_text("keys")
    (site["cache"] / ".repo.y2").mkdir()
    elsewhere = site["tmp"] / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("kept")
    (site["cache"] / ".gnupg.link").symlink_to(elsewhere)
    assert pull(site).returncode == 2
    assert sorted(p.name for p in site["cache"].iterdir() if p.name.startswith(".")) == []
    assert (elsewhere / "keep").read_text() == "kept"  # a link is removed, never followed


# ---- what the user is told -----------------------------------------------------------------------------------

def test_an_unreachable_source_says_what_git_said_not_its_advice(site: dict[str, Path]) -> None:
    run = pull(site, source=site["tmp"] / "nosuch")
    assert run.returncode == 8, run.stderr
    assert "does not appear to be a git repository" in run.stderr
    assert "and the repository exists" not in run.stderr


def test_a_source_repository_of_another_user_is_an_input_error_that_says_so(site: dict[str, Path]) -> None:
    """git refuses it (its owner would decide what runs as root here): not "unreachable", and no fallback."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a repository away")
    assert pull(site).returncode == 2
    (site["target"] / "motd").unlink()
    for root, dirs, files in os.walk(site["src"]):
        for name in [*dirs, *files]:
            os.lchown(Path(root) / name, 65534, 65534)
    os.chown(site["src"], 65534, 65534)
    run = pull(site)
    assert run.returncode == 1, run.stderr
    assert "git refuses a repository owned by another user" in run.stderr and "dubious ownership" in run.stderr
    assert not (site["target"] / "motd").exists()


def test_a_fallback_records_the_source_its_commit_came_from(site: dict[str, Path]) -> None:
    """SOURCE changed to one never reached: the run applies the last good commit, and its record must not
    say that commit is of the new SOURCE."""
    assert pull(site).returncode == 2
    moved = "https://127.0.0.1:1/moved.git"
    run = pull(site, "--json", "--ref", "v2", source=moved)  # type: ignore[arg-type]
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["source"] == str(site["src"]) and doc["commit"] == git(site["src"], "rev-parse", "HEAD")
    assert f"used the last good commit {doc['commit'][:12]} of {site['src']}" in doc["pull"]["fallback"]
    assert f"of {site['src']}" in run.stderr


@pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gnupg")
def test_verify_commit_says_a_key_has_expired_and_what_to_do(site: dict[str, Path],
                                                            gpg_homes: Callable[[str], Path]) -> None:
    """It said "not signed by a key of --verify-commit: Primary key fingerprint: ..." of a key it was given."""
    home = gpg_homes("old")
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--faked-system-time", "20200101T000000",
                    "--quick-gen-key", "old@example.com", "ed25519", "sign", "1d"], check=True, capture_output=True,
                   env=env)
    fpr = next(line.split(":")[9] for line in subprocess.run(
        ["gpg", "--batch", "--list-keys", "--with-colons"], check=True, capture_output=True, text=True,
        env=env).stdout.splitlines() if line.startswith("fpr:"))
    key = _export(home, fpr, site["tmp"] / "old.asc")
    then = site["tmp"] / "gpg-then"  # signs as on the key's first day
    then.write_text('#!/bin/sh\nexec gpg --faked-system-time 20200101T120000 "$@"\n')
    then.chmod(0o755)
    (site["src"] / "manifests/roles/r/resources.yaml").write_text(resources(site["target"], "old\n"))
    git(site["src"], "add", "-A")
    git(site["src"], "-c", f"gpg.program={then}", "commit", "-q", f"-S{fpr}", "-m", "signed in 2020",
        env={"GNUPGHOME": str(home)})
    run = pull(site, "--verify-commit", str(key))
    assert run.returncode == 1, run.stderr
    assert "a key of --verify-commit that expired on 2020-01-02" in run.stderr
    assert "gpg --quick-set-expire" in run.stderr
    assert not (site["target"] / "motd").exists()
    assert [p.name for p in site["cache"].iterdir() if p.name.startswith(".gnupg")] == []


# ---- a damaged cache -------------------------------------------------------------------------------------

def test_a_mirror_that_is_no_repository_is_made_again(site: dict[str, Path]) -> None:
    """A mirror without HEAD (a disk error, a kill while an older driftctl made it) was a traceback."""
    assert pull(site, "--check").returncode == 2
    (site["cache"] / "repo.git" / "HEAD").unlink()
    run = pull(site)
    assert run.returncode == 2, run.stderr
    assert (site["target"] / "motd").read_text() == "hello\n"


def test_a_mirror_whose_objects_are_damaged_is_fetched_again_not_unreachable(site: dict[str, Path]) -> None:
    """git could not read the mirror's objects: every run said SOURCE "cannot be fetched" (exit 8) or fell
    back to the last good commit for ever, while SOURCE was there."""
    assert pull(site, "--check").returncode == 2
    for p in (site["cache"] / "repo.git" / "objects").rglob("*"):
        if p.is_file():
            p.chmod(0o600)
            p.write_bytes(b"garbage")
    commit(site["src"], {"manifests/roles/r/resources.yaml": resources(site["target"], "second\n")})
    run = pull(site, "--json")
    assert run.returncode == 2, run.stderr
    assert json.loads(run.stdout)["pull"]["fallback"] is None
    assert (site["target"] / "motd").read_text() == "second\n"
    assert [p.name for p in site["cache"].iterdir() if p.name.startswith(".")] == []



# ---- a large repository ------------------------------------------------------------------------------------

# VmHWM, the peak of this process's own memory since its exec: getrusage's ru_maxrss keeps the
# parent's at the fork (a pytest process grown to 900 MB late in the suite made this test fail)
PEAK = """import runpy, sys
sys.argv = ["driftctl", *sys.argv[2:]]
try:
    runpy.run_module("driftctl", run_name="__main__")
finally:
    with open("/proc/self/status") as st:
        hwm = next(line.split()[1] for line in st if line.startswith("VmHWM:"))
    with open(PEAK_FILE, "w") as f:
        f.write(hwm)
"""


def test_a_large_tree_is_checked_out_without_holding_it_in_memory(site: dict[str, Path]) -> None:
    """The whole `git archive` of the commit was read into the pull's memory: a repository with large
    files needed their size in RAM (and more), on hosts that often have little. Measured: the pull's own
    peak memory (git's is not counted), with 256 MiB of zeros in the tree (tiny in git, whole in a tar)."""
    size = 256 * 1024 * 1024
    with open(site["src"] / "big.bin", "wb") as f:
        f.truncate(size)
    git(site["src"], "add", "-A")
    git(site["src"], "commit", "-q", "-m", "a large file")
    peak_file = site["tmp"] / "peak"
    code = PEAK.replace("PEAK_FILE", repr(str(peak_file)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")} | {"NO_COLOR": "1"}
    run = subprocess.run([sys.executable, "-c", code, "-", "pull", str(site["src"]), "--cache-dir",
                          str(site["cache"]), "--host", "web1"], capture_output=True, text=True, env=env,
                         cwd=site["tmp"], timeout=600)
    assert run.returncode == 2, run.stderr
    checkout = next(p for p in (site["cache"] / "checkouts").iterdir())
    assert (checkout / "big.bin").stat().st_size == size
    peak_kib = int(peak_file.read_text())
    assert peak_kib * 1024 < size / 2, f"peak {peak_kib} KiB"
    assert [p.name for p in (site["cache"] / "checkouts").iterdir() if p.name.startswith(".")] == []
