"""One pull: fetch SOURCE, check the commit out, find this host, validate, converge it locally, record.

Order matters for "nothing changed on bad input": every input (options, keys, cache, source, ref,
signature, inventory, manifests, this host's catalog) is checked before the agent is asked to change
anything; a commit that does not validate never becomes the last good commit.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from driftctl.errors import ConfigError, ExitCode, InputError
from driftctl.model import Host, RunResult
from driftctl.pull import PullError, SourceUnreachable
from driftctl.pull.cache import Cache
from driftctl.pull.git import Git, check_ref, is_local, mirror_broken, prune_checkouts, shown_source, shown_text
from driftctl.pull.state import PullState, facts_digest, post

Mode = str  # "apply" | "check" | "drift"


@dataclass
class PullRequest:
    """``driftctl pull`` as the user typed it."""

    source: str
    ref: str | None = None
    host: str | None = None
    inventory: str = "inventory"
    manifests: str = "manifests"
    mode: Mode = "apply"
    only_if_changed: bool = False
    verify_keys: tuple[Path, ...] = ()
    cache_dir: Path = Path("/var/lib/driftctl/pull")
    extra_vars: tuple[str, ...] = ()
    vault_password_file: tuple[str, ...] = ()
    vault_id: tuple[str, ...] = ()
    ask_vault_pass: bool = False
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    argv: list[str] | None = None


@dataclass
class PullOutcome:
    """What a pull did: its run (None when it was skipped before any host work), its report document
    (with ``mode: pull``), the commit, and why the last good checkout was used, if it was."""

    host: str
    source: str
    commit: str
    mode: Mode
    run: RunResult
    doc: dict[str, Any]
    fallback: str | None = None
    skipped_apply: bool = False
    stored: bool = False
    outbox_seq: int | None = None
    notes: list[str] = field(default_factory=list)
    exit_bits: int = 0

    @property
    def exit_code(self) -> int:
        code = self.run.exit_code
        return code if code == ExitCode.LOCKED else code | self.exit_bits


def check_request(req: PullRequest) -> None:
    """Every option checked before the cache, SOURCE or the host is touched (InputError, exit 1)."""
    if req.mode not in ("apply", "check", "drift"):
        raise ConfigError(f"unknown pull mode {req.mode!r}")
    if req.only_if_changed and req.mode != "apply":
        raise ConfigError(f"--only-if-changed and --{req.mode} exclude each other",
                          hint="--only-if-changed decides whether to apply; --check and --drift never do")
    if not req.source.strip() or req.source.startswith("-"):
        raise PullError(f"SOURCE {req.source!r} is not a git URL or path")
    check_ref(req.ref)
    for what, value in (("-i/--inventory", req.inventory), ("-m/--manifests", req.manifests)):
        p = PurePosixPath(value)
        if not value or p.is_absolute() or ".." in p.parts:
            raise ConfigError(f"{what} {value!r} must be a path inside the repository",
                              hint="relative, without ..: e.g. inventory/prod")
    for key in req.verify_keys:
        if not key.is_file():
            raise ConfigError(f"--verify-commit {key}: no such file",
                              hint="an exported public key (gpg --export --armor KEYID > key.asc)")
    if req.host is not None and not req.host.strip():
        raise ConfigError("--host is empty")


def _fetch(git: Git, req: PullRequest, state: PullState) -> tuple[str, str | None]:
    """(the commit to use, why the last good one is used instead of SOURCE's, or None)."""
    source = req.source
    if is_local(source):
        local = Path(source[len("file://"):] if source.startswith("file://") else source)
        if local.exists() and not _looks_like_repo(local):
            raise PullError(f"SOURCE {source} is not a git repository",
                            hint="a path to a repository (bare or not) or a git URL")
    git.ensure()
    fetched = git.fetch(source)
    if fetched.rc != 0 and mirror_broken(fetched.stderr):
        fetched = git.refetch(source)  # our cache damaged, not SOURCE: a new mirror, fetched whole
    if fetched.rc == 0:
        commit = git.resolve(req.ref)
        if commit is None:
            raise PullError(f"--ref {req.ref or 'HEAD'}: no such branch, tag or commit in {shown_source(source)}",
                            hint="nothing was changed")
        return commit, None
    why = shown_text(_git_why(fetched.stderr) or f"git fetch exited {fetched.rc}", source)
    if "dubious ownership" in why:
        # git's own guard: whoever owns that repository would decide what runs as root here
        raise PullError(f"SOURCE {shown_source(source)}: git refuses a repository owned by another user ({why})",
                        hint="a repository this host applies from must be root's (or yours): chown it, or pull "
                             "from a URL; nothing was changed")
    if "not a git repository" in why.lower() and is_local(source) and Path(source).exists():
        raise PullError(f"SOURCE {source} is not a git repository ({why})")
    last = state.last_good.get("commit")
    if not last or not git.has_commit(last):
        raise SourceUnreachable(f"SOURCE {shown_source(source)} cannot be fetched ({why}), and this host has no "
                                "earlier checkout to fall back on; nothing was changed")
    said = f"SOURCE {shown_source(source)} unreachable ({why}): used the last good commit {last[:12]}"
    came = _origin(state.last_good)
    if came[0] and came != (shown_source(source), req.ref):  # fetched from another SOURCE or --ref
        said += f" of {came[0]}" + (f" at {came[1]}" if came[1] else "")
    return str(last), said


def _origin(last_good: dict[str, Any]) -> tuple[str, str | None]:
    """(source, ref) the last good commit was fetched from."""
    ref = last_good.get("ref")
    return str(last_good.get("source") or ""), (str(ref) if ref else None)


def _git_why(stderr: str) -> str:
    """What went wrong, from git's stderr: its errors, without its advice (the last line alone was
    "and the repository exists.")."""
    advice = ("Please make sure you have the correct access rights", "and the repository exists",
              "To add an exception for this directory", "git config --global --add safe.directory")
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.strip().startswith(advice)]
    errors = [ln for ln in lines if ln != "fatal: Could not read from remote repository."] or lines
    return "; ".join(errors[:3])


def _looks_like_repo(path: Path) -> bool:
    return path.is_dir() and ((path / "HEAD").is_file() or (path / ".git").exists())


def _within(tree: Path, rel: str, what: str) -> Path:
    path = tree / rel
    if not path.exists():
        raise PullError(f"{what} {rel} is not in the repository at this commit",
                        hint="-i/-m name paths inside the repository")
    if not path.resolve().is_relative_to(tree.resolve()):
        raise PullError(f"{what} {rel} leads out of the repository")
    return path


def pull(req: PullRequest) -> PullOutcome:
    """One pull (see the module docstring). Raises input errors (exit 1), LockedError (75) and
    SourceUnreachable (8) before anything changed; everything else is in the outcome."""
    from driftctl.cli.opt_run import RunOptions

    check_request(req)
    run_opts = RunOptions(tags=req.tags, skip_tags=req.skip_tags).parse()
    cache = Cache.open(req.cache_dir)
    with cache.lock():
        cache.sweep()
        state = PullState.load(cache)
        git = Git(cache.mirror)
        commit, fallback = _fetch(git, req, state)
        if req.verify_keys:
            git.verify(commit, req.verify_keys)
        tree = git.checkout(commit, cache.checkouts)
        return _converge(req, cache, state, tree, commit, fallback, run_opts)


def _settings(req: PullRequest, cache: Cache, manifests: Path) -> Any:
    from driftctl import config

    overrides: dict[str, Any] = {
        "state_dir": str(cache.root), "state": str(cache.store), "manifests": str(manifests), "parallel": 1,
        "vault_password_file": req.vault_password_file or None,
    }
    ids = list(req.vault_id)
    if req.ask_vault_pass:
        ids.append("default@prompt")
    if ids:
        overrides["vault_ids"] = tuple(ids)
    return config.load(overrides)


def _converge(req: PullRequest, cache: Cache, state: PullState, tree: Path, commit: str, fallback: str | None,
              run_opts: Any) -> PullOutcome:
    _within(tree, req.inventory, "-i/--inventory")
    _within(tree, req.manifests, "-m/--manifests")
    # paths as in the repository (sources read manifests/roles/web/resources.yaml:3, as a push run from
    # its root shows them): the work happens in the checkout; settings are read where pull was started
    settings = _settings(req, cache, Path(req.manifests))
    here = os.getcwd()
    os.chdir(tree)
    try:
        return _converge_in_tree(req, cache, state, commit, fallback, run_opts, settings)
    except InputError as e:
        said = f"commit {commit[:12]} of {shown_source(req.source)} was not applied"
        e.hint = f"{e.hint}; {said}" if e.hint else said
        raise
    finally:
        os.chdir(here)


def _converge_in_tree(req: PullRequest, cache: Cache, state: PullState, commit: str, fallback: str | None,
                      run_opts: Any, settings: Any) -> PullOutcome:
    from driftctl.agent.facts import gather_facts
    from driftctl.cli.common import load_inventory_from_flags
    from driftctl.engine import Engine
    from driftctl.manifest import load_site
    from driftctl.parallel import InlineExecutor
    from driftctl.pull.whoami import find_host
    from driftctl.transport.options import TransportOptions

    inventory_path, manifests = Path(req.inventory), Path(req.manifests)
    if req.vault_password_file or req.vault_id or req.ask_vault_pass:
        inv = load_inventory_from_flags(inventory_path, settings, {"extra_vars": req.extra_vars}, lazy=True)
    else:  # no vault: no crypto library needed either (a host's python3 may have none)
        from driftctl.inventory import extravars, load_inventory

        inv = load_inventory(inventory_path, lazy=True, extra_vars=extravars.read(req.extra_vars))
    host = find_host(inv, req.inventory, req.host)
    host = dataclasses.replace(host, connection=dataclasses.replace(host.connection, transport="local"))
    site = load_site(manifests, max_render_bytes=settings.max_render_bytes)
    engine = Engine(site, inv, settings, TransportOptions(), executor=InlineExecutor())
    run_opts.configure(engine, site)
    engine.preflight([host])  # the commit validates for this host, or nothing runs and it is not "good"
    if fallback is None:
        state.good(commit, req.ref, shown_source(req.source))
        state.save(cache)
        prune_checkouts(cache.checkouts, {commit})
    facts = facts_digest(gather_facts())
    mode, skipped = req.mode, False
    if req.only_if_changed and state.unchanged(commit, facts):
        mode, skipped = "drift", True
    # a fallback ran the last good commit: the record names the source that commit came from (SOURCE may
    # have been changed since, to one never reached)
    source = (_origin(state.last_good)[0] if fallback else "") or shown_source(req.source)
    pull_info = {"mode": "pull", "source": source, "commit": commit,
                 "pull": {"ref": req.ref, "fallback": fallback, "skipped_apply": skipped}}
    outcome = _run(req, cache, engine, host, mode, pull_info)
    outcome.commit, outcome.fallback, outcome.skipped_apply = commit, fallback, skipped
    if skipped:
        outcome.notes.append(f"commit {commit[:12]} and the facts are those of the last successful apply: "
                             "not applied (--only-if-changed); a drift run was recorded instead")
    if fallback:
        outcome.notes.append(fallback)
    if mode == "apply" and not outcome.run.exit_code & (ExitCode.FAILED | ExitCode.UNREACHABLE | ExitCode.ABORTED) \
            and outcome.run.exit_code != ExitCode.LOCKED:
        state.applied(commit, facts)
    if mode in ("apply", "drift") and outcome.run.exit_code != ExitCode.LOCKED:
        outcome.outbox_seq = post(cache, state, outcome.doc)  # what the controller collects
    state.save(cache)
    return outcome


def _run(req: PullRequest, cache: Cache, engine: Any, host: Host, mode: Mode,
         pull_info: dict[str, Any]) -> PullOutcome:
    from driftctl.cli.common import recorded_argv
    from driftctl.drift import DriftRun, record_run, store_reference
    from driftctl.report import document
    from driftctl.store import open_store
    from driftctl.store.runstate import RunState

    argv = [shown_source(a) if a == req.source else a
            for a in recorded_argv(req.argv if req.argv is not None else ["pull", *sys.argv[2:]])]
    key = req.inventory
    shown = str(pull_info["source"])
    if mode == "check":
        run = engine.run("check", [host])
        doc = document.build(run, key, argv)
        doc.update(pull_info)
        return PullOutcome(host.name, shown, "", mode, run, doc)
    store = open_store(cache.store)
    try:
        view = RunState.begin(store, cache.root, key)
        if mode == "apply":
            run = engine.run("apply", [host])
        else:
            run = DriftRun(engine, view, key, store_reference(view, key), collect_pulled=False).run([host])
        if mode == "apply":
            pull_info["pull"]["watch_changed"] = watch_changed(run)
        doc = record_run(engine.settings, run, key, store=view, argv=argv, extra=pull_info)
        saved = view.finish()
    finally:
        store.close()
    outcome = PullOutcome(host.name, shown, "", mode, run, doc, stored=saved.run_id is not None)
    message = saved.message(str(cache.store))
    if message:
        outcome.notes.append(message)
        outcome.exit_bits |= saved.exit_bits
    return outcome


def watch_changed(run: RunResult) -> dict[str, Any]:
    """What the apply itself changed under watched paths (path -> entry after, or None: removed), so the
    controller's baseline moves by exactly that when it stores the run, as after a push apply (D6)."""
    out: dict[str, Any] = {}
    for h in run.hosts:
        if not h.watch or h.status in ("unreachable", "failed") or h.watch.get("error") or (
                h.watch_after or {}).get("error"):
            continue
        pre = h.watch.get("entries", {})
        post = (h.watch_after if h.watch_after is not None else h.watch).get("entries", {})
        for path in set(pre) | set(post):
            if pre.get(path) != post.get(path):
                out[path] = post.get(path)
    return out
