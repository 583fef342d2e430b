"""The evaluation harness: metrics through ranx on closed-form cases, strategies per query kind."""

from __future__ import annotations

import json

import numpy as np
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
    assert set(table["text"]) == {"BM25", "BM25, all words +2", "text kNN", "cross-modal kNN", "product vector", "hybrid RRF", "hybrid linear"}
    # no "caption kNN": the random tiny CLIP has a text encoder of its own, so the leg does not apply
    assert set(table["image"]) == {"image kNN", "product vector", "hybrid RRF", "hybrid linear"}
    assert table["text"]["BM25"]["MRR fine"] == 1.0  # "Acme Women Green Kurta" first
    assert len(STRATEGIES) == 13  # two of them, "BM25 + photo captions" (+2), only where the layout has captions


def test_cosine_spread_measures_random_and_same_title_pairs():
    from evaluation.harness import cosine_spread

    rng = np.random.default_rng(1)
    images = rng.normal(size=(400, 64))
    images[1] = images[0] + 0.01 * rng.normal(size=64)  # the same photo listed twice, under one title
    images[3] = -images[2]  # one title, opposite photos
    titles = ["twin", "twin", "odd", "odd"] + [f"p{i}" for i in range(396)]
    spread = cosine_spread(images, titles, pairs=20_000)
    # random 64-d directions: cosines about N(0, 1/64), so the 99.9th percentile is near 3.1 / 8
    assert 0.25 < spread["random_p99.9"] < 0.5
    assert spread["same_title_pairs"] == 2
    assert spread["same_title_median"] == pytest.approx((1.0 - 1.0) / 2, abs=1e-3)  # median of about 1 and -1
    assert cosine_spread(images[4:], titles[4:], pairs=100)["same_title_median"] is None


def test_own_photo_recall_counts_titles_whose_photo_is_in_the_first_k(text_space):
    from evaluation.harness import own_photo_recall

    products = [{"title": t} for t in ("green kurta", "black watch", "red saree")]
    titles = text_space.embed_texts([p["title"] for p in products])
    images = titles[[0, 2, 1]]  # the first product's photo is its title's vector; the other two are swapped
    assert own_photo_recall(text_space, products, images, k=1) == pytest.approx(1 / 3)
    assert own_photo_recall(text_space, products, images, k=3) == 1.0


def test_the_attribute_oracle_ties_each_photo_with_its_type_colour_and_gender_group():
    from evaluation.harness import attribute_oracle_recall

    kurta = {"article_type": "Kurtas", "colour": "Red", "gender": "Women"}
    watch = {"article_type": "Watches", "colour": "Black", "gender": "Men"}
    products = [kurta] * 20 + [watch] * 5
    # each kurta's photo ties with 19 others: in the first 10 half the time; each watch's always
    assert attribute_oracle_recall(products, k=10) == pytest.approx((20 * 0.5 + 5 * 1.0) / 25)
    assert attribute_oracle_recall(products, k=20) == 1.0
    assert attribute_oracle_recall(products, ("gender",), k=10) == pytest.approx((20 * 0.5 + 5 * 1.0) / 25)


def test_own_photo_misses_say_how_the_first_photo_differs(text_space):
    from evaluation.harness import own_photo_misses, own_photo_ranks

    products = [
        {"title": "green kurta", "article_type": "Kurtas", "colour": "Green", "gender": "Women"},
        {"title": "black watch", "article_type": "Watches", "colour": "Black", "gender": "Men"},
        {"title": "red saree", "article_type": "Sarees", "colour": "Red", "gender": "Women"},
        {"title": "blue kurta", "article_type": "Kurtas", "colour": "Blue", "gender": "Women"},
    ]
    titles = text_space.embed_texts([p["title"] for p in products])
    images = titles[[3, 1, 2, 0]]  # the two kurtas' photos are swapped
    ranks, first = own_photo_ranks(text_space, products, images)
    assert ranks.tolist()[1:3] == [0, 0] and ranks[0] > 0 and ranks[3] > 0
    assert first[0] == 3 and first[3] == 0  # each kurta's title finds the other kurta's photo first
    misses = own_photo_misses(products, ranks, first, k=1)
    assert misses == {"misses": 2, "first_hit_differs_in": {"article_type": 0, "colour": 2, "gender": 0, "none": 0}}


def test_the_tuner_s_ndcg_is_ranx_s():
    """``GradedNdcg`` (what ``tune`` scores its fusions with) gives ranx's NDCG@10 for every query:
    graded gains, ungraded and grade-0 documents, short, empty and missing runs, no relevant document."""
    import random

    from evaluation.metrics import GradedNdcg, per_query

    rng = random.Random(5)
    docs = [f"d{i}" for i in range(60)]
    qrels = {f"q{n}": {d: rng.choice([0, 1, 1, 2]) for d in rng.sample(docs, rng.randint(1, 30))} for n in range(200)}
    qrels["none relevant"] = {"d1": 0}
    runs = {q: rng.sample(docs, rng.choice([0, 1, 3, 10, 25])) for q in qrels if q != "q7"}  # q7: no run at all
    expected = per_query(qrels, {q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in runs.items()}, "NDCG@10")
    ndcg = GradedNdcg(qrels)
    assert {q: ndcg.score(q, runs.get(q, [])) for q in qrels} == pytest.approx(expected, abs=1e-12)
    assert expected["q7"] == 0.0 and any(0 < v < 1 for v in expected.values())
