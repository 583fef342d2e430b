"""Pseudo-relevance feedback: the Rocchio vector, its settings, the extra leg in search and on
Elasticsearch, profiles that carry it, and tuning that reproduces what search does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.harness import Strategy, run_strategies
from evaluation.tuning import (
    MIN_FEEDBACK_GAIN,
    collect_legs,
    collect_vectors,
    feedback_matrix,
    nested_cross_validate,
    round_pays,
)
from hybrid_core.errors import ConfigError, ValidationError
from hybrid_core.layout import build_layout
from hybrid_core.stores.embedded import EmbeddedStore
from query_builder.feedback import Feedback, feedback_vector
from query_builder.fusion import rrf
from query_builder.profile import FusionProfile
from query_builder.query import FusionConfig, HybridQuery
from query_builder.searcher import HybridSearcher, fuse_legs

# -- the vector and the settings (pure) -----------------------------------------------------------


def test_feedback_vector_is_the_unit_centroid_plus_the_weighted_query():
    docs = [np.array([2.0, 0.0]), np.array([0.0, 3.0])]  # each counts once whatever its norm
    centroid = feedback_vector(None, docs, query_weight=1.0)
    assert centroid == pytest.approx(np.array([1.0, 1.0]) / np.sqrt(2))
    # mean (0.5, 0.5) + 1.0 * (1, 0) = (1.5, 0.5) -> unit
    pulled = feedback_vector(np.array([5.0, 0.0]), docs, query_weight=1.0)
    assert pulled == pytest.approx(np.array([1.5, 0.5]) / np.hypot(1.5, 0.5))
    assert pulled.dtype == np.float32
    assert feedback_vector(np.array([5.0, 0.0]), docs, query_weight=0.0) == pytest.approx(centroid)
    assert feedback_vector(np.array([1.0, 0.0]), [], query_weight=1.0) is None  # nothing to average
    assert feedback_vector(None, [np.zeros(2)], query_weight=1.0) is None
    assert feedback_vector(np.array([-1.0, 0.0]), [np.array([1.0, 0.0])], query_weight=1.0) is None  # cancels out


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"field": "title"}, "feedback field"),
        ({"depth": 0}, "depth"),
        ({"depth": True}, "depth"),
        ({"depth": 101}, "depth"),
        ({"query_weight": -1}, "query_weight"),
        ({"weight": float("nan")}, "weight"),
    ],
)
def test_feedback_settings_are_validated(bad, message):
    with pytest.raises(ValidationError, match=message):
        Feedback(**bad)


def test_feedback_settings_round_trip_and_reject_unknown_keys():
    settings = Feedback("text_vector", 20, 0.5, 8.0)
    assert Feedback.from_dict(settings.to_dict()) == settings
    with pytest.raises(ValidationError, match="unknown keys"):
        Feedback.from_dict({"field": "text_vector", "top": 5})
    with pytest.raises(ValidationError, match="object"):
        Feedback.from_dict(["text_vector"])
    with pytest.raises(ValidationError, match="must be a Feedback"):
        HybridQuery(text="red", feedback={"field": "text_vector"})


def test_the_feedback_leg_is_fused_at_its_own_weight():
    legs = {"bm25": [("a", 3.0), ("b", 2.0)], "feedback": [("b", 0.9), ("c", 0.8)]}
    fused = fuse_legs(legs, FusionConfig(rank_constant=1), Feedback(weight=4.0))
    assert fused == rrf(legs, weights={"bm25": 1.0, "feedback": 4.0}, rank_constant=1, rank_window_size=100)
    assert [d for d, _ in fused] == ["b", "c", "a"]  # b: 1/3 + 4/2, c: 4/3, a: 1/2


def test_nested_cross_validation_picks_fusion_then_feedback_on_the_other_folds():
    fusion = np.array([[0.6, 0.6, 0.6, 0.0], [0.5, 0.5, 0.5, 1.0]])
    # for either fusion: row 0 (no feedback) is the fusion itself; row 1 adds 0.1 to queries 0-2
    rows = {f: np.vstack([fusion[f], fusion[f] + np.array([0.1, 0.1, 0.1, 0.0])]) for f in (0, 1)}
    asked = []
    result = nested_cross_validate(fusion, lambda f: asked.append(f) or rows[f], folds=4, seed=0)
    # held-out query 3: fusion 0 wins the rest, feedback helps there -> 0.0; held-out 0-2: fusion 1, feedback -> 0.6
    assert result["estimate"] == pytest.approx((0.0 + 0.6 * 3) / 4)
    assert sorted(tuple(c) for c in result["chosen"]) == [(0, 1), (1, 1), (1, 1), (1, 1)]
    assert set(asked) == {0, 1}


# -- in search, on an indexed catalogue ------------------------------------------------------


def test_a_feedback_round_is_kept_for_a_gain_not_a_tie():
    assert not round_pays(0.91701, 0.91700)  # what the full text queries once kept term feedback for
    assert not round_pays(0.917 + MIN_FEEDBACK_GAIN, 0.917)
    assert round_pays(0.920, 0.917) and round_pays(0.845, 0.840)


def test_search_with_feedback_adds_an_explained_leg_that_keeps_the_filters(indexed):
    searcher, _ = indexed
    plain = searcher.search(HybridQuery(text="black watch", size=10))
    assert "feedback" not in plain.legs and "feedback" not in plain.fusion
    found = searcher.search(HybridQuery(text="black watch", size=10, feedback=Feedback("text_vector", 3, 0.5, 2.0)))
    assert found.legs["feedback"] > 0 and found.fusion["feedback"] == Feedback("text_vector", 3, 0.5, 2.0).to_dict()
    assert any("feedback" in hit.legs for hit in found.hits)
    # the feedback leg is the kNN of the Rocchio vector of the first 3 fused hits' text vectors
    top = [h.id for h in plain.hits[:3]]
    stored = searcher.store.existing(top)
    vector = feedback_vector(searcher.text_space.embed_query("black watch"), [stored[d].vectors["text_vector"] for d in top], query_weight=0.5)
    expected = searcher.store.knn("text_vector", vector, k=100, num_candidates=200, filters=[])
    first = {h.id: h.legs["feedback"] for h in found.hits if "feedback" in h.legs}
    for doc_id, leg in first.items():
        assert expected[leg.rank - 1][0] == doc_id and leg.score == pytest.approx(expected[leg.rank - 1][1], rel=1e-5)
    # the query's filters hold inside the feedback leg too
    filtered = searcher.search(
        HybridQuery(text="black watch", filters={"colour": "Black"}, size=10, feedback=Feedback("product_vector", 5, 0.0, 4.0))
    )
    assert filtered.legs["feedback"] > 0
    assert {hit.source.get("colour") for hit in filtered.hits} == {"Black"}


def test_zero_weight_feedback_leaves_the_first_page_as_it_was(indexed):
    searcher, _ = indexed
    plain = searcher.search(HybridQuery(text="green kurta", size=10))
    same = searcher.search(HybridQuery(text="green kurta", size=10, feedback=Feedback("image_vector", 5, 0.5, 0.0)))
    assert [h.id for h in same.hits] == [h.id for h in plain.hits]


def test_feedback_on_a_field_the_layout_lacks_is_a_clear_error(tmp_path, text_space):
    text_only = build_layout(text_space.spec, None)
    searcher = HybridSearcher(EmbeddedStore(tmp_path / "t.sqlite", text_only), text_only, text_space)
    with pytest.raises(ValidationError, match="feedback field 'image_vector' is not a vector field"):
        searcher.search(HybridQuery(text="kurta", feedback=Feedback("image_vector")))


def test_tuning_scores_feedback_exactly_as_search_runs_it(indexed, sample_catalogue):
    searcher, queries = indexed
    qrels = {q["id"]: q["relevance"] for q in queries}
    fusion = FusionConfig("rrf", {"bm25": 1.0, "text": 1.0, "cross": 0.0, "product": 0.5}, rank_window_size=100)
    candidate = Feedback("text_vector", 5, 0.5, 2.0)
    matrix = feedback_matrix(searcher, qrels, collect_legs(searcher, queries, sample_catalogue.parent),
                             collect_vectors(searcher, queries, sample_catalogue.parent), fusion, [candidate])
    profile = FusionProfile({"text": fusion}, feedback={"text": candidate})
    without = FusionProfile({"text": fusion})
    table = run_strategies(searcher, queries, sample_catalogue.parent,
                           (Strategy("with", None, profile=profile), Strategy("without", None, profile=without)))
    assert table["text"]["without"]["NDCG@10"] == pytest.approx(matrix[0].mean())
    assert table["text"]["with"]["NDCG@10"] == pytest.approx(matrix[1].mean())


# -- profiles ------------------------------------------------------------------------------------


def test_profiles_carry_feedback_per_kind_and_older_profiles_still_load(tmp_path):
    profile = FusionProfile({"text": FusionConfig(weights={"bm25": 1.0})}, feedback={"text+image": Feedback("text_vector", 20, 0.5, 8.0)})
    mixed = profile.apply(HybridQuery(text="in red", image=tmp_path / "x.png"))
    assert mixed.feedback == Feedback("text_vector", 20, 0.5, 8.0)
    own = Feedback("image_vector", 5)
    assert profile.apply(HybridQuery(text="in red", image=tmp_path / "x.png", feedback=own)).feedback == own  # the query's own wins
    assert profile.apply(HybridQuery(text="red")).feedback is None
    profile.save(tmp_path / "p.json")
    assert FusionProfile.load(tmp_path / "p.json") == profile
    old = {"format": "es-hybrid-search/fusion-profile@1", "kinds": {"text": {"method": "rrf"}}}
    assert FusionProfile.from_dict(old).feedback == {}
    for bad, message in (({"text": {"depth": 0}}, "depth"), ({"audio": {}}, "unknown query kinds"), ([1], "feedback")):
        with pytest.raises(ConfigError, match=message):
            FusionProfile.from_dict({**old, "feedback": bad}, source="p.json")


# -- Elasticsearch -------------------------------------------------------------------------------


def test_on_elasticsearch_feedback_runs_client_side_with_one_more_knn(layout, text_space, image_space):
    from test_es_requests import WireClient

    from hybrid_core.stores.elasticsearch import ElasticsearchStore
    from query_builder.es_searcher import Cluster, ElasticsearchHybridSearcher

    dims = {v.name: v.dims for v in layout.vector_fields}
    source = {"title": "Black Watch", "version": 1, **{name: [1.0] + [0.0] * (n - 1) for name, n in dims.items()}}
    answers = {
        "_msearch": {"responses": [{"hits": {"hits": [{"_id": "p1", "_score": 1.0}]}}] * 4},
        "_mget": {"docs": [{"_id": "p1", "found": True, "_version": 1, "_source": source}]},
        "_search": {"hits": {"hits": [{"_id": "p2", "_score": 0.9}, {"_id": "p1", "_score": 0.8}]}},
    }
    client = WireClient(answers)
    store = ElasticsearchStore(client, layout)
    store._checked = True
    query = HybridQuery(text="black watch", size=3, fusion=FusionConfig(rank_window_size=10), feedback=Feedback("text_vector", 5, 0.0, 1.0),
                        word_check=None)  # the word check's own requests: tests/test_es_requests.py
    searcher = ElasticsearchHybridSearcher(store, layout, text_space, image_space, mode="auto")
    searcher._cluster = Cluster((9, 2), "enterprise")  # retrievers would be allowed: feedback still needs legs
    result = searcher.search(query)
    paths = [p for _, p, _ in client.sent]
    assert paths == ["/_msearch", "/products/_mget", "/products/_search", "/products/_mget"]
    knn = client.sent[2][2]["knn"]
    assert knn["field"] == "text_vector" and knn["k"] == 10
    assert knn["query_vector"] == pytest.approx([1.0] + [0.0] * (dims["text_vector"] - 1))  # the centroid of p1, no query pull
    assert result.fusion["mode"] == "legs" and result.legs["feedback"] == 2
    assert [h.id for h in result.hits] == ["p1", "p2"] and result.hits[1].legs == {"feedback": result.hits[1].legs["feedback"]}
    for mode in ("retrievers", "legacy"):
        with pytest.raises(ValidationError, match="feedback runs client-side"):
            ElasticsearchHybridSearcher(store, layout, text_space, image_space, mode=mode).requests(query)
    assert json.dumps(client.sent[0][2])  # the first round went out as plain JSON


def test_the_command_line_shows_feedback_as_the_legs_mode_and_refuses_server_side_modes(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from hybrid_cli.main import cli

    monkeypatch.setenv("HYBRID_SEARCH_STORE_PATH", str(tmp_path / "none.sqlite"))
    shown = CliRunner().invoke(cli, ["search", "black watch", "--feedback", "text_vector", "--feedback-depth", "20", "--show-request"])
    assert shown.exit_code == 0, shown.output
    assert "showing the legs mode" in shown.output and "# mode: legs" in shown.output and "GET products/_msearch" in shown.output
    assert "# then feedback: GET products/_mget of the first 20 fused hits' text_vector" in shown.output
    refused = CliRunner().invoke(cli, ["search", "black watch", "--feedback", "text_vector", "--show-request", "--mode", "retrievers"])
    assert refused.exit_code == 2 and "feedback runs client-side" in refused.output
    bad = CliRunner().invoke(cli, ["search", "black watch", "--feedback", "text_vector", "--feedback-depth", "0"])
    assert bad.exit_code == 2 and "feedback depth must be an integer in 1..100, got 0" in bad.output
    assert not (tmp_path / "none.sqlite").exists(), "no store was opened"
