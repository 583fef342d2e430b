"""Integration: real Redis, real Celery workers (subprocesses), the embedded store on disk."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time

import pytest

from hybrid_core.stores.embedded import EmbeddedStore
from indexer.producer import catalogue_items, enqueue, enqueue_deletes, enqueue_upserts, wait
from tests.queue_helpers import REPO, Worker, WorkerEnv, redis_server, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis():
    server = redis_server()
    yield server
    server.stop()


def big_catalogue(sample_catalogue, path, copies: int):
    """The sample catalogue repeated under new ids (same photos), for runs long enough to interrupt."""
    lines = [json.loads(line) for line in sample_catalogue.read_text().splitlines()]
    with path.open("w") as out:
        for copy in range(copies):
            for product in lines:
                out.write(json.dumps(product | {"id": f"{product['id']}-{copy}", "title": f"{product['title']} {copy}"}) + "\n")
    return path


def open_store(wenv: WorkerEnv) -> EmbeddedStore:
    settings = wenv.settings()
    return EmbeddedStore(settings.store_path, settings.layout())


def run_cli(wenv: WorkerEnv, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hybrid_cli", *args], cwd=REPO, env=wenv.env(), capture_output=True, text=True, timeout=timeout
    )


def test_cli_indexes_through_the_queue_then_searches(redis, tmp_path, sample_catalogue):
    wenv = WorkerEnv(redis.url, tmp_path / "store.sqlite")
    catalogue = tmp_path / "catalogue.jsonl"
    catalogue.write_text(
        sample_catalogue.read_text()
        + "{not json\n"
        + json.dumps({"id": "no-title", "image": "images/S001.png"})
        + "\n"
        + json.dumps({"id": "bad-image", "title": "x", "image": "images/missing.png"})
        + "\n"
    )
    shutil.copytree(sample_catalogue.parent / "images", tmp_path / "images")
    worker = Worker(wenv, tmp_path / "worker.log").wait_ready()
    try:
        done = run_cli(wenv, "index", str(catalogue))
        assert done.returncode == 0, done.stderr
        assert "51 items" in done.stderr and "48 written" in done.stderr and "3 bad items" in done.stderr

        found = run_cli(wenv, "search", "green kurta", "--legs", "bm25,text", "--size", "3", "--json")
        assert found.returncode == 0, found.stderr
        result = json.loads(found.stdout)
        top = result["hits"][0]
        assert "Green Kurta" in top["source"]["title"]
        assert set(top["legs"]) == {"bm25", "text"} and top["legs"]["text"]["rank"] >= 1

        table = run_cli(wenv, "search", "watch", "--filter", "colour=Black", "--size", "3")
        assert table.returncode == 0 and "Watch" in table.stdout and "bm25" in table.stdout

        errors = json.loads(run_cli(wenv, "errors", "--json").stdout)
        reasons = {e["item"]: e["reason"] for e in errors}
        assert reasons["catalogue.jsonl:49"].startswith("invalid JSON")
        assert reasons["catalogue.jsonl:50 (id no-title)"] == "missing title"
        assert "images/missing.png not found" in reasons["catalogue.jsonl:51 (id bad-image)"]

        bad = run_cli(wenv, "search", "x", "--weights", "bm25=-1")
        assert bad.returncode == 2 and "weight of bm25 must be a finite number >= 0" in bad.stderr
    finally:
        worker.stop()
    assert worker.process.returncode is not None


def test_replayed_shuffled_duplicated_updates_keep_only_the_newest(redis, tmp_path):
    wenv = WorkerEnv(redis.url, tmp_path / "store.sqlite")
    rng = random.Random(5)
    updates, newest = [], {}
    for n in range(40):
        pid = f"p{n}"
        for version in rng.sample(range(1, 50), 5):
            if rng.random() < 0.2:
                updates.append({"ref": f"{pid}@{version}", "op": "delete", "version": version, "data": {"id": pid}})
                outcome = None
            else:
                updates.append({"ref": f"{pid}@{version}", "op": "upsert", "data": {"id": pid, "title": f"title v{version}", "version": version}})
                outcome = f"title v{version}"
            if version > newest.get(pid, (0, None))[0]:
                newest[pid] = (version, outcome)
    replay = updates + rng.sample(updates, 60)  # duplicates
    rng.shuffle(replay)
    workers = [Worker(wenv, tmp_path / "worker.log", concurrency=2)]
    try:
        workers[0].wait_ready()
        app = wenv.app()
        totals = wait(enqueue([dict(u) for u in replay], app=app, batch_size=7), timeout_s=300)
        assert totals["failed_batches"] == 0 and totals["errors"] == 0
    finally:
        for w in workers:
            w.stop()
    store = open_store(wenv)
    versions = store.versions()
    sources = store.sources(list(newest))
    for pid, (version, title) in newest.items():
        assert versions[pid] == (version, title is None), pid
        assert sources.get(pid, {}).get("title") == title, pid


def test_python_producer_upserts_and_deletes(redis, tmp_path):
    wenv = WorkerEnv(redis.url, tmp_path / "store.sqlite")
    worker = Worker(wenv, tmp_path / "worker.log").wait_ready()
    try:
        app = wenv.app()
        wait(enqueue_upserts([{"id": f"q{i}", "title": f"blue shirt {i}"} for i in range(5)], app=app), timeout_s=120)
        wait(enqueue_deletes(["q0", "q1"], app=app), timeout_s=120)
    finally:
        worker.stop()
    store = open_store(wenv)
    assert store.count() == 3 and set(store.sources(["q0", "q1", "q2"])) == {"q2"}


def test_killing_the_pool_process_mid_batch_loses_nothing(redis, tmp_path, sample_catalogue):
    wenv = WorkerEnv(redis.url, tmp_path / "store.sqlite", batch_size=16)
    catalogue = big_catalogue(sample_catalogue, tmp_path / "big.jsonl", copies=6)  # 288 products, 18 batches
    shutil.copytree(sample_catalogue.parent / "images", tmp_path / "images")
    worker = Worker(wenv, tmp_path / "worker.log").wait_ready()
    try:
        app = wenv.app()
        submitted = enqueue(catalogue_items(catalogue), app=app, batch_size=16, options={"images_root": str(tmp_path)})
        store = open_store(wenv)
        wait_until(lambda: store.count() > 0, 120, "the first batch")
        victim = wait_until(worker.children, 10, "a pool process")[0]
        subprocess.run(["kill", "-9", str(victim)], check=True)
        wait_until(lambda: store.count() == 288, 300, "all 288 products after the kill")
        wait(submitted, timeout_s=120)
        assert worker.process.poll() is None, "the worker itself kept running"
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert "WorkerLostError" in log or "SIGKILL" in log, "the kill hit a running batch"
    versions = open_store(wenv).versions()
    assert len(versions) == 288 and not any(deleted for _, deleted in versions.values())


def test_killing_the_whole_worker_loses_nothing(redis, tmp_path, sample_catalogue):
    # a short visibility timeout so Redis hands the unacknowledged batch to the next worker quickly
    wenv = WorkerEnv(redis.url, tmp_path / "store.sqlite", visibility_timeout_s=10, batch_size=16)
    catalogue = big_catalogue(sample_catalogue, tmp_path / "big.jsonl", copies=4)  # 192 products, 12 batches
    shutil.copytree(sample_catalogue.parent / "images", tmp_path / "images")
    first = Worker(wenv, tmp_path / "worker1.log").wait_ready()
    second = None
    try:
        app = wenv.app()
        enqueue(catalogue_items(catalogue), app=app, batch_size=16, options={"images_root": str(tmp_path)})
        store = open_store(wenv)
        wait_until(lambda: store.count() > 0, 120, "the first batch")
        first.kill_all()
        stopped_at = store.count()
        assert stopped_at < 192, "the kill came too late to interrupt anything"
        time.sleep(1)
        second = Worker(wenv, tmp_path / "worker2.log").wait_ready()
        wait_until(lambda: store.count() == 192, 300, "all 192 products after restarting the worker")
    finally:
        first.stop()
        if second:
            second.stop()
