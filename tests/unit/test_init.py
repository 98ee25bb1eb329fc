"""``driftctl init``: a site and an inventory that driftctl itself accepts; never an overwrite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from driftctl.cli.cmd_init import FILES


def driftctl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
    env.update(NO_COLOR="1", COLUMNS="200", DRIFTCTL_STATE_DIR=str(cwd / ".state"))
    return subprocess.run([sys.executable, "-m", "driftctl", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_init_writes_a_site_and_an_inventory_driftctl_accepts(tmp_path: Path) -> None:
    result = driftctl("init", "site", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    site = tmp_path / "site"
    assert sorted(tree(site)) == sorted(FILES)
    assert "driftctl plan inventory/dev" in result.stdout
    shown = driftctl("inventory", "inventory/dev", "--json", cwd=site)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert list(doc["hosts"]) == ["web1"]
    assert doc["hosts"]["web1"]["vars"]["motd_contact"] == "ops team <ops@example.com>"  # group_vars/all.yml read
    assert shown.stderr == ""  # no warning about anything init wrote


def test_init_into_the_current_directory(tmp_path: Path) -> None:
    result = driftctl("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "manifests" / "site.yaml").is_file()
    assert (tmp_path / "inventory" / "dev" / "hosts.yaml").is_file()


def test_init_refuses_to_overwrite_names_the_files_and_writes_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "manifests").mkdir(parents=True)
    (site / "manifests" / "site.yaml").write_text("# mine\n")
    (site / "inventory" / "dev" / "group_vars").mkdir(parents=True)
    (site / "inventory" / "dev" / "group_vars" / "all.yml").write_text("mine: true\n")
    before = tree(site)
    result = driftctl("init", "site", cwd=tmp_path)
    assert result.returncode == 1
    assert "site/manifests/site.yaml" in result.stderr and "site/inventory/dev/group_vars/all.yml" in result.stderr
    assert "hosts.yaml" not in result.stderr  # only the files in the way are named
    assert result.stdout == ""
    assert tree(site) == before  # nothing written, not even the files that were free
    assert not (site / "manifests" / "roles").exists()


def test_init_into_a_file_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    result = driftctl("init", "afile", cwd=tmp_path)
    assert result.returncode == 1
    assert "afile" in result.stderr


def test_the_next_step_can_be_pasted_into_a_shell_for_a_directory_with_a_space(tmp_path: Path) -> None:
    result = driftctl("init", "my site", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    step = result.stdout.strip().splitlines()[-1].split(", then ", 1)[1]
    assert step == "cd 'my site' && driftctl plan inventory/dev"
    ran = subprocess.run(["bash", "-c", step.replace("driftctl", "pwd && true", 1)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stdout.strip() == str(tmp_path / "my site"), ran.stderr
