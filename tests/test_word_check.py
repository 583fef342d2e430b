"""The word check: query words none of the query's nearest products use count faintly in BM25."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest

from hybrid_core.errors import ValidationError
from hybrid_core.es_dsl import bm25_query, word_count_body
from hybrid_core.filters import parse_filters
from hybrid_core.stores.base import StoredDoc
from hybrid_core.stores.embedded import EmbeddedStore
from hybrid_core.stores.lexical import LexicalIndex
from hybrid_core.synonyms import PACKAGED, SynonymRules, load
from query_builder.query import FusionConfig, HybridQuery
from query_builder.searcher import HybridSearcher
from query_builder.word_check import WordCheck, checked_text, named_by, placed, query_phrases
from tests.test_embedded_store import make_doc

WATCHES = [f"{brand} {gender} Blue Watch" for brand in ("Titan", "Fastrack", "Timex", "Casio", "Skagen", "Giordano")
           for gender in ("Men", "Women")]
SLOGANS = ["Fila Men No Show White Socks", "Nike Women Try Me Pink T-shirt", "Colour Me Men Silver Deo",
           "Myntra Men So You Love Me T-shirt"]
# enough other products that "blue" and "watch" are rarer than in half the rows (FTS5's IDF floors such words to ~0)
OTHERS = ["Biba Women Mauve Kurta"] + [f"{brand} {gender} {colour} {kind}" for brand, kind in (
    ("Fabindia", "Kurta"), ("Puma", "Sports Shoes"), ("Levis", "Jeans"), ("Arrow", "Shirt"), ("Lavie", "Handbag"))
    for gender in ("Men", "Women") for colour in ("Red", "Black", "White", "Green")]


def test_a_word_is_placed_by_enough_neighbours_or_by_all_that_hold_it():
    # near, everywhere: "blue" (40 of 100 near), "show" (0 near, 1 in all), "doodle" (2 products, both near),
    # "me" (2 near of 12), "asdf" (nowhere)
    assert placed([40, 0, 2, 2, 0], [1300, 1, 2, 12, 0], min_count=3) == [True, False, True, False, False]
    with pytest.raises(ValueError, match="2 neighbourhood counts for 1"):
        placed([1, 2], [3], min_count=1)


def test_phrases_follow_the_synonym_rules_and_skip_stop_words():
    rules = SynonymRules(["t shirt, tee, tshirt", "navy blue, navy"])
    assert query_phrases("Show me a navy blue T-shirt for men", rules) == ["show", "me", "navy blue", "t shirt", "men"]
    assert query_phrases("show me the shoes", None) == ["show", "me", "shoes"]
    assert query_phrases("for the", rules) == []


def test_checked_text_keeps_the_query_where_nothing_or_everything_is_placed():
    phrases = ["show", "me", "blue", "watch"]
    assert checked_text("Show me blue watch", phrases, [False, False, True, True]) == ("blue watch", ["show", "me"])
    assert checked_text("Show me blue watch", phrases, [True] * 4) == ("Show me blue watch", [])
    assert checked_text("Show me blue watch", phrases, [False] * 4) == ("Show me blue watch", [])


@pytest.mark.parametrize("kwargs, message", [
    ({"depth": 0}, "depth must be an integer in 1..1000"),
    ({"depth": True}, "depth must be an integer"),
    ({"min_count": 5, "depth": 4}, "min_count \\(5\\) cannot exceed depth \\(4\\)"),
    ({"unplaced_weight": 1.5}, "unplaced_weight must be a number in \\[0, 1\\]"),
    ({"unplaced_weight": float("nan")}, "unplaced_weight must be a number"),
])
def test_word_check_settings_are_validated(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        WordCheck(**kwargs)
    with pytest.raises(ValidationError, match="word_check must be a WordCheck or None"):
        HybridQuery(text="blue watch", word_check={"depth": 10})


def test_faint_terms_score_at_their_weight_and_are_not_needed_for_the_bonus():
    index = LexicalIndex(1)
    titles = ["blue watch", "blue watch show", "no show socks", "red kurta", "green kurta", "black jeans"]
    index.apply({i: {term: [1] for term in title.split()} for i, title in enumerate(titles)})
    hits, plain = index.score(["blue", "watch"], [1.0], 6, all_terms_boost=2.0)
    _, show_alone = index.score(["show"], [1.0], 6)
    faint_hits, faint = index.score(["blue", "watch"], [1.0], 6, all_terms_boost=2.0, faint_terms=["show"], faint_weight=0.1)
    assert hits.tolist() == [0, 1] and faint_hits.tolist() == [0, 1, 2]  # a row holding only a faint word still matches
    plain_by_row, faint_by_row = dict(zip(hits.tolist(), plain)), dict(zip(faint_hits.tolist(), faint))
    assert faint_by_row[0] == pytest.approx(plain_by_row[0])  # the bonus without "show"
    assert faint_by_row[1] == pytest.approx(plain_by_row[1] + 0.1 * show_alone[0])  # a tie-breaker on top
    assert faint_by_row[2] == pytest.approx(0.1 * show_alone[1])
    assert min(faint_by_row[0], faint_by_row[1]) > 10 * faint_by_row[2]  # the socks cannot outrank a blue watch
    # a weight of 0 leaves the words out altogether
    assert index.score(["blue", "watch"], [1.0], 6, faint_terms=["show"], faint_weight=0.0)[0].tolist() == [0, 1]


def test_es_bodies_for_faint_words_and_word_counts(layout):
    body = bm25_query("blue watch", layout, None, 2.0, "show me", 0.1)
    should = body["bool"]["should"]
    assert should[0]["multi_match"]["query"] == "blue watch"
    assert should[1]["multi_match"] == {"query": "show me", "fields": should[0]["multi_match"]["fields"], "type": "best_fields", "boost": 0.1}
    assert should[2]["constant_score"]["filter"]["multi_match"]["query"] == "blue watch"  # the bonus needs placed words only
    assert bm25_query("blue watch", layout, None, 0.0, "show me", 0.0) == bm25_query("blue watch", layout)
    filters = parse_filters({"colour": "Blue"}, layout)
    count = word_count_body("navy blue", layout, filters, within=["p1", "p2"])
    assert count["size"] == 0 and count["track_total_hits"] is True
    assert count["query"]["bool"]["must"][0]["multi_match"] == {
        "query": "navy blue", "fields": should[0]["multi_match"]["fields"], "type": "cross_fields", "operator": "and"}
    assert {"ids": {"values": ["p1", "p2"]}} in count["query"]["bool"]["filter"]
    assert {"term": {"colour": "Blue"}} in count["query"]["bool"]["filter"]
    assert word_count_body("navy", layout, []) == {"size": 0, "track_total_hits": True, "query": {
        "multi_match": {"query": "navy", "fields": should[0]["multi_match"]["fields"], "type": "cross_fields", "operator": "and"}}}


def test_embedded_word_counts_use_the_bm25_analysis_filters_and_ids(tmp_path, layout):
    layout = dataclasses.replace(layout, synonyms=load(PACKAGED))
    store = EmbeddedStore(tmp_path / "s.sqlite", layout)
    store.write([make_doc(layout, "a", 1, title="Men Blue Shoes", colour="Blue"),
                 make_doc(layout, "b", 1, title="Women Blue Shoe", colour="Blue"),
                 make_doc(layout, "c", 1, title="Men Grey Tee", colour="Grey"),
                 make_doc(layout, "d", 1, title="Men Gray T-shirt", colour="Grey")], [])
    assert store.word_counts(["shoe", "blue shoes", "t shirt", "gray", "sandals"], filters=[], near=["c"]) == (
        [2, 2, 2, 2, 0], [0, 0, 1, 1, 0])
    assert store.word_counts(["shoe", "men"], filters=parse_filters({"colour": "Blue"}, layout), near=["a", "c"]) == ([2, 1], [1, 1])
    assert store.word_counts(["shoe", "men"], filters=[], near=["a", "c", "gone"]) == ([2, 3], [1, 2])
    assert store.word_counts([], filters=[], near=["a"]) == ([], [])
    store.close()


def _titled(layout, text_space, titles: list[str]) -> list[StoredDoc]:
    """Products whose text vectors are their titles' (the word check's neighbourhood is a text kNN)."""
    vectors = text_space.embed_texts(titles)
    docs = []
    for i, (title, vector) in enumerate(zip(titles, vectors)):
        doc = make_doc(layout, f"p{i:02d}", 1, title=title, seed=i)
        doc.vectors["text_vector"] = np.asarray(vector, dtype=np.float32)
        docs.append(doc)
    return docs


def test_filler_words_no_neighbour_uses_stop_ranking_the_slogans_first(store, layout, text_space):
    titles = WATCHES + SLOGANS + OTHERS
    store.write(_titled(layout, text_space, titles), [])
    searcher = HybridSearcher(store, layout, text_space)
    check = WordCheck(depth=8, min_count=2)  # a catalogue of 57: the neighbourhood is the watches
    unchecked = searcher.search(HybridQuery(text="show me a blue watch", legs=("bm25",), word_check=None))
    assert unchecked.hits[0].source["title"] in SLOGANS  # "show" and "me" are the rarest words here
    checked = searcher.search(HybridQuery(text="show me a blue watch", legs=("bm25",), word_check=check, size=20))
    assert {h.source["title"] for h in checked.hits[:len(WATCHES)]} == set(WATCHES)
    assert checked.fusion["bm25_text"] == "blue watch" and checked.fusion["unplaced_words"] == ["show", "me"]
    assert checked.fusion["word_check"] == {"depth": 8, "min_count": 2, "unplaced_weight": 0.1}
    assert "word_check" in checked.took_ms
    # a rare word the catalogue has only where the query points is kept in full ("Mauve": one product)
    mauve = searcher.search(HybridQuery(text="mauve kurta", legs=("bm25",), word_check=check, size=20))
    assert mauve.hits[0].source["title"] == "Biba Women Mauve Kurta" and "unplaced_words" not in mauve.fusion
    # the bonus, which filler would have blocked for every product, goes to the placed words
    boosted = searcher.search(HybridQuery(text="i need a blue watch please", legs=("bm25",), word_check=check, size=20,
                                          fusion=FusionConfig(all_terms_boost=2.0)))
    assert {h.source["title"] for h in boosted.hits[:len(WATCHES)]} == set(WATCHES)
    assert boosted.hits[0].legs["bm25"].score > 2.0


def test_a_lone_word_or_a_query_without_text_vectors_is_searched_as_it_is(store, layout, text_space):
    store.write(_titled(layout, text_space, WATCHES + SLOGANS), [])
    searcher = HybridSearcher(store, layout, text_space)
    lone = searcher.search(HybridQuery(text="show", legs=("bm25",), word_check=WordCheck(depth=4, min_count=2)))
    assert lone.hits[0].source["title"] == "Fila Men No Show White Socks" and "bm25_text" not in lone.fusion


def test_words_the_photo_vocabulary_names_are_placed_without_counting(store, layout, text_space, tower_space):
    """A colour, type or gender of the image space's vocabulary is never filler: "set" ("Kurta Sets")
    is kept in full though no product near "blue watch set" holds it; "show" and "me" are still counted."""
    vocabulary = tower_space.vocabulary()
    assert vocabulary.names("set") and vocabulary.names("kurta") and vocabulary.names("scarve")  # "Scarves"
    assert not any(vocabulary.names(w) for w in ("show", "me", "need", "please", "looking"))
    assert named_by(["show", "blue", "navy blue", "t shirt"], vocabulary.names) == [False, True, True, False]
    assert named_by(["blue"], None) == [False]

    store.write(_titled(layout, text_space, WATCHES + SLOGANS + OTHERS), [])
    check = WordCheck(depth=8, min_count=2)
    query = HybridQuery(text="show me a blue watch set", legs=("bm25",), word_check=check, size=20)
    plain = HybridSearcher(store, layout, text_space).search(query)
    assert plain.fusion["unplaced_words"] == ["show", "me", "set"]
    named = HybridSearcher(store, layout, text_space, tower_space).search(query)
    assert named.fusion["bm25_text"] == "blue watch set" and named.fusion["unplaced_words"] == ["show", "me"]
    counted = []
    original = store.word_counts

    def spy(phrases, **kwargs):
        counted.append(list(phrases))
        return original(phrases, **kwargs)

    store.word_counts = spy
    HybridSearcher(store, layout, text_space, tower_space).search(query)
    HybridSearcher(store, layout, text_space, tower_space).search(replace(query, text="blue watch set"))
    assert counted == [["show", "me"]]  # the named words are not counted; a query of named words alone needs no count
