"""Searches under load while a worker indexes: no errors allowed, latency reported.

    .venv/bin/python benchmarks/load.py --catalogue ../shared/data/myntra/catalogue.jsonl \
        --queries ../shared/eval/dev_queries.jsonl --clients 20 --seconds 60

A ``hybrid-search worker`` subprocess indexes the test split into a fresh embedded
store through the queue; once the first products are in, ``--clients`` threads of
this process share one ``HybridSearcher`` on the same store (as a web service would)
and search for ``--seconds``: the dev queries of every kind (text, image, image +
text), with query encoding, every applicable leg and RRF. Every exception is counted
and listed; latency percentiles are over all searches; the indexing progress during
the window shows the writer was busy.
"""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import click
import numpy as np
from machine import describe as describe_machine  # benchmarks/machine.py, beside this script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@click.command()
@click.option("--catalogue", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--queries", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--clients", type=int, default=20, show_default=True)
@click.option("--seconds", type=float, default=60.0, show_default=True)
@click.option("--broker", default="redis://127.0.0.1:6379/0", show_default=True)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default="benchmarks/results/load.json", show_default=True)
def main(catalogue, queries, clients, seconds, broker, out_file) -> None:
    from hybrid_core.config import Settings
    from indexer.celery_app import make_app
    from indexer.producer import catalogue_items, enqueue, wait
    from query_builder.query import HybridQuery
    from query_builder.searcher import HybridSearcher

    catalogue_path = Path(catalogue).resolve()
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    env = dict(os.environ)
    env.update({"HYBRID_SEARCH_BROKER_URL": broker, "HYBRID_SEARCH_STORE_PATH": str(work / "store.sqlite"),
                "HYBRID_SEARCH_QUEUE": f"load-{uuid.uuid4().hex[:8]}", "HYBRID_SEARCH_BATCH_SIZE": "64", "HF_HUB_OFFLINE": "1"})
    settings = Settings.from_env(env)
    worker = subprocess.Popen([sys.executable, "-m", "hybrid_cli", "worker", "--loglevel", "warning", "--concurrency", "1",
                               "--hostname", f"load-{uuid.uuid4().hex[:6]}@%h"],
                              cwd=REPO, env=env, stdout=(work / "worker.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    store = settings.open_store()
    text_space, image_space = settings.embedding_spaces()
    searcher = HybridSearcher(store, settings.layout(), text_space.load(), image_space.load() if image_space else None)
    with Path(queries).open() as lines:
        query_list = [json.loads(line) for line in lines if line.strip()]
    submitted = enqueue(catalogue_items(catalogue_path, {"split": "test"}), app=make_app(settings), batch_size=64,
                        options={"images_root": str(catalogue_path.parent)})
    while store.count() < min(1000, submitted.items):
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited: {(work / 'worker.log').read_text()[-2000:]}")
        time.sleep(0.5)

    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    count_before = store.count()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop_at:
            q = rng.choice(query_list)
            image = catalogue_path.parent / q["image"] if q.get("image") else None
            started = time.perf_counter()
            try:
                searcher.search(HybridQuery(text=q.get("text"), image=image, size=10))
            except Exception as exc:  # every failure is a finding: count it by type and message
                with lock:
                    errors[f"{type(exc).__name__}: {str(exc)[:200]}"] += 1
                continue
            with lock:
                latencies.append(1000 * (time.perf_counter() - started))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    count_after = store.count()
    worker_alive = worker.poll() is None
    try:
        wait(submitted, timeout_s=1800)
    finally:
        worker.terminate()
        worker.wait(30)
    values = np.asarray(latencies)
    result = {
        "command": "python benchmarks/load.py " + " ".join(sys.argv[1:]),
        "machine": describe_machine(),
        "clients": clients, "seconds": seconds, "searches": int(values.size), "errors": dict(errors),
        "searches_per_s": values.size / seconds,
        "latency_ms": {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)), "p99": float(np.percentile(values, 99))} if values.size else {},
        "indexed_during_window": count_after - count_before, "worker_alive_after": worker_alive, "final_count": store.count(),
    }
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    Path(out_file).write_text(json.dumps(result, indent=2) + "\n")
    click.echo(json.dumps(result, indent=2))
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
