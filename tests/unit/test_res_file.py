"""file: validation, desired/diff (pure), and the agent's observe/apply against temporary directories."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from driftctl import ship as agent
from driftctl.agent import file as agent_file
from driftctl.agent._core import Ctx, Failure, backup_key
from driftctl.agent.file import file_apply, file_observe
from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources import get_type

LOC = Location("manifests/web.yaml", 12)
File = get_type("file")
assert File is not None
MY_AGENT_MODULES = ("file", "directory", "symlink", "line", "block", "cron", "sysctl")


def validate(path: str = "/etc/motd", **raw):
    locs = {k: Location("manifests/web.yaml", 13 + i) for i, k in enumerate(raw)}
    return File.validate({"path": path, **raw}, LOC, locs)


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


# ---- validation


def test_defaults_and_normalisation() -> None:
    p = validate(content="hi\n", mode="644", owner=0)
    assert p["mode"] == "0644" and p["owner"] == "0" and p["ensure"] == "present" and p["backup"] is True
    assert validate(mode="00755")["mode"] == "0755"
    assert validate(mode="4755")["mode"] == "4755"
    assert validate(path="/etc/app/")["path"] == "/etc/app"
    assert validate(content=b"\x89PNG")["content"] == b"\x89PNG"  # what the manifest stage makes of source:


@pytest.mark.parametrize(
    ("raw", "message", "line"),
    [
        ({"mode": 644}, 'mode must be a quoted octal string like "0644"', 13),
        ({"mode": "0999"}, "mode must be a quoted octal string", 13),
        ({"content": "a", "template": "motd.j2"}, "give one of content, template and source, not content and", 12),
        ({"ensure": "absent", "content": "a"}, "ensure: absent takes no content", 12),
        ({"ensure": "absent", "mode": "0600"}, "ensure: absent takes no mode", 12),
        ({"ensure": "gone"}, "ensure must be one of present, absent", 13),
        ({"owner": "root:root"}, "owner must be a user or group name or a numeric id", 13),
        ({"group": -1}, "group must be a name or an id >= 0", 13),
        ({"backup": "no"}, "backup must be bool", 13),
        ({"contnet": "x"}, "unknown parameter 'contnet'", 13),
        ({"content": 5}, "content must be str or bytes", 13),
    ],
)
def test_validation_errors_point_at_the_line(raw: dict, message: str, line: int) -> None:
    with pytest.raises(ManifestError, match=message) as info:
        validate(**raw)
    assert info.value.location == Location("manifests/web.yaml", line)


def test_path_errors() -> None:
    with pytest.raises(ManifestError, match="path must be an absolute path") as info:
        File.validate({"path": "etc/motd"}, LOC, {"path": Location("m.yaml", 3)})
    assert info.value.location == Location("m.yaml", 3)
    with pytest.raises(ManifestError, match="parameter 'path' is required") as info:
        File.validate({"path": None}, LOC)
    assert info.value.location == LOC
    with pytest.raises(ManifestError, match="did you mean 'content'"):
        validate(contnet="x")


def test_autorequire_parent_directory_and_owner() -> None:
    assert File.autorequire(validate(path="/etc/app/app.conf", owner="app", group="0")) == [
        "directory:/etc/app", "user:app"
    ]
    assert File.autorequire(validate(path="/motd")) == []


# ---- desired, agent params, blobs, diff (pure)


def test_desired_and_agent_params_carry_the_hash_not_the_content() -> None:
    p = validate(content="hello\n", mode="0600")
    want = File.desired(p)
    assert want == {"ensure": "file", "content_sha256": sha("hello\n"), "owner": None, "group": None, "mode": "0600"}
    ap = File.agent_params({**p, "_want_content": False})
    assert "content" not in ap and ap["content_sha256"] == sha("hello\n") and ap["_want_content"] is False
    assert File.blobs(p) == {sha("hello\n"): b"hello\n"}
    assert File.desired(validate(ensure="absent"))["ensure"] == "absent"
    assert File.blobs(validate(ensure="absent")) == {}
    assert File.desired(validate())["content_sha256"] is None  # existence and metadata only


def test_diff_new_file() -> None:
    p = validate(content="a\nb\n", mode="0640")
    want = File.desired(p)
    observed = {"ensure": "absent", "content_sha256": None, "owner": None, "group": None, "mode": None}
    changes = File.diff(want, observed, params=p)
    assert [c.field for c in changes] == ["ensure", "content", "mode"]
    assert [File.describe(c) for c in changes] == [
        "created", "content sha256:" + sha("a\nb\n")[:12], "mode -> 0640",
    ]
    assert changes[1].diff == "--- /dev/null\n+++ content (manifest)\n@@ -0,0 +1,2 @@\n+a\n+b\n"


def test_diff_changed_content_and_mode() -> None:
    p = validate(content="PermitRootLogin no\nPort 22\n", mode="0600")
    want = File.desired(p)
    old = "PermitRootLogin yes\nPort 22\n"
    observed = {"ensure": "file", "content_sha256": sha(old), "content": old, "owner": "root", "group": "root",
                "mode": "0644"}
    content, mode = File.diff(want, observed, params=p)
    assert content.diff == (
        "--- content (host)\n+++ content (manifest)\n@@ -1,2 +1,2 @@\n"
        "-PermitRootLogin yes\n+PermitRootLogin no\n Port 22\n"
    )
    assert File.describe(content) == f"content sha256:{sha(old)[:12]} -> sha256:{want['content_sha256'][:12]}"
    assert File.describe(mode) == "mode 0644 -> 0600"
    [hidden] = File.diff(want, {**observed, "mode": "0600"}, sensitive=True, params=p)
    assert hidden.diff is None
    # the diff reads nothing but its arguments: without the params it has no text to show
    [plain, _mode] = File.diff(want, observed)
    assert plain.diff is None and plain.after == content.after


def test_diff_in_sync_binary_and_obstacles() -> None:
    data = b"\x00\xff binary"
    want = File.desired(validate(content=data))
    assert File.diff(want, {"ensure": "file", "content_sha256": sha(data), "mode": "0644"}) == []
    [c] = File.diff(want, {"ensure": "file", "content_sha256": sha(b"other"), "mode": "0644"})
    assert c.diff is None  # no text diff of binary content
    [link] = File.diff(want, {"ensure": "link", "target": "/x", "content_sha256": None})
    assert File.describe(link) == "ensure link -> file"
    gone = File.desired(validate(ensure="absent"))
    assert File.diff(gone, {"ensure": "absent"}) == []
    [rm] = File.diff(gone, {"ensure": "file", "content_sha256": sha("x")})
    assert File.describe(rm) == "removed"
    assert File.describe(Change("owner", "root", "app")) == "owner root -> app"


# ---- the agent against real files


def backups_of(bk: Path, path: Path) -> list[Path]:
    """The backups of ``path`` under the backup directory ``bk``, oldest first."""
    sub = bk / backup_key(str(path))
    if not sub.exists():
        return []
    assert (sub / "path").read_text() == f"{path}\n"
    return sorted(p for p in sub.iterdir() if p.name != "path")


def agent_params(path: Path, **raw) -> dict:
    return File.agent_params(File.validate({"path": str(path), **raw}, LOC))


def ctx_for(tmp_path: Path, params_list: list[dict]) -> Ctx:
    blobs: dict[str, bytes] = {}
    for p in params_list:
        blobs.update(File.blobs(p))
    return Ctx(blobs=blobs, backup_dir=str(tmp_path / "backup"))


def converge(path: Path, tmp_path: Path, **raw) -> dict:
    """probe -> diff -> apply -> probe, as the engine does; returns the final observation."""
    params = File.validate({"path": str(path), **raw}, LOC)
    ap, ctx = File.agent_params(params), ctx_for(tmp_path, [params])
    changes = File.diff(File.desired(params), file_observe(ap, ctx))
    if changes:
        file_apply(ap, [c.field for c in changes], ctx)
    after = file_observe(ap, ctx)
    assert File.diff(File.desired(params), after) == []
    return after


def test_agent_creates_then_is_in_sync(tmp_path: Path) -> None:
    f = tmp_path / "motd"
    after = converge(f, tmp_path, content="hello\n", mode="0640", owner="nobody", group="nogroup")
    st = f.stat()
    assert f.read_text() == "hello\n" and oct(st.st_mode & 0o7777) == "0o640"
    assert st.st_uid == pwd.getpwnam("nobody").pw_uid
    assert after["content_sha256"] == sha("hello\n") and after["owner"] == "nobody"
    assert "content" not in after  # in sync: no text travels back
    assert not (tmp_path / "backup").exists()  # nothing was replaced, nothing backed up


def test_agent_replaces_content_keeping_unmanaged_owner_and_mode_with_backup(tmp_path: Path) -> None:
    f = tmp_path / "app.conf"
    f.write_text("old\n")
    nobody = pwd.getpwnam("nobody")
    os.chown(f, nobody.pw_uid, nobody.pw_gid)
    os.chmod(f, 0o640)
    converge(f, tmp_path, content="new\n")
    st = f.stat()
    assert f.read_text() == "new\n" and st.st_uid == nobody.pw_uid and oct(st.st_mode & 0o777) == "0o640"
    [backup] = backups_of(tmp_path / "backup", f)
    assert backup.name.endswith("-" + sha("old\n")[:12])
    assert backup.read_text() == "old\n" and oct(backup.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".driftctl-")] == []


def test_agent_changes_mode_in_place(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_text("s\n")
    inode = f.stat().st_ino
    converge(f, tmp_path, mode="0600")
    assert f.stat().st_ino == inode and oct(f.stat().st_mode & 0o777) == "0o600"


def test_agent_numeric_owner_is_reported_as_a_number(tmp_path: Path) -> None:
    f = tmp_path / "n"
    after = converge(f, tmp_path, content="x", owner=65534, group="65534")
    assert after["owner"] == "65534" and after["group"] == "65534"


def test_agent_refuses_symlink_and_directory(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("keep\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    p = agent_params(link, content="x\n")
    observed = file_observe(p, ctx_for(tmp_path, []))
    assert observed["ensure"] == "link" and observed["target"] == str(target)
    with pytest.raises(Failure, match=r"is a symlink \(to .*target\): driftctl never follows or replaces it"):
        file_apply(p, ["ensure"], ctx_for(tmp_path, [File.validate({"path": str(link), "content": "x\n"}, LOC)]))
    with pytest.raises(Failure, match="is a symlink"):
        file_apply(agent_params(link, mode="0600"), ["mode"], ctx_for(tmp_path, []))
    with pytest.raises(Failure, match="is a symlink"):
        file_apply(agent_params(link, ensure="absent"), ["ensure"], ctx_for(tmp_path, []))
    assert target.read_text() == "keep\n" and link.is_symlink()
    d = tmp_path / "dir"
    d.mkdir()
    with pytest.raises(Failure, match="is a directory"):
        file_apply(agent_params(d), ["ensure"], ctx_for(tmp_path, []))


def test_agent_missing_parent_fails_clearly(tmp_path: Path) -> None:
    p = agent_params(tmp_path / "no" / "such" / "file", content="x")
    with pytest.raises(Failure, match=r"parent directory .*/no/such does not exist \(declare it"):
        file_apply(p, ["ensure"], ctx_for(tmp_path, [File.validate({"path": "/x", "content": "x"}, LOC)]))
    assert not (tmp_path / "no").exists()


def test_agent_absent_backs_up_and_removes(tmp_path: Path) -> None:
    f = tmp_path / "old"
    f.write_text("bye\n")
    converge(f, tmp_path, ensure="absent")
    assert not f.exists() and [b.read_text() for b in backups_of(tmp_path / "backup", f)] == ["bye\n"]


def test_agent_rejects_content_that_does_not_match_its_hash(tmp_path: Path) -> None:
    f = tmp_path / "x"
    p = agent_params(f, content="right")
    with pytest.raises(Failure, match="does not match its checksum"):
        file_apply(p, ["ensure"], Ctx(blobs={sha("right"): b"wrong"}))
    assert not f.exists()


def test_agent_sends_text_only_when_small_utf8_wanted_and_different(tmp_path: Path) -> None:
    """The text is for a diff: only when the content is managed, differs, is small and is UTF-8."""
    ctx = Ctx()
    small, big, binary = tmp_path / "small", tmp_path / "big", tmp_path / "bin"
    small.write_text("hi\n")
    big.write_text("x" * (256 * 1024 + 1))
    binary.write_bytes(b"\xff\xfe")
    differs = {"content_sha256": sha("something else\n")}
    assert file_observe({**agent_params(small), **differs}, ctx)["content"] == "hi\n"
    assert "content" not in file_observe({**agent_params(small), "content_sha256": sha("hi\n")}, ctx)  # in sync
    assert "content" not in file_observe({**agent_params(small), "content_sha256": None}, ctx)  # unmanaged
    assert "content" not in file_observe({**agent_params(small), **differs, "_want_content": False}, ctx)
    assert "content" not in file_observe({**agent_params(big), **differs}, ctx)
    observed = file_observe({**agent_params(binary), **differs}, ctx)
    assert "content" not in observed and observed["content_sha256"] == sha(b"\xff\xfe")


# ---- interrupted writes: the old file survives a write that fails or a process that dies


WRITER = """
import json, os, resource, signal, sys
from driftctl.agent._core import Ctx
from driftctl.agent.file import file_apply
params, how = json.loads(sys.argv[1]), sys.argv[3]
with open(sys.argv[2], "rb") as f:
    blob = f.read()
if how == "fsize":
    # the kernel refuses writes past 64 KiB (EFBIG; python ignores SIGXFSZ): a disk that fills up
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
else:
    # die the hard way between writing the temp file and renaming it over the file, as a killed agent
    # would (the backup's own rename goes through)
    real_rename = os.rename
    def rename(src, dst, **kw):
        if dst == os.path.basename(params["path"]):
            os.kill(os.getpid(), signal.SIGKILL)
        real_rename(src, dst, **kw)
    os.rename = rename
file_apply(params, ["content"], Ctx(blobs={params["content_sha256"]: blob}, backup_dir=sys.argv[4]))
"""


@pytest.mark.parametrize("how", ["fsize", "kill"])
def test_interrupted_write_leaves_the_old_file_intact(tmp_path: Path, how: str) -> None:
    f = tmp_path / "important.conf"
    f.write_text("old content\n")
    os.chmod(f, 0o640)
    blob = os.urandom(200_000)
    blob_file = tmp_path / "blob.bin"
    blob_file.write_bytes(blob)
    params = File.agent_params(File.validate({"path": str(f), "content": blob}, LOC))
    proc = subprocess.run(
        [sys.executable, "-c", WRITER, json.dumps(params), str(blob_file), how, str(tmp_path / "bk")],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert f.read_text() == "old content\n"
    assert [b.read_text() for b in backups_of(tmp_path / "bk", f)] == ["old content\n"]
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".driftctl-")]
    if how == "fsize":
        assert "File too large" in proc.stderr and leftovers == []  # the failed temp file was removed
    else:
        assert proc.returncode == -9
        # a killed process cannot clean up: its temp file stays beside the untouched original, never more
        # open than the file it was to replace (atomic_write sets the final mode before the rename)
        assert len(leftovers) == 1 and oct(leftovers[0].stat().st_mode & 0o777) == "0o640"
        assert leftovers[0].read_bytes() == blob  # fsynced in full before the rename that never came


# ---- the shipped program: every module concatenated, python 3.8 syntax, run end to end


@pytest.mark.parametrize("module", MY_AGENT_MODULES)
def test_agent_module_is_python38_syntax(module: str) -> None:
    source = (Path(agent_file.__file__).parent / f"{module}.py").read_text()
    ast.parse(source, feature_version=(3, 8))


def run_agent(request: dict) -> dict:
    proc = subprocess.run(
        agent.command(sys.executable),
        input=agent.program_bytes() + json.dumps({"v": agent.PROTOCOL_VERSION, **request}).encode() + b"\n",
        capture_output=True, check=True,
    )
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.strip()]
    answer = lines[-1]
    done = {r["done"]: r["result"] for r in lines[:-1] if "done" in r and not r.get("refresh")}
    if done and "results" not in answer:  # protocol 2: results come as records before the answer
        answer["results"] = done
    return answer


def test_shipped_program_probes_and_applies_every_file_type(tmp_path: Path) -> None:
    from driftctl.resources import get_type as gt

    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")
    decl = [
        ("directory", {"path": str(tmp_path / "etc"), "mode": "0750"}),
        ("file", {"path": str(tmp_path / "etc" / "app.conf"), "content": "a=1\n", "mode": "0600"}),
        ("symlink", {"path": str(tmp_path / "current"), "target": str(tmp_path / "etc")}),
        ("line", {"name": "h", "path": str(tmp_path / "hosts"), "text": "10.0.0.1 db"}),
        ("block", {"name": "b", "path": str(tmp_path / "hosts"), "content": "10.0.0.2 x\n"}),
        ("cron", {"name": "j", "file": str(tmp_path / "crond"), "special": "@daily", "command": "/bin/true"}),
    ]
    items, blobs, typed = [], {}, []
    for type_name, raw in decl:
        rtype = gt(type_name)
        assert rtype is not None
        params = rtype.validate(raw, LOC)
        typed.append((rtype, params))
        items.append({"id": f"{type_name}:{rtype.title(params)}", "type": type_name,
                      "params": rtype.agent_params(params)})
        blobs.update({k: base64.b64encode(v).decode() for k, v in rtype.blobs(params).items()})
    probe = run_agent({"op": "probe", "resources": items, "facts": False})
    assert probe["ok"], probe
    changes = {}
    for (rtype, params), item in zip(typed, items, strict=True):
        observed = probe["resources"][item["id"]]["observed"]
        changes[item["id"]] = [c.field for c in rtype.diff(rtype.desired(params), observed)]
        assert changes[item["id"]], item["id"]
    lock = str(tmp_path / "lock")  # its own: not this machine's /run/driftctl, which other tests' agents take
    applied = run_agent({"op": "apply", "blobs": blobs, "backup_dir": str(tmp_path / "bk"), "lock_dir": lock,
                         "resources": [{**i, "changes": changes[i["id"]]} for i in items]})
    assert applied["ok"], applied
    assert {rid: r["status"] for rid, r in applied["results"].items()} == {i["id"]: "changed" for i in items}, applied
    again = run_agent({"op": "probe", "resources": items, "facts": False})
    for (rtype, params), item in zip(typed, items, strict=True):
        assert rtype.diff(rtype.desired(params), again["resources"][item["id"]]["observed"]) == [], item["id"]
    assert (tmp_path / "etc" / "app.conf").read_text() == "a=1\n"
    assert os.readlink(tmp_path / "current") == str(tmp_path / "etc")


def test_writes_never_cross_a_symlink_a_user_could_have_planted(tmp_path) -> None:
    """A link in a directory someone else owns (or can write) is refused; root's own links are followed."""
    from driftctl.agent._core import Target, UnsafePath

    def walk(path: Path) -> None:
        with Target(str(path)):
            pass

    target = tmp_path / "target"
    target.mkdir()
    user_dir = tmp_path / "home"
    user_dir.mkdir()
    os.symlink(target, user_dir / "link")
    os.chown(user_dir, 65534, 65534)  # a directory nobody (the user) owns: they can swap its entries
    with pytest.raises(UnsafePath, match="could have planted"):
        walk(user_dir / "link" / "file")

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # writable by everyone, not sticky
    os.symlink(target, shared / "link")
    with pytest.raises(UnsafePath, match="could have planted"):
        walk(shared / "link" / "file")

    os.chmod(shared, 0o1777)  # sticky: others cannot replace root's link
    walk(shared / "link" / "file")

    os.lchown(shared / "link", 65534, 65534)  # but a link the user owns is theirs to point anywhere
    with pytest.raises(UnsafePath, match="could have planted"):
        walk(shared / "link" / "file")

    safe = tmp_path / "safe"
    safe.mkdir()
    os.symlink(target, safe / "link")
    walk(safe / "link" / "file")  # root's link in root's directory: /var/run -> /run


def test_a_new_files_diff_is_difflibs_own() -> None:
    """``created_diff`` writes a new file's diff without difflib's matcher: the same text, to the byte."""
    import difflib
    import random

    from driftctl.resources.base import created_diff

    rng = random.Random(7)
    pieces = ["a", "line", "", " ", "\n", "\r\n", "\r", "\x0b", "\x1c", "\u2028", "\x85", "é", "\t"]
    texts = ["", "a", "a\n", "\n", "\n\n", "x\r\ny", "one\ntwo", "é\u2028ü\n"]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randrange(0, 60))) for _ in range(500)]
    for text in texts:
        lines = text.splitlines(keepends=True)
        want = "".join(difflib.unified_diff([], lines, fromfile="/dev/null", tofile="/etc/x (manifest)"))
        assert created_diff(lines, "/etc/x (manifest)") == want, repr(text)
