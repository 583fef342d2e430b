"""A slice of the real Myntra test split through the pipeline: BM25 and the MiniLM text leg find
the right article types. Skips where ../shared is absent (a user's fresh machine)."""

from __future__ import annotations

import json

import pytest

from hybrid_core.images import ImageLimits
from indexer.pipeline import IndexingRuntime, process_batch
from query_builder.query import HybridQuery
from query_builder.searcher import HybridSearcher


@pytest.fixture(scope="module")
def myntra_store(myntra, tmp_path_factory, layout, text_space, image_space):
    from hybrid_core.stores.embedded import EmbeddedStore

    store = EmbeddedStore(tmp_path_factory.mktemp("myntra") / "store.sqlite", layout)
    runtime = IndexingRuntime(store, layout, text_space, image_space, ImageLimits())
    with (myntra / "catalogue.jsonl").open() as lines:
        products = [p for p in map(json.loads, lines) if p["split"] == "test"]
    products = products[:600]
    for start in range(0, len(products), 128):
        batch = products[start : start + 128]
        items = [{"ref": f"myntra:{p['id']}", "version": 1, "data": p} for p in batch]
        report = process_batch(items, runtime, images_root=str(myntra))
        assert not report.errors, report.errors[:3]
    return store, {p["id"]: p for p in products}


def test_real_products_index_and_text_legs_find_the_article_type(myntra_store, layout, text_space, image_space):
    store, products = myntra_store
    assert store.count() == 600
    searcher = HybridSearcher(store, layout, text_space, image_space)
    for text, article_type in [("women handbag", "Handbags"), ("men watch", "Watches"), ("sports shoes for men", "Sports Shoes")]:
        if sum(p["article_type"] == article_type for p in products.values()) < 5:
            continue
        hits = searcher.search(HybridQuery(text=text, size=5, legs=("bm25", "text"))).hits
        found = [products[h.id]["article_type"] for h in hits]
        assert found.count(article_type) >= 3, (text, found)
        assert all(h.legs for h in hits)
