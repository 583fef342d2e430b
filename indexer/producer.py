"""Producers: turn catalogue lines or product dicts into queued batches of updates.

Producers do no validation beyond what they must (selecting lines with ``--where``):
workers validate, so every bad item ends in the same listable error store whether
it came from a file, a Python call or another producer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery, uuid
from celery.result import AsyncResult
from celery.states import READY_STATES

from indexer.celery_app import TASK_NAME
from indexer.ledger import Ledger
from indexer.redelivery import LossRule, broker_errors, queue_length, send_again

log = logging.getLogger(__name__)


class VersionClock:
    """Strictly increasing versions in microseconds since the epoch (comparable with ``updated_at``)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 1000)
            return self._last


_CLOCK = VersionClock()


def parse_where(conditions: Iterable[str]) -> dict[str, str]:
    """``split=test`` style selectors (all must hold)."""
    where: dict[str, str] = {}
    for cond in conditions:
        key, sep, value = cond.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"cannot read --where {cond!r}; write field=value")
        where[key.strip()] = value.strip()
    return where


def catalogue_items(path: str | Path, where: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Queue items for the lines of a JSONL catalogue; lines that do not parse are passed on as raw text."""
    path = Path(path)
    where = where or {}
    first_seen: dict[str, int] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            ref = f"{path.name}:{number}"
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if not where:
                    yield {"ref": ref, "error": f"not UTF-8 ({exc.reason} at byte {exc.start})"}
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                if not where:
                    yield {"ref": ref, "op": "upsert", "data": line}
                continue
            if where and not (isinstance(data, dict) and all(str(data.get(k)) == v for k, v in where.items())):
                continue
            op = data.get("op", "upsert") if isinstance(data, dict) else "upsert"
            if isinstance(data, dict) and isinstance(data.get("id"), (str, int)) and not _versioned(data):
                # a catalogue file holds one line per product; a change log says which version each line is
                key = str(data["id"])
                if key in first_seen:
                    yield {"ref": ref, "error": f"product id {key!r} appears again (first at line {first_seen[key]}); "
                                                "a catalogue file holds one line per product (or give each line a version)"}
                    continue
                first_seen[key] = number
            yield {"ref": ref, "op": op, "data": data}


def _versioned(data: dict[str, Any]) -> bool:
    return data.get("version") is not None or data.get("updated_at") is not None


def batched(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Submitted:
    """What was queued: one async result per batch, the number of items in each, and what each
    batch carried (kept until ``wait`` sees it confirmed, so a batch the broker lost can be sent again)."""

    results: list[AsyncResult] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    payloads: list[list[Any] | None] = field(default_factory=list)
    queue: str | None = None

    @property
    def items(self) -> int:
        return sum(self.sizes)


# kombu retries a publish this way before giving up: about 25 s, enough to ride out a broker restart
PUBLISH_RETRY = {"max_retries": 10, "interval_start": 0.5, "interval_step": 1.0, "interval_max": 3.0}
BROKER_OUTAGE_S = 60.0  # how long ``wait`` keeps polling results through a broker outage
LOSS_CHECK_S = 5.0  # how often ``wait`` looks for batches the broker lost (one queue-length query)


class BrokerUnavailable(ConnectionError):
    """The broker could not be reached after retrying; says how much was queued before."""


def _where(app: Celery) -> str:
    """The broker address without credentials."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(app.conf.broker_url))


def enqueue(
    items: Iterable[dict[str, Any]],
    *,
    app: Celery,
    batch_size: int = 128,
    options: dict[str, Any] | None = None,
    on_batch: Callable[[int], None] | None = None,
    retry_policy: dict[str, float] | None = None,
    keep_payloads: bool = True,
) -> Submitted:
    """Stamp a version on every item and send them in batches of ``batch_size``.

    A publish that fails is retried (``retry_policy``, default ``PUBLISH_RETRY``); when the
    broker stays unreachable, ``BrokerUnavailable`` says which batches were queued (the
    ``Submitted`` so far is on the exception) and which were not: re-sending is safe, since
    versions make a repeated update a no-op.

    ``keep_payloads``: hold each batch until ``wait`` confirms it, so one the broker lost can be sent
    again (``indexer.redelivery``); a producer that will not wait saves that memory with ``False``.
    Either way, with the ledger on (the default), each batch is recorded in Redis before it is
    published and the workers resend one the broker lost (``indexer.ledger``)."""
    submitted = Submitted(queue=app.conf.task_default_queue)
    errors = broker_errors()
    ledger = Ledger.for_app(app, submitted.queue)
    for batch in batched(items, batch_size):
        for item in batch:
            item.setdefault("version", _CLOCK.next())
        task_id = uuid()
        args = [batch, options or {}]
        try:
            if ledger is not None:  # before publishing: a batch is never out of both
                _record(ledger, task_id, args, retry_policy or PUBLISH_RETRY)
            result = app.send_task(
                TASK_NAME, args=args, task_id=task_id, queue=submitted.queue, retry=True, retry_policy=retry_policy or PUBLISH_RETRY,
            )
        except (*errors, RuntimeError) as exc:
            if ledger is not None:
                _forget_quietly(ledger, task_id)  # reported as not queued: the caller sends it again
            if isinstance(exc, RuntimeError) and "result store" not in str(exc):
                raise  # Celery says "Retry limit exceeded ... result store" when the result backend is down
            error = BrokerUnavailable(
                f"the broker at {_where(app)} is unreachable ({str(exc).strip()}); {submitted.items} items in {len(submitted.results)} "
                f"batches were queued, this batch of {len(batch)} (first {batch[0].get('ref')}) and the rest were not: "
                "send them again once the broker is back"
            )
            error.submitted = submitted  # type: ignore[attr-defined]
            raise error from exc
        submitted.results.append(result)
        submitted.sizes.append(len(batch))
        submitted.payloads.append(args if keep_payloads else None)
        if on_batch:
            on_batch(len(batch))
    return submitted


def _record(ledger: Ledger, task_id: str, args: list[Any], policy: dict[str, float]) -> None:
    """``ledger.record``, retried as kombu retries a publish, so a Redis restart is ridden out the same way."""
    errors = broker_errors()
    attempts = int(policy.get("max_retries", 0)) + 1
    for attempt in range(attempts):
        try:
            ledger.record(task_id, args)
            return
        except errors:
            if attempt == attempts - 1:
                raise
            time.sleep(min(policy.get("interval_start", 0.5) + attempt * policy.get("interval_step", 1.0), policy.get("interval_max", 3.0)))


def _forget_quietly(ledger: Ledger, *task_ids: str) -> None:
    try:
        ledger.forget(*task_ids)
    except broker_errors() as exc:  # Redis is down: the sweep drops a finished batch's entry later
        log.info("could not clear %d ledger entries: %s", len(task_ids), exc)


def enqueue_upserts(products: Iterable[dict[str, Any]], *, app: Celery, batch_size: int = 128, **options: Any) -> Submitted:
    """Queue product dicts (each with an ``id``; ``version`` or ``updated_at`` optional)."""
    items = ({"ref": f"product {p.get('id')}", "op": "upsert", "data": p} for p in products)
    return enqueue(items, app=app, batch_size=batch_size, options=options)


def enqueue_deletes(ids: Iterable[str], *, app: Celery, batch_size: int = 128) -> Submitted:
    """Queue deletes; each gets a version newer than anything queued before it."""
    items = ({"ref": f"delete {pid}", "op": "delete", "data": {"id": pid}} for pid in ids)
    return enqueue(items, app=app, batch_size=batch_size)


def wait(
    submitted: Submitted,
    *,
    timeout_s: float | None = None,
    on_done: Callable[[int, dict[str, Any] | None, BaseException | None], None] | None = None,
    poll_s: float = 0.25,
    loss_rule: LossRule | None = None,
) -> dict[str, int]:
    """Wait for every batch; totals of the workers' reports (``failed_batches`` counts batches that
    raised, ``resent_batches`` those the broker lost and this sent again: see ``indexer.redelivery``)."""
    totals = {"written": 0, "deleted": 0, "stale": 0, "reused_vectors": 0, "errors": 0, "failed_batches": 0, "resent_batches": 0}
    pending = dict(enumerate(submitted.results))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    errors = broker_errors()
    outage_since: float | None = None
    app = submitted.results[0].app if submitted.results else None
    rule = loss_rule or (LossRule.for_app(app) if app is not None else None)
    ledger = Ledger.for_app(app, submitted.queue) if app is not None else None
    seen: dict[int, tuple[str, float]] = {}  # batch -> (state, since when)
    queue_empty_since: float | None = None
    next_loss_check = time.monotonic() + LOSS_CHECK_S
    while pending:
        for index, result in list(pending.items()):
            try:
                state = result.state
                outage_since = None
            except errors as exc:
                # the result backend (Redis) is restarting: keep polling for a while, then say so
                outage_since = outage_since or time.monotonic()
                if time.monotonic() - outage_since > BROKER_OUTAGE_S:
                    raise BrokerUnavailable(f"results unreachable for {BROKER_OUTAGE_S:.0f} s ({exc}); {len(pending)} batches not confirmed") from exc
                break
            if state not in READY_STATES:
                if seen.get(index, ("",))[0] != state:
                    seen[index] = (state, time.monotonic())
                continue
            del pending[index]
            seen.pop(index, None)
            if ledger is not None:
                _forget_quietly(ledger, result.id)  # finished: before forget() below makes it read PENDING again
            if index < len(submitted.payloads):
                submitted.payloads[index] = None  # confirmed: the producer no longer needs to hold it
            if state == "SUCCESS":
                report = result.result or {}
                for key in ("written", "deleted", "stale", "reused_vectors", "errors"):
                    totals[key] += int(report.get(key, 0))
                if on_done:
                    on_done(submitted.sizes[index], report, None)
            else:
                totals["failed_batches"] += 1
                if on_done:
                    on_done(submitted.sizes[index], None, result.result)
            result.forget()
        if pending and outage_since is None and app is not None and rule is not None and time.monotonic() >= next_loss_check:
            next_loss_check = time.monotonic() + LOSS_CHECK_S
            try:
                queue_empty_since = _resend_lost(app, submitted, pending, seen, rule, queue_empty_since, totals, ledger)
            except errors as exc:  # the broker is restarting: the next check will do
                log.info("could not check the queue for lost batches: %s", exc)
        if pending:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} of {len(submitted.results)} batches still running after {timeout_s} s")
            time.sleep(poll_s)
    return totals


def _resend_lost(
    app: Celery,
    submitted: Submitted,
    pending: dict[int, AsyncResult],
    seen: dict[int, tuple[str, float]],
    rule: LossRule,
    queue_empty_since: float | None,
    totals: dict[str, int],
    ledger: Ledger | None = None,
) -> float | None:
    """Send again every pending batch ``rule`` calls lost; returns since when the queue has been empty.
    With a ledger, the resend is claimed there first, so a worker's sweep does not send it too."""
    now = time.monotonic()
    if queue_length(app, submitted.queue or app.conf.task_default_queue) > 0:
        return None
    queue_empty_since = queue_empty_since if queue_empty_since is not None else now
    for index, result in pending.items():
        state, since = seen.get(index, ("", now))
        payload = submitted.payloads[index] if index < len(submitted.payloads) else None
        if payload is None or not rule.lost(state, now - since, now - queue_empty_since):
            continue
        if ledger is not None and ledger.claim_resend(result.id, rule.pending_after_s) is None:
            seen[index] = (state, now)  # a worker's sweep is sending it
            continue
        log.warning(
            "batch %s (%d items, first %s) waited %.0f s as %s with the queue empty: the broker lost it; sending it again",
            result.id, submitted.sizes[index], payload[0][0].get("ref") if payload[0] else "-", now - since, state,
        )
        send_again(app, result.id, payload, submitted.queue)
        seen[index] = (state, now)  # its clock starts again
        totals["resent_batches"] += 1
    return queue_empty_since
