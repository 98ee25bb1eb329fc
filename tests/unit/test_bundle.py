"""``driftctl bundle``: the zipapp (pure Python, reproducible, refuses an old python3 clearly), the
stand-ins for libraries a host lacks, the install/remove catalogs, and the mistakes refused before any
host is contacted. On real hosts: tests/fleet/test_bundle_fleet.py."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from driftctl.bundle.build import BUNDLED, LEFT_OUT, MANIFEST_NAME, ZIP_EPOCH, build, main_source
from driftctl.bundle.install import BUNDLE_PATH, Placement, install_catalog, placement_for, remove_catalog
from driftctl.content import FileContent
from driftctl.errors import ConfigError
from driftctl.model import ConnectionSpec, Host
from driftctl.schedule import host_delay, make_pull_job, parse_splay

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str | os.PathLike[str], cwd: Path = REPO, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "driftctl", *map(str, args)], capture_output=True, text=True,
                          env=full, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b") / "driftctl.pyz"
    r = cli("bundle", "-o", out, env={"DRIFTCTL_STATE_DIR": str(out.parent / "state")})
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}: " in r.stdout and "runs with python3 >= 3.11 (#!/usr/bin/python3)" in r.stdout
    return out


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def test_bundled_is_the_closure_of_driftctls_requirements_without_ssh_and_crypto() -> None:
    left_out = {_name(n) for n in LEFT_OUT}
    want: set[str] = set()
    todo = [r for r in importlib.metadata.requires("driftctl") or []]
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = _name(req.name)
        if name in left_out or name in want:
            continue
        want.add(name)
        todo += importlib.metadata.requires(req.name) or []
    assert want == {_name(n) for n in BUNDLED}


def test_the_archive_is_pure_python_sorted_and_timestamped_alike(built: Path) -> None:
    data = built.read_bytes()
    assert data.startswith(b"#!/usr/bin/python3\n")
    with zipfile.ZipFile(built) as z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        manifest = json.loads(z.read(MANIFEST_NAME))
        main = z.read("__main__.py").decode()
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert not [n for n in names if n.endswith((".so", ".c", ".pyd"))]
    tops = {n.split("/")[0] for n in names}
    assert {"driftctl", "click", "jinja2", "markupsafe", "yaml", "rich", "pygments", "markdown_it", "mdurl"} <= tops
    assert not tops & {"paramiko", "cryptography", "bcrypt", "nacl", "_yaml"}
    assert "driftctl/agent/file.py" in names and "driftctl/store/report.schema.json" in names
    assert "driftctl/engine.pyc" in names and "pygments/lexers/python.pyc" not in names
    assert manifest["python"] == ">=3.11" and set(manifest["packages"]) >= {"click", "Jinja2", "rich", "PyYAML"}
    assert "if sys.version_info < (3, 11):" in main


def test_the_same_inputs_give_the_same_bytes(built: Path, tmp_path: Path) -> None:
    again = build(tmp_path / "again.pyz")  # in this process (the first came from the CLI's)
    assert hashlib.sha256(again.path.read_bytes()).hexdigest() == hashlib.sha256(built.read_bytes()).hexdigest()


def test_source_date_epoch_sets_the_timestamps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(ZIP_EPOCH + 86400 * 365 * 40))
    b = build(tmp_path / "dated.pyz", bytecode=False)
    with zipfile.ZipFile(b.path) as z:
        assert {i.date_time[0] for i in z.infolist()} == {2019}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH"):
        build(tmp_path / "bad.pyz")


def test_an_old_python3_is_told_what_the_bundle_needs(tmp_path: Path) -> None:
    script = tmp_path / "main.py"
    script.write_text(main_source(99))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert f"this bundle needs python3 >= 3.99; {sys.executable} is 3.{sys.version_info[1]}" in r.stderr


def test_the_bundle_runs_and_imports_only_from_itself(built: Path) -> None:
    r = subprocess.run([sys.executable, "-I", "-X", "importtime", str(built), "--version"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("driftctl, version "), r.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines()}
    assert not imported & {"paramiko", "cryptography", "_yaml"}


def test_stand_ins_for_a_library_the_host_lacks() -> None:
    from driftctl.bundle.absent import install

    install(["driftctl_test_absent_lib"])
    from driftctl_test_absent_lib.exceptions import InvalidSignature  # type: ignore[import-not-found]
    from driftctl_test_absent_lib.hazmat.primitives import hashes  # type: ignore[import-not-found]

    try:
        raise ValueError("x")
    except InvalidSignature:  # a class, so except clauses still work
        pytest.fail("a stand-in caught an unrelated error")
    except ValueError:
        pass
    with pytest.raises(ConfigError, match="driftctl_test_absent_lib"):
        hashes.SHA256()


def test_a_library_the_host_has_wins_over_its_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from driftctl.bundle.absent import install

    (tmp_path / "driftctl_test_real_lib").mkdir()
    (tmp_path / "driftctl_test_real_lib" / "__init__.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    install(["driftctl_test_real_lib"])
    import driftctl_test_real_lib  # type: ignore[import-not-found]

    assert driftctl_test_real_lib.VALUE == 42


# -- install and remove catalogs ---------------------------------------------------------------------------


def host(name: str = "web01", python: str = "python3") -> Host:
    return Host(name, {}, (), ConnectionSpec(address="192.0.2.1", python=python))


CONTENT = FileContent("/nonexistent/driftctl.pyz", 123, "a" * 64)


def test_install_catalog_for_a_systemd_host() -> None:
    job = make_pull_job("https://git.example.com/infra.git", "30m", "10m", ref="main")
    catalog = install_catalog(host(), CONTENT, job, Placement("systemd", "/usr/bin/python3", True))
    ids = [r.id for r in catalog.resources]
    assert ids == ["directory:/usr/local/lib/driftctl", f"file:{BUNDLE_PATH}", "file:/usr/local/bin/driftctl",
                   "unit:driftctl-pull.service", "unit:driftctl-pull.timer", "file:/etc/cron.d/driftctl-pull"]
    by = catalog.by_id()
    assert by[f"file:{BUNDLE_PATH}"].params["content"] is CONTENT
    assert by[f"file:{BUNDLE_PATH}"].params["backup"] is False
    assert by["file:/usr/local/bin/driftctl"].params["content"].endswith(
        f'exec /usr/bin/python3 -I {BUNDLE_PATH} "$@"\n')
    timer = by["unit:driftctl-pull.timer"].params
    assert (timer["enabled"], timer["state"]) == (True, "started")
    assert "--ref main --host web01\n" in by["unit:driftctl-pull.service"].params["content"]
    assert by["file:/etc/cron.d/driftctl-pull"].params["ensure"] == "absent"
    assert catalog.digest and catalog.digest == install_catalog(
        host(), CONTENT, job, Placement("systemd", "/usr/bin/python3", True)).digest


def test_install_catalog_for_cron_has_the_hosts_delay_and_removes_the_timer() -> None:
    job = make_pull_job("https://git.example.com/infra.git", "30m", "10m")
    catalog = install_catalog(host("db7"), CONTENT, job, Placement("cron", "/usr/bin/python3", True))
    by = catalog.by_id()
    assert by["unit:driftctl-pull.timer"].params["ensure"] == "absent"
    cron = by["file:/etc/cron.d/driftctl-pull"].params
    assert cron["mode"] == "0644" and f"sleep {host_delay('db7', parse_splay('10m'))}; " in cron["content"]
    without = install_catalog(host("db7"), CONTENT, job, Placement("cron", "/usr/bin/python3", False))
    assert not [r for r in without.resources if r.type == "unit"]  # no systemd there: units are not touched


def test_remove_catalog_takes_the_schedule_away_first() -> None:
    ids = [r.id for r in remove_catalog(host(), "pull", "systemd").resources]
    assert ids == ["unit:driftctl-pull.timer", "unit:driftctl-pull.service", "file:/etc/cron.d/driftctl-pull",
                   "file:/usr/local/bin/driftctl", f"file:{BUNDLE_PATH}", "directory:/usr/local/lib/driftctl"]
    assert all(r.params["ensure"] == "absent" for r in remove_catalog(host(), "pull", "systemd").resources)
    assert not [r for r in remove_catalog(host(), "pull", "cron").resources if r.type == "unit"]


@pytest.mark.parametrize(("facts", "python", "cron", "want"), [
    ({"init": "systemd", "python": "3.11.2"}, None, False, Placement("systemd", "/usr/bin/python3", True)),
    ({"init": "systemd", "python": "3.12.0"}, None, True, Placement("cron", "/usr/bin/python3", True)),
    ({"init": "sysv", "python": "3.11.2"}, "/opt/py/bin/python3", False,
     Placement("cron", "/opt/py/bin/python3", False)),
])
def test_placement(facts: dict[str, Any], python: str | None, cron: bool, want: Placement) -> None:
    assert placement_for(facts, host(), "3.11", python, cron) == want


def test_placement_uses_the_inventorys_absolute_interpreter_and_refuses_an_old_one() -> None:
    assert placement_for({"init": "systemd", "python": "3.11.2"}, host(python="/usr/bin/python3.11"), "3.11", None,
                         False).python == "/usr/bin/python3.11"
    with pytest.raises(ConfigError, match=r"web01: python3 is 3\.9\.2; the bundle needs 3\.11 or newer"):
        placement_for({"init": "systemd", "python": "3.9.2"}, host(), "3.11", None, False)


# -- mistakes: exit 1, nothing contacted --------------------------------------------------------------------


def test_bundle_command_mistakes(tmp_path: Path) -> None:
    r = cli("bundle", cwd=tmp_path)
    assert r.returncode == 1 and "give the file to build: driftctl bundle -o driftctl.pyz" in r.stderr
    r = cli("bundle", "-o", tmp_path / "x.pyz", "--python", "python3", cwd=tmp_path)
    assert r.returncode == 1 and "--python 'python3': give the absolute path" in r.stderr
    r = cli("bundle", "-o", tmp_path / "x.pyz", "install", "inv", "--source", "u", cwd=tmp_path)
    assert r.returncode == 1 and "-o, --python and --no-bytecode build a bundle" in r.stderr
    assert not (tmp_path / "x.pyz").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--source", "https://x/r.git", "--every", "7x"], "--every: '7x'"),
    (["--source", "https://x/r.git", "--splay", "2h"], "2h is longer than --every 30m"),
    (["--source", "repo.git"], "--source 'repo.git': a relative path means nothing on the hosts"),
    (["--source", "https://x/r.git", "--python", "python3"], "the absolute path of the hosts' python3"),
    (["--source", "https://x/r.git", "--name", "a b"], "--name 'a b'"),
    (["--source", "https://x/r.git", "--check", "--only-if-changed"], "exclude each other"),
    (["--source", "https://x/r.git", "--verify-commit", "keys.asc"], "--verify-commit 'keys.asc': a path on the hosts"),
    (["--source", "https://x/r.git", "--cache-dir", "cache"], "--cache-dir 'cache': a path on the hosts"),
    (["--source", "https://x/r.git", "--bundle", "nope.pyz"], "--bundle nope.pyz: no such file"),
])
def test_bundle_install_mistakes_exit_1_before_any_host(tmp_path: Path, args: list[str], message: str) -> None:
    # a host that would hang a connect: an input error must end the command before it is tried
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n    web01:\n      ansible_host: 192.0.2.1\n")
    r = cli("bundle", "install", inv, *args, cwd=tmp_path, env={"DRIFTCTL_STATE_DIR": str(tmp_path / "s")})
    assert r.returncode == 1, r.stdout + r.stderr
    assert message in r.stderr


def test_bundle_install_refuses_a_file_that_is_not_a_bundle(tmp_path: Path) -> None:
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n    web01:\n      ansible_host: 192.0.2.1\n")
    fake = tmp_path / "fake.pyz"
    fake.write_bytes(b"#!/usr/bin/python3\nnot a zip")
    r = cli("bundle", "install", inv, "--source", "https://x/r.git", "--bundle", fake, cwd=tmp_path,
            env={"DRIFTCTL_STATE_DIR": str(tmp_path / "s")})
    assert r.returncode == 1 and f"{fake}: not a driftctl bundle" in r.stderr
