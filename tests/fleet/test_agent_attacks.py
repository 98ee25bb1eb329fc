"""A local user plants a symlink to /etc and a manifest path runs through it: the agent (root) refuses.

On a fresh host, ``nobody`` makes ``/tmp/evil -> /etc`` (sticky /tmp, where anyone can make links) and
a directory of their own with ``link -> /etc`` in it (``/home/nobodyhome``). Every file-writing type is
then applied through those links exactly as the engine does (probe, diff, apply through the agent),
and the host is checked with its own tools through ``podman exec``: /etc/shadow, /etc/crontab and the
listings of /etc, /etc/cron.d and /etc/sysctl.d are byte-identical before and after, and the refusal
names the link and its owner. The probe already says why the apply will fail.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from driftctl.errors import Location
from driftctl.resources.base import get_type

LOC = Location("tests/fleet/test_agent_attacks.py", 1)
ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ1mFvE8bN0k7nVtF9tq3Qz2bQ1O4XW9q8W8p0m3tQ0c"

# what must not move: the files the attack aims at, and the listings that would show a new file
FINGERPRINT = (
    "sha256sum /etc/shadow /etc/crontab /etc/passwd; "
    "ls -la --time-style=full-iso /etc /etc/cron.d /etc/sysctl.d /etc/ssh | sha256sum"
)


def sh(host: Any, script: str) -> str:
    result = host.sh(script)
    assert result.rc == 0, result.stderr_text
    return result.stdout_text


def item(type_name: str, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], Any, dict[str, Any]]:
    rtype = get_type(type_name)
    assert rtype is not None
    params = rtype.validate(raw, LOC)
    blobs = {k: base64.b64encode(v).decode() for k, v in rtype.blobs(params).items()}
    rid = f"{type_name}:{rtype.title(params)}"
    return {"id": rid, "type": type_name, "params": rtype.agent_params(params)}, blobs, rtype, params


def attack(host: Any, type_name: str, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Probe, diff and apply one resource through the agent; returns (probe entry, apply result)."""
    it, blobs, rtype, params = item(type_name, raw)
    probe = host.agent({"op": "probe", "facts": False, "resources": [it]})
    assert probe["ok"], probe
    seen = probe["resources"][it["id"]]
    assert "observed" in seen, seen
    # the plan shows a change (ensure: absent through the link shows none: apply is asked anyway)
    changes = [c.field for c in rtype.diff(rtype.desired(params), seen["observed"])] or ["ensure"]
    answer = host.agent({"op": "apply", "blobs": blobs, "resources": [{**it, "changes": changes}]})
    assert answer["ok"], answer
    return seen, answer["results"][it["id"]]


def resources(via: str, pid_max: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("file", {"path": f"{via}/shadow", "content": "root::0:0:99999:7:::\n"}),
        ("file", {"path": f"{via}/shadow", "ensure": "absent"}),
        ("file", {"path": f"{via}/shadow", "mode": "0666"}),
        ("line", {"name": "l", "path": f"{via}/shadow", "text": "evil::0:0:99999:7:::"}),
        ("block", {"name": "b", "path": f"{via}/crontab", "content": "* * * * * root /tmp/x\n"}),
        ("cron", {"name": "c", "file": f"{via}/crontab", "minute": "*", "command": "/tmp/x"}),
        ("cron", {"name": "c", "file": f"{via}/cron.d/evil", "minute": "*", "command": "/tmp/x"}),
        ("sysctl", {"key": "kernel.pid_max", "value": pid_max, "file": f"{via}/sysctl.d/99-evil.conf"}),
        ("authorized_key", {"name": "k", "user": "root", "key": ED, "path": f"{via}/ssh/authorized_keys"}),
        ("directory", {"path": f"{via}/evil.d"}),
        ("symlink", {"path": f"{via}/shadow", "target": "/tmp/x", "force": True}),
    ]


@pytest.mark.parametrize("via", ["/tmp/evil", "/home/nobodyhome/link"])
def test_writes_through_a_link_planted_by_nobody_are_refused(fresh_host: Any, via: str) -> None:
    host = fresh_host
    sh(host, "runuser -u nobody -- ln -s /etc /tmp/evil")
    sh(host, "mkdir -p /home/nobodyhome && chown nobody:nogroup /home/nobodyhome"
             " && runuser -u nobody -- ln -s /etc /home/nobodyhome/link")
    assert sh(host, f"stat -c %U {via}") == "nobody\n"
    pid_max = sh(host, "cat /proc/sys/kernel/pid_max").strip()
    before = sh(host, FINGERPRINT)
    for type_name, raw in resources(via, pid_max):
        seen, result = attack(host, type_name, raw)
        what = f"{type_name} {raw}"
        assert result["status"] == "failed", (what, result)
        error = result["error"]
        assert f"{via} is a symlink that a user other than root could have planted (link owner uid 65534" in error, (
            what, error)
        # the probe already said it would be refused, in the same words
        assert seen["observed"].get("_refusal") == error, (what, seen)
        if "refuse" in seen:
            assert seen["refuse"] == error, (what, seen)
        assert sh(host, FINGERPRINT) == before, what
    assert host.exec(["test", "-e", "/etc/evil.d"]).rc != 0
    # root's own link in root's directory (as /var/run -> /run) is still followed
    sh(host, "mkdir -p /srv/real && ln -sfn /srv/real /srv/current")
    seen, result = attack(host, "file", {"path": "/srv/current/app.conf", "content": "ok\n"})
    assert "_refusal" not in seen["observed"] and result["status"] == "changed", result
    assert sh(host, "cat /srv/real/app.conf") == "ok\n"
