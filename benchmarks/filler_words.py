"""A quality probe, not a timing: the dev text queries put in requests ("show me {query}", ...), searched
with BM25 (all words +2) and with a fusion profile, each with and without the word check
(query_builder/word_check.py), NDCG@10 per wording.

Every text query gets every wording (``eval --reworded`` gives each query one rewording of one kind);
the wordings are requests around the query's words, none of which names a product.

    python benchmarks/filler_words.py --index /tmp/es-hybrid-search-eval/test-full-<tag>.sqlite \\
        --queries ../shared/eval/dev_queries.jsonl --profile evaluation/profiles/fusion-profile-full.json
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import click

WORDINGS = ("{q}", "show me {q}", "i am looking for {q} please", "need a {q}", "{q} online")


@click.command()
@click.option("--index", type=click.Path(exists=True, dir_okay=False), required=True, help="An eval index (SQLite).")
@click.option("--queries", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--profile", type=click.Path(exists=True, dir_okay=False), required=True, help="A fusion profile (as `hybrid-search tune` writes).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Also write the figures as JSON.")
def main(index, queries, profile, out_file) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from evaluation.metrics import evaluate
    from hybrid_core.config import Settings
    from hybrid_core.stores.embedded import EmbeddedStore
    from query_builder.profile import FusionProfile
    from query_builder.query import FusionConfig, HybridQuery
    from query_builder.searcher import HybridSearcher

    settings = Settings.from_env()
    layout = settings.layout()
    text_space, image_space = settings.embedding_spaces()
    searcher = HybridSearcher(EmbeddedStore(Path(index), layout), layout, text_space, image_space, vector_synonyms=settings.vector_synonyms)
    tuned = FusionProfile.load(profile)
    listed = [json.loads(line) for line in Path(queries).read_text().splitlines() if line.strip()]
    text_only = [q for q in listed if q.get("text") and not q.get("image")]
    qrels = {q["id"]: {d: int(g) for d, g in q["relevance"].items()} for q in text_only}
    strategies = {
        "BM25 +2": lambda text: HybridQuery(text=text, legs=("bm25",), size=100, fusion=FusionConfig(all_terms_boost=2.0)),
        "tuned": lambda text: tuned.apply(HybridQuery(text=text, size=100)),
    }
    figures: dict[str, dict[str, float]] = {}
    for wording in WORDINGS:
        row = {}
        for name, make in strategies.items():
            for checked in (False, True):
                run = {}
                for q in text_only:
                    query = make(wording.format(q=q["text"]))
                    result = searcher.search(query if checked else replace(query, word_check=None))
                    run[q["id"]] = {h.id: float(len(result.hits) - i) for i, h in enumerate(result.hits)}
                row[f"{name}{', word check' if checked else ''}"] = evaluate(qrels, run)["NDCG@10"]
        figures[wording] = row
        click.echo(f"{wording!r:32} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), nl=True)
    if out_file:
        result = {"command": "python benchmarks/filler_words.py " + " ".join(sys.argv[1:]), "queries": len(text_only), "ndcg@10": figures}
        Path(out_file).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
