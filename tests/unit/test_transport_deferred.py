"""paramiko imported without invoke (driftctl/transport/_deferred.py): each case in a fresh interpreter,
since what matters is the order of the first imports of a process."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(*lines: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", "\n".join(lines)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


# ssh_config's Match exec is what paramiko needs invoke for: it must still run the command
MATCH_EXEC = (
    "import paramiko",
    "config = paramiko.SSHConfig.from_text("
    "'Match exec \"test %h = web1\"\\n  HostName matched.example\\nHost *\\n  Port 2222\\n')",
    "print(config.lookup('web1')['hostname'], config.lookup('web2')['hostname'], config.lookup('web2')['port'])",
)


def test_driftctl_imports_paramiko_without_invoke_and_match_exec_still_runs() -> None:
    out = run(
        "import sys",
        "import driftctl.transport.ssh, driftctl.transport.sshconfig",
        "print('invoke' in sys.modules)",
        *MATCH_EXEC,
        "print(type(sys.modules['invoke']).__name__, hasattr(sys.modules['invoke'], 'Collection'))",
    )
    assert out == ["False", "matched.example web2 2222", "module True"]


@pytest.mark.parametrize("first", ["import invoke", "import paramiko", "pass"])
def test_other_imports_of_invoke_get_the_real_module(first: str) -> None:
    out = run(
        first,
        "import sys",
        "import driftctl.transport.ssh",
        "import invoke.collection, invoke.config",
        "import paramiko.config",
        "print(type(sys.modules['invoke']).__name__, type(paramiko.config.invoke).__name__,"
        " invoke.collection.Collection is invoke.Collection)",
        *MATCH_EXEC,
    )
    stand_in = "_Invoke" if first == "pass" else "module"  # paramiko (or invoke) imported first: left as it is
    assert out == [f"module {stand_in} True", "matched.example web2 2222"]


def test_paramiko_gets_its_version_without_importlib_metadata() -> None:
    out = run(
        "import sys",
        "import driftctl.transport.ssh",
        "import paramiko",
        "print('importlib.metadata' in sys.modules, type(paramiko.metadata).__name__)",
        "import importlib.metadata",  # anyone else: the real module, which agrees
        "print(paramiko.__version__ == importlib.metadata.version('paramiko'), type(importlib.metadata).__name__)",
        # what paramiko would ask of the stand-in later: the real module's answers
        "print(paramiko.metadata.version('PyYAML') == importlib.metadata.version('PyYAML'),"
        " paramiko.metadata.PackageNotFoundError is importlib.metadata.PackageNotFoundError)",
    )
    assert out == ["False _Metadata", "True module", "True True"]


@pytest.mark.parametrize("first", ["import importlib.metadata", "import paramiko"])
def test_a_process_that_imported_importlib_metadata_or_paramiko_first_is_left_as_it_is(first: str) -> None:
    out = run(first, "import driftctl.transport.ssh, paramiko", "print(type(paramiko.metadata).__name__)")
    assert out == ["module"]


def test_a_distribution_it_cannot_find_beside_the_package_is_asked_of_the_real_module() -> None:
    out = run(
        "import driftctl.transport.ssh, paramiko, sys",
        "from driftctl.transport._deferred import _Metadata",
        "m = _Metadata('/nonexistent')",
        "import importlib.metadata",
        "print(m.version('paramiko') == importlib.metadata.version('paramiko'))",
        "try:\n    m.version('no-such-distribution-here')\nexcept importlib.metadata.PackageNotFoundError:\n"
        "    print('not found')",
    )
    assert out == ["True", "not found"]
