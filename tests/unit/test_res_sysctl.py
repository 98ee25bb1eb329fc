"""sysctl: validation, key paths, pure diff, edit_sysctl on captured cases, agent on files and a real netns."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import driftctl.agent.sysctl as agent_sysctl
from driftctl.agent._core import Ctx, Failure
from driftctl.agent.sysctl import edit_sysctl, sysctl_apply, sysctl_observe, sysctl_parse, sysctl_relpath
from driftctl.errors import Location, ManifestError
from driftctl.resources import get_type

DATA = Path(__file__).parent / "data" / "sysctl"
CASES = sorted(DATA.glob("*.json"))
LOC = Location("manifests/site.yaml", 9)
Sysctl = get_type("sysctl")
assert Sysctl is not None


def public(observed: dict) -> dict:
    """The observed attributes without the agent's private keys (``_cas``, ``_refusal``)."""
    return {k: v for k, v in observed.items() if not k.startswith("_")}


def validate(key: str = "net.ipv4.ip_forward", **raw):
    locs = {k: Location("m.yaml", 40 + i) for i, k in enumerate(raw)}
    return Sysctl.validate({"key": key, **raw}, LOC, locs)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_edit_sysctl_reads_back(case: Path) -> None:
    """What an edit writes, the parser reads back as the value (the edit itself: test_write_fixtures)."""
    c = json.loads(case.read_text())
    edit = edit_sysctl(c["text"], c["key"], c["value"])
    assert sysctl_parse(edit.text)[sysctl_relpath(c["key"])] == " ".join(c["value"].split())


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("net.ipv4.ip_forward", "net/ipv4/ip_forward"),
        ("net/ipv4/ip_forward", "net/ipv4/ip_forward"),
        ("net.ipv4.conf.eth0/100.rp_filter", "net/ipv4/conf/eth0.100/rp_filter"),
        ("net/ipv4/conf/eth0.100/rp_filter", "net/ipv4/conf/eth0.100/rp_filter"),
        ("kernel.sysrq", "kernel/sysrq"),
    ],
)
def test_key_paths_follow_sysctl_d(key: str, path: str) -> None:
    assert sysctl_relpath(key) == path


def test_parse_last_assignment_wins() -> None:
    text = "# c\n; c\nvm.swappiness=10\n\n-kernel.sysrq = 1\nvm.swappiness = 20\n"
    assert sysctl_parse(text) == {"vm/swappiness": "20", "kernel/sysrq": "1"}


def test_values_normalised_and_desired() -> None:
    p = validate("net.ipv4.tcp_rmem", value="4096\t87380   6291456")
    assert p["value"] == "4096 87380 6291456"
    assert p["file"] == "/etc/sysctl.d/99-driftctl.conf" and p["persist"] is True
    assert Sysctl.desired(p) == {"value": "4096 87380 6291456", "persisted": "4096 87380 6291456"}
    assert Sysctl.desired(validate(value=1, persist=False)) == {"value": "1", "persisted": None}
    assert Sysctl.claims(validate("net/ipv4/ip_forward", value=1)) == ["sysctl:net/ipv4/ip_forward"]


@pytest.mark.parametrize(
    ("key", "raw", "message", "line"),
    [
        ("net.ipv4.ip_forward", {}, "parameter 'value' is required", 9),
        ("net.ipv4.ip_forward", {"value": None}, "parameter 'value' is required", 40),  # at the empty key
        ("net..ipv4", {"value": "1"}, "must be a kernel parameter", 9),
        ("net.ipv4 ip_forward", {"value": "1"}, "must be a kernel parameter", 9),
        ("net.ipv4.ip_forward", {"value": 1.5}, "value must be str or int, not float", 40),
        ("net.ipv4.ip_forward", {"value": "  "}, "must not be empty", 40),
        ("net.ipv4.ip_forward", {"value": "1", "file": "/etc/sysctl.d/x"}, "must end in .conf", 41),
        ("net.ipv4.ip_forward", {"value": True}, "value must be str or int", 40),
    ],
)
def test_validation_errors(key: str, raw: dict, message: str, line: int) -> None:
    with pytest.raises(ManifestError, match=message) as info:
        validate(key, **raw)
    assert info.value.location is not None and info.value.location.line == line


def test_diff_and_describe() -> None:
    want = Sysctl.desired(validate(value="1"))
    assert Sysctl.diff(want, {"value": "1", "persisted": "1"}) == []
    changes = Sysctl.diff(want, {"value": "0", "persisted": None})
    assert [Sysctl.describe(c) for c in changes] == ["value 0 -> 1", "persisted (not set) -> 1"]
    [c] = Sysctl.diff(want, {"value": None, "persisted": "1"})
    assert Sysctl.describe(c) == "value (no such key) -> 1"


def test_agent_reads_a_real_key_and_persists_to_a_file(tmp_path: Path) -> None:
    conf = tmp_path / "99-driftctl.conf"
    p = Sysctl.agent_params(validate("kernel.ostype", value="Linux", file=str(conf)))
    assert public(sysctl_observe(p, Ctx())) == {"value": "Linux", "persisted": None}
    sysctl_apply(p, ["persisted"], Ctx(backup_dir=str(tmp_path / "bk")))
    assert conf.read_text() == "kernel.ostype = Linux\n"
    assert public(sysctl_observe(p, Ctx())) == {"value": "Linux", "persisted": "Linux"}
    assert sysctl_observe(Sysctl.agent_params(validate("no.such.key", value="1")), Ctx())["value"] is None


def test_agent_live_write_path_on_a_mirror_of_proc_sys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The /proc/sys write path, on a directory laid out like it (the real one: see the netns test)."""
    root = tmp_path / "proc-sys"
    (root / "net" / "ipv4" / "conf" / "eth0.100").mkdir(parents=True)
    (root / "net" / "ipv4" / "conf" / "eth0.100" / "rp_filter").write_text("0\n")
    monkeypatch.setattr(agent_sysctl, "SYSCTL_ROOT", str(root))
    p = Sysctl.agent_params(validate("net.ipv4.conf.eth0/100.rp_filter", value=2, persist=False))
    sysctl_apply(p, ["value"], Ctx())
    assert (root / "net/ipv4/conf/eth0.100/rp_filter").read_text() == "2\n"
    with pytest.raises(Failure, match=r"the kernel has no key net\.nope"):
        sysctl_apply(Sysctl.agent_params(validate("net.nope", value=1, persist=False)), ["value"], Ctx())


NETNS_SCRIPT = """
import json, sys
from driftctl.agent._core import Ctx
from driftctl.agent.sysctl import sysctl_apply, sysctl_observe
out = []
for p in json.loads(sys.argv[1]):
    before = sysctl_observe(p, Ctx())
    if before["value"] == p["value"]:  # start from another value, whatever the namespace inherited
        sysctl_apply(dict(p, value="0", persist=False), ["value"], Ctx())
        before = sysctl_observe(p, Ctx())
    sysctl_apply(p, ["value", "persisted"], Ctx(backup_dir=sys.argv[2]))
    out.append([before, sysctl_observe(p, Ctx())])
print(json.dumps(out))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_agent_sets_live_values_in_a_private_network_namespace(tmp_path: Path) -> None:
    """Real /proc/sys: net.* keys belong to the network namespace, so a fresh one is ours to change."""
    conf = tmp_path / "net.conf"
    forward = Sysctl.agent_params(validate("net.ipv4.ip_forward", value="1", file=str(conf)))
    ports = Sysctl.agent_params(validate("net.ipv4.ip_local_port_range", value="20000   30000", file=str(conf)))
    host_ports = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
    proc = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", NETNS_SCRIPT, json.dumps([forward, ports]), str(tmp_path / "bk")],
        capture_output=True, text=True,
    )
    if proc.returncode != 0 and "Operation not permitted" in proc.stderr:
        pytest.skip("unshare --net is not permitted here")
    assert proc.returncode == 0, proc.stderr
    (f_before, f_after), (p_before, p_after) = json.loads(proc.stdout)
    assert f_before["value"] == "0" and public(f_after) == {"value": "1", "persisted": "1"}
    # the kernel answers "20000\t30000": compared with whitespace normalised, it is in sync
    assert p_before["value"] != "20000 30000"
    assert public(p_after) == {"value": "20000 30000", "persisted": "20000 30000"}
    assert conf.read_text() == "net.ipv4.ip_forward = 1\nnet.ipv4.ip_local_port_range = 20000 30000\n"
    assert Path("/proc/sys/net/ipv4/ip_local_port_range").read_text() == host_ports  # the host was not touched
