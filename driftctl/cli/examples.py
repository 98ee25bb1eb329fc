"""Examples for every command's ``--help``, as ``terraform plan -help`` and ``ansible-playbook --help`` show.

One table for every command, so no command module needs to know about it: ``attach(cli)`` puts each
command's examples into its epilog (and a description where a command has none). Each example is a
line a user can type: ``tests/unit/test_cli_help.py`` parses every one against its command, and
``scripts/gen-cli-docs`` puts them into docs/cli.md.
"""

from __future__ import annotations

import click

__all__ = ["DESCRIPTIONS", "EXAMPLES", "ROOT_EXAMPLES", "attach", "command_paths", "epilog", "split_example"]

# command path -> example lines; an optional "  # comment" at the end of a line says what it does
EXAMPLES: dict[str, tuple[str, ...]] = {
    "init": (
        "driftctl init mysite                         # a site, a role and inventory/dev, in mysite/",
        "driftctl init                                # the same in the current directory",
    ),
    "inventory": (
        "driftctl inventory inventory/prod            # every host: address, user, become, groups",
        "driftctl inventory inventory/prod -l web     # only the web group",
        "driftctl inventory inventory/prod --graph    # the group tree",
        "driftctl inventory inventory/prod --host web01.prod.example.com   # merged vars, where each was set",
        "driftctl inventory inventory/prod --json     # for scripts (schema: docs/json.md)",
    ),
    "facts": (
        "driftctl facts inventory/prod                # OS, kernel, arch, python, init of every host",
        "driftctl facts inventory/prod -l 'web:!web-canary*' -p 50   # the web group but its canary, 50 at a time",
        "driftctl facts inventory/prod --json",
    ),
    "pull": (
        "driftctl pull https://git.example.com/infra.git --ref main      # on a host, as root: converge it from git",
        "driftctl pull /srv/infra.git --ref v2026.12 --host web01        # a path, a tag, this host's inventory name",
        "driftctl pull https://git.example.com/infra.git --check          # what an apply would change (noop)",
        "driftctl pull https://git.example.com/infra.git --drift          # drift since the last apply, recorded",
        "driftctl pull https://git.example.com/infra.git --only-if-changed   # apply only on a new commit or facts",
        "driftctl pull https://git.example.com/infra.git --verify-commit /etc/driftctl/ops.asc   # signed commits only",
        "driftctl pull https://git.example.com/infra.git -i inventory/prod -m site/manifests --json",
    ),
    "bundle": (
        "driftctl bundle -o driftctl.pyz                # one file a host's python3 runs: driftctl + its libraries",
        "driftctl bundle -o driftctl.pyz --no-bytecode  # smaller, slower to start",
        "driftctl bundle install inventory/prod --source https://git.example.com/infra.git --every 30m --splay 10m",
        "driftctl bundle remove inventory/prod",
    ),
    "bundle install": (
        "driftctl bundle install inventory/prod --source https://git.example.com/infra.git --every 30m --splay 10m",
        "driftctl bundle install inventory/prod --source https://git.example.com/infra.git --plan   # show only",
        "driftctl bundle install inventory/prod -l web --source /srv/infra.git --ref release --check",
        "driftctl bundle install inventory/prod --source /srv/infra.git --cron --bundle driftctl.pyz  # cron",
    ),
    "bundle remove": (
        "driftctl bundle remove inventory/prod         # the schedule, the wrapper and the bundle",
        "driftctl bundle remove inventory/prod -l web01.prod.example.com --plan",
    ),
    "worker": (
        "driftctl worker --new-key /etc/driftctl/worker.key   # the key controller and workers share (0600)",
        "driftctl worker --broker redis://mq:6379/0 --state postgresql://db/driftctl --worker-key w.key",
        "driftctl worker --broker redis://mq:6379/0 --state postgresql://db/driftctl --worker-key w.key --queue dmz",
        "driftctl worker --broker redis://mq:6379/0 --state postgresql://db/driftctl --worker-key w.key --beat "
        "--schedule schedule.yaml",
    ),
    "plan": (
        "driftctl plan inventory/prod                 # what apply would change, with diffs; changes nothing",
        "driftctl plan inventory/prod -l web01.prod.example.com --diff   # new files in full too",
        "driftctl plan inventory/prod -m ../site/manifests -v            # another manifest tree; list in-sync too",
        "driftctl plan inventory/prod -t ssh,motd     # only resources tagged ssh or motd (a partial run)",
        "driftctl plan inventory/prod -e app_release=2026.12.1           # an extra variable, above all others",
        "driftctl plan inventory/prod -o release.plan   # also save the plan, for apply release.plan",
        "driftctl plan inventory/prod --json > report.json               # the report document",
    ),
    "check": (
        "driftctl check inventory/prod                # CI: exit 0 in sync, 2 changes pending",
        "driftctl check inventory/prod -l web --json > check.json",
    ),
    "apply": (
        "driftctl apply inventory/prod                # converge every host, 10 at a time",
        "driftctl apply inventory/prod -l web -p 4    # only the web group, 4 at a time",
        "driftctl apply inventory/prod --serial 1,25% --max-fail-percentage 10   # rolling: 1 host, then quarters",
        "driftctl apply inventory/prod --wait-lock 300                   # wait up to 5 min for another run",
        "driftctl apply release.plan                  # exactly a saved plan; a host changed since is refused",
    ),
    "drift": (
        "driftctl drift inventory/prod                # what changed by hand since the last apply",
        "driftctl drift inventory/prod --remediate    # and put corrective drift back",
        "driftctl drift inventory/prod --report-dir /var/www/drift       # + json, junit, markdown, html, prom",
        "driftctl drift inventory/prod --notify-command 'mail -s drift ops@example.com'",
        "driftctl drift inventory/prod --executor celery --broker redis://mq:6379/0 --worker-key w.key   # on workers",
    ),
    "accept": (
        "driftctl accept inventory/prod -l web01.prod.example.com        # the watched paths as they are now",
        "driftctl accept inventory/prod --path /etc/cron.d               # only under /etc/cron.d",
    ),
    "ignore": (
        "driftctl ignore add inventory/prod --target 'package:*' --reason 'upgrade window' --expires 2026-12-31",
        "driftctl ignore list inventory/prod",
        "driftctl ignore remove inventory/prod 3",
    ),
    "ignore add": (
        "driftctl ignore add inventory/prod --target file:/etc/motd --reason 'new banner, INC-42' --expires 2026-12-31",
        "driftctl ignore add inventory/prod --host 'web*' --target /etc/cron.d/backup --reason 'vendor job' "
        "--expires 2027-01-15",
    ),
    "ignore list": (
        "driftctl ignore list inventory/prod          # id, hosts, target, until, active or expired, reason",
        "driftctl ignore list inventory/prod --json",
    ),
    "ignore remove": (
        "driftctl ignore remove inventory/prod 3      # rule 3 (ids: driftctl ignore list)",
    ),
    "history": (
        "driftctl history inventory/prod              # the latest 50 events, oldest first",
        "driftctl history inventory/prod --host web01.prod.example.com --since 7d",
        "driftctl history inventory/prod --resource file:/etc/motd --last 10",
        "driftctl history inventory/prod --json       # run ids for driftctl report --run",
    ),
    "report": (
        "driftctl report inventory/prod               # the latest drift run, as markdown",
        "driftctl report inventory/prod -f html -o drift.html",
        "driftctl report inventory/prod -f junit --run 42 -o drift.xml",
    ),
    "schedule": (
        "driftctl schedule install inventory/prod --every 30m --report-dir /var/lib/driftctl/reports",
        "driftctl schedule list",
        "driftctl schedule remove drift-prod",
    ),
    "schedule install": (
        "driftctl schedule install inventory/prod --every 30m                 # a crontab entry",
        "driftctl schedule install inventory/prod --every 1h --systemd --name drift-prod",
        "driftctl schedule install inventory/prod --every 6h --remediate --report-dir /var/www/drift",
        "driftctl schedule install --pull https://git.example.com/infra.git --every 30m --splay 10m   # on a host",
        "driftctl schedule install --pull https://git.example.com/infra.git --every 1h --check --cron --host web01",
    ),
    "schedule list": (
        "driftctl schedule list",
        "driftctl schedule list --json",
    ),
    "schedule remove": (
        "driftctl schedule remove drift-prod",
    ),
    "bake": (
        "driftctl bake inventory/prod --host web01.prod.example.com --base debian:12 -o web01-image",
        "driftctl bake inventory/prod --host web01.prod.example.com --base base.tar --format oci-archive "
        "-o web01.tar --load",
    ),
    "bake-verify": (
        "driftctl bake-verify inventory/prod web01-image --host web01.prod.example.com  # exit 0 in sync, 2 differs",
        "driftctl bake-verify inventory/prod web01.tar --host web01.prod.example.com --diff --json",
    ),
    "compare": (
        "driftctl compare inventory/prod --host web01.prod.example.com --image web01.tar",
        "driftctl compare inventory/prod --host web01.prod.example.com --image web01-image --json",
    ),
    "prune": (
        "driftctl prune inventory/prod --dry-run      # what the store would lose; contacts no host",
        "driftctl prune inventory/prod --keep-days 30 --vacuum",
        "driftctl prune inventory/prod --backups-only --backup-keep 3 -l web",
    ),
    "completion": (
        "driftctl completion bash > ~/.local/share/bash-completion/completions/driftctl",
        "driftctl completion zsh > ~/.zfunc/_driftctl  # with fpath+=(~/.zfunc) before compinit",
        "driftctl completion fish > ~/.config/fish/completions/driftctl.fish",
    ),
}

# `driftctl --help`: a user's first steps and the everyday loop
ROOT_EXAMPLES: tuple[str, ...] = (
    "driftctl init mysite                         # a site and an inventory to start from (docs/first-manifest.md)",
    "driftctl plan inventory/prod                 # what would change, with diffs; changes nothing",
    "driftctl apply inventory/prod                # converge",
    "driftctl drift inventory/prod                # what changed by hand since, and since when",
    "driftctl COMMAND --help                      # each command's options and examples (docs/cli.md)",
)

# a description for commands defined without one (set only where the command has none)
DESCRIPTIONS: dict[str, str] = {
    "ignore add": "Ignore drift of --target on hosts matching --host until --expires, saying --reason.\n\n"
                  "Ignored drift stays in reports, marked with the rule, but no longer fails them. Contacts no host.",
    "ignore list": "List the ignore rules of INVENTORY: id, hosts, target, last day, active or expired, reason.",
    "ignore remove": "Remove the ignore rule RULE_ID (ids: driftctl ignore list).",
}


def split_example(line: str) -> tuple[str, str]:
    """An example line as (command, comment): the comment starts at two spaces and a '#'."""
    command, sep, comment = line.partition("  #")
    return command.strip(), comment.strip() if sep else ""


def command_paths(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    """Every command and subcommand as ("ignore add", command), in the order --help lists them."""
    ctx = click.Context(group, info_name="driftctl")
    out: list[tuple[str, click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        path = f"{prefix} {name}".strip()
        out.append((path, command))
        if isinstance(command, click.Group):
            out += command_paths(command, path)
    return out


def epilog(path: str) -> str | None:
    """The examples of ``path`` ("" for driftctl itself) as an epilog click prints line by line (``\\b`` stops
    its rewrapping)."""
    lines = EXAMPLES.get(path) if path else ROOT_EXAMPLES
    if not lines:
        return None
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def attach(group: click.Group, names: list[str]) -> None:
    """Examples into the epilog of ``group`` and of its commands ``names`` (and their subcommands); a
    description where a command has none."""
    if not group.epilog:
        group.epilog = epilog("")
    for name in names:
        command = group.commands[name]
        if command.hidden:
            continue
        subcommands = command_paths(command, name) if isinstance(command, click.Group) else []
        for path, one in [(name, command), *subcommands]:
            text = epilog(path)
            if text and not one.epilog:
                one.epilog = text
            if not (one.help or "").strip() and path in DESCRIPTIONS:
                one.help = DESCRIPTIONS[path]
                one.short_help = None
