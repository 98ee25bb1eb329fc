"""What the command line sets for its own process (driftctl/cli/__init__.py), and only for it."""

from __future__ import annotations

import subprocess
import sys


def test_the_command_line_collects_the_young_generation_less_often_and_a_library_user_keeps_python_s() -> None:
    code = ("import atexit, gc; atexit.register(lambda: print(gc.get_threshold())); print(gc.get_threshold());"
            " import driftctl.cli, driftctl.engine; print(gc.get_threshold()); driftctl.cli.main(['--version'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == lines[1] != "(10000, 10, 10)"  # importing driftctl leaves Python's own
    assert lines[-1] == "(10000, 10, 10)"  # the command line's
