"""Host runs on a distributed task queue (Celery), results in the one store. See docs/scale.md.

- ``envelope``: every task and result is a Fernet token (AES + HMAC) under a key shared by the
  controller and its workers; nothing travels in the clear, and a message that does not verify is
  refused, never run.
- ``app``: the Celery application both sides build from a broker URL (Redis), with late acks and
  prefetch 1, and the check that the broker answers before any host is touched.
- ``task``: what a worker does with one host's task (the engine's own code on one host).
- ``remote``: ``RemoteEngine``, the controller side: the engine with its fan-out sent to the queues.
- ``lost``: how the controller finds a task the broker lost between a worker's ``BRPOP`` and its
  record of it in ``unacked`` (a worker killed in that instant), to send it again.
"""

from __future__ import annotations

from driftctl.errors import DriftctlError, ExitCode


class BrokerError(DriftctlError):
    """The task queue's broker or result backend cannot be reached: nothing was run on any host."""

    exit_code = ExitCode.INPUT


class EnvelopeError(DriftctlError):
    """A task or a result that does not verify with the shared key (another key, edited, not ours)."""

    exit_code = ExitCode.INPUT
