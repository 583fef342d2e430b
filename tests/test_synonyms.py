"""Search-time synonyms: the rule format, the longest-match expansion, how the embedded store
scores a synonym group (as one merged term), and the Elasticsearch analysis the same rules become."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from hybrid_core.config import Settings
from hybrid_core.errors import ConfigError
from hybrid_core.layout import SEARCH_ANALYZER, build_layout
from hybrid_core.stores.embedded import EmbeddedStore
from hybrid_core.stores.lexical import LexicalIndex, fts5_idf, fts5_term_score
from hybrid_core.synonyms import SynonymRules, load, words
from query_builder.query import HybridQuery
from query_builder.searcher import HybridSearcher
from tests.test_embedded_store import make_doc

REPO = Path(__file__).resolve().parents[1]


def test_words_lowercase_split_hyphens_and_drop_possessives():
    assert words("Men's Black T-Shirt, O'Neill") == ["men", "black", "t", "shirt", "o'neill"]
    assert words("Women\u2019s Kurta") == ["women", "kurta"]


def test_equivalent_and_explicit_rules_expand_by_longest_match():
    rules = SynonymRules(["grey, gray", "t shirt, tee  # comment", "", "denims => jeans, denims", "watch, wrist watch"])
    clauses = rules.expand("Gray T-Shirt denims wrist watch red")
    assert [c.matched for c in clauses] == [("gray",), ("t", "shirt"), ("denims",), ("wrist", "watch"), ("red",)]
    assert clauses[0].alternatives == (("gray",), ("grey",))
    assert clauses[1].alternatives == (("t", "shirt"), ("tee",))
    assert clauses[2].alternatives == (("denims",), ("jeans",))
    assert clauses[3].alternatives == (("watch",), ("wrist", "watch"))
    assert not clauses[4].is_synonym and clauses[4].alternatives == (("red",),)
    # explicit rules map one way only
    assert not rules.expand("jeans")[0].is_synonym


def test_canonical_wording_puts_each_matched_phrase_in_its_rules_first_phrase():
    rules = SynonymRules(["women, ladies, female", "t shirt, tshirt, tee", "undershirt => vest, undershirt", "tee, golf tee"])
    assert rules.canonical("Ladies TEE") == "women t shirt"
    assert rules.canonical("female tshirt, size M") == "women t shirt size m"  # rewritten: lower-cased words
    assert rules.canonical("undershirt") == "vest"  # an explicit rule's first target
    assert rules.canonical("tee") == "t shirt"  # the first rule naming a phrase decides
    # nothing to rewrite (canonical words, or none a rule knows): the text exactly as typed
    assert rules.canonical("T-Shirt for Women!") == "T-Shirt for Women!"
    assert rules.canonical("Red Kurta") == "Red Kurta"
    assert SynonymRules([]).canonical("ladies tee") == "ladies tee"


def test_the_vector_legs_embed_the_canonical_wording_unless_turned_off(tmp_path, text_space):
    layout = build_layout(text_space.spec, None, load("packaged"))
    store = EmbeddedStore(tmp_path / "t.sqlite", layout)
    titles = {"p1": "Wildcraft Unisex Blue Backpack", "p2": "Nike Men Grey Track Pants", "p3": "Puma Women Red Tshirt"}
    store.write([make_doc(layout, pid, 1, title=title, seed=i) for i, (pid, title) in enumerate(titles.items())], [])
    query = HybridQuery(text="Gray joggers for gents", legs=("bm25", "text"))

    on = HybridSearcher(store, layout, text_space)
    vectors = on.encode(query, {"text"})
    assert np.allclose(vectors.text, text_space.embed_query("grey track pants for men"))
    assert on.search(query).fusion["vector_text"] == "grey track pants for men"

    off = HybridSearcher(store, layout, text_space, vector_synonyms=False)
    assert np.allclose(off.encode(query, {"text"}).text, text_space.embed_query("Gray joggers for gents"))
    assert "vector_text" not in off.search(query).fusion
    # BM25 reads the rules as alternatives either way: the same leg with and without
    assert on.leg_results(query)["bm25"] == off.leg_results(query)["bm25"]
    # a query in canonical words is embedded as typed and reported as nothing rewritten
    assert "vector_text" not in on.search(HybridQuery(text="grey track pants", legs=("text",))).fusion
    assert Settings().vector_synonyms and not Settings.from_env({"HYBRID_SEARCH_VECTOR_SYNONYMS": "false"}).vector_synonyms
    store.close()


@pytest.mark.parametrize(
    ("line", "problem"),
    [("grey", "one phrase"), ("a => b => c", "more than one"), ("a,, b", "empty phrase"), ("=> b", "empty phrase")],
)
def test_a_bad_rule_is_named_with_its_line(tmp_path, line, problem):
    path = tmp_path / "syn.txt"
    path.write_text(f"# ok\ngrey, gray\n{line}\n")
    with pytest.raises(ConfigError, match=rf"syn.txt line 3: .*{problem}"):  # the file's line, comments counted
        load(str(path))
    with pytest.raises(ConfigError, match="line 3"):
        Settings(synonyms=str(path))


def test_settings_name_the_packaged_list_none_or_a_file(tmp_path):
    packaged = load("packaged")
    assert any(line.startswith("grey, gray") for line in packaged) and all("#" not in line for line in packaged)
    assert load("none") == () and load("") == ()
    with pytest.raises(ConfigError, match="cannot read synonyms file"):
        load(str(tmp_path / "missing.txt"))
    assert Settings.from_env({"HYBRID_SEARCH_SYNONYMS": "none"}).layout().synonyms == ()
    assert Settings().layout().synonyms == packaged


def _index(rows: list[str]) -> LexicalIndex:
    index = LexicalIndex(1)
    index.apply({i: {term: [1] for term in row.split()} if row else None for i, row in enumerate(rows)})
    return index


def test_a_group_scores_as_one_merged_term():
    """"grei" or "grai" in a group scores each row exactly as a single term would in the index
    where both were written "grei" (union postings, summed frequencies)."""
    rows = ["grei shirt", "grai shirt", "grei grai", "red shirt", "blue kurta", "grai kurta", "black shoe"]
    index = _index(rows)
    merged = _index([" ".join("grei" if t == "grai" else t for t in r.split()) for r in rows])
    # the merged row "grei grei" counts grei twice: give the merged index that frequency
    merged.apply({2: {"grei": [2]}})
    group_hits, group_scores = index.score([(("grai",), ("grei",)), "shirt"], [1.0], len(rows))
    want_hits, want_scores = merged.score(["grei", "shirt"], [1.0], len(rows))
    assert group_hits.tolist() == want_hits.tolist()
    assert group_scores == pytest.approx(want_scores, rel=1e-12)


def test_an_alternative_of_several_terms_is_a_phrase_clause_needing_them_all_in_the_row():
    """As Lucene weighs a phrase: the sum of its terms' IDFs; the one-term alternatives are a
    clause of their own."""
    index = _index(["t shirt", "shirt", "tee", "t", "kurta"])
    hits, scores = index.score([(("shirt", "t"), ("tee",))], [1.0], 5)
    assert hits.tolist() == [0, 2]
    phrase_idf = float(fts5_idf(5, 2)) + float(fts5_idf(5, 2))  # "shirt" in rows 0, 1; "t" in rows 0, 3
    tee_idf = float(fts5_idf(5, 1))
    # row 0 is two tokens long, row 2 one; the mean is 6/5
    assert scores.tolist() == pytest.approx([fts5_term_score(phrase_idf, 1.0, 2, 6 / 5), fts5_term_score(tee_idf, 1.0, 1, 6 / 5)])


def _store(tmp_path: Path, layout, synonyms: str) -> EmbeddedStore:
    layout = dataclasses.replace(layout, synonyms=load(synonyms))
    store = EmbeddedStore(tmp_path / f"{synonyms}.sqlite", layout)
    titles = {
        "p1": "Women Grey Kurta",
        "p2": "Men Grey Kurta",
        "p3": "Women Red Kurta",
        "p4": "Nike Men Black Wrist Watch",
        "p5": "Puma Men Black Watch",
        "p6": "Women Blue T-Shirt",
    }
    store.write([make_doc(layout, pid, 1, title=title, seed=i) for i, (pid, title) in enumerate(titles.items())], [])
    return store


def test_the_embedded_store_finds_synonyms_only_with_them_on(tmp_path, layout):
    on, off = _store(tmp_path, layout, "packaged"), _store(tmp_path, layout, "none")
    boosts = {"title": 2.0, "description": 1.0}

    def top(store, text, k=2):
        return [pid for pid, _ in store.bm25(text, boosts=boosts, filters=[], size=k)]

    assert top(on, "ladies gray kurta", 1) == ["p1"]  # both words through a synonym
    assert top(off, "ladies gray kurta", 3) == ["p1", "p2", "p3"]  # kurta alone: a three-way tie
    assert set(top(on, "wristwatch", 2)) == {"p4", "p5"} and top(off, "wristwatch") == []
    assert top(on, "tee") == ["p6"] and top(off, "tee") == []
    # a query without any rule's words is scored as before
    assert on.bm25("red kurta", boosts=boosts, filters=[], size=3) == off.bm25("red kurta", boosts=boosts, filters=[], size=3)
    on.close()
    off.close()


def test_the_mapping_puts_the_rules_in_a_search_analyzer_that_rebuilds_english():
    body = Settings().layout().to_es_mapping()
    analysis = body["settings"]["analysis"]
    chain = analysis["analyzer"][SEARCH_ANALYZER]
    assert chain["tokenizer"] == "standard"
    # lowercased before the rules are matched, stemmed after (so rules are plain words)
    assert chain["filter"].index("lowercase") < chain["filter"].index("catalogue_synonyms") < chain["filter"].index("english_stemmer")
    assert analysis["filter"]["catalogue_synonyms"] == {"type": "synonym_graph", "synonyms": list(load("packaged"))}
    for name in ("title", "description"):
        field = body["mappings"]["properties"][name]
        assert field["analyzer"] == "english" and field["search_analyzer"] == SEARCH_ANALYZER
    # the committed contract is this rendering
    assert json.loads((REPO / "mappings" / "products.json").read_text())["settings"] == body["settings"]
    plain = Settings(synonyms="none").layout().to_es_mapping()
    assert "analysis" not in plain["settings"] and "search_analyzer" not in plain["mappings"]["properties"]["title"]


def test_synonyms_are_not_part_of_the_layout_signature():
    """Changing the list needs no reindex: a store made with one list opens with another."""
    with_rules, without = Settings().layout(), Settings(synonyms="none").layout()
    assert with_rules.signature() == without.signature()
    assert with_rules == without


def test_a_row_holding_several_alternatives_counts_the_best_one():
    """"Tee ... T-shirt" must not outrank "Brown T-shirt" for "brown t-shirt" by holding the
    concept twice (Lucene's graph query would add the clauses)."""
    rows = ["tee t shirt", "brown t shirt", "brown kurta", "blue jeans", "tee", "t shirt"]
    index = _index(rows)
    group = (("shirt", "t"), ("tee",))
    both = index.score([group], [1.0], len(rows))
    phrase_only = dict(zip(*index.score([(("shirt", "t"),)], [1.0], len(rows))))
    tee_only = dict(zip(*index.score([(("tee",),)], [1.0], len(rows))))
    scores = dict(zip(*both))
    assert scores[0] == pytest.approx(max(phrase_only[0], tee_only[0]))
    ranked = dict(zip(*index.score(["brown", group], [1.0], len(rows))))
    assert ranked[1] > ranked[0]
