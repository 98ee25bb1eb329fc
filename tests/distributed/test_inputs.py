"""What a user can get wrong with the celery executor and `driftctl worker`: a clear error, exit 1,
before any host is contacted (the inventory's one host is this machine, whose marker file must stay
untouched); and the sealed envelope itself (another key, an altered token, another kind: refused)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from dist import REPO, RedisServer, free_port, local_site

from driftctl.distributed import EnvelopeError
from driftctl.distributed.envelope import load_key, new_key, open_sealed, seal
from driftctl.errors import ConfigError


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An inventory of this machine (local transport) and a manifest that would create a file."""
    return local_site(tmp_path, '"x\\n"')


def run(tmp: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
    env.update(NO_COLOR="1", DRIFTCTL_STATE_DIR=str(tmp / "state"))
    return subprocess.run([sys.executable, "-m", "driftctl", *args], cwd=cwd or REPO, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def plan(tmp: Path, *extra: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run(tmp, "plan", str(tmp / "inv"), "-m", str(tmp / "manifests"), *extra, cwd=cwd)


def untouched(tmp: Path) -> bool:
    return not (tmp / "touched").exists()


@pytest.fixture(scope="module")
def redis_up() -> Iterator[RedisServer]:
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="driftctl-dist-redis-"))
    server = RedisServer(base)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


# ---- the envelope
def test_a_sealed_task_opens_with_its_key_only() -> None:
    key, other = Fernet(Fernet.generate_key()), Fernet(Fernet.generate_key())
    token = seal(key, "task", {"x": [1, "two"]})
    assert open_sealed(key, "task", token)["x"] == [1, "two"]
    with pytest.raises(EnvelopeError, match="does not verify"):
        open_sealed(other, "task", token)
    altered = token[:-8] + ("A" if token[-8] != "A" else "B") + token[-7:]
    with pytest.raises(EnvelopeError, match="does not verify"):
        open_sealed(key, "task", altered)
    with pytest.raises(EnvelopeError, match="not a driftctl result"):
        open_sealed(key, "result", token)  # a task is never taken for a result
    with pytest.raises(EnvelopeError, match="not a sealed task"):
        open_sealed(key, "task", {"args": "plain"})


def test_an_old_task_is_refused_as_a_replay() -> None:
    import pickle
    import time

    from driftctl.distributed.envelope import VERSION

    key = Fernet(Fernet.generate_key())
    body = pickle.dumps({"v": VERSION, "kind": "task", "x": 1})
    old = key.encrypt_at_time(body, int(time.time()) - 7200).decode()
    assert open_sealed(key, "task", old)["x"] == 1  # verifies
    with pytest.raises(EnvelopeError, match=r"sealed \d+s ago, older than 3600s: refused \(a replay\?\)"):
        open_sealed(key, "task", old, max_age=3600)
    assert open_sealed(key, "task", seal(key, "task", {"x": 2}), max_age=3600)["x"] == 2


def test_worker_keys_are_private_and_never_overwritten(tmp_path: Path) -> None:
    key = new_key(tmp_path / "k")
    assert key.stat().st_mode & 0o777 == 0o600
    load_key(key)
    with pytest.raises(ConfigError, match="never overwritten"):
        new_key(key)
    key.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0644\)") as e:
        load_key(key)
    assert str(key) in str(e.value)
    (tmp_path / "bad").write_text("not a key\n")
    (tmp_path / "bad").chmod(0o600)
    with pytest.raises(ConfigError, match="not a worker key"):
        load_key(tmp_path / "bad")
    with pytest.raises(ConfigError, match="cannot read the worker key"):
        load_key(tmp_path / "missing")


# ---- the controller's flags and settings
def test_celery_without_broker_or_key_is_an_input_error(site: Path) -> None:
    r = plan(site, "--executor", "celery", "--worker-key", str(site / "k"))
    assert r.returncode == 1 and "needs a broker" in r.stderr
    r = plan(site, "--executor", "celery", "--broker", "redis://127.0.0.1:1/0")
    assert r.returncode == 1 and "needs the workers' key" in r.stderr
    (site / "k").chmod(0o640)
    r = plan(site, "--executor", "celery", "--broker", "redis://127.0.0.1:1/0", "--worker-key", str(site / "k"))
    assert r.returncode == 1 and f"{site / 'k'}: the worker key is readable by others" in r.stderr
    assert untouched(site)


def test_an_unreachable_broker_ends_the_run_before_any_host(site: Path) -> None:
    port = free_port()  # nothing listens there
    r = plan(site, "--executor", "celery", "--broker", f"redis://:secretpw@127.0.0.1:{port}/0",
             "--worker-key", str(site / "k"))
    assert r.returncode == 1, r.stderr
    assert f"the task queue broker redis://:***@127.0.0.1:{port}/0 cannot be reached" in r.stderr
    assert "nothing was run" in r.stderr and "secretpw" not in r.stderr and "Traceback" not in r.stderr
    assert untouched(site)


def test_a_bad_executor_setting_names_its_file(site: Path) -> None:
    (site / "driftctl.yaml").write_text("parallel: 4\nexecutor: kubernetes\n")
    r = plan(site, cwd=site)
    assert r.returncode == 1
    assert "driftctl.yaml:2: setting executor: 'kubernetes' is not one of threads, celery" in r.stderr


def test_a_bad_zone_ends_the_run_before_any_task(site: Path, redis_up: RedisServer) -> None:
    celery = ("--executor", "celery", "--broker", redis_up.url, "--worker-key", str(site / "k"))
    (site / "inv" / "hosts.yaml").write_text(
        "all:\n  hosts:\n    ctl:\n      driftctl_transport: local\n      driftctl_zone: 'east zone'\n")
    r = plan(site, *celery)
    assert r.returncode == 1 and "host ctl: driftctl_zone must be a name" in r.stderr, r.stderr
    assert "hosts.yaml" in r.stderr
    assert redis_up.client().llen("east zone") == 0 and redis_up.client().llen("driftctl") == 0  # nothing sent
    assert untouched(site)


# ---- the worker's
def test_worker_input_errors(site: Path, tmp_path: Path) -> None:
    base = ("worker", "--broker", "redis://127.0.0.1:1/0", "--worker-key", str(site / "k"))
    r = run(site, *base)
    assert r.returncode == 1 and "needs --state" in r.stderr
    r = run(site, *base, "--state", "postgresql://x@/y", "--beat")
    assert r.returncode == 1 and "--beat needs --schedule" in r.stderr
    sched = tmp_path / "schedule.yaml"
    sched.write_text("- name: web\n  inventory: inv\n  every: 60\n- name: db\n  inventory: inv\n  evry: 60\n")
    r = run(site, *base, "--state", "postgresql://x@/y", "--beat", "--schedule", str(sched))
    assert r.returncode == 1 and f"{sched}:4: unknown key 'evry' in a scheduled run" in r.stderr, r.stderr
    sched.write_text("- name: web\n  inventory: inv\n  every: -5\n")
    r = run(site, *base, "--state", "postgresql://x@/y", "--beat", "--schedule", str(sched))
    assert r.returncode == 1 and "every must be a number of seconds > 0" in r.stderr
    r = run(site, *base, "--state", "postgresql://x@/y")
    assert r.returncode == 1 and "cannot be reached" in r.stderr
