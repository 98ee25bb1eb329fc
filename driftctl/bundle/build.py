"""``driftctl bundle -o driftctl.pyz``: driftctl and the pure-Python libraries pull mode needs, as one
zipapp (PEP 441) that a host's own python3 runs. Nothing is installed on the host but this one file.

What goes in: the driftctl package as it is installed here (every file but bytecode caches), and the
installed distributions of ``BUNDLED`` (click, jinja2, markupsafe, pyyaml, rich and rich's own
dependencies) without their compiled parts: markupsafe and PyYAML fall back to their pure-Python code
when their C modules are missing. The SSH and crypto libraries (paramiko, cryptography, bcrypt, PyNaCl)
are compiled and left out: pull mode connects to nothing. A host whose own python3 has
``cryptography`` can still read vaulted values (the host's site-packages stay on ``sys.path``, after
the bundle's).

Bytecode: each module's ``.pyc`` for this Python (but for the libraries of ``NO_BYTECODE``; hash-based,
unchecked: the archive never changes) sits beside its source, where zipimport looks first. A host with
the same Python minor version imports it without compiling; another version finds the wrong magic
number and compiles the source, as zipimport does for any archive (it never writes a cache).

Reproducible: the same inputs (these files, this Python, this zlib) give the same bytes. Entries are
sorted, every timestamp is ``SOURCE_DATE_EPOCH`` (default 1980-01-01, the first a zip can hold), modes
are 0644, and the bytecode is compiled in a fresh interpreter with a fixed hash seed (marshal's output
depends on the order of sets and on the compiling process's references).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipapp
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from driftctl.errors import ConfigError, DriftctlError, Location

# The distributions bundled with driftctl: its requirements without the SSH and crypto libraries, and
# what those requirements need in turn (tests/unit/test_bundle.py checks this is the whole closure).
BUNDLED = ("click", "jinja2", "markupsafe", "pyyaml", "rich", "markdown-it-py", "mdurl", "pygments")
# compiled, and only needed to connect somewhere or to decrypt (the host's own copy is used if it has one)
LEFT_OUT = ("paramiko", "cryptography", "bcrypt", "pynacl", "cffi", "pycparser", "psycopg", "psycopg-binary")
# left out, and used at import time by modules of the pull path: without the host's own copy, a
# stand-in (driftctl/bundle/absent.py) that raises a clear error when used
ABSENT = ("cryptography",)
DEFAULT_PYTHON = "/usr/bin/python3"
MANIFEST_NAME = "BUNDLE.json"  # at the archive's root: what is inside, for people and for `bundle install`
ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can carry
_COMPILED_SUFFIXES = (".so", ".pyd", ".dylib", ".dll", ".c", ".h", ".pyx", ".pxd")
_SKIPPED_SUFFIXES = (".pyc", ".pyo", ".pyi", *_COMPILED_SUFFIXES)
# rich's syntax-highlighting and markdown libraries: bundled as source, but nothing driftctl draws imports
# them, so their bytecode (2 MB, most of it pygments' lexers) would only make the file larger
NO_BYTECODE = ("pygments/", "markdown_it/", "mdurl/")
_PYTHON_RE = re.compile(r">=\s*3\.(\d+)")
_PYTHON_ARG_RE = re.compile(r"^/[^\s\0]+$")


class BundleError(DriftctlError):
    """The bundle could not be built (a library missing here, an unwritable output)."""


@dataclass(frozen=True)
class Package:
    """One distribution inside the bundle."""

    name: str
    version: str
    requires_python: str  # the lowest Python 3 minor version it supports, as "3.N"


@dataclass
class Bundle:
    """A built bundle: where, how large, its sha256, and what is in it."""

    path: Path
    size: int
    sha256: str
    python: str  # the shebang's interpreter
    min_python: str  # "3.11": the highest of the packages' lowest versions
    packages: list[Package] = field(default_factory=list)
    entries: int = 0
    bytecode: str | None = None  # "3.11" when .pyc files for that version are inside


def main_source(min_minor: int) -> str:
    """The archive's ``__main__.py``: refuse a python3 too old for the code inside with a clear message
    (in syntax every Python 3 reads), stand in for the left-out libraries the host lacks too, then run
    driftctl's command line."""
    return (
        '"""driftctl bundle: run driftctl from this archive (see driftctl/bundle/build.py)."""\n'
        "import sys\n\n"
        f"if sys.version_info < (3, {min_minor}):\n"
        "    sys.stderr.write(\"driftctl: error: this bundle needs python3 >= 3.%d; %s is %d.%d \"\n"
        f"                     \"(install a newer python3, or point the wrapper at one)\\n\" % ({min_minor}, "
        "sys.executable, sys.version_info[0], sys.version_info[1]))\n"
        "    sys.exit(1)\n\n"
        "from driftctl.bundle.absent import install\n\n"
        f"install({ABSENT!r})  # stand-ins that explain themselves when the host lacks these too\n\n"
        "from driftctl.cli import main\n\n"
        "main()\n"
    )


def check_python(python: str) -> str:
    """The shebang's interpreter: an absolute path without spaces (a shebang cannot quote)."""
    if not _PYTHON_ARG_RE.match(python):
        raise ConfigError(f"--python {python!r}: give the absolute path of the hosts' python3 (no spaces)",
                          Location("--python"), f"for example {DEFAULT_PYTHON}")
    return python


def source_epoch() -> int:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) when set, else 1980-01-01; never before 1980."""
    text = os.environ.get("SOURCE_DATE_EPOCH")
    if text is None or text == "":
        return ZIP_EPOCH
    if not text.isdigit():
        raise ConfigError(f"SOURCE_DATE_EPOCH={text!r}: give seconds since 1970 (an integer)",
                          Location("SOURCE_DATE_EPOCH"))
    return max(int(text), ZIP_EPOCH)


def _min_minor(requires: str | None) -> int:
    found = [int(m) for m in _PYTHON_RE.findall(requires or "")]
    return max(found) if found else 0


def _distribution(name: str) -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise BundleError(f"{name} is not installed beside driftctl ({sys.executable}): the bundle needs it",
                          ) from None


def _wanted(rel: PurePosixPath, dist_info: str) -> bool:
    """A file of an installed distribution that belongs in the bundle."""
    parts = rel.parts
    if not parts or parts[0] == ".." or "__pycache__" in parts:
        return False
    if parts[0] == dist_info:  # keep what says what the library is and its licence
        return len(parts) >= 2 and (parts[1] == "METADATA" or parts[1].upper().startswith(("LICENSE", "LICENCE",
                                                                                            "COPYING", "NOTICE"))
                                    or parts[1] == "licenses")
    if parts[0].endswith(".dist-info") or parts[0].endswith(".egg-info") or parts[0] == "_yaml":
        return False  # _yaml: PyYAML's shim for its C module, which is not bundled
    return not rel.name.endswith(_SKIPPED_SUFFIXES)


def dependency_files(names: Iterable[str] = BUNDLED) -> tuple[dict[str, Path], list[Package]]:
    """Archive name -> installed file, for every bundled distribution; and the distributions."""
    files: dict[str, Path] = {}
    packages = []
    for name in names:
        dist = _distribution(name)
        meta = dist.metadata
        version = meta["Version"]
        dist_info = ""
        for f in dist.files or []:
            if f.parts and f.parts[0].endswith(".dist-info"):
                dist_info = f.parts[0]
                break
        for f in dist.files or []:
            rel = PurePosixPath(str(f))
            if not _wanted(rel, dist_info):
                continue
            path = Path(str(f.locate()))
            if path.is_file():
                files[str(rel)] = path
        packages.append(Package(meta["Name"], version, f"3.{_min_minor(meta['Requires-Python'])}"))
    return files, packages


def driftctl_files() -> dict[str, Path]:
    """Archive name -> file, for the driftctl package as it is here (data files too, no caches)."""
    import driftctl

    root = Path(driftctl.__file__).resolve().parent
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root.parent)
        if "__pycache__" in rel.parts or not path.is_file() or path.name.endswith(_SKIPPED_SUFFIXES):
            continue
        if path.name.startswith(".") or path.name.endswith(("~", ".swp", ".orig", ".rej")):
            continue  # an editor's or a patch's leftovers are not driftctl
        files[rel.as_posix()] = path
    return files


def _driftctl_package() -> Package:
    from driftctl import __version__

    try:
        requires = importlib.metadata.distribution("driftctl").metadata["Requires-Python"]
    except importlib.metadata.PackageNotFoundError:
        requires = None
    return Package("driftctl", __version__, f"3.{max(_min_minor(requires), 11)}")


# Compiles the listed sources to legacy-location .pyc files (beside the source, where zipimport looks),
# hash-based and unchecked. Run in a fresh interpreter (see the module docstring).
_COMPILER = r"""
import json, py_compile, sys
jobs = json.load(sys.stdin)
for source, target, shown in jobs:
    py_compile.compile(source, cfile=target, dfile=shown, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def compile_bytecode(sources: dict[str, Path], into: Path) -> dict[str, Path]:
    """Archive name of each ``.pyc`` -> the compiled file in ``into``."""
    jobs, out = [], {}
    for name, path in sorted(sources.items()):
        if not name.endswith(".py") or name == "__main__.py" or name.startswith(NO_BYTECODE):
            continue
        target = into / (name[:-3] + ".pyc")
        target.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((str(path), str(target), name))
        out[name[:-3] + ".pyc"] = target
    env = {"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    proc = subprocess.run([sys.executable, "-S", "-s", "-B", "-c", _COMPILER], input=json.dumps(jobs).encode(),
                          capture_output=True, env=env, timeout=600, check=False)
    if proc.returncode != 0:
        raise BundleError("compiling the bundle's modules failed: "
                          + proc.stderr.decode("utf-8", "replace").strip()[-2000:])
    return out


def _entry(name: str, epoch: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=time.gmtime(epoch)[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, whatever the builder: the attributes below mean the same everywhere
    info.external_attr = (0o100644 & 0xFFFF) << 16
    return info


def build(out: Path, python: str = DEFAULT_PYTHON, bytecode: bool = True) -> Bundle:
    """Build the bundle at ``out`` (replaced atomically) and describe it."""
    check_python(python)
    epoch = source_epoch()
    ours = driftctl_files()
    deps, packages = dependency_files()
    packages = [_driftctl_package(), *packages]
    min_minor = max(int(p.requires_python.split(".")[1]) for p in packages)
    clash = sorted(set(ours) & set(deps))
    if clash:
        raise BundleError(f"a bundled library has files where driftctl has its own: {', '.join(clash[:5])}")
    files: dict[str, Path | bytes] = {**ours, **deps}
    files["__main__.py"] = main_source(min_minor).encode()
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    manifest = {
        "driftctl": packages[0].version,
        "python": f">=3.{min_minor}",
        "bytecode": version if bytecode else None,
        "packages": {p.name: p.version for p in packages[1:]},
        "left_out": list(LEFT_OUT),
    }
    files[MANIFEST_NAME] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    with tempfile.TemporaryDirectory(prefix="driftctl-bundle-") as tmp:
        if bytecode:
            files.update(compile_bytecode({k: v for k, v in files.items() if isinstance(v, Path)}, Path(tmp)))
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            for name in sorted(files):
                src = files[name]
                data = src if isinstance(src, bytes) else src.read_bytes()
                z.writestr(_entry(name, epoch), data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        archive.seek(0)
        out = Path(out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fd, partial = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
            os.close(fd)
        except OSError as e:
            raise BundleError(f"cannot write {out}: {e.strerror or e}") from e
        try:
            zipapp.create_archive(archive, partial, interpreter=python)
            os.chmod(partial, 0o755)  # noqa: S103 - a program: everyone may run it, only its owner writes it
            os.replace(partial, out)
        except OSError as e:
            Path(partial).unlink(missing_ok=True)
            raise BundleError(f"cannot write {out}: {e.strerror or e}") from e
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    data = out.read_bytes()
    return Bundle(out, len(data), hashlib.sha256(data).hexdigest(), python, f"3.{min_minor}", packages,
                  len(files), version if bytecode else None)
