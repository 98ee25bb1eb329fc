"""The benchmark workload of issue 10, shared by bench_converge.py and floor.py.

One role applied to every host: a group and 3 users, 11 directories, 100 templated ~2 KB files, a line
in sshd_config, a symlink, a package and a service (both already in the fleet image, so the numbers
measure driftctl and not Debian's mirror): 119 resources per host.

``managed_paths()`` lists what a minimal agent must look at to observe the same state (the floor).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]

FILES = 100
DIRS = 10
USERS = ("bench0", "bench1", "bench2")
GROUP = "benchops"
PACKAGE = "procps"  # in the fleet image: measured without a mirror
SERVICE = "cron"
ROOT_DIR = "/srv/bench"
SYMLINK = "/srv/bench/current"
LINE_FILE = "/etc/ssh/sshd_config"
LINE_TEXT = "MaxSessions 20"


def file_path(item: int, dirs: int = DIRS) -> str:
    return f"{ROOT_DIR}/d{item % dirs}/f{item}.conf"


def dir_path(d: int) -> str:
    return f"{ROOT_DIR}/d{d}"


@dataclass(frozen=True)
class Observed:
    """What the floor's agent observes on one host: paths (lstat + sha256) and account names."""

    paths: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)  # asked of dpkg-query, all in one call
    services: list[str] = field(default_factory=list)  # asked of systemctl show, all in one call


def managed_paths(files: int = FILES, dirs: int = DIRS) -> Observed:
    paths = [ROOT_DIR, *(dir_path(d) for d in range(dirs)), *(file_path(i, dirs) for i in range(files)),
             SYMLINK, LINE_FILE]
    return Observed(paths=paths, users=list(USERS), groups=[GROUP], packages=[PACKAGE], services=[SERVICE])


def resource_count(files: int = FILES, dirs: int = DIRS) -> int:
    # group + users + dirs (+ the root dir) + files + symlink + line + package + service
    return 1 + len(USERS) + dirs + 1 + files + 1 + 1 + 1 + 1


def resource_ids(files: int = FILES, dirs: int = DIRS) -> set[str]:
    """The ids driftctl gives the workload's resources on every host."""
    return {f"group:{GROUP}", *(f"user:{u}" for u in USERS), f"directory:{ROOT_DIR}",
            *(f"directory:{dir_path(d)}" for d in range(dirs)), *(f"file:{file_path(i, dirs)}" for i in range(files)),
            f"symlink:{SYMLINK}", "line:bench-sshd", f"package:{PACKAGE}", f"service:{SERVICE}"}


@dataclass(frozen=True)
class Injection:
    """A change made by hand (``podman exec``) that drift must report as exactly ``resource``.

    ``host`` 0 is the fleet's first host, 1 its second (the first again on a one-host fleet). The
    script fails (non-zero) if the change did not happen.
    """

    host: int
    what: str
    script: str
    resource: str


INJECTIONS = (
    Injection(0, "edit a managed file's content", f"printf 'hand edit\\n' >> {file_path(1)}", f"file:{file_path(1)}"),
    Injection(0, "chmod a managed file", f"chmod 600 {file_path(2)}", f"file:{file_path(2)}"),
    Injection(0, "delete a managed file", f"rm {file_path(3)}", f"file:{file_path(3)}"),
    Injection(1, "change the sshd_config line",
              f"sed -i 's/^{LINE_TEXT}$/MaxSessions 30/' {LINE_FILE} && grep -qx 'MaxSessions 30' {LINE_FILE}",
              "line:bench-sshd"),
    Injection(1, "delete the symlink", f"rm {SYMLINK}", f"symlink:{SYMLINK}"),
    Injection(1, "change a user's shell", f"usermod -s /bin/sh {USERS[1]}", f"user:{USERS[1]}"),
    Injection(1, "chmod a managed directory", f"chmod 700 {dir_path(DIRS - 1)}", f"directory:{dir_path(DIRS - 1)}"),
)


def write_manifests(root: Path, files: int = FILES, dirs: int = DIRS) -> None:
    """The site and role of the workload under ``root`` (site.yaml, roles/bench/...)."""
    role = root / "roles" / "bench"
    (role / "templates").mkdir(parents=True)
    (root / "site.yaml").write_text("- hosts: all\n  roles: [bench]\n")
    (role / "templates" / "conf.j2").write_text(
        "# {{ inventory_hostname }} file {{ item }}: managed by driftctl\n"
        "{% for i in range(40) %}option_{{ i }} = {{ (item * 31 + i) % 97 }}\n{% endfor %}"
    )
    (role / "defaults.yaml").write_text(f"bench_files: {list(range(files))}\n")
    res = ["resources:", f"  - group: {GROUP}", "    gid: 5000"]
    for u, name in enumerate(USERS):
        res += [f"  - user: {name}", f"    uid: {5001 + u}", f"    group: {GROUP}", "    shell: /bin/bash"]
    for d in range(dirs):
        res += [f"  - directory: {dir_path(d)}", '    mode: "0755"']
    res += [f"  - directory: {ROOT_DIR}", '    mode: "0755"']
    res += [
        f'  - file: "{ROOT_DIR}/d{{{{ item % {dirs} }}}}/f{{{{ item }}}}.conf"',
        "    template: conf.j2",
        '    mode: "0644"',
        "    owner: root",
        '    loop: "{{ bench_files }}"',
        f"  - symlink: {SYMLINK}",
        f"    target: {dir_path(0)}",
        "  - line: bench-sshd",
        f"    path: {LINE_FILE}",
        f"    text: {LINE_TEXT}",
        '    match: "^#?MaxSessions"',
        f"  - package: {PACKAGE}",
        f"  - service: {SERVICE}",
        "    enabled: true",
        "    running: true",
    ]
    (role / "resources.yaml").write_text("\n".join(res) + "\n")


def fleet_library() -> ModuleType:
    """tests/fleet/fleet.py, loaded by path (bench/ is not a package of the tests)."""
    name = "driftctl_test_fleet"
    if name in sys.modules:
        return sys.modules[name]
    path = REPO / "tests" / "fleet" / "fleet.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
