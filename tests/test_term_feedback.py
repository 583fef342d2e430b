"""Term feedback: the shared-words vote, its settings, the extra BM25 leg in search and on
Elasticsearch, profiles that carry it, and tuning that scores it exactly as search runs it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.harness import Strategy, run_strategies
from evaluation.tuning import (
    FeedbackSearch,
    candidate_term_feedback,
    collect_legs,
    collect_vectors,
    feedback_matrix,
    nested_cross_validate,
    term_feedback_matrix,
    tune,
)
from hybrid_core.errors import ConfigError, ValidationError
from hybrid_core.filters import parse_filters
from query_builder.feedback import Feedback
from query_builder.fusion import rrf
from query_builder.profile import FusionProfile
from query_builder.query import FusionConfig, HybridQuery
from query_builder.searcher import fuse_legs
from query_builder.term_feedback import TermFeedback, feedback_text, hit_text, shared_terms, words

# -- the vote and the settings (pure) -------------------------------------------------------------


def test_shared_terms_are_the_words_enough_texts_hold_most_shared_first():
    titles = ["Nike Men Black T-Shirt", "Puma Men Black Polo T-shirt", "Nike Men Navy T-Shirt", "Women Pink Kurta for the office"]
    # each title votes once per word: men 3, t 3, shirt 3, nike 2, black 2; the rest 1
    assert shared_terms(titles, min_share=0.5, max_terms=10) == ["men", "t", "shirt", "nike", "black"]  # ties: first seen first
    assert shared_terms(titles, min_share=0.75, max_terms=10) == ["men", "t", "shirt"]
    assert shared_terms(titles, min_share=0.75, max_terms=2) == ["men", "t"]  # the cap keeps the most shared
    assert shared_terms(titles, min_share=0.5, max_terms=10, exclude=["black", "t"]) == ["men", "shirt", "nike"]
    assert shared_terms(["Red Red Red", "Blue"], min_share=1.0, max_terms=5) == []  # repeats in one text are one vote
    assert shared_terms(titles, min_share=0.25, max_terms=32)[-1] == "office"  # stop words ("for", "the") never count
    assert shared_terms([], min_share=0.5, max_terms=5) == []


def test_feedback_text_puts_the_query_words_first_and_adds_what_they_lack():
    sources = [{"title": "Women Pink Kurta", "description": "cotton"}, {"title": "Women Pink Kurta", "brand": "Biba"},
               {"title": "Women Blue Kurta", "description": ["cotton", 3]}, {"title": ""}]
    settings = TermFeedback(depth=10, min_share=0.6, max_terms=8)
    # three texts (the empty one does not vote): women 3, kurta 3, pink 2, cotton 2 (a list's strings count; brand is no text field)
    assert feedback_text(None, sources, ["title", "description"], settings) == "women kurta pink cotton"
    assert feedback_text("kurta in PINK", sources, ["title", "description"], settings) == "kurta pink women cotton"
    assert feedback_text(None, sources, ["title"], settings) == "women kurta pink"
    assert feedback_text(None, [], ["title"], settings) == ""
    assert hit_text({"title": "A", "description": ["b", None, "c"], "price": 3}, ["title", "description", "price"]) == "A b c"
    assert words("The T-shirt, for MEN") == ["t", "shirt", "men"]
    assert words("Men's Shoes") == words("Men’s Shoes") == ["men", "shoes"]  # possessives vote for the word, as Elasticsearch reads them


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"depth": 0}, "depth"),
        ({"depth": 101}, "depth"),
        ({"depth": 2.0}, "depth"),
        ({"max_terms": 0}, "max_terms"),
        ({"min_share": 0}, "min_share"),
        ({"min_share": 1.5}, "min_share"),
        ({"min_share": True}, "min_share"),
        ({"weight": -1}, "weight"),
        ({"weight": float("inf")}, "weight"),
    ],
)
def test_term_feedback_settings_are_validated(bad, message):
    with pytest.raises(ValidationError, match=f"term feedback {message}"):
        TermFeedback(**bad)


def test_term_feedback_settings_round_trip_and_reject_unknown_keys():
    settings = TermFeedback(40, 0.3, 6, 2.0)
    assert TermFeedback.from_dict(settings.to_dict()) == settings
    with pytest.raises(ValidationError, match="unknown keys"):
        TermFeedback.from_dict({"depth": 5, "share": 0.5})
    with pytest.raises(ValidationError, match="object"):
        TermFeedback.from_dict([5])
    with pytest.raises(ValidationError, match="must be a TermFeedback"):
        HybridQuery(text="red", term_feedback={"depth": 5})


def test_the_term_feedback_leg_is_fused_at_its_own_weight():
    legs = {"bm25": [("a", 3.0), ("b", 2.0)], "feedback": [("c", 0.9)], "term_feedback": [("b", 9.0), ("c", 8.0)]}
    fused = fuse_legs(legs, FusionConfig(rank_constant=1), Feedback(weight=2.0), TermFeedback(weight=4.0))
    assert fused == rrf(legs, weights={"bm25": 1.0, "feedback": 2.0, "term_feedback": 4.0}, rank_constant=1, rank_window_size=100)
    assert [d for d, _ in fused] == ["b", "c", "a"]  # b: 1/3 + 4/2, c: 2/2 + 4/3, a: 1/2


def test_nested_cross_validation_picks_fusion_feedback_then_term_feedback_on_the_other_folds():
    fusion = np.array([[0.6, 0.6, 0.6, 0.0], [0.5, 0.5, 0.5, 1.0]])
    rows = {f: np.vstack([fusion[f], fusion[f] + np.array([0.1, 0.1, 0.1, 0.0])]) for f in (0, 1)}
    # term row 1 adds 0.2 to query 3 only; row 0 is the feedback row itself
    terms = {(f, r): np.vstack([rows[f][r], rows[f][r] + np.array([0.0, 0.0, 0.0, 0.2])]) for f in (0, 1) for r in (0, 1)}
    asked = []
    result = nested_cross_validate(fusion, lambda f: rows[f], folds=4, seed=0, term_rows=lambda f, r: asked.append((f, r)) or terms[f, r])
    # held-out 3: fusion 0, feedback 1, term row 1 ties row 0 on the others -> row 0 (first) -> 0.0;
    # held-out 0-2: fusion 1, feedback 1, term 1 (helps query 3) -> 0.6 each
    assert sorted(tuple(c) for c in result["chosen"]) == [(0, 1, 0), (1, 1, 1), (1, 1, 1), (1, 1, 1)]
    assert result["estimate"] == pytest.approx((0.0 + 0.6 * 3) / 4)
    assert set(asked) == {(0, 1), (1, 1)}


# -- in search, on an indexed catalogue ------------------------------------------------------


def test_search_with_term_feedback_adds_an_explained_bm25_leg_from_the_shared_words(indexed):
    searcher, _ = indexed
    plain = searcher.search(HybridQuery(text="black watch", size=10))
    settings = TermFeedback(depth=4, min_share=0.5, weight=2.0)
    found = searcher.search(HybridQuery(text="black watch", size=10, term_feedback=settings))
    assert found.fusion["term_feedback"] == settings.to_dict() and "term_feedback" not in plain.legs
    top = [h.id for h in plain.hits[:4]]
    sources = searcher.store.sources(top)
    text = feedback_text("black watch", [sources[d] for d in top], ["title", "description"], settings)
    assert found.fusion["term_feedback_text"] == text and text.startswith("black watch ") and len(text.split()) > 2
    expected = searcher.store.bm25(text, boosts={}, filters=[], size=100)
    assert found.legs["term_feedback"] == len(expected)
    for hit in found.hits:
        if "term_feedback" in hit.legs:
            leg = hit.legs["term_feedback"]
            assert expected[leg.rank - 1][0] == hit.id and leg.score == pytest.approx(expected[leg.rank - 1][1])
    # the query's filters hold inside the term leg too
    filtered = searcher.search(HybridQuery(text="black watch", filters={"colour": "Black"}, size=10, term_feedback=settings))
    assert {hit.source.get("colour") for hit in filtered.hits} == {"Black"}
    assert [d for d, _ in searcher.store.bm25(filtered.fusion["term_feedback_text"], boosts={}, size=100,
                                                filters=parse_filters({"colour": "Black"}, searcher.layout))][:1]


def test_an_image_alone_gets_a_bm25_leg_from_its_neighbours_titles(indexed, sample_catalogue):
    searcher, _ = indexed
    image = sample_catalogue.parent / "images" / "S001.png"
    found = searcher.search(HybridQuery(image=image, size=10, term_feedback=TermFeedback(depth=5, min_share=0.4)))
    assert "bm25" not in found.legs and found.legs["term_feedback"] > 0
    assert found.fusion["term_feedback_text"]
    zero = searcher.search(HybridQuery(image=image, size=10, term_feedback=TermFeedback(depth=5, min_share=0.4, weight=0.0)))
    plain = searcher.search(HybridQuery(image=image, size=10))
    assert [h.id for h in zero.hits] == [h.id for h in plain.hits]  # weight 0 leaves the first page as it was


def test_tuning_scores_term_feedback_exactly_as_search_runs_it(indexed, sample_catalogue):
    searcher, queries = indexed
    qrels = {q["id"]: q["relevance"] for q in queries}
    root = sample_catalogue.parent
    fusion = FusionConfig("rrf", {"bm25": 1.0, "text": 1.0, "cross": 0.0, "product": 0.5}, rank_window_size=100)
    vector = Feedback("text_vector", 5, 0.5, 2.0)
    terms = TermFeedback(depth=5, min_share=0.4, weight=2.0)
    legs, vectors = collect_legs(searcher, queries, root), collect_vectors(searcher, queries, root)
    search = FeedbackSearch(searcher, vectors, {q["id"]: q["text"] for q in queries}, [vector], [terms])
    matrix = term_feedback_matrix(search, qrels, legs, fusion, vector)
    assert matrix[0] == pytest.approx(feedback_matrix(searcher, qrels, legs, vectors, fusion, [vector])[1])  # row 0: no term leg
    both = FusionProfile({"text": fusion}, feedback={"text": vector}, term_feedback={"text": terms})
    table = run_strategies(searcher, queries, root, (Strategy("both", None, profile=both),))
    assert table["text"]["both"]["NDCG@10"] == pytest.approx(matrix[1].mean())
    alone = term_feedback_matrix(search, qrels, legs, fusion, None)
    only_terms = FusionProfile({"text": fusion}, term_feedback={"text": terms})
    table = run_strategies(searcher, queries, root, (Strategy("terms", None, profile=only_terms),))
    assert table["text"]["terms"]["NDCG@10"] == pytest.approx(alone[1].mean())


def test_tune_reports_term_feedback_and_keeps_it_only_when_the_nested_estimate_improves(indexed, sample_catalogue):
    searcher, queries = indexed
    profile, report = tune(searcher, queries, sample_catalogue.parent, folds=3, feedback=[Feedback("text_vector", 5, 0.5, 1.0)],
                           term_feedback=candidate_term_feedback(depths=(5,), shares=(0.4,), weights=(0.5, 2.0)))
    terms = report["text"].feedback["term_feedback"]
    assert terms["candidates"] == 2 and len(terms["cross_validated"]["chosen"]) == 3
    assert all(len(c) == 3 for c in terms["cross_validated"]["chosen"])
    kept = terms["chosen"] is not None
    assert kept == (terms["best_candidate"] is not None and terms["cross_validated"]["estimate"] > terms["without_term_feedback_cross_validated"])
    assert ("text" in profile.term_feedback) == kept
    assert json.loads(json.dumps(profile.to_dict()))  # the report inside the profile is plain JSON


# -- profiles ------------------------------------------------------------------------------------


def test_profiles_carry_term_feedback_per_kind_and_older_profiles_still_load(tmp_path):
    profile = FusionProfile({"image": FusionConfig(weights={"product": 1.0})}, term_feedback={"image": TermFeedback(20, 0.3, 8, 1.0)})
    applied = profile.apply(HybridQuery(image=tmp_path / "x.png"))
    assert applied.term_feedback == TermFeedback(20, 0.3, 8, 1.0) and applied.feedback is None
    own = TermFeedback(5)
    assert profile.apply(HybridQuery(image=tmp_path / "x.png", term_feedback=own)).term_feedback == own  # the query's own wins
    assert profile.apply(HybridQuery(text="red")).term_feedback is None
    profile.save(tmp_path / "p.json")
    assert FusionProfile.load(tmp_path / "p.json") == profile
    old = {"format": "es-hybrid-search/fusion-profile@1", "kinds": {"text": {"method": "rrf"}}}
    assert FusionProfile.from_dict(old).term_feedback == {}
    for bad, message in (({"image": {"depth": 0}}, "depth"), ({"audio": {}}, "unknown query kinds"), ([1], "term_feedback")):
        with pytest.raises(ConfigError, match=message):
            FusionProfile.from_dict({**old, "term_feedback": bad}, source="p.json")


# -- Elasticsearch -------------------------------------------------------------------------------


def test_on_elasticsearch_term_feedback_runs_client_side_as_one_more_multi_match(layout, text_space, image_space):
    from test_es_requests import WireClient

    from hybrid_core.stores.elasticsearch import ElasticsearchStore
    from query_builder.es_searcher import Cluster, ElasticsearchHybridSearcher

    answers = {
        "_msearch": {"responses": [{"hits": {"hits": [{"_id": "p1", "_score": 1.0}, {"_id": "p2", "_score": 0.5}]}}] * 4},
        "_mget": {"docs": [{"_id": "p1", "found": True, "_source": {"title": "Nike Men Black Watch"}},
                           {"_id": "p2", "found": True, "_source": {"title": "Titan Men Black Watch"}}]},
        "_search": {"hits": {"hits": [{"_id": "p3", "_score": 7.0}, {"_id": "p1", "_score": 6.0}]}},
    }
    client = WireClient(answers)
    store = ElasticsearchStore(client, layout)
    store._checked = True
    # without the word check, whose own requests tests/test_es_requests.py follows
    query = HybridQuery(text="black watch", size=3, fusion=FusionConfig(rank_window_size=10), term_feedback=TermFeedback(5, 1.0),
                        word_check=None)
    searcher = ElasticsearchHybridSearcher(store, layout, text_space, image_space, mode="auto")
    searcher._cluster = Cluster((9, 2), "enterprise")  # retrievers would be allowed: term feedback still needs legs
    result = searcher.search(query)
    paths = [p for _, p, _ in client.sent]
    assert paths == ["/_msearch", "/products/_mget", "/products/_search", "/products/_mget"]
    body = client.sent[2][2]
    assert body["size"] == 10
    assert json.dumps(body).count("black watch men") >= 1  # the query's words, then what both titles share
    assert result.fusion["mode"] == "legs" and result.fusion["term_feedback_text"] == "black watch men"
    assert result.legs["term_feedback"] == 2 and result.hits[0].id == "p1"
    for mode in ("retrievers", "legacy"):
        with pytest.raises(ValidationError, match="term feedback runs client-side"):
            ElasticsearchHybridSearcher(store, layout, text_space, image_space, mode=mode).requests(query)


def test_on_elasticsearch_both_feedback_legs_read_the_first_page_once_and_search_at_once(layout, text_space, image_space):
    from test_es_requests import WireClient

    from hybrid_core.stores.elasticsearch import ElasticsearchStore
    from query_builder.es_searcher import ElasticsearchHybridSearcher

    dims = {v.name: v.dims for v in layout.vector_fields}
    vectors = {name: [1.0] + [0.0] * (n - 1) for name, n in dims.items()}
    answers = {
        "_msearch": {"responses": [{"hits": {"hits": [{"_id": "p1", "_score": 1.0}]}}] * 4},
        "_mget": {"docs": [{"_id": "p1", "found": True, "_version": 1, "_source": {"title": "Men Black Watch", "version": 1, **vectors}}]},
        "_search": {"hits": {"hits": [{"_id": "p2", "_score": 0.9}]}},
    }
    client = WireClient(answers)
    store = ElasticsearchStore(client, layout)
    store._checked = True
    query = HybridQuery(text="black watch", size=3, fusion=FusionConfig(rank_window_size=10), word_check=None,
                        feedback=Feedback("text_vector", 5, 0.0, 1.0), term_feedback=TermFeedback(5, 1.0))
    result = ElasticsearchHybridSearcher(store, layout, text_space, image_space, mode="legs").search(query)
    paths = [p for _, p, _ in client.sent]
    # one _mget of the whole _source serves both (vectors for one, text for the other), then both
    # searches; the last _mget reads the answer's own page
    assert paths == ["/_msearch", "/products/_mget", "/products/_search", "/products/_search", "/products/_mget"]
    searches = [body for _, path, body in client.sent if path == "/products/_search"]
    assert sorted("knn" in body for body in searches) == [False, True]  # one kNN leg, one BM25 leg
    assert result.legs["feedback"] == 1 and result.legs["term_feedback"] == 1
    assert result.fusion["term_feedback_text"] == "black watch men"


def test_the_command_line_shows_term_feedback_and_checks_its_settings(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from hybrid_cli.main import cli

    monkeypatch.setenv("HYBRID_SEARCH_STORE_PATH", str(tmp_path / "none.sqlite"))
    shown = CliRunner().invoke(cli, ["search", "black watch", "--term-feedback", "20", "--show-request"])
    assert shown.exit_code == 0, shown.output
    assert "# mode: legs" in shown.output
    assert "# then term feedback: GET products/_mget of the first 20 fused hits' _source" in shown.output
    both = CliRunner().invoke(cli, ["search", "black watch", "--term-feedback", "10", "--feedback", "text_vector", "--feedback-depth", "20", "--show-request"])
    assert both.exit_code == 0, both.output
    assert "# then feedback and term feedback: GET products/_mget of the first 20 fused hits' _source (one read for both)" in both.output
    bad = CliRunner().invoke(cli, ["search", "black watch", "--term-feedback", "20", "--term-feedback-share", "0"])
    assert bad.exit_code == 2 and "term feedback min_share must be a number in (0, 1], got 0.0" in bad.output
    assert not (tmp_path / "none.sqlite").exists(), "no store was opened"
