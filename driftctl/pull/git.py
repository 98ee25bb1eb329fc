"""SOURCE as a git mirror in the pull cache: fetch, resolve ``--ref``, verify signatures, check out.

git runs with a clean environment (no ``GIT_*`` variable of the caller's, no hooks, no terminal
prompt), every argument its own argv element, and ``--end-of-options`` before anything a user gave.
A checkout is a ``git archive`` of the commit unpacked into a new directory and renamed into place
when complete: a run never reads a half-written tree, and the tree holds no ``.git`` to execute.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from driftctl.pull import PullError

GIT_TIMEOUT = 300.0
_REF = re.compile(r"^[A-Za-z0-9._/@+-]+$")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
# a URL's user information: everything up to the LAST @ before the path (a password may hold an @)
_URL_SECRET = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@")
_URL_SECRET_IN_TEXT = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s'\"]*@")


def shown_source(source: str) -> str:
    """SOURCE as reports show it: without a password or token in its URL."""
    return _URL_SECRET.sub(r"\1", source)


def shown_text(text: str, source: str | None = None) -> str:
    """``text`` (a message of git's) without ``source``'s user information, nor any URL's."""
    if source:
        text = text.replace(source, shown_source(source))
    return _URL_SECRET_IN_TEXT.sub(r"\1", text)


def is_local(source: str) -> bool:
    """Whether SOURCE names a path on this machine (not a URL nor scp-like ``host:path``)."""
    if "://" in source:
        return source.startswith("file://")
    head = source.split("/", 1)[0]
    return ":" not in head


def check_ref(ref: str | None) -> None:
    if ref is None:
        return
    if not ref or ref.startswith("-") or not _REF.match(ref) or ".." in ref or ref.endswith((".lock", "/")):
        raise PullError(f"--ref {ref!r} is not a branch, tag or commit name",
                        hint="letters, digits and . _ / @ + -, not starting with -")


@dataclass
class GitResult:
    rc: int
    stdout: bytes
    stderr: str


class Git:
    """git on the mirror at ``git_dir`` with a clean environment."""

    def __init__(self, git_dir: Path, home: Path | None = None) -> None:
        self.git_dir = git_dir
        self.env = {
            "PATH": os.environ.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(home) if home is not None else os.environ.get("HOME", "/"),
            "LANG": "C",
            "LC_ALL": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            "SSH_ASKPASS": "/bin/false",
        }
        for name in ("SSH_AUTH_SOCK", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                     "NO_PROXY"):
            if name in os.environ:
                self.env[name] = os.environ[name]

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = GIT_TIMEOUT,
            check: bool = False, what: str = "git") -> GitResult:
        # ext:: runs a command and is off by default, but root's own git config could allow it
        argv = ["git", "-c", "core.hooksPath=/dev/null", "-c", "protocol.file.allow=always",
                "-c", "protocol.ext.allow=never", "-c", "core.fsmonitor=false", "-c", "gc.auto=0",
                f"--git-dir={self.git_dir}", *args]
        try:
            # umask 077: the mirror is as private as the rest of the cache, whatever the caller's umask
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                                  env={**self.env, **(env or {})}, check=False, umask=0o077)
        except FileNotFoundError:
            raise PullError("git is not installed on this host", hint="pull mode needs git (apt install git)") \
                from None
        except subprocess.TimeoutExpired:
            return GitResult(124, b"", f"{what} timed out after {timeout:g}s")
        result = GitResult(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace").strip())
        if check and result.rc != 0:
            raise PullError(f"{what} failed: {_last_line(result.stderr)}")
        return result

    # -- the mirror ---------------------------------------------------------------------------------

    def ensure(self) -> None:
        """The mirror, made when missing; one that is not a repository (a run killed while it was made by
        an older driftctl, a disk error) is made again: it is a cache, SOURCE has it all."""
        if os.path.lexists(self.git_dir):
            if self.git_dir.is_dir() and not self.git_dir.is_symlink() and (self.git_dir / "HEAD").is_file():
                return
            self._set_aside()
        tmp = Path(tempfile.mkdtemp(dir=self.git_dir.parent, prefix=".repo."))
        Git(tmp).run("init", "--quiet", "--bare", str(tmp), check=True, what="git init")
        os.rename(tmp, self.git_dir)

    def refetch(self, source: str) -> GitResult:
        """Fetch ``source`` into a new mirror, put in place of this one (whose objects git could not read)
        only when that fetch worked: when SOURCE is at fault, the old mirror and its last good commit stay."""
        fresh = Git(Path(tempfile.mkdtemp(dir=self.git_dir.parent, prefix=".repo.")))
        fresh.env = self.env
        fresh.run("init", "--quiet", "--bare", str(fresh.git_dir), check=True, what="git init")
        got = fresh.fetch(source)
        if got.rc != 0:
            shutil.rmtree(fresh.git_dir, ignore_errors=True)
            return got
        self._set_aside()
        os.rename(fresh.git_dir, self.git_dir)
        return got

    def _set_aside(self) -> None:
        """Move the mirror out of the way and remove it (what a kill leaves, the cache's sweep removes)."""
        if os.path.lexists(self.git_dir):
            aside = self.git_dir.parent / f".repo.broken.{os.getpid()}.{time.monotonic_ns()}"
            os.rename(self.git_dir, aside)
            if aside.is_dir() and not aside.is_symlink():
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.unlink(aside)

    def fetch(self, source: str) -> GitResult:
        """Every branch and tag of ``source``, and its HEAD, into refs/source/ (pruned)."""
        return self.run("fetch", "--quiet", "--prune", "--force", "--no-tags", "--no-write-fetch-head",
                        "--end-of-options", source,
                        "+HEAD:refs/source/HEAD", "+refs/heads/*:refs/source/heads/*",
                        "+refs/tags/*:refs/source/tags/*", what="git fetch")

    def resolve(self, ref: str | None) -> str | None:
        """The commit ``ref`` names in the mirror (default: SOURCE's HEAD), or None."""
        names = ["refs/source/HEAD"] if ref is None else [f"refs/source/heads/{ref}", f"refs/source/tags/{ref}"]
        if ref is not None and re.fullmatch(r"[0-9a-f]{7,64}", ref):
            names.append(ref)
        for name in names:
            got = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}")
            if got.rc == 0:
                sha = got.stdout.decode().strip()
                if _SHA.match(sha) and (name != ref or self._reachable(sha)):
                    return sha
        return None

    def _reachable(self, sha: str) -> bool:
        """A commit named by its hash is used only when a branch or tag of SOURCE contains it."""
        got = self.run("for-each-ref", "--count=1", "--contains", sha, "--format=%(refname)", "refs/source/")
        return got.rc == 0 and bool(got.stdout.strip())

    def has_commit(self, sha: str) -> bool:
        return self.run("cat-file", "-e", "--end-of-options", f"{sha}^{{commit}}").rc == 0

    # -- signatures ---------------------------------------------------------------------------------

    def verify(self, sha: str, key_files: tuple[Path, ...]) -> None:
        """Refuse ``sha`` unless its signature verifies against the keys in ``key_files`` alone (a
        GNUPGHOME built here from them, removed after)."""
        # a short path: gpg's agent socket lives in GNUPGHOME when /run/user/UID does not exist, and a
        # socket path over 107 bytes (a deep --cache-dir) made every import fail ("no gpg-agent running");
        # mkdtemp makes it 0700 and ours, under any /tmp
        home = Path(tempfile.mkdtemp(prefix="driftctl-gnupg."))
        try:
            os.chmod(home, 0o700)
            # no git config but ours: root's could make git trust other keys (an SSH signature is
            # checked against gpg.ssh.allowedSignersFile, whatever --verify-commit says)
            env = {"GNUPGHOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
            for key in key_files:
                try:
                    data = key.read_bytes()
                except OSError as e:
                    raise PullError(f"--verify-commit {key}: {e.strerror}") from None
                proc = subprocess.run(["gpg", "--batch", "--quiet", "--no-autostart", "--import"], input=data,
                                      capture_output=True, env={**self.env, **env}, timeout=60, check=False,
                                      umask=0o077)
                if proc.returncode != 0 or not self._has_keys(env):
                    raise PullError(f"--verify-commit {key}: no OpenPGP public key in it "
                                    f"({_last_line(proc.stderr.decode('utf-8', 'replace'))})")
            got = self.run("-c", "gpg.program=gpg", "-c", "gpg.format=openpgp", "verify-commit", "--raw",
                           "--end-of-options", sha, env=env, what="git verify-commit")
            if got.rc != 0:
                said, hint = unverified(got.stderr)
                kept = "it was not applied; the host keeps its state"
                raise PullError(f"commit {sha[:12]} {said}", hint=f"{hint}; {kept}" if hint else kept)
        except FileNotFoundError:
            raise PullError("gpg is not installed on this host", hint="--verify-commit needs gnupg") from None
        finally:
            subprocess.run(["gpgconf", "--kill", "all"], env={**self.env, "GNUPGHOME": str(home)},
                           capture_output=True, check=False, timeout=30) if shutil.which("gpgconf") else None
            shutil.rmtree(home, ignore_errors=True)

    def _has_keys(self, env: dict[str, str]) -> bool:
        proc = subprocess.run(["gpg", "--batch", "--no-autostart", "--list-keys", "--with-colons"],
                              capture_output=True, env={**self.env, **env}, timeout=60, check=False)
        return b"\npub:" in b"\n" + proc.stdout

    # -- checkouts ----------------------------------------------------------------------------------

    def checkout(self, sha: str, checkouts: Path) -> Path:
        """The tree of ``sha`` at ``checkouts/<sha>``: reused when there, else unpacked aside and renamed."""
        target = checkouts / sha
        if target.is_dir() and not target.is_symlink():
            return target
        tmp = Path(tempfile.mkdtemp(dir=checkouts, prefix=f".{sha[:12]}."))
        tar = Path(f"{tmp}.tar")  # on disk, not in memory: a tree may be larger than this host's memory
        try:
            got = self.run("archive", "--format=tar", f"--output={tar}", "--end-of-options", sha, what="git archive")
            if got.rc != 0:
                raise PullError(f"cannot check out {sha[:12]}: {_last_line(got.stderr)}")
            _untar(tar, tmp)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            tar.unlink(missing_ok=True)
        return target


# what git says when the mirror itself may be damaged (not SOURCE unreachable): fetched again, into a new one
_BROKEN_MIRROR = ("unable to unpack", "inflate:", "is corrupt", "bad object", "loose object", "packfile",
                  "not a git repository", "bad tree", "missing blob", "object file", "invalid object")


def mirror_broken(stderr: str) -> bool:
    low = stderr.lower()
    return any(sign in low for sign in _BROKEN_MIRROR)


def unverified(raw: str) -> tuple[str, str | None]:
    """(what is wrong with a commit's signature, what to do) from ``git verify-commit --raw``'s stderr
    (GnuPG's status lines)."""
    status: dict[str, list[str]] = {}
    for line in raw.splitlines():
        if line.startswith("[GNUPG:] "):
            word, _, rest = line[len("[GNUPG:] "):].partition(" ")
            status.setdefault(word, rest.split(" ", 1) if rest else [])
    who = lambda word: " ".join(status[word][1:]) or status[word][0]  # noqa: E731 - the uid, or the key id
    if "EXPKEYSIG" in status:
        expired = status.get("KEYEXPIRED", ["0"])[0]
        when = time.strftime(" on %Y-%m-%d", time.gmtime(int(expired))) if expired.isdigit() and int(expired) else ""
        return (f"is signed by {who('EXPKEYSIG')}, a key of --verify-commit that expired{when}",
                "renew the key (gpg --quick-set-expire FINGERPRINT 1y) and export it again to the key file")
    if "REVKEYSIG" in status:
        return f"is signed by {who('REVKEYSIG')}, a key of --verify-commit that is revoked", None
    if "EXPSIG" in status:
        return f"is signed by {who('EXPSIG')}, but the signature itself has expired", None
    if "BADSIG" in status:
        return (f"has a BAD signature by {who('BADSIG')}: the commit is not what was signed",
                "someone altered the commit, or the repository is corrupt")
    if "ERRSIG" in status or "NO_PUBKEY" in status:
        key = (status.get("NO_PUBKEY") or status.get("ERRSIG") or ["?"])[0]
        return f"is not signed by a key of --verify-commit: it is signed by key {key}, which is not in them", None
    if "allowedSignersFile" in raw or "ssh-keygen" in raw:
        return ("is not signed by a key of --verify-commit: its signature is an SSH one, and --verify-commit checks "
                "OpenPGP signatures only", None)
    if "NEWSIG" not in status:
        return "is not signed by a key of --verify-commit: it is not signed at all", "sign it (git commit -S)"
    return f"is not signed by a key of --verify-commit: {_last_line(raw) or 'no good signature'}", None


def _untar(archive: Path, into: Path) -> None:
    """Unpack a ``git archive`` tar: regular files, directories and links inside the tree only."""
    with tarfile.open(archive, mode="r:") as tar:
        members = []
        for m in tar.getmembers():
            name = m.name
            if name.startswith("/") or ".." in Path(name).parts:
                raise PullError(f"refusing the commit: its tree has a path outside it ({name!r})")
            if not (m.isfile() or m.isdir() or m.issym()):
                continue
            if m.issym() and (m.linkname.startswith("/") or ".." in Path(m.linkname).parts):
                continue  # a link out of the tree is left out: nothing read through it
            m.mode &= 0o755
            members.append(m)
        tar.extractall(into, members=members)  # noqa: S202 - every member checked above


def prune_checkouts(checkouts: Path, keep: set[str], most: int = 3) -> None:
    """Remove checkouts beyond the ``most`` newest, never one in ``keep`` (the last good commit)."""
    entries = sorted((p for p in checkouts.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for p in entries[most:]:
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)
    for p in checkouts.iterdir():
        if p.name.startswith("."):  # a run that died while unpacking (its directory, its tar)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""
