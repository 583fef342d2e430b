"""The evaluation harness: metrics through ranx on closed-form cases, strategies per query kind."""

from __future__ import annotations

import json

import pytest

from evaluation.harness import STRATEGIES, query_kind, run_strategies
from evaluation.metrics import evaluate
from hybrid_core.images import ImageLimits
from indexer.pipeline import IndexingRuntime, process_batch
from query_builder.searcher import HybridSearcher


def test_metrics_broad_fine_and_missing_queries():
    qrels = {"q1": {"a": 2, "b": 1, "c": 1}, "q2": {"x": 2}}
    run = {"q1": {"a": 3.0, "b": 2.0, "z": 1.0}}  # q2 returned nothing
    scores = evaluate(qrels, run)
    assert scores["P@10"] == pytest.approx((2 / 10 + 0) / 2)
    assert scores["P@10 fine"] == pytest.approx((1 / 10 + 0) / 2)
    assert scores["MRR fine"] == pytest.approx((1.0 + 0) / 2)
    assert scores["R@100 fine"] == pytest.approx((1.0 + 0) / 2)
    assert run == {"q1": {"a": 3.0, "b": 2.0, "z": 1.0}}  # not mutated


def test_query_kinds():
    assert [query_kind(q) for q in ({"text": "x"}, {"image": "i.jpg"}, {"text": "in red", "image": "i.jpg"})] == [
        "text",
        "image",
        "text+image",
    ]


def test_strategies_run_per_kind_on_an_indexed_catalogue(store, layout, text_space, image_space, sample_catalogue):
    items = [{"ref": "s", "version": 1, "data": json.loads(line)} for line in sample_catalogue.read_text().splitlines()]
    process_batch(items, IndexingRuntime(store, layout, text_space, image_space, ImageLimits()), images_root=str(sample_catalogue.parent))
    kurtas = {p["data"]["id"]: (2 if p["data"]["colour"] == "Green" else 1) for p in items if p["data"]["article_type"] == "Kurtas"}
    queries = [
        {"id": "t1", "text": "green kurta", "relevance": kurtas},
        {"id": "i1", "image": "images/S011.png", "relevance": kurtas},
    ]
    table = run_strategies(HybridSearcher(store, layout, text_space, image_space), queries, sample_catalogue.parent)
    assert set(table["text"]) == {"BM25", "text kNN", "cross-modal kNN", "product vector", "hybrid RRF", "hybrid linear"}
    assert set(table["image"]) == {"image kNN", "product vector", "hybrid RRF", "hybrid linear"}
    assert table["text"]["BM25"]["MRR fine"] == 1.0  # "Acme Women Green Kurta" first
    assert len(STRATEGIES) == 7
