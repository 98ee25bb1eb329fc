"""The agent cache on a host: the compiled program is kept and reused, never taken from a place or a
file another user could have written, and a cache that lost the program costs a resend, nothing more.

Each test gets a fresh host; the host is checked through ``podman exec``, independently of driftctl.
"""

from __future__ import annotations

import marshal
from pathlib import Path
from typing import Any

from driftctl import ship
from driftctl.agentcache import HostPrograms
from driftctl.transport.base import TransportOptions, get_transport

CACHE = "/var/cache/driftctl"
REQUEST = {"op": "facts"}
MODULES = ship.modules_for(None)  # what a facts request ships


def cached_name() -> str:
    return f"{ship.program_key(MODULES)}.cpython-311"  # the fleet image's python3 is Debian 12's 3.11


def sh(host: Any, script: str) -> str:
    result = host.sh(script)
    assert result.rc == 0, result.stderr_text
    return result.stdout_text


def call(host: Any, programs: HostPrograms | None) -> tuple[dict[str, Any], int]:
    """One facts call through the real SSH transport; (answer, commands the host ran for it)."""
    with get_transport(host.host(), TransportOptions()) as t:
        ran = []
        real_run = t.run

        def counting_run(*args: Any, **kwargs: Any) -> Any:
            ran.append(args[0])
            return real_run(*args, **kwargs)

        t.run = counting_run  # type: ignore[method-assign]
        return ship.call(t, REQUEST, programs=programs), len(ran)


def test_the_program_is_cached_then_run_from_the_cache_without_being_sent(fresh_host: Any, tmp_path: Path) -> None:
    programs = HostPrograms(tmp_path / "agent-programs")
    answer, commands = call(fresh_host, programs)
    assert answer["facts"]["hostname"] and answer.get("cached") is True and commands == 1
    listing = sh(fresh_host, f"stat -c '%U %a %F' {CACHE} {CACHE}/{cached_name()}").split("\n")
    assert listing[:2] == ["root 700 directory", "root 600 regular file"]
    assert programs.has(fresh_host.host(), ship.program_key(MODULES))
    # the second call sends no program: its argv says 0 bytes, and the answer still comes
    argv = ship.command("python3", MODULES, send=False)
    assert argv[argv.index(ship.LAUNCHER) + 1] == "0"
    answer, commands = call(fresh_host, programs)
    assert answer["facts"]["hostname"] and commands == 1


def test_a_cache_that_lost_the_program_gets_it_again(fresh_host: Any, tmp_path: Path) -> None:
    programs = HostPrograms(tmp_path / "agent-programs")
    call(fresh_host, programs)
    sh(fresh_host, f"rm -rf {CACHE}")
    answer, commands = call(fresh_host, programs)  # the controller believed the host had it
    assert answer["facts"]["hostname"] and commands == 2  # need_program, then sent
    assert sh(fresh_host, f"ls {CACHE}").split() == [cached_name()]


def test_a_corrupt_cached_program_is_compiled_again(fresh_host: Any, tmp_path: Path) -> None:
    call(fresh_host, None)
    # bytes marshal cannot read, and bytes it reads as something that is not code (random bytes are
    # either, by chance: the second once made exec() fail instead of compiling again)
    for garbage in (b"\xff" * 100, marshal.dumps(("not", "code"))):
        fresh_host.exec(["sh", "-c", f"cat > {CACHE}/{cached_name()}"], stdin=garbage)
        answer, _ = call(fresh_host, None)
        assert answer["facts"]["hostname"]
        assert int(sh(fresh_host, f"stat -c %s {CACHE}/{cached_name()}")) > 10_000  # replaced by a good one


def planted_code() -> bytes:
    """A compiled program that, if ever run, leaves /tmp/pwned behind and answers like an agent."""
    source = (
        "open('/tmp/pwned', 'w').write('ran')\n"
        "import sys\nsys.stdout.write('{\"v\":2,\"ok\":true,\"facts\":{\"hostname\":\"pwned\"}}\\n')\n"
    )
    return marshal.dumps(compile(source, "planted", "exec"))


def plant(host: Any, setup: str) -> None:
    host.exec(["sh", "-c", f"cat > /tmp/planted.bin && {setup}"], stdin=planted_code())


def test_code_planted_by_another_user_is_never_run(fresh_host: Any, tmp_path: Path) -> None:
    name = cached_name()
    cases = [
        # the cache directory itself belongs to nobody (made before driftctl ever ran)
        f"mkdir -p {CACHE} && chown nobody {CACHE} && chmod 777 {CACHE} && "
        f"install -o nobody -m 0644 /tmp/planted.bin {CACHE}/{name}",
        # the right directory, a file nobody owns
        f"rm -rf {CACHE} && mkdir -m 700 {CACHE} && install -o nobody -m 0644 /tmp/planted.bin {CACHE}/{name}",
        # the right directory and owner, but anyone may write the file
        f"rm -rf {CACHE} && mkdir -m 700 {CACHE} && install -o root -m 0666 /tmp/planted.bin {CACHE}/{name}",
        # a link where the program would be, to a file nobody owns
        f"rm -rf {CACHE} && mkdir -m 700 {CACHE} && install -o nobody -m 0644 /tmp/planted.bin /tmp/evil.bin && "
        f"ln -s /tmp/evil.bin {CACHE}/{name}",
        # the cache directory is a link to a directory of nobody's
        f"rm -rf {CACHE} /tmp/evil && mkdir -m 700 /tmp/evil && install -o nobody -m 0644 /tmp/planted.bin "
        f"/tmp/evil/{name} && chown nobody /tmp/evil && ln -s /tmp/evil {CACHE}",
    ]
    programs = HostPrograms(tmp_path / "agent-programs")
    for setup in cases:
        plant(fresh_host, setup)
        for memory in (None, programs):  # sent, and "the host has it" (so only the cache could answer)
            answer, _ = call(fresh_host, memory)
            assert answer["facts"]["hostname"] != "pwned", setup
            assert fresh_host.sh("test -e /tmp/pwned").rc == 1, setup


def test_a_build_container_gets_no_cache(fresh_host: Any) -> None:
    """Bake runs the agent in a build container whose files become the image: nothing may be left."""
    payload = b'{"v":1,"op":"facts"}'
    result = fresh_host.exec(ship.command("python3", None, cache=False), stdin=ship.program_bytes() + payload)
    assert b'"hostname"' in result.stdout, result.stderr_text
    assert fresh_host.sh(f"test -e {CACHE}").rc == 1


def test_the_agent_cache_and_backups_are_never_unmanaged_drift(fresh_host: Any) -> None:
    call(fresh_host, None)  # the cache now holds a program
    sh(fresh_host, "mkdir -p /var/cache/other && echo x > /var/cache/other/f")
    answer = fresh_host.agent({"op": "probe", "facts": False, "resources": [],
                               "watch": [{"path": "/var/cache"}, {"path": "/var/lib"}]})
    entries = answer["watch"]["entries"]
    assert "/var/cache/other/f" in entries  # the scan itself works
    assert not [p for p in entries if p.startswith((CACHE, "/var/lib/driftctl/backup"))], sorted(entries)
