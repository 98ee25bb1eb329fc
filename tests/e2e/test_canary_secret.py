"""A canary secret through every resource type and every output: found nowhere (issue 8 §2).

One random value, declared ``!secret`` in the inventory's group_vars, is used by a resource of every
type where it can sit: an exec's title (its command), ``unless`` and ``onlyif``; a file's content, a
template's text and a file's path; a line (text and title) and a block on one file; a cron command
and environment; a user's password hash field; an authorized_key's comment and options; a package
name (``ensure: absent``: a package of that name does not exist, so it is simply in sync); a service
name (a unit of that name does not exist: the resource fails, and its error is one more sink).
Execs that fail print it (stdout and stderr, whole and cut by the agent's output tail), or time out
with it in their argv (cut where a message shortens the argv).

Left out, with the reason: ``sysctl`` (a value must be valid for its key and a fresh host cannot
write kernel parameters; no sysctl takes free text), ``group`` and ``symlink`` titles (a name or
path only; the file path case covers titles that are paths), ``source:`` (a file copied byte for
byte is not rendered, so a secret cannot reach it).

Then every command a user runs on such a host: plan, check, apply (text and --json), apply again,
hand-made drift, drift (text, --json, --report-dir with every format, --notify-command), history
(text and --json), report in every format, drift --remediate; on SQLite and on PostgreSQL. Every sink is searched:
stdout and stderr, every file written outside the input (state directory, reports, the notify
command's stdin), the store dumped as SQL with every binary column decompressed. A hit is the
canary or any 10 characters of it in a row (a cut copy is a leak too). The host's own files are not
a sink (the secret is meant to reach the host), nor are its backups.
"""

from __future__ import annotations

import glob
import lzma
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import CLIResult, driftctl, write_inventory

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

CANARY = "CANARY-" + secrets.token_hex(12)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHatBYEHy+kj2kOIxzPMJ8PL9W6EiA+E9iKYgvytZ35Y"
# 10 hex digits of chance (1 in 10^12) per place: sha256 digests in the reports never match by accident
WINDOW = 10
FORMATS = ("json", "junit", "markdown", "html", "prometheus")

SITE = "- hosts: all\n  roles: [canary]\n"
TEMPLATE = "# managed by driftctl\ntoken = {{ canary }}\n"
# the agent keeps the last 2000 characters of a failing command's output: this one is cut inside the canary
TAIL_PAD = 2000 - 10
# a message may quote a command's argv shortened to 200 characters: this one is cut 12 characters into it
ARGV_PAD = "p" * (200 - 12 - len("/bin/sh -c sleep 30; : ") - 1)
RESOURCES = f"""
watch:
  - /etc/canary
resources:
  - directory: /etc/canary
  - file: /etc/canary/content
    content: "key={{{{ canary }}}}\\n"
  - file: /etc/canary/template
    template: canary.j2
  - file: "/etc/canary/f-{{{{ canary }}}}"
    content: "a file named by the canary\\n"
  - block: canary-block
    path: /etc/canary/edits
    create: true
    content: "SECRET={{{{ canary }}}}"
  - line: "line-{{{{ canary }}}}"
    path: /etc/canary/edits
    text: "TOKEN={{{{ canary }}}}"
    match: "^TOKEN="
    require: [block:canary-block]
  - cron: canary-cron
    user: root
    minute: "7"
    hour: "3"
    command: "/usr/bin/true {{{{ canary }}}}"
    environment: {{CANARY_ENV: "{{{{ canary }}}}"}}
  - user: canary-user
    password: "$6${{{{ canary }}}}$x"
    shell: /bin/sh
  - authorized_key: canary-key
    user: root
    key: "{KEY} {{{{ canary }}}}"
    options: 'environment="CANARY={{{{ canary }}}}"'
  - package: "{{{{ canary }}}}"
    ensure: absent
  - service: "{{{{ canary }}}}"
    enabled: false
  - exec: "/usr/bin/touch /var/tmp/canary-{{{{ canary }}}}"
    unless: "/usr/bin/test -e /var/tmp/canary-{{{{ canary }}}}"
  - exec: canary-onlyif
    command: ["/bin/sh", "-c", "echo {{{{ canary }}}} > /var/tmp/canary-onlyif"]
    onlyif: ["/bin/sh", "-c", "! grep -qs -- {{{{ canary }}}} /var/tmp/canary-onlyif"]
  - exec: canary-notified
    command: ["/bin/sh", "-c", "echo {{{{ canary }}}} >> /var/tmp/canary-notified"]
    refreshonly: true
    subscribe: [file:/etc/canary/content]
  - exec: canary-fails
    command: ["/bin/sh", "-c", "echo out {{{{ canary }}}}; echo err {{{{ canary }}}} >&2; exit 3"]
    unless: /bin/false
  - exec: canary-timeout
    command: ["/bin/sh", "-c", "sleep 30; : {ARGV_PAD} {{{{ canary }}}}"]
    timeout: 1
    unless: /bin/false
  - exec: canary-tail-cut
    command: ["/bin/sh", "-c", "printf %s {{{{ canary }}}}; head -c {TAIL_PAD} /dev/zero | tr '\\\\0' x; exit 3"]
    unless: /bin/false
"""


def hits(text: str | bytes) -> list[str]:
    """Every piece of the canary found: any WINDOW characters of it in a row (so the whole of it, its
    first 12, a cut copy), as text or hex-encoded."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    found = []
    for i in range(len(CANARY) - WINDOW + 1):
        piece = CANARY[i:i + WINDOW].encode()
        if piece in data or piece.hex().encode() in data:
            found.append(CANARY[i:i + WINDOW])
    return found


# ---- a throwaway PostgreSQL cluster (like tests/unit/conftest.py's, which e2e tests cannot see)


def _pg_bindir() -> Path:
    for c in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(c) / "initdb").is_file() and (Path(c) / "pg_dump").is_file():
            return Path(c)
    pytest.fail("PostgreSQL server binaries (initdb, pg_ctl, pg_dump) not found: apt-get install postgresql")


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class Pg:
    def __init__(self, bindir: Path, socket_dir: Path, port: int, user: str) -> None:
        self.bindir, self.socket_dir, self.port, self.user = bindir, socket_dir, port, user

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{db}?host={self.socket_dir}&port={self.port}"

    def dump(self, db: str) -> bytes:
        return subprocess.run([str(self.bindir / "pg_dump"), "-h", str(self.socket_dir), "-p", str(self.port),
                               "-U", self.user, db], check=True, capture_output=True, timeout=120).stdout


@pytest.fixture(scope="module")
def pg() -> Iterator[Pg]:
    bindir = _pg_bindir()
    base = Path(tempfile.mkdtemp(prefix="driftctl-canary-pg-"))
    base.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    data, log, port = base / "data", base / "server.log", 54331
    try:
        subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", user,
                                     "--no-sync", "-E", "UTF8", "--locale=C"]),
                       check=True, capture_output=True, timeout=120)
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                                     "-o", f"-k {base} -p {port} -c listen_addresses='' -c fsync=off", "start"]),
                       check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as e:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {e.stderr.decode(errors='replace')}")
    try:
        yield Pg(bindir, base, port, user)
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=120, check=False)
        shutil.rmtree(base, ignore_errors=True)


def _decoded(blob: bytes) -> bytes:
    """A binary column as stored, and decompressed when it is an xz or zlib document."""
    for decompress in (lzma.decompress, zlib.decompress):
        try:
            return blob + b"\n" + decompress(blob)
        except (lzma.LZMAError, zlib.error):
            continue
    return blob


def sqlite_sinks(path: Path) -> dict[str, bytes]:
    con = sqlite3.connect(path)
    try:
        out = {f"{path} .dump": "\n".join(con.iterdump()).encode()}
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        blobs = []
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):
                blobs += [_decoded(bytes(v)) for v in row if isinstance(v, (bytes, memoryview))]
        out[f"{path} blobs"] = b"\n".join(blobs)
    finally:
        con.close()
    return out


def pg_sinks(pg: Pg, db: str) -> dict[str, bytes]:
    import psycopg

    out = {f"pg_dump {db}": pg.dump(db)}
    blobs = []
    with psycopg.connect(pg.url(db)) as conn:
        columns = conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                               "WHERE table_schema = 'public' AND data_type = 'bytea'").fetchall()
        for table, column in columns:
            for (value,) in conn.execute(f'SELECT "{column}" FROM "{table}"'):
                if value is not None:
                    blobs.append(_decoded(bytes(value)))
    out[f"{db} bytea columns ({len(columns)}), decompressed"] = b"\n".join(blobs)
    assert blobs, "no stored report document: the store was not searched"
    return out


# ---- the test


def write_manifests(root: Path) -> Path:
    (root / "roles/canary/templates").mkdir(parents=True)
    (root / "site.yaml").write_text(SITE)
    (root / "roles/canary/resources.yaml").write_text(RESOURCES)
    (root / "roles/canary/templates/canary.j2").write_text(TEMPLATE)
    return root


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_canary_secret_reaches_no_sink(fresh_host: Any, tmp_path: Path, backend: str,
                                         request: pytest.FixtureRequest) -> None:
    inputs = tmp_path / "in"
    inv = write_inventory(inputs / "inv", [fresh_host], all_vars=f"canary: !secret {CANARY}\n")
    manifests = write_manifests(inputs / "manifests")
    out = tmp_path / "out"
    state, reports, notified = out / "state", out / "reports", out / "notify-stdin.json"
    env: dict[str, str] = {}
    db = ""
    if backend == "postgresql":
        import psycopg

        server: Pg = request.getfixturevalue("pg")
        db = "driftctl_canary_" + uuid.uuid4().hex[:8]
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        env["DRIFTCTL_STATE"] = server.url(db)
    args = (inv, "-m", manifests)
    runs: dict[str, CLIResult] = {}

    def run(label: str, *argv: Any) -> CLIResult:
        result = driftctl(*argv, state_dir=state, env=env)
        runs[label] = result
        assert result.rc != 1, f"{label}: {result.output}"  # never a usage or input error
        return result

    run("plan", "plan", *args, "-v", "--diff")
    plan = run("plan --json", "plan", *args, "--json")
    run("check", "check", *args, "-v")
    run("check --json", "check", *args, "--json")
    apply = run("apply", "apply", *args, "-v", "--diff")
    assert apply.rc & 2 and apply.rc & 4, apply.output  # changes made; the failing execs failed
    assert "timed out" in apply.stdout and "xxxxxxxxxx" in apply.stdout, apply.output  # the cut messages are there
    run("apply --json (again)", "apply", *args, "--json", "-v")

    # the canary did reach the host: it went through every resource, not around them
    assert fresh_host.sh("cat /etc/canary/content").stdout_text == f"key={CANARY}\n"
    assert f"TOKEN={CANARY}" in fresh_host.sh("cat /etc/canary/edits").stdout_text
    assert fresh_host.sh(f"test -e /var/tmp/canary-{CANARY} && test -e '/etc/canary/f-{CANARY}'").rc == 0
    assert CANARY in fresh_host.sh("crontab -l -u root").stdout_text
    assert CANARY in fresh_host.sh("getent shadow canary-user").stdout_text
    # ids built from it are hashes; explicit names stay
    ids = [r["id"] for r in plan.json()["hosts"][0]["resources"]]
    hashed = [i for i in ids if ":secret-" in i]
    assert sorted(i.partition(":")[0] for i in hashed) == ["exec", "file", "line", "package", "service"], ids
    assert "exec:canary-onlyif" in ids and "cron:canary-cron" in ids

    # drift by hand, so drift, history and reports have something to say about those resources
    fresh_host.sh(f"echo tampered > /etc/canary/content && sed -i '/^TOKEN=/d' /etc/canary/edits"
                  f" && rm /var/tmp/canary-{CANARY} && echo tampered > '/etc/canary/f-{CANARY}'"
                  " && crontab -r -u root && echo new > /etc/canary/unmanaged")
    run("drift", "drift", *args, "-v", "--diff")
    run("drift --json", "drift", *args, "--json")
    drift = run("drift --report-dir --notify-command", "drift", *args, "--report-dir", reports,
                "--notify-command", f"/bin/sh -c 'cat > {notified}'")
    assert drift.rc & 2, drift.output
    assert notified.exists() and sorted(p.name for p in reports.iterdir() if not p.name.startswith("."))
    run("history", "history", inv)
    history = run("history --json", "history", inv, "--json")
    assert history.json()
    for fmt in FORMATS:
        report = run(f"report -f {fmt}", "report", inv, "-f", fmt)
        assert report.rc == 0 and report.stdout, report.output
    run("report -o", "report", inv, "-f", "html", "-o", out / "report.html")
    remediate = run("drift --remediate", "drift", *args, "--remediate", "-v")
    assert "tampered" not in fresh_host.sh("cat /etc/canary/content").stdout_text, remediate.output

    sinks: dict[str, bytes] = {}
    for label, result in runs.items():
        sinks[f"{label}: stdout"] = result.stdout.encode()
        sinks[f"{label}: stderr"] = result.stderr.encode()
    for path in sorted(out.rglob("*")):
        if path.is_file():
            sinks[str(path)] = path.read_bytes()
    sqlite_files = [p for p in out.rglob("*.sqlite")]
    if backend == "sqlite":
        assert sqlite_files, sorted(map(str, out.rglob("*")))
        for p in sqlite_files:
            sinks.update(sqlite_sinks(p))
    else:
        assert not sqlite_files, sqlite_files
        sinks.update(pg_sinks(server, db))

    leaks = {where: found for where, data in sinks.items() if (found := hits(data))}
    assert leaks == {}, f"{len(leaks)} of {len(sinks)} sinks hold the canary:\n" + "\n".join(
        f"{where}: {len(found)} pieces\n    ...{_context(sinks[where], found[0])}..." for where, found in leaks.items())
    assert len(sinks) > 30


def _context(data: bytes, piece: str) -> str:
    i = data.find(piece.encode())
    if i < 0:
        return "(hex-encoded)"
    return data[max(0, i - 120):i + 60].decode("utf-8", "replace")
