"""Pull mode: ``driftctl pull SOURCE`` run on a host converges that host from a git repository.

- ``cache``: the private cache directory (checked by descriptor) and the pull lock;
- ``git``: fetching SOURCE into the cache, resolving ``--ref``, verifying signatures, checkouts;
- ``whoami``: which inventory host this machine is;
- ``state``: what the host remembers between pulls (last good commit, last apply, outbox counter)
  and the outbox of report documents the controller collects in its next probe;
- ``run``: one pull, from the fetch to the recorded report.

The engine, the agent (through the local transport), the per-host lock and the store are the ones
push runs use. Nothing here imports an SSH library. docs/pull.md explains the model.
"""

from __future__ import annotations

from driftctl.errors import DriftctlError, ExitCode, InputError


class PullError(InputError):
    """A pull refused before anything on the host changed (bad source, ref, key, cache, commit)."""


class SourceUnreachable(DriftctlError):
    """SOURCE could not be fetched and there is no earlier good checkout to fall back on."""

    exit_code = ExitCode.UNREACHABLE


__all__ = ["PullError", "SourceUnreachable"]
