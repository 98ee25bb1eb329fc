"""driftctl pull on this machine: a git repository made by the test, the local transport, targets in a
temp dir. The CLI runs as a user types it (a subprocess); the host's state is checked with plain file
reads, the cache with os.stat."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from driftctl.errors import InventoryError
from driftctl.pull.whoami import find_host

pytestmark = pytest.mark.applies_here  # its host lock is this machine's (tests/conftest.py)

REPO = Path(__file__).resolve().parents[2]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": "/nonexistent"}


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    full = {"PATH": os.environ["PATH"], **GIT_ENV, **(env or {})}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=full).stdout.strip()


def resources(target: Path, text: str = "hello\n", extra: str = "") -> str:
    return ("resources:\n"
            f"  - file: {target}/motd\n"
            f"    content: {json.dumps(text)}\n" + extra)


def commit(repo: Path, files: dict[str, str], message: str = "change", sign_key: str | None = None,
           gnupg: Path | None = None) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    args = ["commit", "-q", "-m", message] + ([f"-S{sign_key}"] if sign_key else [])
    git(repo, *args, env={"GNUPGHOME": str(gnupg)} if gnupg else None)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    """A source repository (inventory: web1 at 10.9.9.9, web2), a target dir and a cache path."""
    src, target = tmp_path / "src", tmp_path / "target"
    src.mkdir()
    target.mkdir()
    git(src, "init", "-q", "-b", "main")
    commit(src, {
        "inventory/hosts.yaml": "all:\n  hosts:\n    web1:\n      ansible_host: 10.9.9.9\n    web2:\n",
        "manifests/site.yaml": "- hosts: all\n  roles: [r]\n",
        "manifests/roles/r/resources.yaml": resources(target),
    }, "first")
    return {"src": src, "target": target, "cache": tmp_path / "cache", "tmp": tmp_path}


def pull(s: dict[str, Path], *args: str, host: str | None = "web1", cache: Path | None = None,
         source: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "driftctl", "pull", str(source or s["src"]), "--cache-dir", str(cache or s["cache"]),
            *args]
    if host:
        argv += ["--host", host]
    full = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
    # the files it replaces are backed up beside the test, not in this machine's /var/lib/driftctl/backup
    full.update({"NO_COLOR": "1", "DRIFTCTL_BACKUP_DIR": str(s["tmp"] / "backup"), **(env or {})})
    return subprocess.run(argv, capture_output=True, text=True, cwd=s["tmp"], env=full, timeout=300)


def state(s: dict[str, Path]) -> dict[str, Any]:
    return json.loads((s["cache"] / "state.json").read_text())


def outbox(s: dict[str, Path]) -> list[dict[str, Any]]:
    box = s["cache"] / "outbox"
    return [json.loads(p.read_text()) for p in sorted(box.glob("*.json"))]


# ---- converging ---------------------------------------------------------------------------------------

def test_pull_converges_this_host_and_records_a_pull_run(site: dict[str, Path]) -> None:
    first = pull(site, "--json")
    assert first.returncode == 2, first.stderr  # changed
    assert (site["target"] / "motd").read_text() == "hello\n"
    doc = json.loads(first.stdout)
    head = git(site["src"], "rev-parse", "HEAD")
    assert (doc["mode"], doc["commit"], doc["command"], doc["source"]) == ("pull", head, "apply", str(site["src"]))
    assert [h["name"] for h in doc["hosts"]] == ["web1"]
    assert doc["hosts"][0]["resources"][0]["source"] == "manifests/roles/r/resources.yaml:2"  # as in the repo
    again = pull(site)
    assert again.returncode == 0, again.stderr
    assert [d["command"] for d in outbox(site)] == ["apply", "apply"]
    assert [d["pull"]["seq"] for d in outbox(site)] == [1, 2]
    assert state(site)["last_good"]["commit"] == head and state(site)["last_apply"]["commit"] == head
    for p in (site["cache"], site["cache"] / "outbox", site["cache"] / "checkouts"):
        assert os.stat(p).st_mode & 0o777 == 0o700
    for p in [*(site["cache"] / "outbox").glob("*.json"), site["cache"] / "state.json", site["cache"] / "state.sqlite"]:
        assert os.stat(p).st_mode & 0o077 == 0, p


def test_check_and_drift_change_nothing_and_drift_is_recorded(site: dict[str, Path]) -> None:
    check = pull(site, "--check")
    assert check.returncode == 2, check.stderr
    assert not (site["target"] / "motd").exists()
    assert pull(site).returncode == 2
    (site["target"] / "motd").write_text("hand edit\n")
    drift = pull(site, "--drift", "--json")
    assert drift.returncode == 2, drift.stderr
    assert (site["target"] / "motd").read_text() == "hand edit\n"
    r = json.loads(drift.stdout)["hosts"][0]["resources"][0]
    assert (r["drift"], r["runs"]) == ("corrective", 1)
    again = json.loads(pull(site, "--drift", "--json").stdout)["hosts"][0]["resources"][0]
    assert (again["drift"], again["runs"]) == ("corrective", 2)  # `since` and episodes work on the host
    assert [d["command"] for d in outbox(site)] == ["apply", "drift", "drift"]


def test_a_ref_branch_tag_or_commit(site: dict[str, Path]) -> None:
    first = git(site["src"], "rev-parse", "HEAD")
    git(site["src"], "tag", "v1")
    commit(site["src"], {"manifests/roles/r/resources.yaml": resources(site["target"], "two\n")})
    assert pull(site, "--ref", "v1").returncode == 2
    assert (site["target"] / "motd").read_text() == "hello\n"
    assert pull(site, "--ref", "main").returncode == 2
    assert (site["target"] / "motd").read_text() == "two\n"
    assert pull(site, "--ref", first[:10]).returncode == 2
    assert (site["target"] / "motd").read_text() == "hello\n"


def test_only_if_changed_skips_the_apply_but_records_a_drift(site: dict[str, Path]) -> None:
    assert pull(site, "--only-if-changed").returncode == 2
    (site["target"] / "motd").write_text("hand edit\n")
    skipped = pull(site, "--only-if-changed", "--json")
    assert skipped.returncode == 2, skipped.stderr
    doc = json.loads(skipped.stdout)
    assert doc["command"] == "drift" and doc["pull"]["skipped_apply"] is True
    assert doc["hosts"][0]["resources"][0]["drift"] == "corrective"
    assert (site["target"] / "motd").read_text() == "hand edit\n"  # not applied
    commit(site["src"], {"manifests/roles/r/resources.yaml": resources(site["target"], "new\n")})
    applied = pull(site, "--only-if-changed", "--json")
    assert json.loads(applied.stdout)["command"] == "apply"
    assert (site["target"] / "motd").read_text() == "new\n"


# ---- resilience ----------------------------------------------------------------------------------------

def test_a_broken_commit_is_refused_and_the_last_good_one_kept(site: dict[str, Path]) -> None:
    assert pull(site).returncode == 2
    good = state(site)["last_good"]["commit"]
    (site["target"] / "motd").write_text("hand edit\n")
    broken = commit(site["src"], {"manifests/roles/r/resources.yaml": "resources:\n  - file: /x\n    bogus: 1\n"})
    run = pull(site)
    assert run.returncode == 1
    assert "manifests/roles/r/resources.yaml:" in run.stderr and broken[:12] in run.stderr
    assert (site["target"] / "motd").read_text() == "hand edit\n"  # untouched
    assert state(site)["last_good"]["commit"] == good
    assert len(outbox(site)) == 1


def test_an_unreachable_source_falls_back_to_the_last_good_checkout(site: dict[str, Path]) -> None:
    assert pull(site).returncode == 2
    good = state(site)["last_good"]["commit"]
    site["src"].rename(site["tmp"] / "away")
    (site["target"] / "motd").write_text("hand edit\n")
    run = pull(site, "--json")
    assert run.returncode == 2, run.stderr
    assert "unreachable" in run.stderr and good[:12] in run.stderr
    doc = json.loads(run.stdout)
    assert doc["commit"] == good and "unreachable" in doc["pull"]["fallback"]
    assert (site["target"] / "motd").read_text() == "hello\n"


def test_unreachable_without_an_earlier_checkout_is_exit_8(site: dict[str, Path]) -> None:
    run = pull(site, source=site["tmp"] / "nowhere")
    assert run.returncode == 8 and "no earlier checkout" in run.stderr
    assert not (site["target"] / "motd").exists()


# ---- bad input: each a clear error or 75, nothing changed ------------------------------------------------

@pytest.mark.parametrize(("args", "host", "says"), [
    (("--ref", "nosuch"), "web1", "--ref nosuch: no such branch, tag or commit"),
    (("--ref", "-x"), "web1", "is not a branch, tag or commit name"),
    ((), "web9", "--host web9: no such host"),
    (("--check", "--only-if-changed"), "web1", "exclude each other"),
    (("--verify-commit", "/nonexistent.asc"), "web1", "--verify-commit /nonexistent.asc: no such file"),
    (("-i", "../etc"), "web1", "must be a path inside the repository"),
    (("-i", "nosuch"), "web1", "-i/--inventory nosuch is not in the repository"),
])
def test_bad_input_is_exit_1_and_changes_nothing(site: dict[str, Path], args: tuple[str, ...], host: str,
                                                 says: str) -> None:
    run = pull(site, *args, host=host)
    assert run.returncode == 1, run.stderr
    assert says in run.stderr
    assert not (site["target"] / "motd").exists()
    assert not (site["cache"] / "outbox").exists()


def test_a_source_that_is_not_a_repository(site: dict[str, Path]) -> None:
    plain = site["tmp"] / "plain"
    plain.mkdir()
    run = pull(site, source=plain)
    assert run.returncode == 1 and "is not a git repository" in run.stderr
    assert not (site["target"] / "motd").exists()


def test_an_inventory_that_does_not_list_this_host() -> None:
    class Inv:
        hosts = {"web1": type("H", (), {"name": "web1", "connection": type("C", (), {"address": "10.0.0.1"})})(),
                 "web2": type("H", (), {"name": "web2", "connection": type("C", (), {"address": "10.0.0.2"})})()}

    with pytest.raises(InventoryError, match=r"does not list this machine.*myhost, 10\.0\.0\.9"):
        find_host(Inv(), "inventory", None, names=["myhost", "10.0.0.9"])
    with pytest.raises(InventoryError, match=r"several hosts that match this machine \(web1, web2"):
        find_host(Inv(), "inventory", None, names=["web1", "10.0.0.2"])
    assert find_host(Inv(), "inventory", None, names=["x", "10.0.0.2"]).name == "web2"


def test_without_host_the_machine_finds_itself_and_says_what_it_compared(site: dict[str, Path]) -> None:
    run = pull(site, host=None)
    assert run.returncode == 1 and "does not list this machine" in run.stderr
    assert os.uname().nodename in run.stderr
    me = os.uname().nodename
    commit(site["src"], {"inventory/hosts.yaml": f"all:\n  hosts:\n    {me}:\n    other:\n"})
    assert pull(site, host=None).returncode == 2
    assert (site["target"] / "motd").exists()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_a_cache_writable_by_others_is_refused(site: dict[str, Path], mode: int) -> None:
    site["cache"].mkdir()
    os.chmod(site["cache"], mode)
    run = pull(site)
    assert run.returncode == 1 and "refusing the pull cache" in run.stderr and "writable" in run.stderr
    assert not (site["target"] / "motd").exists() and os.listdir(site["cache"]) == []


def test_a_cache_owned_by_another_user_or_a_link_is_refused(site: dict[str, Path]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory away")
    site["cache"].mkdir(mode=0o700)
    os.chown(site["cache"], 65534, 65534)
    run = pull(site)
    assert run.returncode == 1 and "owned by uid 65534" in run.stderr
    link = site["tmp"] / "link"
    mine = site["tmp"] / "mine"
    mine.mkdir(mode=0o700)
    link.symlink_to(mine)
    run = pull(site, cache=link)
    assert run.returncode == 1 and "symbolic link" in run.stderr
    assert not (site["target"] / "motd").exists()


def test_a_second_pull_while_one_runs_gets_75(site: dict[str, Path]) -> None:
    assert pull(site).returncode == 2
    (site["target"] / "motd").write_text("hand edit\n")
    fd = os.open(site["cache"] / "pull.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        run = pull(site)
    finally:
        os.close(fd)
    assert run.returncode == 75 and "locked" in run.stderr
    assert (site["target"] / "motd").read_text() == "hand edit\n"


# ---- signed commits ----------------------------------------------------------------------------------------

def _gpg_key(home: Path, email: str) -> str:
    home.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", email, "ed25519", "sign", "1d"],
                   check=True, capture_output=True, env=env)
    out = subprocess.run(["gpg", "--batch", "--list-keys", "--with-colons", email], check=True,
                         capture_output=True, text=True, env=env).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def _export(home: Path, fpr: str, to: Path) -> Path:
    to.write_bytes(subprocess.run(["gpg", "--batch", "--armor", "--export", fpr], check=True, capture_output=True,
                                  env={**os.environ, "GNUPGHOME": str(home)}).stdout)
    return to


@pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gnupg")
def test_verify_commit_accepts_signed_and_refuses_unsigned_or_other_keys(
        site: dict[str, Path], gpg_homes: Callable[[str], Path]) -> None:
    good_home, bad_home = gpg_homes("good"), gpg_homes("bad")
    good, bad = _gpg_key(good_home, "ops@example.com"), _gpg_key(bad_home, "mallory@example.com")
    key = _export(good_home, good, site["tmp"] / "ops.asc")
    try:
        # the first commit is unsigned
        run = pull(site, "--verify-commit", str(key))
        assert run.returncode == 1 and "is not signed by a key of --verify-commit" in run.stderr
        assert not (site["target"] / "motd").exists()
        commit(site["src"], {"manifests/roles/r/resources.yaml": resources(site["target"], "signed\n")},
               sign_key=good, gnupg=good_home)
        run = pull(site, "--verify-commit", str(key))
        assert run.returncode == 2, run.stderr
        assert (site["target"] / "motd").read_text() == "signed\n"
        commit(site["src"], {"manifests/roles/r/resources.yaml": resources(site["target"], "evil\n")},
               sign_key=bad, gnupg=bad_home)
        run = pull(site, "--verify-commit", str(key))
        assert run.returncode == 1 and "is not signed by a key of --verify-commit" in run.stderr
        assert (site["target"] / "motd").read_text() == "signed\n"
        junk = site["tmp"] / "junk.asc"
        junk.write_text("not a key\n")
        run = pull(site, "--verify-commit", str(junk))
        assert run.returncode == 1 and "no OpenPGP public key" in run.stderr
    finally:
        for home in (good_home, bad_home):
            subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": str(home)}, check=False)


# ---- no SSH library ------------------------------------------------------------------------------------------

def test_pull_imports_no_ssh_or_crypto_library(site: dict[str, Path]) -> None:
    code = ("import sys, runpy\n"
            "sys.argv = ['driftctl', 'pull', sys.argv[1], '--cache-dir', sys.argv[2], '--host', 'web1']\n"
            "try:\n    runpy.run_module('driftctl', run_name='__main__')\n"
            "except SystemExit as e:\n    code = e.code\n"
            "print('SSH:' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('paramiko', 'asyncssh', 'fabric', 'invoke', 'cryptography'))))\n"
            "sys.exit(code)\n")
    run = subprocess.run([sys.executable, "-c", code, str(site["src"]), str(site["cache"])], capture_output=True,
                         text=True, cwd=site["tmp"], timeout=300)
    assert run.returncode == 2, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "SSH:"


def test_extra_vars_and_tags(site: dict[str, Path]) -> None:
    commit(site["src"], {"manifests/roles/r/resources.yaml": (
        "resources:\n"
        f"  - file: {site['target']}/motd\n    content: \"{{{{ greeting }}}}\\n\"\n    tags: [motd]\n"
        f"  - file: {site['target']}/other\n    content: \"other\\n\"\n")})
    bad = pull(site, "-e", "greeting=hi", "--tags", "nosuch")
    assert bad.returncode == 1 and "nosuch" in bad.stderr
    assert not (site["target"] / "motd").exists()
    run = pull(site, "-e", "greeting=hi", "--tags", "motd", "--json")
    assert run.returncode == 2, run.stderr
    assert (site["target"] / "motd").read_text() == "hi\n" and not (site["target"] / "other").exists()
    doc = json.loads(run.stdout)
    assert doc["partial"] is True and "greeting=********" in " ".join(doc["argv"])  # -e values never recorded


def test_a_vaulted_inventory_with_its_password_file(site: dict[str, Path]) -> None:
    ansible_vault = Path(sys.executable).parent / "ansible-vault"
    if not ansible_vault.exists():
        pytest.skip("needs ansible-vault (ansible-core) to encrypt the test's value")
    password = site["tmp"] / "vault-pass"
    password.write_text("pw123\n")
    os.chmod(password, 0o600)
    vaulted = subprocess.run([str(ansible_vault), "encrypt_string", "--vault-password-file", str(password), "sesame",
                              "--name", "secret_word"], check=True, capture_output=True, text=True).stdout
    commit(site["src"], {
        "inventory/host_vars/web1.yaml": vaulted,
        "manifests/roles/r/resources.yaml": resources(site["target"], "{{ secret_word }}\n"),
    })
    without = pull(site)
    assert without.returncode == 1 and "vault" in without.stderr.lower()
    assert not (site["target"] / "motd").exists()
    run = pull(site, "--vault-password-file", str(password), "--json")
    assert run.returncode == 2, run.stderr
    assert (site["target"] / "motd").read_text() == "sesame\n"
    assert "sesame" not in run.stdout  # the report never holds the secret
