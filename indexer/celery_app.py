"""The Celery application: Redis broker, late acknowledgement, requeue on worker loss.

Start a worker with ``hybrid-search worker`` or ``celery -A indexer.celery_app worker``.
Reliability settings, and why:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only
  after its batch is written; if the process running it dies (``kill -9``, OOM), the
  message goes back to the queue. Safe because writes are idempotent (versions).
* ``visibility_timeout``: if the whole worker dies, Redis redelivers unacknowledged
  messages after this many seconds; keep it above the longest batch.
* ``retry_on_worker_lost`` (on the task): a batch whose process died is re-sent as a
  retry, so a batch that itself kills its worker (a poison item) stops after
  ``max_retries`` instead of looping forever.
* ``task_track_started``: a batch a worker has begun shows ``STARTED``, so the producer can
  tell a batch still waiting from one running (see ``indexer.redelivery``: the one message
  a killed worker can take with it is sent again by the producer).
* the ledger (``indexer.ledger``, setting ``queue_ledger``): each batch is also kept in Redis
  until written, and every worker sweeps it, so the message a killed worker takes with it is
  sent again even when its producer did not wait.
* ``worker_prefetch_multiplier = 1``: a worker holds one batch beyond the one it runs,
  so a crash strands little and other workers get the rest.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, bootsteps

from hybrid_core.config import Settings

TASK_NAME = "indexer.index_batch"
RETRY_COUNTDOWN_MAX_S = 120  # the longest wait before a retried batch runs again (backoff cap)
LEDGER_CONF_KEY = "es_hybrid_search_ledger"  # app.conf: keep batches in the ledger (indexer.ledger)


log = logging.getLogger(__name__)


class LedgerSweep(bootsteps.StartStopStep):
    """Each worker sweeps its queue's ledger (``indexer.ledger``) on the worker's own timer: no thread
    of its own, since the prefork pool forks from this process."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None
        self.sweeper: Any = None

    def start(self, worker: Any) -> None:
        from indexer.ledger import SWEEP_S, Ledger, Sweeper
        from indexer.redelivery import LossRule

        ledger = Ledger.for_app(worker.app)
        if ledger is None:
            return
        self.sweeper = Sweeper(worker.app, ledger, LossRule.for_app(worker.app))
        self.tref = worker.timer.call_repeatedly(SWEEP_S, self.tick, priority=10)

    def tick(self) -> None:
        try:
            self.sweeper.sweep()
        except Exception as exc:  # a broker restart, say: the next sweep tries again
            log.warning("ledger sweep failed, trying again at the next one: %s", exc)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("es_hybrid_search", broker=settings.broker_url, backend=settings.backend_url, include=["indexer.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # sweep for unacknowledged messages of dead workers every ~visibility_timeout / 10
            # (kombu's default sweep is 10 s x throttle 10, i.e. ~100 s whatever the timeout)
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 10)),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=False,
        task_time_limit=max(settings.visibility_timeout_s - 5, 60),
        task_soft_time_limit=max(settings.visibility_timeout_s - 30, 30),
    )
    app.conf[LEDGER_CONF_KEY] = settings.queue_ledger
    app.steps["worker"].add(LedgerSweep)
    return app


app = make_app()
