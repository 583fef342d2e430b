"""The catalogue-update task: plain JSON in, a small JSON report out.

Only transient store errors are retried (with exponential backoff and jitter, a
bounded number of times); a bad item is recorded by ``process_batch`` and never
retried. The task is idempotent: every product goes to its own id at its own
version, so a redelivered or retried batch rewrites the same values, and an older
version is refused by the store.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from hybrid_core.config import Settings
from hybrid_core.errors import TransientStoreError
from hybrid_core.images import ImageLimits
from indexer.celery_app import RETRY_COUNTDOWN_MAX_S, TASK_NAME, app
from indexer.ledger import Ledger
from indexer.pipeline import IndexingRuntime, process_batch

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def runtime() -> IndexingRuntime:
    """The worker process's store and models, built once per process.

    Models load lazily inside the first batch, not in ``worker_process_init``: Celery
    kills a pool process that takes longer than ``worker_proc_alive_timeout`` (4 s)
    to start, and loading the models takes longer than that on a small CPU.
    """
    settings = Settings.from_env()
    text, image = settings.embedding_spaces()
    return IndexingRuntime(
        store=settings.open_store(),
        layout=settings.layout(),
        text_space=text,
        image_space=image,
        limits=ImageLimits(
            max_bytes=settings.image_max_bytes,
            timeout_s=settings.image_timeout_s,
            allow_private_networks=settings.image_allow_private_networks,
            allowed_networks=settings.image_allowed_networks,
        ),
    )


@app.task(
    bind=True,
    name=TASK_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    retry_on_worker_lost=True,
    default_retry_delay=2,
    autoretry_for=(TransientStoreError,),
    retry_backoff=2,
    retry_backoff_max=RETRY_COUNTDOWN_MAX_S,
    retry_jitter=True,
    max_retries=8,
)
def index_batch(self, items: list[dict[str, Any]], options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate, embed and write one batch of updates; returns the counts per outcome."""
    options = options or {}
    report = process_batch(
        items,
        runtime(),
        images_root=options.get("images_root"),
        title_field=options.get("title_field", "title"),
        task_id=self.request.id,
    )
    for error in report.errors:
        log.warning("bad item %s: %s", error.item, error.reason)
    _written(self.request.id)
    return report.to_dict()


def _written(task_id: str | None) -> None:
    """Off the ledger: the batch is in the store. A failure here costs at most one resend later."""
    book = Ledger.for_app(app)  # cheap: the Redis client is shared per broker
    if book is None or task_id is None:
        return
    try:
        book.forget(task_id)
    except Exception as exc:  # Redis hiccup: the sweep sees the task finished and drops the entry
        log.info("could not clear ledger entry %s: %s", task_id, exc)
