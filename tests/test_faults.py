"""Faults with real Redis and real workers: kill -9 five times over a 2,000-product run, a Redis restart
mid-run, a broker that stays down, and a store locked for a while. Nothing acknowledged is lost."""

from __future__ import annotations

import random
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest

from indexer.producer import BrokerUnavailable, enqueue, wait
from tests.queue_helpers import Worker, WorkerEnv, _free_port, _redis_up, wait_until
from tests.test_queue import open_store, redis  # noqa: F401 (redis is a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _updates(n: int, seed: int = 3) -> tuple[list[dict], dict[str, tuple[int, str]]]:
    """Version 1 of n products, then version 2 of every other one, then deletes (version 3) of every
    tenth: the newest of each is what must be left."""
    rng = random.Random(seed)
    first = [{"ref": f"p{i}@1", "op": "upsert", "version": 1, "data": {"id": f"p{i}", "title": f"shirt {i} v1"}} for i in range(n)]
    second = [{"ref": f"p{i}@2", "op": "upsert", "version": 2, "data": {"id": f"p{i}", "title": f"shirt {i} v2"}} for i in range(0, n, 2)]
    third = [{"ref": f"p{i}@3", "op": "delete", "version": 3, "data": {"id": f"p{i}"}} for i in range(0, n, 10)]
    later = second + third
    rng.shuffle(later)  # newer versions arrive in any order; the versions decide
    newest = {f"p{i}": (1, f"shirt {i} v1") for i in range(n)}
    newest.update({f"p{i}": (2, f"shirt {i} v2") for i in range(0, n, 2)})
    newest.update({f"p{i}": (3, None) for i in range(0, n, 10)})
    return first + later, newest


def _check_newest(wenv: WorkerEnv, newest: dict[str, tuple[int, str | None]]) -> None:
    store = open_store(wenv)
    versions = store.versions()
    sources = store.sources(list(newest))
    assert set(versions) == set(newest), "every product once"
    for pid, (version, title) in newest.items():
        assert versions[pid] == (version, title is None), pid
        assert sources.get(pid, {}).get("title") == title, pid


def test_five_kill9s_during_a_2000_product_run(redis, tmp_path):  # noqa: F811
    wenv = WorkerEnv(redis.url, tmp_path / "store.sqlite", visibility_timeout_s=10, batch_size=25)
    updates, newest = _updates(2000)
    workers = [Worker(wenv, tmp_path / "worker-0.log").wait_ready()]
    kills = []
    try:
        submitted = enqueue(updates, app=wenv.app(), batch_size=25)  # 3,200 updates in 128 batches
        store = open_store(wenv)
        for round_ in range(5):
            before = len(store.versions())
            wait_until(lambda: len(store.versions()) > before + 100, 300, f"progress before kill {round_ + 1}")
            if round_ in (1, 3):  # the whole worker (main process and pool): Redis redelivers after the visibility timeout
                workers[-1].kill_all()
                kills.append("worker")
                workers.append(Worker(wenv, tmp_path / f"worker-{round_}.log").wait_ready())
            else:  # the pool process running a batch: the main process requeues it
                victim = wait_until(workers[-1].children, 10, "a pool process")[0]
                subprocess.run(["kill", "-9", str(victim)], check=True)
                kills.append("pool")
        totals = wait(submitted, timeout_s=600)
        # every batch reported: one that was running at a kill came back as a retry and finished
        assert totals["errors"] == 0
        wait_until(lambda: all(open_store(wenv).versions().get(p, (0,))[0] == v for p, (v, _) in newest.items()), 300, "the newest versions")
    finally:
        for w in workers:
            w.stop()
    assert kills == ["pool", "worker", "pool", "worker", "pool"]
    _check_newest(wenv, newest)


def test_a_batch_taken_off_the_queue_by_a_worker_that_died_is_sent_again(redis, tmp_path):  # noqa: F811
    """kombu's Redis transport pops a message, then records it as unacknowledged: a worker killed
    between the two loses it for good (no visibility timeout brings it back). Popping one batch
    here is exactly that moment; the producer, which still holds it, must send it again (the ledger is
    off here, so that the workers' sweep does not do it first: tests/test_ledger.py has that one)."""
    import redis as redis_client

    wenv = WorkerEnv(redis.url, tmp_path / "store.sqlite", visibility_timeout_s=10, batch_size=10,
                     extra={"HYBRID_SEARCH_QUEUE_LEDGER": "false"})
    updates, newest = _updates(60, seed=5)
    submitted = enqueue(updates, app=wenv.app(), batch_size=10)
    taken = redis_client.Redis.from_url(redis.url).rpop(wenv.queue)  # the oldest batch, as BRPOP takes it
    assert taken is not None, "the batch was on the queue"
    worker = Worker(wenv, tmp_path / "worker.log").wait_ready()
    try:
        totals = wait(submitted, timeout_s=300)
    finally:
        worker.stop()
    assert totals["resent_batches"] == 1 and totals["failed_batches"] == 0 and totals["errors"] == 0
    _check_newest(wenv, newest)


class PrivateRedis:
    """A redis-server of this test's own, persisting as docker-compose does (AOF, fsync always)."""

    def __init__(self, folder) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.skip("no redis-server binary to start a private Redis")
        self.folder, self.port = folder, _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _redis_up(self.port), 20, "the private Redis")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


def test_a_redis_restart_mid_run_loses_nothing_acknowledged(tmp_path):
    server = PrivateRedis(tmp_path).start()
    wenv = WorkerEnv(server.url, tmp_path / "store.sqlite", visibility_timeout_s=10, batch_size=10)
    updates, newest = _updates(600, seed=9)
    worker = Worker(wenv, tmp_path / "worker.log").wait_ready()
    sent: dict = {}

    def produce() -> None:  # batch by batch, slowly, so the restart falls in the middle of producing
        app = wenv.app()
        submitted = []
        for start in range(0, len(updates), 10):
            submitted.append(enqueue(updates[start : start + 10], app=app, batch_size=10))
            time.sleep(0.05)
        sent["submitted"] = submitted

    try:
        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(1.0)
        server.stop()  # mid-run: producer and worker both lose the broker
        time.sleep(2.0)
        server.start()
        producer.join(120)
        assert not producer.is_alive() and "submitted" in sent, "the producer rode out the restart (publish retries)"
        for submitted in sent["submitted"]:
            wait(submitted, timeout_s=300)
        wait_until(lambda: all(open_store(wenv).versions().get(p, (0,))[0] == v for p, (v, _) in newest.items()), 300, "every update")
    finally:
        worker.stop()
        server.stop()
    _check_newest(wenv, newest)


def test_a_broker_that_stays_down_is_a_clear_error_for_the_producer(tmp_path):
    from indexer.celery_app import make_app

    down = f"redis://user:secret@127.0.0.1:{_free_port()}/0"
    app = make_app(WorkerEnv(down, tmp_path / "s.sqlite").settings())
    items = [{"ref": f"x{i}", "data": {"id": f"x{i}", "title": "t"}} for i in range(5)]
    with pytest.raises(BrokerUnavailable) as info:
        enqueue(items, app=app, batch_size=2, retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_step": 0.1, "interval_max": 0.1})
    message = str(info.value)
    assert "is unreachable" in message and "0 items in 0 batches were queued" in message and "(first x0)" in message
    assert "secret" not in message, "credentials stay out of messages"


def test_a_locked_store_makes_batches_retry_with_backoff_then_finish(redis, tmp_path):  # noqa: F811
    wenv = WorkerEnv(redis.url, tmp_path / "store.sqlite", batch_size=10, extra={"HYBRID_SEARCH_STORE_BUSY_TIMEOUT_S": "0.5"})
    open_store(wenv).count()  # the schema exists before the lock
    worker = Worker(wenv, tmp_path / "worker.log").wait_ready()
    lock = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # another process holds the database
        updates, newest = _updates(40, seed=1)
        submitted = enqueue([u for u in updates if u["version"] == 1], app=wenv.app(), batch_size=10)
        wait_until(lambda: "Retry in" in (tmp_path / "worker.log").read_text(errors="replace"), 60, "a retry while locked")
        time.sleep(3)
        lock.execute("ROLLBACK")
        totals = wait(submitted, timeout_s=300)
        assert totals["failed_batches"] == 0 and totals["written"] == 40
    finally:
        lock.close()
        worker.stop()
    assert open_store(wenv).count() == 40
