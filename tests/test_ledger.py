"""The ledger (indexer.ledger): real Redis throughout; the sweep alone (no worker, a clock passed in),
then a real worker recovering a batch whose producer never waited."""

from __future__ import annotations

import json
import time

import pytest

from indexer.ledger import Ledger, Sweeper
from indexer.producer import enqueue, wait
from indexer.redelivery import LossRule
from tests.queue_helpers import Worker, WorkerEnv, wait_until
from tests.test_faults import _check_newest, _updates
from tests.test_queue import open_store, redis  # noqa: F401 (redis is a fixture)

pytestmark = [pytest.mark.integration]


@pytest.fixture
def make_env(redis, tmp_path):  # noqa: F811
    """WorkerEnvs on a queue of their own; their ledger keys are removed afterwards (the machine's
    Redis outlives the test, and ledger keys have no expiry)."""
    made: list[WorkerEnv] = []

    def make(**kwargs) -> WorkerEnv:
        made.append(WorkerEnv(redis.url, tmp_path / "store.sqlite", **kwargs))
        return made[-1]

    yield make
    client = _client(redis.url)
    for wenv in made:
        keys = list(client.scan_iter(f"es-hybrid-search:ledger:{wenv.queue}:*"))
        if keys:
            client.delete(*keys)


def _client(url: str):
    import redis as redis_client

    return redis_client.Redis.from_url(url)


def _queued_ids(url: str, queue: str) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in _client(url).lrange(queue, 0, -1)]


def test_a_producer_records_each_batch_before_sending_it_and_wait_clears_them(redis, make_env):  # noqa: F811
    wenv = make_env(visibility_timeout_s=10, batch_size=10)
    app = wenv.app()
    submitted = enqueue(_updates(25)[0][:25], app=app, batch_size=10, keep_payloads=False)
    ledger = Ledger.for_app(app)
    assert ledger is not None and ledger.size() == 3
    assert set(_queued_ids(redis.url, wenv.queue)) == {r.id for r in submitted.results}
    first = ledger.payload(submitted.results[0].id)
    assert first is not None and [item["ref"] for item in first[0]] == [f"p{i}@1" for i in range(10)]
    for result in submitted.results:  # as a worker would report them
        app.backend.store_result(result.id, {"written": 10}, "SUCCESS")
    wait(submitted, timeout_s=30)
    assert ledger.size() == 0, "wait forgets what it saw finished"


def test_the_ledger_is_off_when_the_setting_says_so(redis, make_env):  # noqa: F811
    wenv = make_env(extra={"HYBRID_SEARCH_QUEUE_LEDGER": "false"})
    assert Ledger.for_app(wenv.app()) is None


def test_the_sweep_resends_only_a_batch_left_waiting_by_an_empty_queue_once_per_claim(redis, make_env):  # noqa: F811
    wenv = make_env(visibility_timeout_s=10)
    app = wenv.app()
    ledger = Ledger.for_app(app)
    assert ledger is not None
    rule = LossRule(pending_after_s=30, retry_after_s=150)
    now = time.time()
    ledger.record("lost-1", [[{"ref": "a", "op": "upsert", "version": 1, "data": {"id": "a"}}], {}], now=now - 100)
    ledger.record("young-1", [[{"ref": "b", "op": "upsert", "version": 1, "data": {"id": "b"}}], {}], now=now + 5)
    ledger.record("done-1", [[{"ref": "c", "op": "upsert", "version": 1, "data": {"id": "c"}}], {}], now=now - 100)
    app.backend.store_result("done-1", {"written": 1}, "SUCCESS")  # its worker died before forgetting it
    one, other = Sweeper(app, ledger, rule), Sweeper(app, ledger, rule)

    assert one.sweep(now) == 0, "the queue has only just been seen empty: a dead worker's message may come back"
    assert ledger.payload("done-1") is None, "a finished batch's entry is dropped"
    assert other.sweep(now + 1) == 0
    assert one.sweep(now + 31) == 1
    assert _queued_ids(redis.url, wenv.queue) == ["lost-1"], "sent again under its own task id; the young one left alone"
    assert ledger.claim_resend("lost-1", 30) is None, "claimed: no other worker sends it at the same moment"

    _client(redis.url).delete(wenv.queue)  # lost again, as before
    assert other.sweep(now + 34) == 0, "resent at +31: its clock started again (and the young one is 29 s old)"
    assert ledger.payload("lost-1") is not None


def test_a_batch_lost_more_often_than_the_limit_is_given_up_loudly(redis, make_env, caplog):  # noqa: F811
    wenv = make_env()
    app = wenv.app()
    ledger = Ledger.for_app(app)
    assert ledger is not None
    rule = LossRule(pending_after_s=10, retry_after_s=20)
    sweeper = Sweeper(app, ledger, rule, max_resends=1)
    t = time.time()
    ledger.record("cursed", [[{"ref": "x", "op": "upsert", "version": 1, "data": {"id": "x"}}], {}], now=t - 100)
    sweeper.sweep(t)
    assert sweeper.sweep(t + 11) == 1
    _client(redis.url).delete(wenv.queue, f"es-hybrid-search:ledger:{wenv.queue}:claim:cursed")
    sweeper.sweep(t + 30)  # the queue is empty again from here
    assert sweeper.sweep(t + 45) == 0
    assert ledger.size() == 0 and "lost 2 times; giving it up" in caplog.text


@pytest.mark.slow
def test_a_worker_resends_a_lost_batch_whose_producer_did_not_wait(redis, make_env, tmp_path):  # noqa: F811
    """The BRPOP moment again (see test_faults), but the producer has gone: it kept no payloads and
    never calls ``wait``. The worker's sweep finds the batch in the ledger and sends it again."""
    wenv = make_env(visibility_timeout_s=10, batch_size=10)
    updates, newest = _updates(60, seed=7)
    submitted = enqueue(updates, app=wenv.app(), batch_size=10, keep_payloads=False)
    taken = _client(redis.url).rpop(wenv.queue)  # the oldest batch, as BRPOP takes it
    assert taken is not None
    log = tmp_path / "worker.log"
    worker = Worker(wenv, log).wait_ready()
    try:
        store = open_store(wenv)
        wait_until(lambda: store.versions().keys() == newest.keys() and all(
            store.versions()[p][0] == v for p, (v, _) in newest.items()), 180, "every product at its newest version")
        ledger = Ledger.for_app(wenv.app())
        assert ledger is not None
        wait_until(lambda: ledger.size() == 0, 30, "the ledger emptied by the worker")
    finally:
        worker.stop()
    _check_newest(wenv, newest)
    assert "sending it again from the ledger" in log.read_text()
    assert all(r.state == "SUCCESS" for r in submitted.results), "the lost batch finished under its own task id"


def test_status_shows_the_queue_and_the_ledger_and_survives_a_broker_that_is_down(redis, make_env, tmp_path):  # noqa: F811
    from tests.queue_helpers import _free_port
    from tests.test_queue import run_cli

    wenv = make_env(batch_size=10)
    enqueue(_updates(25)[0][:25], app=wenv.app(), batch_size=10, keep_payloads=False)  # no worker: they wait
    shown = run_cli(wenv, "status")
    assert shown.returncode == 0, shown.stderr
    assert f"queue {wenv.queue}: 3 batches waiting; 3 batches not yet written (ledger), the oldest sent" in " ".join(shown.stdout.split())

    down = WorkerEnv(f"redis://127.0.0.1:{_free_port()}/0", tmp_path / "other.sqlite")
    shown = run_cli(down, "status")
    assert shown.returncode == 0, shown.stderr
    assert f"queue {down.queue}: broker unreachable" in " ".join(shown.stdout.split())
