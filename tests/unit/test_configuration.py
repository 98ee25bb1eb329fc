"""Settings: docs/configuration.md lists every one as it is, and mistakes in a settings file name their line."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from driftctl import config
from driftctl.cli import cli
from driftctl.errors import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def documented() -> dict[str, list[str]]:
    """setting -> the cells of its row in the table."""
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\| `(\w+)` \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def test_every_setting_is_documented_and_nothing_else() -> None:
    assert sorted(documented()) == sorted(f.name for f in dataclasses.fields(config.Settings))


def test_each_documented_environment_variable_sets_its_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = {bool: "true", int: "7", float: "7.5", tuple: "a:b"}
    for name, (_default, env, _flag, _what) in documented().items():
        assert env == f"`DRIFTCTL_{name.upper()}`", name
        current = getattr(config.Settings(), name)
        sample = next((v for t, v in samples.items() if isinstance(current, t)), "/x/y")
        if name == "ssh_algorithms":
            sample = "ciphers=+aes128-cbc"
        if name == "executor":
            sample = "celery"
        if current is True:  # a setting that is on unless turned off (render_cache)
            sample = "false"
        monkeypatch.setenv(f"DRIFTCTL_{name.upper()}", sample)
        value = getattr(config.load(cwd=tmp_path), name)
        assert value != current, name
        monkeypatch.delenv(f"DRIFTCTL_{name.upper()}")


def test_each_documented_flag_exists() -> None:
    helps = {c: CliRunner().invoke(cli, [*c.split(), "--help"]).output for c in ("apply", "prune")}
    for name, (_default, _env, flag, _what) in documented().items():
        for f in re.findall(r"`(?:(prune) )?(--[a-z-]+)", flag):
            where = f[0] or "apply"
            assert f[1] in helps[where], (name, f)


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "driftctl.yaml").write_text(text)
    os.chmod(tmp_path / "driftctl.yaml", 0o644)
    return tmp_path


@pytest.mark.parametrize(("text", "line", "words"), [
    ("parallel: 3\nparalel: 4\n", 2, ["unknown setting 'paralel'", "did you mean 'parallel'"]),
    ("parallel: 3\n\nconnect_timeout: soon\n", 3, ["setting connect_timeout: invalid value 'soon'"]),
    ("- parallel\n", 1, ["must be a mapping of settings"]),
    ("parallel: [\n", 2, ["invalid YAML"]),
    ("parallel: 1\nparallel: 2\n", 2, ["parallel"]),
])
def test_a_mistake_in_a_settings_file_names_its_line(tmp_path: Path, text: str, line: int, words: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(cwd=write(tmp_path, text))
    assert e.value.location is not None
    assert (e.value.location.file, e.value.location.line) == (str(tmp_path / "driftctl.yaml"), line)
    for w in words:
        assert w in str(e.value)


def test_an_empty_settings_file_is_no_settings(tmp_path: Path) -> None:
    assert config.load(cwd=write(tmp_path, "# nothing yet\n")) == config.load(cwd=tmp_path / "nowhere")
