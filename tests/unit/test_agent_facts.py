"""The agent's FQDN fact is what ``socket.getfqdn()`` says, without the idna codec's import."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from driftctl.agent.facts import facts_fqdn


@pytest.mark.parametrize("name", [None, "localhost", "no-such-host.invalid", "hôte-ünïcode"])
def test_the_fqdn_is_what_getfqdn_says(name: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if name is not None:  # getfqdn() asks socket.gethostname() too: both see the same name
        monkeypatch.setattr(socket, "gethostname", lambda: name)
    assert facts_fqdn() == socket.getfqdn()


def test_the_fqdn_needs_no_codec() -> None:
    code = ("import sys; from driftctl.agent.facts import facts_fqdn; f = facts_fqdn();"
            " print('encodings.idna' in sys.modules); import socket; print(f == socket.getfqdn())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "True"]
