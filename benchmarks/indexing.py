"""Indexing throughput: the real queue and a real worker against the bare models, in one run.

    .venv/bin/python benchmarks/indexing.py --catalogue ../shared/data/myntra/catalogue.jsonl

1. A ``hybrid-search worker`` subprocess (one pool process, the configured models) on a
   private queue and a fresh embedded store; a warm-up batch of train products loads
   the models; then the test split (8,785 products) is enqueued through the producer
   and timed until every batch is acknowledged. The worker's process tree is sampled
   for its peak RSS.
2. In this process, afterwards (never both at once on 2 cores): the same encoders over
   the same products with no queue and no store: photos read and decoded, the text
   model over the same texts, the image tower over the photos, in batches of the
   worker's size. Where the image space shares the text model (the catalogue tower)
   the bare run also encodes each text once, as the worker does.

Prints products/s for both, their ratio, and the worker's peak RSS; writes JSON.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click
import psutil
from machine import describe as describe_machine  # benchmarks/machine.py, beside this script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class RssSampler(threading.Thread):
    """Peak resident memory of a process and its children, sampled every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_tree = 0
        self.peak_single = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
                sizes = []
                for p in processes:
                    try:
                        sizes.append(p.memory_info().rss)
                    except psutil.Error:
                        pass
                self.peak_tree = max(self.peak_tree, sum(sizes))
                self.peak_single = max(self.peak_single, max(sizes, default=0))
            except psutil.Error:
                return
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def read_products(catalogue: Path, split: str) -> list[dict[str, Any]]:
    with catalogue.open() as lines:
        return [p for p in map(json.loads, lines) if p.get("split") == split]


def queue_run(catalogue: Path, products: list[dict[str, Any]], warmup: list[dict[str, Any]], workdir: Path, batch_size: int, broker: str) -> dict[str, Any]:
    from hybrid_core.config import Settings
    from indexer.celery_app import make_app
    from indexer.producer import enqueue, wait

    env = dict(os.environ)
    env.update({
        "HYBRID_SEARCH_BROKER_URL": broker,
        "HYBRID_SEARCH_STORE_PATH": str(workdir / "store.sqlite"),
        "HYBRID_SEARCH_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
        "HYBRID_SEARCH_BATCH_SIZE": str(batch_size),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    })
    settings = Settings.from_env(env)
    app = make_app(settings)
    log = workdir / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "hybrid_cli", "worker", "--loglevel", "warning", "--concurrency", "1", "--hostname", f"bench-{uuid.uuid4().hex[:6]}@%h"],
        cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    sampler = RssSampler(worker.pid)
    sampler.start()
    root = str(catalogue.parent)

    def items(batch):
        return ({"ref": f"{catalogue.name}:{p['id']}", "op": "upsert", "data": dict(p)} for p in batch)

    options = {"images_root": root}
    try:
        wait(enqueue(items(warmup), app=app, batch_size=batch_size, options=options), timeout_s=600)
        started = time.perf_counter()
        submitted = enqueue(items(products), app=app, batch_size=batch_size, options=options)
        counts = wait(submitted, timeout_s=3600)
        seconds = time.perf_counter() - started
    finally:
        sampler.stop()
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    return {"seconds": seconds, "products_per_s": len(products) / seconds, "counts": counts,
            "worker_peak_rss_mb": sampler.peak_tree / 2**20, "worker_peak_rss_largest_process_mb": sampler.peak_single / 2**20}


def bare_run(catalogue: Path, products: list[dict[str, Any]], warmup: list[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    from PIL import Image

    from hybrid_core.config import Settings
    from hybrid_core.spaces import shares_text_tower

    settings = Settings.from_env()
    text_space, image_space = settings.embedding_spaces()
    text_space.load()
    if image_space is not None:
        image_space.load()
    shared = shares_text_tower(image_space, text_space)

    def encode(batch):
        texts = [p["title"] for p in batch]
        photos = []
        for p in batch:
            with Image.open(catalogue.parent / p["image"]) as img:
                photos.append(img.convert("RGB"))
        text_space.embed_texts(texts)
        if image_space is not None:
            image_space.embed_images(photos)
            if not shared:
                image_space.embed_texts(texts)

    encode(warmup)
    started = time.perf_counter()
    for start in range(0, len(products), batch_size):
        encode(products[start : start + batch_size])
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "products_per_s": len(products) / seconds, "text_encoded_once": shared,
            "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


@click.command()
@click.option("--catalogue", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--split", default="test", show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True, help="Products per queue batch (and per bare pass).")
@click.option("--broker", default="redis://127.0.0.1:6379/0", show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default=None, help="Store and worker log (default: a new temp folder).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default="benchmarks/results/indexing.json", show_default=True)
def main(catalogue, split, batch_size, broker, workdir, out_file) -> None:
    import tempfile

    catalogue_path = Path(catalogue).resolve()
    products = read_products(catalogue_path, split)
    warmup = read_products(catalogue_path, "train")[:batch_size]
    work = Path(workdir or tempfile.mkdtemp(prefix="bench-indexing-"))
    work.mkdir(parents=True, exist_ok=True)
    for p in products:  # the page cache holds the photos for both runs alike
        (catalogue_path.parent / p["image"]).read_bytes()
    click.echo(f"queue + worker: {len(products)} products ({split}), batches of {batch_size} ...", err=True)
    queued = queue_run(catalogue_path, products, warmup, work, batch_size, broker)
    click.echo("bare models, same products, this process ...", err=True)
    bare = bare_run(catalogue_path, products, warmup, batch_size)
    result = {
        "command": "python benchmarks/indexing.py " + " ".join(sys.argv[1:]),
        "machine": describe_machine(),
        "products": len(products),
        "queue_worker": queued,
        "bare_model": bare,
        "ratio_queue_to_bare": queued["products_per_s"] / bare["products_per_s"],
    }
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    Path(out_file).write_text(json.dumps(result, indent=2) + "\n")
    click.echo(
        f"queue + worker: {queued['products_per_s']:.1f} products/s ({queued['seconds']:.1f} s, {queued['counts']})\n"
        f"bare models:    {bare['products_per_s']:.1f} products/s ({bare['seconds']:.1f} s)\n"
        f"ratio:          {result['ratio_queue_to_bare']:.3f}\n"
        f"worker peak RSS: {queued['worker_peak_rss_mb']:.0f} MB (process tree), largest process {queued['worker_peak_rss_largest_process_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
