"""What search-time synonyms cost the embedded BM25 leg: the same queries with and without them.

Runs the text of every dev query (as written, and reworded by ``evaluation/reword.py``, where the
rules match more often) through ``EmbeddedStore.bm25`` on an index ``hybrid-search eval`` built,
once with the packaged rules and once with none, interleaved per query in one process. The BM25
leg is the only part synonyms touch, so its difference is what a whole search pays. With
``--all-terms-boost B`` a third variant times the packaged rules plus that bonus for products
holding every query word (``FusionConfig.all_terms_boost``), which also touches only this leg.

    python benchmarks/synonyms.py --index /tmp/es-hybrid-search-eval/test-full-<tag>.sqlite \\
        --queries ../shared/eval/dev_queries.jsonl
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np


@click.command()
@click.option("--index", type=click.Path(exists=True, dir_okay=False), required=True, help="An eval index (SQLite).")
@click.option("--queries", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--all-terms-boost", type=float, default=0.0, show_default=True,
              help="Also time the packaged rules with this all-words bonus (0: skip).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Also write the figures as JSON.")
def main(index, queries, repeats, all_terms_boost, out_file) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from evaluation.reword import reword
    from hybrid_core.config import Settings
    from hybrid_core.stores.embedded import EmbeddedStore
    from hybrid_core.synonyms import load

    layout = Settings.from_env().layout()
    stores = {
        "packaged": EmbeddedStore(Path(index), replace(layout, synonyms=load("packaged"))),
        "none": EmbeddedStore(Path(index), replace(layout, synonyms=())),
    }
    rows = [json.loads(line) for line in Path(queries).read_text().splitlines() if line.strip()]
    texts = [q["text"] for q in rows if q.get("text")]
    texts += [reword(str(q["id"]), q["text"]) for q in rows if q.get("text")]
    boosts = {t.name: t.boost for t in layout.text_fields}
    for store in stores.values():  # load postings before timing
        store.bm25("warm up", boosts=boosts, filters=[], size=100)
    variants = {name: (store, 0.0) for name, store in stores.items()}
    if all_terms_boost:
        variants[f"packaged, all words +{all_terms_boost:g}"] = (stores["packaged"], all_terms_boost)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for text in texts:
            for name, (store, bonus) in variants.items():
                started = time.perf_counter()
                store.bm25(text, boosts=boosts, filters=[], size=100, all_terms_boost=bonus)
                times[name].append((time.perf_counter() - started) * 1000)
    figures = {
        name: {"p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95)), "searches": len(t)}
        for name, t in times.items()
    }
    figures["ratio_p50"] = figures["packaged"]["p50_ms"] / figures["none"]["p50_ms"]
    bonus_name = f"packaged, all words +{all_terms_boost:g}"
    if all_terms_boost:
        figures["all_terms_ratio_p50"] = figures[bonus_name]["p50_ms"] / figures["packaged"]["p50_ms"]
    rows_count = stores["none"].count()
    click.echo(f"BM25 leg, top 100, {len(texts)} query texts x {repeats}, {rows_count:,} products:")
    for name in variants:
        click.echo(f"  synonyms {name:8s}: p50 {figures[name]['p50_ms']:.2f} ms, p95 {figures[name]['p95_ms']:.2f} ms")
    click.echo(f"  ratio (packaged / none), p50: {figures['ratio_p50']:.2f}")
    if all_terms_boost:
        click.echo(f"  ratio ({bonus_name} / packaged), p50: {figures['all_terms_ratio_p50']:.2f}")
    if out_file:
        Path(out_file).write_text(json.dumps(figures, indent=2))
    for store in stores.values():
        store.close()


if __name__ == "__main__":
    main()
