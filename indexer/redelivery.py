"""Batches the broker lost, and when the producer may send them again.

Late acknowledgement keeps a batch safe from the moment a worker has recorded it as
unacknowledged until it is written. One moment is not covered with Redis: kombu takes a
message off the queue with ``BRPOP`` and only then records it as unacknowledged, so a worker
killed between the two (``kill -9``, the OOM killer) takes the message with it, and no
visibility timeout ever brings it back. The producer still holds every batch it has not
seen finished, so it can close that gap: a batch that has stayed waiting (``PENDING``, or
``RETRY`` for a retry message) for longer than any redelivery could take, while the queue
stood empty the whole time, was lost, and goes out again under the same task id. Sending a
batch twice is safe: versions make a repeated update a no-op.

The rule stays quiet while the queue holds messages (a batch behind others is merely
waiting), so a queue shared with other producers defers the check until it drains.
A producer that does not wait holds nothing; the workers apply the same rule to the batches
kept in Redis for them (``indexer.ledger``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery

from indexer.celery_app import RETRY_COUNTDOWN_MAX_S, TASK_NAME

WAITING_STATES = frozenset({"PENDING", "RETRY"})
MARGIN_S = 10.0


@dataclass(frozen=True)
class LossRule:
    """How long a batch may wait, unchanged and with the queue empty, before it counts as lost."""

    pending_after_s: float
    retry_after_s: float

    @classmethod
    def for_app(cls, app: Celery) -> LossRule:
        """From the broker's redelivery settings: a dead worker's unacknowledged messages go back
        to the queue within one visibility timeout plus one sweep, which this waits out twice over."""
        options = app.conf.broker_transport_options or {}
        visibility = float(options.get("visibility_timeout", 3600))
        sweep = float(options.get("unacked_restore_interval", 10)) * float(options.get("unacked_restore_throttle", 10))
        pending = visibility + 2 * sweep + MARGIN_S
        return cls(pending_after_s=pending, retry_after_s=pending + RETRY_COUNTDOWN_MAX_S)

    def lost(self, state: str, unchanged_s: float, queue_empty_s: float | None) -> bool:
        """``unchanged_s``: how long the batch has shown this state; ``queue_empty_s``: how long
        the queue has been seen empty without a break (``None``: not empty now)."""
        if state not in WAITING_STATES or queue_empty_s is None:
            return False
        limit = self.pending_after_s if state == "PENDING" else self.retry_after_s
        return unchanged_s > limit and queue_empty_s > limit


def broker_errors() -> tuple[type[BaseException], ...]:
    """What a broker (or result backend) that is down or restarting raises, from kombu and redis-py alike."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (OperationalError, RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def queue_length(app: Celery, queue: str) -> int:
    """Messages ready in ``queue`` (not counting those workers hold unacknowledged)."""
    from kombu.exceptions import ChannelError

    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)  # a broker that is down is the caller's error, at once
        try:
            return int(connection.default_channel.queue_declare(queue=queue, passive=True).message_count)
        except ChannelError:
            return 0  # Redis drops an empty list's key: a queue that does not exist holds nothing


def send_again(app: Celery, task_id: str, payload: list[Any], queue: str | None) -> None:
    """The same batch under the same task id, so the caller's result handle stays valid."""
    app.send_task(TASK_NAME, args=payload, task_id=task_id, queue=queue or app.conf.task_default_queue)
