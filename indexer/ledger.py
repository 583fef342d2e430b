"""The ledger: every batch not yet written, kept in Redis beside the queue, so that the workers
can send again a batch the broker lost even when its producer did not stay to wait for it.

Why: with a Redis broker, a worker killed between kombu's ``BRPOP`` and its record of the
message as unacknowledged takes the message with it (``indexer.redelivery``). ``producer.wait``
closes that gap from the payloads it holds, but a catalogue service that pushes updates and
moves on (``enqueue`` without ``wait``, ``hybrid-search index --no-wait``) holds nothing. The
ledger holds the batch instead:

* the producer records each batch before publishing it (``Ledger.record``);
* the worker forgets it once the batch is written, and so does ``wait`` when it sees it finish;
* each worker sweeps the ledger every ``SWEEP_S`` (``Sweeper``): an entry whose task never
  started (``PENDING``, or ``RETRY`` for a retry message) for longer than ``LossRule`` allows,
  with the queue seen empty all that time, was lost, and goes out again under the same task
  id; one worker claims each resend, and an entry sent ``MAX_RESENDS`` times without finishing
  is given up loudly; an entry whose task finished (its worker died before forgetting it) is
  dropped. Sending a batch twice is safe: versions make a repeated update a no-op.

Cost: Redis holds each queued batch twice (queue and ledger) until it is written. The setting
``queue_ledger`` (default on) turns it off; ``wait``'s own recovery stays. Only for Redis
brokers: other brokers record deliveries themselves and have no such gap.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from celery.states import READY_STATES

from indexer.celery_app import LEDGER_CONF_KEY
from indexer.redelivery import LossRule, queue_length, send_again

log = logging.getLogger(__name__)

PREFIX = "es-hybrid-search:ledger"
SWEEP_S = 5.0  # how often each worker looks at the ledger (one ZCARD when it is empty)
MAX_RESENDS = 3  # a batch lost this many times more is reported and left alone
OVERDUE_PER_SWEEP = 100


@lru_cache(maxsize=8)
def _client(url: str) -> Any:
    """One client (and connection pool) per broker: a service may enqueue one update at a time, and a
    connection per call would cost a TCP handshake each (redis-py's pool starts afresh after a fork)."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


@dataclass
class Ledger:
    """Batches of one queue not yet written: a hash of payloads and a sorted set of when each was
    (last) sent, so a sweep reads only the ids of old entries, never the payloads of young ones."""

    client: Any  # redis.Redis
    queue: str

    @classmethod
    def for_app(cls, app: Celery, queue: str | None = None) -> Ledger | None:
        """The ledger of ``queue`` (default: the app's queue), or ``None`` when it is off or the
        broker is not Redis."""
        url = str(app.conf.broker_url or "")
        if not app.conf.get(LEDGER_CONF_KEY, False) or not url.startswith(("redis://", "rediss://", "unix://")):
            return None
        return cls(_client(url), queue or app.conf.task_default_queue)

    def _key(self, part: str) -> str:
        return f"{PREFIX}:{self.queue}:{part}"

    def record(self, task_id: str, args: list[Any], *, now: float | None = None) -> None:
        """Before the batch is published: a producer that dies in between leaves an entry the
        sweep sends (at least once, never lost)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self._key("batches"), task_id, json.dumps(args))
        pipe.zadd(self._key("sent"), {task_id: time.time() if now is None else now})
        pipe.execute()

    def forget(self, *task_ids: str) -> None:
        if not task_ids:
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self._key("batches"), *task_ids)
        pipe.zrem(self._key("sent"), *task_ids)
        pipe.hdel(self._key("resends"), *task_ids)
        pipe.execute()

    def size(self) -> int:
        return int(self.client.zcard(self._key("sent")))

    def oldest(self) -> float | None:
        """When the oldest entry was (last) sent, epoch seconds; ``None`` when the ledger is empty."""
        rows = self.client.zrange(self._key("sent"), 0, 0, withscores=True)
        return float(rows[0][1]) if rows else None

    def overdue(self, older_than_s: float, *, now: float | None = None, limit: int = OVERDUE_PER_SWEEP) -> list[tuple[str, float]]:
        """``(task id, when sent)`` of entries sent (or last resent) more than ``older_than_s`` ago, oldest first."""
        cutoff = (time.time() if now is None else now) - older_than_s
        rows = self.client.zrangebyscore(self._key("sent"), "-inf", cutoff, start=0, num=limit, withscores=True)
        return [(task_id.decode() if isinstance(task_id, bytes) else task_id, float(sent)) for task_id, sent in rows]

    def payload(self, task_id: str) -> list[Any] | None:
        raw = self.client.hget(self._key("batches"), task_id)
        return None if raw is None else json.loads(raw)

    def claim_resend(self, task_id: str, hold_s: float, *, now: float | None = None) -> int | None:
        """This worker's right to send ``task_id`` again (``None``: another worker has it): marks the
        entry sent now and returns how many times it has been resent, this time included."""
        if not self.client.set(self._key(f"claim:{task_id}"), "1", nx=True, ex=max(1, int(hold_s))):
            return None
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(self._key("sent"), {task_id: time.time() if now is None else now}, xx=True)
        pipe.hincrby(self._key("resends"), task_id, 1)
        return int(pipe.execute()[1])


@dataclass
class Sweeper:
    """One worker's view of the ledger between sweeps: since when the queue has stood empty, and
    since when each overdue batch has shown a state other than ``PENDING``."""

    app: Celery
    ledger: Ledger
    rule: LossRule
    max_resends: int = MAX_RESENDS
    queue_empty_since: float | None = None
    seen: dict[str, tuple[str, float]] = field(default_factory=dict)
    resent: int = 0

    def sweep(self, now: float | None = None) -> int:
        """Send again what the rule calls lost; returns how many batches this sweep sent."""
        now = time.time() if now is None else now
        if self.ledger.size() == 0:
            self.queue_empty_since, self.seen = None, {}
            return 0
        if queue_length(self.app, self.ledger.queue) > 0:
            self.queue_empty_since = None
            return 0
        self.queue_empty_since = self.queue_empty_since if self.queue_empty_since is not None else now
        sent_now = 0
        overdue = self.ledger.overdue(self.rule.pending_after_s, now=now)
        for task_id, sent_at in overdue:
            state = AsyncResult(task_id, app=self.app).state
            if state in READY_STATES:  # written or failed for good; its worker died before forgetting it
                self.ledger.forget(task_id)
                continue
            # a task shows PENDING from when it is sent until a worker starts it, never again after
            previous = self.seen.get(task_id)
            since = sent_at if state == "PENDING" else (previous[1] if previous and previous[0] == state else now)
            self.seen[task_id] = (state, since)
            if not self.rule.lost(state, now - since, now - self.queue_empty_since):
                continue
            sent_now += self._resend(task_id, state, now - since, now)
        live = {task_id for task_id, _ in overdue}
        self.seen = {k: v for k, v in self.seen.items() if k in live}
        return sent_now

    def _resend(self, task_id: str, state: str, waited_s: float, now: float) -> int:
        count = self.ledger.claim_resend(task_id, self.rule.pending_after_s, now=now)
        if count is None:
            return 0
        payload = self.ledger.payload(task_id)
        if payload is None:  # forgotten meanwhile: written after all
            self.ledger.forget(task_id)
            return 0
        first = payload[0][0].get("ref") if payload and payload[0] else "-"
        if count > self.max_resends:
            log.error("batch %s (first %s) was lost %d times; giving it up: send it again by hand", task_id, first, count)
            self.ledger.forget(task_id)
            return 0
        log.warning(
            "batch %s (%d items, first %s) waited %.0f s as %s with the queue empty: the broker lost it; "
            "sending it again from the ledger (%d of at most %d)",
            task_id, len(payload[0]) if payload else 0, first, waited_s, state, count, self.max_resends,
        )
        send_again(self.app, task_id, payload, self.ledger.queue)
        self.seen.pop(task_id, None)
        self.resent += 1
        return 1

