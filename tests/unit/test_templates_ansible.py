"""Template files render byte for byte as Ansible's template module renders them.

The oracle is ansible-core itself: one ``ansible-playbook`` run on localhost (connection local, its
home and temporary directories in a tmp dir) renders every case of tests/unit/data/ansible_templates
with the variables of vars.json, and driftctl's Renderer renders the same files with the same
variables and options. ``templates/`` holds role templates in the style of public roles (nginx,
sshd, haproxy, systemd, prometheus, sudoers, logrotate, ...), ``cases/`` the corner cases: trailing
newlines, ``#jinja2:`` headers, CRLF, delimiters, includes, None output.

Without ansible-core these tests fail, so that a missing oracle is seen; set DRIFTCTL_SKIP_ANSIBLE=1
to skip them on purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from driftctl.manifest.render import Renderer

DATA = Path(__file__).parent / "data" / "ansible_templates"
TEMPLATES = sorted(p.name for p in (DATA / "templates").glob("*.j2"))
CASES = sorted(p.name for p in (DATA / "cases").glob("*.j2") if p.name != "inc.j2")
# (case id, directory, template, the template module's / the file resource's options)
OPTION_CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("opt-lstrip", "cases", "options_plain.j2", {"lstrip_blocks": True}),
    ("opt-notrim", "cases", "options_plain.j2", {"trim_blocks": False}),
    ("opt-notrim-lstrip", "cases", "options_plain.j2", {"trim_blocks": False, "lstrip_blocks": True}),
    ("opt-crlf", "cases", "options_plain.j2", {"newline_sequence": "\r\n"}),
    ("opt-crlf-blank", "cases", "block_then_blank.j2", {"newline_sequence": "\r\n"}),
    ("opt-cr-blank", "cases", "block_then_blank.j2", {"newline_sequence": "\r"}),
    ("opt-crlf-three", "cases", "three_newlines.j2", {"newline_sequence": "\r\n"}),
    ("opt-crlf-source", "cases", "crlf_source.j2", {"newline_sequence": "\r\n"}),
    ("opt-header-wins", "cases", "header_crlf.j2", {"newline_sequence": "\r"}),
    ("opt-header-wins-trim", "templates", "crontab.j2", {"trim_blocks": True}),
    ("opt-delims", "cases", "delims_opt.j2", {"variable_start_string": "[[", "variable_end_string": "]]",
                                              "block_start_string": "<<", "block_end_string": ">>"}),
    ("opt-vhost-lstrip", "templates", "nginx-vhost.conf.j2", {"lstrip_blocks": True}),
    ("opt-haproxy-notrim", "templates", "haproxy.cfg.j2", {"trim_blocks": False}),
]
ALL_CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    *((f"templates-{t}", "templates", t, {}) for t in TEMPLATES),
    *((f"cases-{t}", "cases", t, {}) for t in CASES),
    *OPTION_CASES,
]

pytestmark = pytest.mark.slow  # one ansible-playbook run, some seconds


def _ansible_playbook() -> str:
    if os.environ.get("DRIFTCTL_SKIP_ANSIBLE"):
        pytest.skip("DRIFTCTL_SKIP_ANSIBLE=1")
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    found = shutil.which("ansible-playbook", path=search)
    if found is None:
        pytest.fail("ansible-playbook not found: pip install ansible-core (or set DRIFTCTL_SKIP_ANSIBLE=1)")
    return found


def ansible_env(tmp: Path) -> dict[str, str]:
    """Ansible's home, config and temporary files in ``tmp``: nothing of the machine is read or touched."""
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "ansible.cfg").write_text("[defaults]\n")
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
    return {**keep, "HOME": str(tmp / "home"), "ANSIBLE_HOME": str(tmp / "home" / ".ansible"),
            "ANSIBLE_CONFIG": str(tmp / "ansible.cfg"), "ANSIBLE_LOCAL_TEMP": str(tmp / "local"),
            "ANSIBLE_REMOTE_TEMP": str(tmp / "remote"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}


def ansible_render(tmp: Path, cases: list[tuple[str, str, str, dict[str, Any]]],
                   variables: Path = DATA / "vars.json") -> dict[str, bytes | str]:
    """Each case rendered by ansible-core's template module: its bytes, or its error message."""
    out = tmp / "out"
    out.mkdir()
    tasks = [{"name": case, "ansible.builtin.template": {"src": str(DATA / d / t), "dest": str(out / case),
                                                          **options},
              "ignore_errors": True, "register": f"r{i}"}
             for i, (case, d, t, options) in enumerate(cases)]
    playbook = tmp / "play.json"  # JSON is YAML: "\r\n" stays exactly that
    playbook.write_text(json.dumps([{"hosts": "localhost", "connection": "local", "gather_facts": False,
                                     "tasks": tasks}]))
    r = subprocess.run([_ansible_playbook(), "-i", "localhost,", "-e", f"@{variables}", str(playbook)],
                       capture_output=True, text=True, timeout=600, env=ansible_env(tmp), cwd=tmp)
    assert "PLAY RECAP" in r.stdout, r.stdout + r.stderr
    results: dict[str, bytes | str] = {}
    for case, *_ in cases:
        path = out / case
        results[case] = path.read_bytes() if path.exists() else _failure(r.stdout, case)
    return results


def _failure(stdout: str, case: str) -> str:
    """The message ansible-playbook printed for a failed task."""
    marker = f"TASK [{case}]"
    part = stdout[stdout.index(marker):] if marker in stdout else stdout
    return part.split("TASK [", 2)[1] if part.count("TASK [") > 1 else part


# ansible-playbook renders its tasks one after the other, each a controller-side render plus a stat and
# a copy module run as Python subprocesses (about half a second a case, 30 s for all): the cases are
# split over this many ansible-playbook runs at once, each with its own playbook and directories.
ORACLE_RUNS = 3


@pytest.fixture(scope="session")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes | str]:
    chunks = [ALL_CASES[i::ORACLE_RUNS] for i in range(ORACLE_RUNS)]
    tmps = [tmp_path_factory.mktemp("ansible-templates") for _ in chunks]
    with ThreadPoolExecutor(len(chunks)) as pool:
        parts = list(pool.map(ansible_render, tmps, chunks))
    rendered = {case: result for part in parts for case, result in part.items()}
    assert sorted(rendered) == sorted(c[0] for c in ALL_CASES)
    return rendered


def driftctl_render(directory: str, template: str, options: dict[str, Any],
                    variables: dict[str, Any] | None = None) -> bytes:
    renderer = Renderer(DATA, str)
    values = variables if variables is not None else json.loads((DATA / "vars.json").read_text())
    return renderer.template_file(template, (DATA / directory,), values, options).encode("utf-8")


@pytest.mark.parametrize(("case", "directory", "template", "options"), ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_renders_as_ansible(oracle: dict[str, bytes | str], case: str, directory: str, template: str,
                            options: dict[str, Any]) -> None:
    want = oracle[case]
    assert isinstance(want, bytes), f"ansible-core failed on {case}: {want}"
    assert driftctl_render(directory, template, options) == want


def test_role_templates_all_byte_identical(oracle: dict[str, bytes | str]) -> None:
    """The count for the report: every role template of templates/ is byte-identical."""
    same = [t for t in TEMPLATES if oracle[f"templates-{t}"] == driftctl_render("templates", t, {})]
    assert len(TEMPLATES) >= 20
    assert same == TEMPLATES, f"{len(same)} of {len(TEMPLATES)} byte-identical"
