"""The batch pipeline and the hybrid searcher, in-process (the queue is tested in test_queue.py).

Models: the packaged MiniLM (real) and a random tiny CLIP (mechanics only). Assertions
on retrieval quality use BM25 and the MiniLM text leg, never the random image space.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hybrid_core.errors import FilterError, ValidationError
from hybrid_core.images import ImageLimits
from indexer.pipeline import IndexingRuntime, process_batch
from query_builder.fusion import linear, rrf
from query_builder.query import FusionConfig, HybridQuery
from query_builder.searcher import HybridSearcher


class CountingSpace:
    """Wraps a real space and counts how many inputs each encoder saw."""

    def __init__(self, space):
        self.space = space
        self.texts = 0
        self.images = 0

    def __getattr__(self, name):
        return getattr(self.space, name)

    def embed_texts(self, texts):
        self.texts += len(texts)
        return self.space.embed_texts(texts)

    def embed_images(self, images):
        self.images += len(images)
        return self.space.embed_images(images)


@pytest.fixture
def runtime(store, layout, text_space, image_space):
    return IndexingRuntime(store, layout, CountingSpace(text_space), CountingSpace(image_space), ImageLimits())


def catalogue_items(path: Path, version: int = 1):
    return [
        {"ref": f"{path.name}:{n}", "op": "upsert", "version": version, "data": json.loads(line)}
        for n, line in enumerate(path.read_text().splitlines(), start=1)
    ]


def test_batch_indexes_good_items_and_records_bad_ones(runtime, store, sample_catalogue):
    items = catalogue_items(sample_catalogue)[:10]
    items.append({"ref": "bad:1", "op": "upsert", "version": 1, "data": '{"id": "x1", "title": '})
    items.append({"ref": "bad:2", "op": "upsert", "version": 1, "data": {"id": "x2"}})
    items.append({"ref": "bad:3", "op": "upsert", "version": 1, "data": {"id": "x3", "title": "t", "image": "images/none.png"}})
    report = process_batch(items, runtime, images_root=str(sample_catalogue.parent), task_id="t-1")
    assert (report.written, len(report.errors)) == (10, 3)
    assert store.count() == 10
    listed = {e.item: e for e in store.list_errors()}
    assert "invalid JSON" in listed["bad:1"].reason
    assert listed["bad:2 (id x2)"].reason == "missing title"
    assert "images/none.png not found" in listed["bad:3 (id x3)"].reason and listed["bad:3 (id x3)"].product_id == "x3"
    assert all(e.task_id == "t-1" for e in listed.values())
    # one model pass each: the text model runs while the photos are read, so it also encodes x3's
    # title (11); the image space encodes only what is written (10 texts, 10 photos)
    assert (runtime.text_space.texts, runtime.image_space.texts, runtime.image_space.images) == (11, 10, 10)


def test_unchanged_inputs_keep_their_vectors_without_encoding(runtime, store, sample_catalogue):
    root = str(sample_catalogue.parent)
    items = catalogue_items(sample_catalogue)[:6]
    process_batch(items, runtime, images_root=root)
    before = store.existing([i["data"]["id"] for i in items])
    counts = (runtime.text_space.texts, runtime.image_space.texts, runtime.image_space.images)

    again = catalogue_items(sample_catalogue, version=2)[:6]
    again[0]["data"]["price"] = 1.0  # not an embedding input
    report = process_batch(again, runtime, images_root=root)
    assert report.written == 6 and report.reused_vectors == 6
    assert (runtime.text_space.texts, runtime.image_space.texts, runtime.image_space.images) == counts
    after = store.existing([i["data"]["id"] for i in items])
    for pid in before:
        assert after[pid].version == 2
        for name, vec in before[pid].vectors.items():
            np.testing.assert_array_equal(vec, after[pid].vectors[name])

    changed = catalogue_items(sample_catalogue, version=3)[:1]
    changed[0]["data"]["title"] = "A completely new title"
    report = process_batch(changed, runtime, images_root=root)
    assert report.reused_vectors == 0
    # text changed: both text encoders ran once, the image was not re-encoded
    assert runtime.text_space.texts == counts[0] + 1 and runtime.image_space.texts == counts[1] + 1
    assert runtime.image_space.images == counts[2]


def test_newest_version_in_a_batch_wins_and_stale_items_are_not_encoded(runtime, store, layout):
    items = [
        {"ref": "a", "version": 3, "data": {"id": "p", "title": "third"}},
        {"ref": "b", "version": 5, "data": {"id": "p", "title": "fifth"}},
        {"ref": "c", "version": 4, "data": {"id": "p", "title": "fourth"}},
    ]
    process_batch(items, runtime)
    assert store.sources(["p"])["p"]["title"] == "fifth"
    texts = runtime.text_space.texts
    report = process_batch([{"ref": "d", "version": 4, "data": {"id": "p", "title": "late"}}], runtime)
    assert report.stale == 1 and runtime.text_space.texts == texts
    assert store.sources(["p"])["p"]["title"] == "fifth"


def test_product_vector_is_the_normalized_mean_of_text_and_image(runtime, store, image_space, sample_catalogue):
    item = catalogue_items(sample_catalogue)[0]
    process_batch([item], runtime, images_root=str(sample_catalogue.parent))
    doc = store.existing([item["data"]["id"]])[item["data"]["id"]]
    text = item["data"]["title"] + ". " + item["data"]["description"]
    expected = image_space.embed_texts([text])[0] + doc.vectors["image_vector"]
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(doc.vectors["product_vector"], expected, atol=1e-5)
    assert doc.vectors["text_vector"].shape == (384,) and doc.vectors["image_vector"].shape == (64,)


@pytest.fixture
def indexed(runtime, store, sample_catalogue):
    process_batch(catalogue_items(sample_catalogue), runtime, images_root=str(sample_catalogue.parent))
    return store


@pytest.fixture
def searcher(indexed, layout, text_space, image_space):
    return HybridSearcher(indexed, layout, text_space, image_space)


def test_text_query_runs_every_text_leg_and_explains_hits(searcher):
    query = HybridQuery(text="red kurta", size=5)
    result = searcher.search(query)
    assert list(result.legs) == ["bm25", "text", "cross", "product"]
    assert len(result.hits) == 5
    # quality only from the real (MiniLM, BM25) legs: the random CLIP legs are noise
    top = searcher.search(HybridQuery(text="green kurta", size=1, legs=("bm25", "text"))).hits[0]
    assert "Green Kurta" in top.source["title"]
    # the explanation is exactly what each leg returned
    legs = {p.name: searcher.run_leg(p, query, []) for p in searcher.plan(query, searcher.encode(query, set(result.legs)), list(result.legs))}
    for hit in result.hits:
        for name, found in hit.legs.items():
            assert legs[name][found.rank - 1] == (hit.id, pytest.approx(found.score))
        assert hit.score == pytest.approx(dict(rrf(legs, rank_window_size=100))[hit.id])


def test_image_and_text_image_queries(searcher, sample_catalogue):
    image = sample_catalogue.parent / "images" / "S001.png"
    only_image = searcher.search(HybridQuery(image=str(image), size=3))
    assert list(only_image.legs) == ["image", "product"]
    own = searcher.search(HybridQuery(image=str(image), size=1, legs=("image",))).hits[0]
    assert own.id == "S001" and own.legs["image"].score == pytest.approx(1.0, abs=1e-5)  # its own photo: cosine 1
    both = searcher.search(HybridQuery(text="red", image=image, size=3))
    assert list(both.legs) == ["bm25", "text", "cross", "image", "product"]
    # this tower has a text encoder of its own: its photo vectors are no point among the titles'
    with pytest.raises(ValidationError, match="none of the requested legs \\['caption'\\]"):
        searcher.search(HybridQuery(image=str(image), legs=("caption",)))


def test_a_photo_reads_the_titles_where_the_tower_shares_the_text_space(tower_indexed, tower_space, sample_catalogue):
    """The caption leg: the query photo's vector against the products' text vectors, scored like
    any kNN leg ((1 + cosine) / 2, Elasticsearch's cosine score); it runs for image queries and
    for image + text ones."""
    from PIL import Image

    layout, store, searcher = tower_indexed
    photo = sample_catalogue.parent / "images" / "S001.png"
    assert list(searcher.search(HybridQuery(image=photo)).legs) == ["image", "caption", "photo_words", "product"]
    assert list(searcher.search(HybridQuery(text="red", image=photo)).legs) == [
        "bm25", "text", "cross", "image", "caption", "photo_words", "product"]

    caption = searcher.search(HybridQuery(image=photo, size=20, legs=("caption",), fusion=FusionConfig(rank_window_size=20)))
    vector = tower_space.embed_images([Image.open(photo).convert("RGB")])[0]
    docs = store.existing([json.loads(line)["id"] for line in sample_catalogue.read_text().splitlines()])
    expected = sorted(((float(vector @ d.vectors["text_vector"]), i) for i, d in docs.items()), reverse=True)[:20]
    assert [h.id for h in caption.hits] == [i for _, i in expected]
    assert [h.legs["caption"].score for h in caption.hits] == pytest.approx([(1 + s) / 2 for s, _ in expected], abs=1e-5)
    plan = searcher.plan(HybridQuery(image=photo), searcher.encode(HybridQuery(image=photo), {"caption"}), ["caption"])
    assert plan[0].field == "text_vector" and np.allclose(plan[0].vector, vector, atol=1e-6)
    # on Elasticsearch the same plan is one more knn retriever, over text_vector, with the photo's vector
    from query_builder.es_requests import retrievers_body

    query = HybridQuery(image=photo, size=5)
    plans = searcher.plan(query, searcher.encode(query, {"image", "caption", "product"}), searcher.applicable_legs(query))
    knn = [r["knn"] for r in retrievers_body(query, plans, layout, [])["retriever"]["rrf"]["retrievers"] if "knn" in r]
    assert [(k["_name"], k["field"]) for k in knn] == [("image", "image_vector"), ("caption", "text_vector"), ("product", "product_vector")]
    np.testing.assert_allclose(knn[1]["query_vector"], vector, atol=1e-6)


def test_a_photo_is_searched_in_words_where_the_space_has_a_vocabulary(tower_indexed, text_space, tower_space, sample_catalogue):
    """The photo_words leg: the photo's reading, facet by facet (less the facets the query's text
    names, then that text) searched with BM25; the result says what was searched. On Elasticsearch
    it is one more BM25 retriever over those words."""
    from PIL import Image

    from hybrid_core.es_dsl import bm25_query
    from query_builder.es_requests import leg_bodies, legacy_body, retrievers_body

    layout, store, searcher = tower_indexed
    photo = sample_catalogue.parent / "images" / "S001.png"
    vector = tower_space.embed_images([Image.open(photo).convert("RGB")])[0]
    vocabulary, phrases = tower_space.photo_vocabulary()
    best = tower_space.read_photos(vector[None, :])[0]  # facet by facet: the trained reader's, else the vocabulary's zero-shot
    assert np.allclose(phrases[0], text_space.embed_texts([vocabulary.phrases[0]])[0], atol=1e-5)  # phrases in the shared space

    alone = searcher.search(HybridQuery(image=photo, size=20, legs=("photo_words",), fusion=FusionConfig(rank_window_size=20)))
    words = " ".join(v for v in best if v)
    assert alone.fusion["photo_words"] == words
    expected = store.bm25(words, boosts={}, size=20, filters=[])
    assert [h.id for h in alone.hits] == [i for i, _ in expected]
    assert [h.legs["photo_words"].score for h in alone.hits] == pytest.approx([score for _, score in expected])
    assert alone.hits, "the phrase shares words with the sample titles"

    # with words: the query's colour replaces the photo's; the text's other words are left to the query's own legs
    both = searcher.search(HybridQuery(text="show me this in red, please", image=photo, legs=("photo_words",)))
    assert both.fusion["photo_words"] == " ".join(w for w in ("Red" if f == "colour" else v for f, v in zip(vocabulary.fields, best)) if w)

    # the all-words bonus shapes this BM25 leg too: a product holding all the photo's words gets +2
    process_batch([{"ref": "all-words", "version": 1, "data": {"id": "W001", "title": f"Classic {words} for every day"}}],
                  IndexingRuntime(store, layout, text_space, tower_space, ImageLimits()))
    plain = {h.id: h.legs["photo_words"].score for h in searcher.search(
        HybridQuery(image=photo, size=20, legs=("photo_words",), fusion=FusionConfig(rank_window_size=20))).hits}
    boosted = {h.id: h.legs["photo_words"].score for h in searcher.search(
        HybridQuery(image=photo, size=20, legs=("photo_words",), fusion=FusionConfig(rank_window_size=20, all_terms_boost=2.0))).hits}
    assert boosted.keys() == plain.keys() and "W001" in plain
    bonus = {i: round(boosted[i] - plain[i], 9) for i in plain}
    assert set(bonus.values()) == {0.0, 2.0}
    # W001's title holds the words; S001's photo caption is that very reading (the photo searched is its own)
    assert {i for i, b in bonus.items() if b} >= {"W001", "S001"}

    # on Elasticsearch: a standard retriever (and an _msearch body) over the photo's words, with the bonus as for the query's words
    query = HybridQuery(text="in red", image=photo, size=5, fusion=FusionConfig(all_terms_boost=2.0))
    plans = searcher.plan(query, searcher.encode(query, {"photo_words"}), ["bm25", "photo_words"])
    standard = [r["standard"] for r in retrievers_body(query, plans, layout, [])["retriever"]["rrf"]["retrievers"]]
    assert [s["_name"] for s in standard] == ["bm25", "photo_words"]
    assert standard[1]["query"] == bm25_query(both.fusion["photo_words"], layout, {}, 2.0)
    assert standard[0]["query"] == bm25_query("in red", layout, {}, 2.0)
    assert [b["query"] for b in leg_bodies(query, plans, layout, [])] == [s["query"] for s in standard]
    legacy = legacy_body(replace(query, fusion=FusionConfig(method="linear", normalizer="none", weights={"photo_words": 0.5})),
                         plans, layout, [])
    should = legacy["query"]["bool"]["should"]  # both BM25 legs in one query, their scores added with their weights
    assert len(should) == 2 and should[1]["multi_match"]["query"] == both.fusion["photo_words"]
    assert should[1]["multi_match"]["boost"] == 0.5


def test_no_vocabulary_no_photo_words_leg(tmp_path, searcher, sample_catalogue):
    photo = sample_catalogue.parent / "images" / "S001.png"
    assert "photo_words" not in searcher.search(HybridQuery(image=photo)).legs  # the random CLIP has no vocabulary
    with pytest.raises(ValidationError, match=r"none of the requested legs \['photo_words'\]"):
        searcher.search(HybridQuery(image=photo, legs=("photo_words",)))


def test_linear_fusion_and_weights(searcher):
    query = HybridQuery(text="blue jeans", fusion=FusionConfig(method="linear", normalizer="minmax", weights={"cross": 0, "product": 0}))
    result = searcher.search(query)
    legs = {p.name: searcher.run_leg(p, query, []) for p in searcher.plan(query, searcher.encode(query, set(result.legs)), list(result.legs))}
    expected = linear(legs, weights={"bm25": 1, "text": 1, "cross": 0, "product": 0}, rank_window_size=100)[:10]
    assert [(h.id, pytest.approx(h.score)) for h in result.hits] == expected


def test_filters_and_pagination(searcher):
    result = searcher.search(HybridQuery(text="shirt", filters={"colour": ["Green"], "price": {"lte": 1000}}, size=20))
    assert result.hits and all(h.source["colour"] == "Green" for h in result.hits)
    first = searcher.search(HybridQuery(text="watch", size=4))
    second = searcher.search(HybridQuery(text="watch", size=4, offset=4))
    assert [h.rank for h in second.hits] == [5, 6, 7, 8]
    assert not {h.id for h in first.hits} & {h.id for h in second.hits}


def test_only_requested_legs_run(searcher):
    result = searcher.search(HybridQuery(text="watch", legs=("bm25",)))
    assert list(result.legs) == ["bm25"] and all(set(h.legs) == {"bm25"} for h in result.hits)


def test_invalid_queries_fail_before_any_store_call(searcher):
    with pytest.raises(ValidationError, match="needs text, an image, or both"):
        HybridQuery(text="  ")
    with pytest.raises(ValidationError, match="beyond the fusion window \\(100\\)"):
        HybridQuery(text="x", size=10, offset=95)
    with pytest.raises(ValidationError, match="unknown leg 'colour'"):
        FusionConfig(weights={"colour": 1})
    with pytest.raises(ValidationError, match="finite number >= 0"):
        FusionConfig(weights={"bm25": float("nan")})
    with pytest.raises(ValidationError, match="limit is 2000"):
        HybridQuery(text="x" * 2001)
    with pytest.raises(FilterError, match="cannot filter on 'size'"):
        searcher.search(HybridQuery(text="x", filters={"size": "M"}))
    with pytest.raises(ValidationError, match="query image: image .* not found"):
        searcher.search(HybridQuery(image="/nonexistent.png"))


def test_one_version_of_a_product_twice_in_a_batch_is_an_error_unless_it_is_the_same_update(runtime, store):
    items = [
        {"ref": "f:1", "version": 7, "data": {"id": "p", "title": "first"}},
        {"ref": "f:2", "version": 7, "data": {"id": "p", "title": "second"}},
        {"ref": "f:3", "version": 7, "data": {"id": "q", "title": "same"}},
        {"ref": "f:4", "version": 7, "data": {"id": "q", "title": "same"}},  # a redelivery: harmless
        {"ref": "f:5", "version": 1, "data": {"id": "r", "title": "ok"}},
    ]
    report = process_batch(items, runtime)
    assert report.written == 3 and len(report.errors) == 1 and report.errors[0].item.startswith("f:2")
    assert "product p version 7 is also in f:1" in report.errors[0].reason
    assert store.sources(["p"])["p"]["title"] == "first"
