"""docs/resources.md is generated from the resource types and must be up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from driftctl.resources.base import all_types

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "gen_resource_docs.py"


def test_committed_resource_docs_are_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(TOOL), "--check"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_every_type_and_parameter_is_documented(tmp_path: Path) -> None:
    out = tmp_path / "resources.md"
    subprocess.run([sys.executable, str(TOOL), "-o", str(out)], check=True, cwd=REPO)
    text = out.read_text()
    for name, rtype in all_types().items():
        section = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        for param in rtype.params:
            assert f"| `{param}` |" in section, (name, param)
        assert "```yaml\n" in section, f"{name} has no example"


def test_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "resources.md"
    stale.write_text("# Resource types\n\nold\n")
    result = subprocess.run([sys.executable, str(TOOL), "--check", "-o", str(stale)], capture_output=True, text=True)
    assert result.returncode == 1 and "out of date" in result.stderr
