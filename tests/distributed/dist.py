"""Real parts for the distributed tests: a Redis server, a PostgreSQL cluster, `driftctl worker`
processes and a scene (inventory in two zones, manifests with a secret canary, the worker key)."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CANARY = "CANARY-" + secrets.token_hex(12)
ZONES = ("east", "west")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Any, what: str, timeout: float = 60.0) -> Any:
    """Poll ``check()`` until it is truthy (a readiness wait, never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class RedisServer:
    """redis-server on loopback, a port and a directory of its own, no persistence."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.base),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            stdout=open(self.base / "redis.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        wait_for(self.ping, "redis to answer", 30)

    def ping(self) -> bool:
        try:
            return self.client().ping()
        except Exception:
            return False

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.proc = None

    def monitor(self, out: Path) -> subprocess.Popen[bytes]:
        """Every command the server receives, as redis-cli MONITOR prints it, into ``out``."""
        proc = subprocess.Popen(["redis-cli", "-p", str(self.port), "monitor"], stdout=open(out, "wb"),  # noqa: SIM115
                                stderr=subprocess.DEVNULL)
        wait_for(lambda: out.stat().st_size > 0, "MONITOR to start", 30)  # it prints OK first
        return proc


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PgServer:
    """A throwaway PostgreSQL cluster on a Unix socket (as tests/e2e/test_store_faults.py)."""

    def __init__(self, base: Path) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
        self.bin = Path(os.environ.get("DRIFTCTL_PG_BINDIR") or (found[0] if found else ""))
        if not (self.bin / "pg_ctl").is_file():
            raise AssertionError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.base, self.data = base, base / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        base.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(base, "postgres", "postgres")
        subprocess.run(_as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user,
                                     "--no-sync", "-E", "UTF8", "--locale=C"]),
                       check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-k {self.base} -p {self.port} -c listen_addresses='' -c fsync=off -c max_connections=200"
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                                     "-l", str(self.base / "server.log"), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                                     "stop"]), capture_output=True, timeout=120, check=False)

    def url(self, db: str) -> str:
        return f"postgresql://{self.user}@/{db}?host={self.base}&port={self.port}"

    def new_database(self) -> str:
        import psycopg

        name = "dist_" + uuid.uuid4().hex[:10]
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


SITE = "- hosts: all\n  roles: [dist]\n"
RESOURCES = """
watch:
  - /etc/dist
resources:
  - directory: /etc/dist
  - file: /etc/dist/zone
    content: "zone {{ driftctl_zone }}\\n"
  - file: /etc/dist/secret.env
    content: "TOKEN={{ canary }}\\n"
    mode: "0600"
  - exec: slow
    command: ["true"]
    unless: ["/bin/sh", "-c", "sleep {{ slow | default(0) }}; true"]
"""


class Scene:
    """An inventory of fleet hosts in two zones, the manifests, the key and the store of one test."""

    def __init__(self, tmp: Path, hosts: list[Any], store_url: str, broker: str, slow: float = 0) -> None:
        self.tmp, self.hosts, self.store_url, self.broker = tmp, hosts, store_url, broker
        self.inventory = tmp / "inventory"
        self.inventory.mkdir(parents=True)
        lines = ["all:", "  hosts:"]
        for i, h in enumerate(hosts):
            lines += [f"    {h.name}:", f"      ansible_host: {h.address}", f"      ansible_port: {h.port}",
                      "      ansible_user: root", f"      ansible_ssh_private_key_file: {h.key_file}",
                      f"      driftctl_known_hosts: {h.known_hosts}", f"      driftctl_zone: {ZONES[i % 2]}"]
        (self.inventory / "hosts.yaml").write_text("\n".join(lines) + "\n")
        (self.inventory / "group_vars").mkdir()
        (self.inventory / "group_vars" / "all.yaml").write_text(f"canary: !secret {CANARY}\nslow: {slow}\n")
        self.manifests = tmp / "manifests"
        (self.manifests / "roles" / "dist").mkdir(parents=True)
        (self.manifests / "site.yaml").write_text(SITE)
        (self.manifests / "roles" / "dist" / "resources.yaml").write_text(RESOURCES)
        self.key = tmp / "worker.key"
        subprocess.run([sys.executable, "-m", "driftctl", "worker", "--new-key", str(self.key)], check=True,
                       capture_output=True, cwd=REPO)
        self.state = tmp / "controller-state"
        self.workers: list[Worker] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
        env.update({"NO_COLOR": "1", "DRIFTCTL_STATE_DIR": str(self.state), "DRIFTCTL_CONNECT_TIMEOUT": "60",
                    "DRIFTCTL_STATE": self.store_url, **extra})
        return env

    def driftctl(self, *args: str, celery: bool = True, env: dict[str, str] | None = None,
                 key: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "driftctl", *args, str(self.inventory), "-m", str(self.manifests)]
        if celery:
            argv += ["--executor", "celery", "--broker", self.broker, "--worker-key", str(key or self.key)]
        return subprocess.run(argv, cwd=REPO, env=self.env(**(env or {})), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def start_worker(self, name: str, queues: tuple[str, ...] = ZONES, concurrency: int = 2,
                     env: dict[str, str] | None = None, args: tuple[str, ...] = (), wait: bool = True) -> Worker:
        """A worker, ready when this returns (``wait=False``: started only; then ``ready()`` it)."""
        w = Worker(self, name, queues, concurrency, env or {}, args, wait=wait)
        self.workers.append(w)
        return w

    def start_workers(self, *specs: dict[str, Any]) -> list[Worker]:
        """Workers (``start_worker`` keywords each) started at once and all ready on return: a worker
        takes seconds to import celery and driftctl and reach the broker, and they need not queue."""
        workers = [self.start_worker(**spec, wait=False) for spec in specs]
        for w in workers:
            w.ready()
        return workers

    def stop_workers(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers = []


class Worker:
    """One `driftctl worker` process (its own state directory and log)."""

    def __init__(self, scene: Scene, name: str, queues: tuple[str, ...], concurrency: int,
                 env: dict[str, str], args: tuple[str, ...] = (), wait: bool = True) -> None:
        self.name = name
        self.log = scene.tmp / f"{name}.log"
        state = scene.tmp / f"{name}-state"
        argv = [sys.executable, "-m", "driftctl", "worker", "--broker", scene.broker, "--state", scene.store_url,
                "--worker-key", str(scene.key), "--name", name, "--concurrency", str(concurrency),
                "--state-dir", str(state)]
        for q in queues:
            argv += ["--queue", q]
        argv += args
        full = scene.env(**env)
        full.pop("DRIFTCTL_STATE_DIR")
        self.proc = subprocess.Popen(argv, cwd=REPO, env=full, stdout=open(self.log, "ab"),  # noqa: SIM115
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        if wait:
            self.ready()

    def ready(self) -> None:
        """Wait until the worker says it is ready (it fails the test if it exits first)."""
        wait_for(lambda: self.proc.poll() is not None or "ready." in self.text(), f"worker {self.name} to be ready", 90)
        if self.proc.poll() is not None:
            raise AssertionError(f"worker {self.name} exited {self.proc.returncode}:\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL, the whole process group (the worker and anything it started)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.kill()


def without_keys(doc: Any, keys: set[str]) -> Any:
    """``doc`` (a report document) without ``keys`` at any depth: what differs between two runs of the
    same thing (times, ids, durations), so the rest can be compared."""
    if isinstance(doc, dict):
        return {k: without_keys(v, keys) for k, v in doc.items() if k not in keys}
    if isinstance(doc, list):
        return [without_keys(v, keys) for v in doc]
    return doc


def local_site(root: Path, content: str) -> Path:
    """Under ``root``: an inventory of this machine as its one host ``ctl`` (local transport), a manifest
    with one file, ``root/touched``, whose ``content`` is the given YAML scalar, and a worker key ``k``."""
    from driftctl.distributed.envelope import new_key

    (root / "inv").mkdir()
    (root / "inv" / "hosts.yaml").write_text("all:\n  hosts:\n    ctl:\n      driftctl_transport: local\n")
    role = root / "manifests" / "roles" / "r"
    role.mkdir(parents=True)
    (root / "manifests" / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (role / "resources.yaml").write_text(f"resources:\n  - file: {root}/touched\n    content: {content}\n")
    new_key(root / "k")
    return root

