"""The Celery application of the controller and of the workers, built from a broker URL.

Only JSON crosses Celery (``accept_content=["json"]``): a task's one argument and its result are
sealed tokens (driftctl/distributed/envelope.py), so Celery's own pickle is never enabled.

Delivery: late acknowledgement (``task_acks_late``) and prefetch 1, so a task a worker took but did
not finish is delivered again. With Redis, a message taken by a worker that died (SIGKILL, power)
comes back once it has been unacknowledged for ``visibility_timeout`` seconds (kombu's Redis
transport: there is no connection-close redelivery as in AMQP); the workers scan for such messages
every ``RESTORE_INTERVAL`` seconds. docs/scale.md says how to choose the timeout, and what bounds the
redelivery (``RESTORE_LIMIT``, ``RESTORE_MUTEX_EXPIRE``).
"""

from __future__ import annotations

from typing import Any

from driftctl.distributed import BrokerError

TASK = "driftctl.host"
DEFAULT_QUEUE = "driftctl"
ZONE_VAR = "driftctl_zone"
RESTORE_INTERVAL = 2  # seconds between a worker's scans for messages of dead workers
# A scan runs under a Redis lock (kombu's "unacked_mutex"), so that two workers never scan at once: one
# scan's list of expired messages can name a message another scan already put back and a live worker
# took again, and restoring it a second time would run it twice. kombu's lock expires after 300 s: a
# worker killed while it holds it (its scan is a few ms in every 2 s) stopped every redelivery for 5
# minutes. So a scan restores at most RESTORE_LIMIT messages (100 took 65 ms on loopback, 1000 took
# 1.1 s), and the lock expires after RESTORE_MUTEX_EXPIRE, far above such a scan: a dead holder delays
# redelivery by at most that, so a dead worker's task comes back within visibility_timeout +
# RESTORE_MUTEX_EXPIRE + RESTORE_INTERVAL. A larger backlog takes several scans (100 per 2 s per worker).
RESTORE_LIMIT = 100
RESTORE_MUTEX_EXPIRE = 5  # seconds
DEFAULT_VISIBILITY = 600.0  # a task unacknowledged this long is delivered again (a longer host run: twice)


def make_app(broker: str, visibility_timeout: float = DEFAULT_VISIBILITY) -> Any:
    """A Celery app on ``broker`` (its result backend: the same Redis server)."""
    from celery import Celery

    app = Celery("driftctl", broker=broker, backend=broker, set_as_current=False)
    transport = {
        "visibility_timeout": visibility_timeout,
        "unacked_restore_interval": RESTORE_INTERVAL,
        "unacked_restore_throttle": 1,
        "unacked_restore_limit": RESTORE_LIMIT,
        "unacked_mutex_expire": RESTORE_MUTEX_EXPIRE,
    }
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        result_expires=24 * 3600,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


def check_broker(app: Any, timeout: float = 5.0) -> None:
    """That the broker and the result backend answer now: BrokerError (exit 1) when not, before any
    host is touched."""
    url = _shown(app.conf.broker_url)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as e:  # kombu raises OperationalError and friends
        raise BrokerError(f"the task queue broker {url} cannot be reached: {e}; nothing was run",
                          ) from None
    try:
        app.backend.client.ping()
    except Exception as e:
        raise BrokerError(f"the result backend {url} cannot be reached: {e}; nothing was run") from None


def _shown(url: str) -> str:
    """A broker URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
