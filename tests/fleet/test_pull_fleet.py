"""Pull mode on real hosts: ``driftctl pull`` run on each host with its own python3 (the project and its
pure-Python dependencies copied onto it), from a bare git repository made by the test and copied onto
the hosts; the controller's probes (``driftctl drift`` over SSH) collect what the pulls recorded.

Hosts are checked through podman exec (files, the outbox), never with driftctl's own code.
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2ehelp import REPO, CLIResult, driftctl, write_inventory

DEPS = ("jinja2", "markupsafe", "yaml", "click", "rich", "pygments", "markdown_it", "mdurl")
TREE = "/opt/driftctl-test"
SOURCE = "/srv/infra.git"
MOTD = "/etc/pull-test-motd"
CACHE = "/var/lib/driftctl/pull"


def _site_packages() -> Path:
    import jinja2

    return Path(jinja2.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project_tar() -> bytes:
    """driftctl and its pure-Python dependencies, as a tar to unpack into TREE (no __pycache__)."""
    buf = io.BytesIO()
    site = _site_packages()

    def skip(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if "__pycache__" in info.name else info

    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(REPO / "driftctl", arcname="driftctl", filter=skip)
        for dep in DEPS:
            tar.add(site / dep, arcname=dep, filter=skip)
    return buf.getvalue()


def sh(host: Any, script: str, ok: bool = True) -> str:
    r = host.sh(script)
    if ok:
        assert r.rc == 0, f"{script}\nexit {r.rc}\n{r.stdout_text}\n{r.stderr_text}"
    return str(r.stdout_text)


def install(host: Any, tar: bytes) -> None:
    sh(host, f"rm -rf {TREE} && mkdir -p {TREE}")
    r = host.exec(["tar", "-x", "-C", TREE], stdin=tar)
    assert r.rc == 0, r.stderr_text


def pull(host: Any, *args: str) -> Any:
    """``driftctl pull`` on ``host`` with its own python3, as root."""
    argv = " ".join(shlex.quote(a) for a in args)
    return host.sh(f"cd / && PYTHONPATH={TREE} NO_COLOR=1 python3 -m driftctl pull {argv}")


def files(hosts: list[Any], motd: str, extra: str = "") -> dict[str, str]:
    names = "".join(f"    {h.name}: {{}}\n" for h in hosts)
    return {
        "inventory/hosts.yaml": f"all:\n  hosts:\n{names}",
        "manifests/site.yaml": "- hosts: all\n  roles: [pulled]\n",
        "manifests/roles/pulled/resources.yaml":
            f"resources:\n  - file: {MOTD}\n    content: {json.dumps(motd + chr(10))}\n" + extra,
    }


class Repo:
    """A repository on the controller, pushed as a bare repository onto hosts at SOURCE."""

    def __init__(self, path: Path) -> None:
        self.work = path / "work"
        self.bare = path / "infra.git"
        self.work.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.work), "-c", "user.name=t", "-c", "user.email=t@example.com",
                               *args], check=True, capture_output=True, text=True).stdout.strip()

    def commit(self, content: dict[str, str], message: str = "infra") -> str:
        for name, text in content.items():
            (self.work / name).parent.mkdir(parents=True, exist_ok=True)
            (self.work / name).write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "--force", str(self.bare), "HEAD:refs/heads/main")
        return self.git("rev-parse", "HEAD")

    def copy_to(self, host: Any) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(self.bare, arcname="infra.git")
        sh(host, f"rm -rf {SOURCE} && mkdir -p /srv")
        r = host.exec(["tar", "-x", "-C", "/srv"], stdin=buf.getvalue())
        assert r.rc == 0, r.stderr_text


def controller(*args: Any, tmp_path: Path) -> CLIResult:
    return driftctl(*args, state_dir=tmp_path / "state", cwd=tmp_path)


def controller_site(tmp_path: Path, repo: Repo, hosts: list[Any]) -> Path:
    """The controller's copy: the repository's manifests, and an SSH inventory of the same hosts."""
    subprocess.run(["cp", "-r", str(repo.work / "manifests"), str(tmp_path / "manifests")], check=True)
    return write_inventory(tmp_path / "inv", hosts)


def cleanup(host: Any) -> None:
    host.sh(f"rm -rf {TREE} {SOURCE} {CACHE} {MOTD} /run/pull-started /run/pull-release /srv/away.git")


@pytest.fixture
def three(fleet: Any, fresh_host: Any, project_tar: bytes) -> Any:
    hosts = [*fleet.hosts[:2], fresh_host]
    for h in hosts:
        install(h, project_tar)
    yield hosts
    for h in hosts:
        cleanup(h)


def test_three_hosts_converge_by_pulling_and_the_controller_collects_their_runs(three: list[Any],
                                                                              tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    head = repo.commit(files(three, "converged by pull"))
    for h in three:
        repo.copy_to(h)
        r = pull(h, SOURCE, "--host", h.name)
        assert r.rc == 2, r.stdout_text + r.stderr_text
        assert sh(h, f"cat {MOTD}") == "converged by pull\n"
        assert sh(h, f"stat -c '%a %U' {CACHE} {CACHE}/outbox").split("\n")[:2] == ["700 root", "700 root"]
    noop = []
    for h in three:
        started = time.monotonic()
        r = pull(h, SOURCE)  # no --host: the host finds itself (its hostname is its inventory name)
        noop.append(time.monotonic() - started)
        assert r.rc == 0, r.stdout_text + r.stderr_text
    print(f"no-op pull on a host: {min(noop):.2f}-{max(noop):.2f} s (python3 start, git fetch, render, probe)")

    # a hand change on one host is found by its own pull --drift ...
    sh(three[0], f"echo 'hand edit' >> {MOTD}")
    r = pull(three[0], SOURCE, "--host", three[0].name, "--drift")
    assert r.rc == 2 and "corrective drift" in r.stdout_text, r.stdout_text + r.stderr_text
    assert sh(three[0], f"cat {MOTD}") == "converged by pull\nhand edit\n"  # read-only

    # ... and shows on the controller after its next probe, beside push runs; the push drift agrees
    # with what the pull applies recorded: no false pending or corrective drift on the other hosts
    inventory = controller_site(tmp_path, repo, three)
    drift = controller("drift", inventory, "--json", tmp_path=tmp_path)
    assert drift.rc == 2, drift.output
    doc = drift.json()
    by_host = {h["name"]: h["resources"][0] for h in doc["hosts"]}
    assert by_host[three[0].name]["drift"] == "corrective" and by_host[three[0].name]["runs"] == 2
    for h in three[1:]:
        r0 = by_host[h.name]
        assert r0["drift"] is None and r0["converged_fingerprint"] == r0["observed_fingerprint"], r0
    history = controller("history", inventory, "--json", tmp_path=tmp_path).json()
    applied = {e["host"]: e["detail"] for e in history["events"] if e["kind"] == "applied"}
    assert applied == {h.name: f"pull {head[:12]}: applied: ensure, content" for h in three}
    found = [e for e in history["events"] if e["kind"] == "drift-found"]
    assert [(e["host"], e["detail"].split(":")[0]) for e in found] == [(three[0].name, f"pull {head[:12]}")]
    text = controller("history", inventory, tmp_path=tmp_path).stdout
    assert f"pull {head[:12]}" in text
    runs = controller("history", inventory, "--json", "--host", three[0].name, tmp_path=tmp_path).json()
    pulled_drift = next(e["run_id"] for e in runs["events"] if e["kind"] == "drift-found")
    for fmt in ("json", "markdown", "html", "junit", "prometheus"):
        out = controller("report", inventory, "-f", fmt, "--run", str(pulled_drift), tmp_path=tmp_path)
        assert out.rc == 0, out.output
    report = json.loads(controller("report", inventory, "-f", "json", "--run", str(pulled_drift),
                                   tmp_path=tmp_path).stdout)
    assert (report["mode"], report["commit"], report["command"]) == ("pull", head, "drift")
    # collected reports are removed from the hosts by the probe after the one that stored them
    assert controller("drift", inventory, tmp_path=tmp_path).rc == 2
    for h in three:
        assert sh(h, f"ls {CACHE}/outbox").split() == ["id"]


def test_broken_commit_unreachable_source_and_only_if_changed(fresh_host: Any, project_tar: bytes,
                                                              tmp_path: Path) -> None:
    host = fresh_host
    install(host, project_tar)
    repo = Repo(tmp_path / "repo")
    good = repo.commit(files([host], "good"))
    repo.copy_to(host)
    assert pull(host, SOURCE, "--host", host.name).rc == 2
    # --only-if-changed: same commit, same facts -> no apply, a drift run recorded instead
    sh(host, f"echo 'hand edit' >> {MOTD}")
    r = pull(host, SOURCE, "--host", host.name, "--only-if-changed", "--json")
    assert r.rc == 2, r.stderr_text
    doc = json.loads(r.stdout_text)
    assert doc["command"] == "drift" and doc["pull"]["skipped_apply"] is True
    assert sh(host, f"cat {MOTD}") == "good\nhand edit\n"
    # a broken commit: refused with file:line, the host keeps its state, the last good commit stays
    broken = repo.commit({"manifests/roles/pulled/resources.yaml": f"resources:\n  - file: {MOTD}\n    colour: red\n"})
    repo.copy_to(host)
    r = pull(host, SOURCE, "--host", host.name)
    assert r.rc == 1, r.stdout_text + r.stderr_text
    assert "manifests/roles/pulled/resources.yaml:3" in r.stderr_text and broken[:12] in r.stderr_text
    assert sh(host, f"cat {MOTD}") == "good\nhand edit\n"
    assert json.loads(sh(host, f"cat {CACHE}/state.json"))["last_good"]["commit"] == good
    # the source unreachable: the last good checkout is used, and the report says so
    sh(host, f"mv {SOURCE} /srv/away.git")
    r = pull(host, SOURCE, "--host", host.name, "--json")
    assert r.rc == 2, r.stdout_text + r.stderr_text
    doc = json.loads(r.stdout_text)
    assert doc["commit"] == good and "unreachable" in doc["pull"]["fallback"]
    assert "unreachable" in r.stderr_text
    assert sh(host, f"cat {MOTD}") == "good\n"
    cleanup(host)


@pytest.mark.slow
def test_push_apply_during_pull_apply_gets_75_and_the_other_way_round(fresh_host: Any, project_tar: bytes,
                                                                       tmp_path: Path) -> None:
    host = fresh_host
    install(host, project_tar)
    repo = Repo(tmp_path / "repo")
    # holds the apply (and the host's lock) until /run/pull-release exists, 8 s at most (it was `sleep 8`)
    hold = ("  - exec: hold\n    command: sh -c 'touch /run/pull-started; i=0; while [ ! -e /run/pull-release ]"
            " && [ $i -lt 80 ]; do sleep 0.1; i=$((i+1)); done'\n")
    repo.commit(files([host], "held", extra=hold))
    repo.copy_to(host)
    inventory = controller_site(tmp_path, repo, [host])
    # a pull apply holds the host's lock: a push apply gets 75 and changes nothing
    sh(host, f"rm -f /run/pull-started /run/pull-release; "
             f"(cd / && PYTHONPATH={TREE} python3 -m driftctl pull {SOURCE} --host {host.name}"
             " > /run/pull.out 2>&1; echo $? > /run/pull.rc) > /dev/null 2>&1 &")
    for _ in range(100):
        if host.sh("test -e /run/pull-started").rc == 0:
            break
        time.sleep(0.2)
    push = controller("apply", inventory, tmp_path=tmp_path)
    assert push.rc == 75, push.output
    sh(host, "touch /run/pull-release")
    for _ in range(100):
        if host.sh("test -e /run/pull.rc").rc == 0:
            break
        time.sleep(0.2)
    assert sh(host, "cat /run/pull.rc").strip() == "2", sh(host, "cat /run/pull.out")
    # a push apply holds it: a pull apply gets 75
    sh(host, f"rm -f /run/pull-started /run/pull-release {MOTD}")
    proc = subprocess.Popen([sys.executable, "-m", "driftctl", "apply", str(inventory)], cwd=tmp_path,
                            env={**__import__("os").environ, "DRIFTCTL_STATE_DIR": str(tmp_path / "state2"),
                                 "DRIFTCTL_CONNECT_TIMEOUT": "60"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            if host.sh("test -e /run/pull-started").rc == 0:
                break
            time.sleep(0.2)
        # the push apply is in its exec now (the file comes first in graph order? not necessarily): pull
        r = pull(host, SOURCE, "--host", host.name)
        assert r.rc == 75, r.stdout_text + r.stderr_text
        assert "locked" in (r.stdout_text + r.stderr_text)
    finally:
        sh(host, "touch /run/pull-release")
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, (out + err).decode()
    cleanup(host)


def test_bad_input_on_a_host_is_a_clear_error_and_changes_nothing(fleet: Any, project_tar: bytes,
                                                                tmp_path: Path) -> None:
    host = fleet.hosts[0]
    install(host, project_tar)
    try:
        repo = Repo(tmp_path / "repo")
        repo.commit(files([host], "never"))
        repo.git("checkout", "-q", "-b", "others")
        repo.commit({"inventory/hosts.yaml": "all:\n  hosts:\n    web9: {}\n"})
        repo.git("push", "-q", str(repo.bare), "others")
        repo.copy_to(host)
        cases = [
            ((SOURCE, "--host", "nosuch"), 1, "--host nosuch: no such host"),
            ((SOURCE, "--ref", "others"), 1, "does not list this machine"),  # an inventory without it
            (("/etc", "--host", host.name), 1, "is not a git repository"),
            ((SOURCE, "--host", host.name, "--ref", "nosuch"), 1, "no such branch, tag or commit"),
        ]
        for args, rc, says in cases:
            r = pull(host, *args)
            assert (r.rc, says in r.stderr_text) == (rc, True), (args, r.stderr_text)
        sh(host, "mkdir -p /var/tmp/open-cache && chmod 777 /var/tmp/open-cache")
        r = pull(host, SOURCE, "--host", host.name, "--cache-dir", "/var/tmp/open-cache")
        assert r.rc == 1 and "writable by others" in r.stderr_text, r.stderr_text
        assert host.sh(f"test -e {MOTD}").rc != 0
        # a second pull while one runs: 75
        sh(host, f"mkdir -p -m 700 {CACHE}")
        r = host.sh(f"cd / && flock {CACHE}/pull.lock sh -c 'PYTHONPATH={TREE} python3 -m driftctl pull {SOURCE} "
                    f"--host {host.name}'")
        assert r.rc == 75 and "locked" in r.stderr_text, r.stderr_text
        assert host.sh(f"test -e {MOTD}").rc != 0
    finally:
        host.sh("rm -rf /var/tmp/open-cache")
        cleanup(host)


def _gpg(home: Path, *args: str, data: bytes | None = None) -> bytes:
    import os

    return subprocess.run(["gpg", "--batch", *args], input=data, check=True, capture_output=True,
                          env={**os.environ, "GNUPGHOME": str(home)}).stdout


def _fingerprint(home: Path) -> str:
    out = _gpg(home, "--list-keys", "--with-colons").decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def test_verify_commit_on_a_host(fresh_host: Any, project_tar: bytes, tmp_path: Path) -> None:
    """Keys made by the test (throwaway, on the controller); the host gets the public key file only."""
    host = fresh_host
    install(host, project_tar)
    homes = {}
    for who in ("ops", "mallory"):
        home = homes[who] = tmp_path / f"gpg-{who}"
        home.mkdir(mode=0o700)
        _gpg(home, "--passphrase", "", "--quick-gen-key", f"{who}@example.com", "ed25519", "sign", "1d")
    try:
        r = host.exec(["sh", "-c", "cat > /var/tmp/ops.asc"], stdin=_gpg(homes["ops"], "--armor", "--export"))
        assert r.rc == 0
        repo = Repo(tmp_path / "repo")
        repo.commit(files([host], "unsigned"))
        repo.copy_to(host)
        r = pull(host, SOURCE, "--host", host.name, "--verify-commit", "/var/tmp/ops.asc")
        assert r.rc == 1 and "is not signed by a key of --verify-commit" in r.stderr_text, r.stderr_text
        assert host.sh(f"test -e {MOTD}").rc != 0
        for who, text in (("ops", "signed by ops"), ("mallory", "signed by mallory")):
            (repo.work / "manifests/roles/pulled/resources.yaml").write_text(
                f"resources:\n  - file: {MOTD}\n    content: {json.dumps(text + chr(10))}\n")
            repo.git("add", "-A")
            sign = f"-S{_fingerprint(homes[who])}"
            subprocess.run(["git", "-C", str(repo.work), "-c", "user.name=t", "-c", f"user.email={who}@example.com",
                            "commit", "-q", sign, "-m", text], check=True, capture_output=True,
                           env={**__import__("os").environ, "GNUPGHOME": str(homes[who])})
            repo.git("push", "-q", "--force", str(repo.bare), "HEAD:refs/heads/main")
            repo.copy_to(host)
            r = pull(host, SOURCE, "--host", host.name, "--verify-commit", "/var/tmp/ops.asc")
            if who == "ops":
                assert r.rc == 2, r.stdout_text + r.stderr_text
            else:
                assert r.rc == 1 and "is not signed by a key of --verify-commit" in r.stderr_text, r.stderr_text
            assert sh(host, f"cat {MOTD}") == "signed by ops\n"
    finally:
        for home in homes.values():
            subprocess.run(["gpgconf", "--kill", "all"], env={**__import__("os").environ, "GNUPGHOME": str(home)},
                           check=False)
        host.sh("rm -f /var/tmp/ops.asc")
        cleanup(host)
