"""Against a real cluster: runs when ES_URL is set (e.g. http://127.0.0.1:9200 from docker compose),
skips with the reason otherwise. Each test uses its own alias and deletes it afterwards."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest

from indexer.producer import catalogue_items, enqueue, wait
from query_builder.es_searcher import ElasticsearchHybridSearcher
from query_builder.query import FusionConfig, HybridQuery
from tests.queue_helpers import Worker, WorkerEnv, redis_server

ES_URL = os.environ.get("ES_URL")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ES_URL, reason="ES_URL is not set: no Elasticsearch cluster to test against"),
]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, sample_catalogue):
    redis = redis_server()
    alias = f"hs-test-{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("es")
    extra = {"HYBRID_SEARCH_STORE": "elasticsearch", "HYBRID_SEARCH_ES_URL": ES_URL, "HYBRID_SEARCH_ES_ALIAS": alias,
             "HYBRID_SEARCH_ES_REFRESH": "wait_for"}
    wenv = WorkerEnv(redis.url, tmp / "unused.sqlite", extra=extra)
    settings = wenv.settings()
    store = settings.open_store()
    store.ensure_index()
    worker = Worker(wenv, tmp / "worker.log").wait_ready()
    try:
        app = wenv.app()
        totals = wait(enqueue(catalogue_items(sample_catalogue), app=app, options={"images_root": str(sample_catalogue.parent)}), timeout_s=300)
        assert totals["written"] == 48
    finally:
        worker.stop()
    yield settings, store
    for name in list(store.client.indices.get_alias(name=alias)):
        store.client.indices.delete(index=name)
    store.client.indices.delete(index=store.errors_index, ignore_unavailable=True)
    redis.stop()


def searcher(settings, store, mode):
    text, image = settings.embedding_spaces()
    return ElasticsearchHybridSearcher(store, settings.layout(), text, image, mode=mode)


def test_every_mode_answers(indexed):
    settings, store = indexed
    assert store.count() == 48
    for mode, fusion in [("legs", FusionConfig()), ("legs", FusionConfig(method="linear")), ("legacy", FusionConfig(method="linear", normalizer="none")), ("auto", FusionConfig())]:
        result = searcher(settings, store, mode).search(HybridQuery(text="green kurta", size=5, fusion=fusion))
        assert result.hits, (mode, fusion)
        assert all(h.source.get("title") for h in result.hits)


def test_client_side_fusion_ranks_exactly_as_server_side(indexed):
    settings, store = indexed
    cluster = searcher(settings, store, "auto").cluster()
    for fusion in (FusionConfig(rank_window_size=20), FusionConfig(method="linear", rank_window_size=20)):
        query = HybridQuery(text="blue jeans", size=10, fusion=fusion)
        s = searcher(settings, store, "retrievers")
        reason = cluster.retrievers_allowed(query, s.plan(query, s.encode(query, set(s.applicable_legs(query))), s.applicable_legs(query)))
        if reason:
            pytest.skip(reason)
        server = s.search(query)
        client = searcher(settings, store, "legs").search(query)
        assert [h.id for h in server.hits] == [h.id for h in client.hits], json.dumps(fusion.to_dict())
        for a, b in zip(server.hits, client.hits):
            assert a.score == pytest.approx(b.score, rel=1e-4)


def test_stored_vectors_read_back_for_reuse_mmr_and_feedback(indexed):
    """On 9.2+ only because the index was created with index.mapping.exclude_source_vectors false."""
    settings, store = indexed
    ids = [h.id for h in searcher(settings, store, "legs").search(HybridQuery(text="green kurta", size=3)).hits]
    existing = store.existing(ids)
    assert set(existing) == set(ids)
    for doc in existing.values():
        assert doc.vectors.get("text_vector") is not None and doc.vectors["text_vector"].shape == (384,)
    # one _mget for both feedback legs reads what the two separate reads do
    both, sources = store.hits(ids)
    assert sources == store.sources(ids)
    assert {d: (e.version, e.text_hash, sorted(e.vectors)) for d, e in both.items()} == {
        d: (e.version, e.text_hash, sorted(e.vectors)) for d, e in existing.items()
    }
    for doc_id, doc in both.items():
        for name, vector in doc.vectors.items():
            assert np.array_equal(vector, existing[doc_id].vectors[name])


def test_term_feedback_searches_the_words_the_first_page_shares(indexed, sample_catalogue):
    """An image alone gets a BM25 leg from its neighbours' titles; the words are the first page's
    (read back with _mget), and the leg ranks as a plain BM25 search for them."""
    from query_builder.term_feedback import TermFeedback, feedback_text

    settings, store = indexed
    image = sample_catalogue.parent / "images" / "S001.png"
    s = searcher(settings, store, "auto")
    plain = s.search(HybridQuery(image=image, size=5))
    settings_ = TermFeedback(depth=5, min_share=0.4, weight=1.0)
    found = s.search(HybridQuery(image=image, size=5, term_feedback=settings_))
    assert found.fusion["mode"] == "legs" and found.legs["term_feedback"] > 0
    top = [h.id for h in plain.hits]
    sources = store.sources(top)
    assert found.fusion["term_feedback_text"] == feedback_text(None, [sources[d] for d in top], ["title", "description"], settings_)
    expected = store.bm25(found.fusion["term_feedback_text"], boosts={}, filters=[], size=100)
    for hit in found.hits:
        if "term_feedback" in hit.legs:
            assert expected[hit.legs["term_feedback"].rank - 1][0] == hit.id


def test_the_search_analyzer_expands_synonyms_and_indexes_as_english(indexed):
    """The index's search analyzer is ``english`` plus the rules: the words it makes for a plain
    title are ``english``'s (so queries meet the indexed terms), and a synonym adds the others."""
    _, store = indexed
    index = next(iter(store.client.indices.get_alias(name=store.alias)))

    def terms(analyzer: str, text: str) -> set[str]:
        return {t["token"] for t in store.client.indices.analyze(index=index, analyzer=analyzer, text=text)["tokens"]}

    title = "Men's Grey Running Shoes for the Track"
    assert terms("english_synonyms", "Kurtas with printed Sleeves") == terms("english", "Kurtas with printed Sleeves")
    assert {"grei", "grai"} <= terms("english_synonyms", "gray") and "grei" in terms("english", title)
    assert {"women", "ladi"} <= terms("english_synonyms", "ladies")
    hits = store.client.search(index=index, query={"match": {"title": "ladies gray"}}, size=5)["hits"]["hits"]
    words = ("women", "woman", "ladies", "lady", "female", "grey", "gray")
    assert hits and all(any(w in h["_source"]["title"].lower() for w in words) for h in hits)


def test_all_terms_boost_adds_its_constant_on_the_cluster_too(indexed):
    """The ``bool`` + ``constant_score`` leg adds exactly the boost to products holding every word,
    and nothing to the others, as the embedded store's ``LexicalIndex.score`` does."""
    _, store = indexed
    text = "green cotton kurta"
    plain = dict(store.bm25(text, boosts={}, filters=[], size=48))
    boosted = dict(store.bm25(text, boosts={}, filters=[], size=48, all_terms_boost=2.0))
    assert plain.keys() == boosted.keys() and plain
    titles = store.sources(list(plain))
    for pid, score in plain.items():
        words = f"{titles[pid].get('title', '')} {titles[pid].get('description', '')}".lower()  # cross_fields: any field
        every = all(w in words for w in ("green", "cotton", "kurta"))
        assert boosted[pid] == pytest.approx(score + (2.0 if every else 0.0), rel=1e-5), titles[pid]["title"]


def test_a_photo_reads_the_titles_on_the_cluster_too(indexed, sample_catalogue):
    """The caption leg on Elasticsearch: a knn over text_vector with the photo's vector ranks the
    products by the cosine of their title vectors, as the embedded store does."""
    settings, store = indexed
    photo = sample_catalogue.parent / "images" / "S001.png"
    s = searcher(settings, store, "legs")
    if not s.reads_image_as_text():
        pytest.skip("the configured image space does not share the text model, so it has no caption leg")
    assert s.applicable_legs(HybridQuery(image=photo))[:2] == ["image", "caption"]
    result = s.search(HybridQuery(image=photo, size=10, legs=("caption",), fusion=FusionConfig(rank_window_size=48)))
    vector = s.encode(HybridQuery(image=photo), {"caption"}).image
    ids = [json.loads(line)["id"] for line in sample_catalogue.read_text().splitlines()]
    stored = store.existing(ids)
    expected = sorted(((float(vector @ d.vectors["text_vector"]), i) for i, d in stored.items()), reverse=True)[:10]
    assert [h.id for h in result.hits] == [i for _, i in expected]
    assert [h.legs["caption"].score for h in result.hits] == pytest.approx([(1 + c) / 2 for c, _ in expected], abs=1e-4)


def test_a_photo_is_searched_in_words_on_the_cluster_too(indexed, sample_catalogue):
    """The photo_words leg on Elasticsearch: a multi_match over the words the photo reads as finds
    what the query's own BM25 leg finds for the same words."""
    settings, store = indexed
    photo = sample_catalogue.parent / "images" / "S001.png"
    s = searcher(settings, store, "legs")
    if not s.reads_photo_words():
        pytest.skip("the configured image space has no photo vocabulary, so no photo_words leg")
    result = s.search(HybridQuery(text="in red", image=photo, size=10, legs=("photo_words",)))
    words = result.fusion["photo_words"]
    assert "Red" in words.split()  # the query's colour in the vocabulary's wording
    same = s.search(HybridQuery(text=words, size=10, legs=("bm25",)))
    assert [(h.id, round(h.legs["photo_words"].score, 4)) for h in result.hits] == [(h.id, round(h.legs["bm25"].score, 4)) for h in same.hits]


def test_the_word_check_counts_and_faint_words_on_the_cluster_too(indexed):
    """``word_counts`` counts what BM25 matches (in all, and among given ids); an unplaced word's clause
    adds its own score times its weight, as the embedded store's ``LexicalIndex.score`` does."""
    _, store = indexed
    kurtas = [pid for pid, _ in store.bm25("kurta", boosts={}, filters=[], size=48)]
    counts, near = store.word_counts(["kurta", "green kurta", "zzqx"], filters=[], near=kurtas[:3])
    assert counts[0] == len(kurtas) and 0 < counts[1] <= counts[0] and counts[2] == 0
    assert near[0] == 3 and near[1] <= 3 and near[2] == 0
    plain = dict(store.bm25("kurta", boosts={}, filters=[], size=48))
    green = dict(store.bm25("green", boosts={}, filters=[], size=48))
    faint = dict(store.bm25("kurta", boosts={}, filters=[], size=48, faint_text="green", faint_weight=0.1))
    assert faint.keys() == plain.keys() | green.keys()
    for pid, score in faint.items():
        assert score == pytest.approx(plain.get(pid, 0.0) + 0.1 * green.get(pid, 0.0), rel=1e-5)


def test_the_worker_writes_photo_captions_that_bm25_searches_on_the_cluster_too(indexed):
    """The photo_caption field: the worker writes each product's photo reading into ``_source``, the
    mapping indexes it as English text, and a field weighed 0 is left out of the query."""
    settings, store = indexed
    field = settings.layout().photo_caption
    if field is None:
        pytest.skip("the configured image space has no photo vocabulary, so no photo_caption field")
    sources = store.sources(["S001"])
    caption = sources["S001"][field.name]
    mapping = store.client.indices.get_mapping(index=store.alias)
    assert next(iter(mapping.body.values()))["mappings"]["properties"][field.name]["type"] == "text"
    found = [pid for pid, _ in store.bm25(caption, boosts={"title": 0.0, "description": 0.0}, filters=[], size=48)]
    assert "S001" in found
    # every hit of the caption field alone holds one of its words in its own caption
    held = store.sources(found)
    assert all(set(caption.lower().split()) & set(held[pid].get(field.name, "").lower().split()) for pid in found)
