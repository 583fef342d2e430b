"""The embedded store's in-memory BM25 against SQLite FTS5's own ``bm25()`` on the same
table: same hits, same order, same scores, through inserts, updates, deletes and segment
merges, with field weights and filters."""

from __future__ import annotations

import random
import re
import sqlite3

import numpy as np
import pytest

from hybrid_core.filters import parse_filters, to_sql
from hybrid_core.stores.embedded import EmbeddedStore
from hybrid_core.stores.lexical import ENGLISH_STOP_WORDS, Fts5Analyzer, LexicalIndex, drop_stop_words, fts5_idf
from tests.test_embedded_store import make_doc

WORDS = (
    "men women red blue black white green running shoes shoe kurta kurtas cotton slim fit jeans "
    "t-shirt tshirt watch analog café printed casual sports for with and the nike puma adidas "
    "sandals flip flops bag handbag"
).split()


def _fts5_reference(path, text: str, weights: list[float], filters, size: int) -> list[tuple[str, float]]:
    """What the store answered before it kept postings in memory: FTS5 scoring every match
    (of the query as the store reads it, without English stop words). A column weighed 0 is left
    out (FTS5 would still match it and count its length): the reference is then FTS5 over a copy
    of the table without it, as Elasticsearch leaves out a field its query does not name."""
    terms = Fts5Analyzer(2, "porter unicode61 remove_diacritics 2").query_terms(drop_stop_words(text), 64)
    if not terms:
        return []
    clause, params = to_sql(filters)
    columns = [c for c, w in zip(("title", "description"), weights) if w > 0]
    with sqlite3.connect(path) as conn:
        table = "products_fts"
        if len(columns) < len(weights):
            table = "temp.searched"
            conn.execute(f"CREATE VIRTUAL TABLE {table} USING fts5({', '.join(columns)}, tokenize = 'porter unicode61 remove_diacritics 2')")
            conn.execute(f"INSERT INTO {table} (rowid, {', '.join(columns)}) SELECT rowid, {', '.join(columns)} FROM products_fts")
        name = table.split(".")[-1]
        rows = conn.execute(
            f"SELECT p.id, -bm25({name}, {', '.join('?' * len(columns))}) AS score FROM {table} "
            f"JOIN products AS p ON p.rowid = {name}.rowid "
            f"WHERE {name} MATCH ? AND p.deleted = 0 AND {clause} ORDER BY score DESC, p.id LIMIT ?",
            [*(w for w in weights if w > 0), " OR ".join(f'"{t}"' for t in terms), *params, size],
        ).fetchall()
    return [(r[0], float(r[1])) for r in rows]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


@pytest.mark.parametrize("merge_minimum", [5, 100_000])  # merging often / never (all in the delta)
def test_bm25_equals_fts5_through_updates_deletes_and_merges(tmp_path, layout, merge_minimum):
    rng = random.Random(7)
    store = EmbeddedStore(tmp_path / "s.sqlite", layout)
    store._lexical = LexicalIndex(len(layout.text_fields), merge_minimum=merge_minimum, merge_fraction=0.0)
    queries = ["black running shoes for men", "Kurtas", "café", "t-shirt slim", "nike OR NOT puma", "zzz unknown"]
    weights_sets = [[1.0, 1.0], [3.0, 1.0], [1.0, 0.0], [0.0, 2.0]]
    filters_sets = [[], parse_filters({"colour": "Blue"}, layout)]
    versions: dict[str, int] = {}
    for round_ in range(6):
        docs, deletes = [], []
        for _ in range(40):
            pid = f"p{rng.randrange(120):03d}"
            versions[pid] = versions.get(pid, 0) + 1
            if rng.random() < 0.15:
                deletes.append((pid, versions[pid]))
            else:
                docs.append(make_doc(layout, pid, versions[pid], title=_text(rng, rng.randint(1, 8)),
                                     description=_text(rng, rng.randint(0, 12)), colour=rng.choice(["Red", "Blue"]), seed=round_))
        seen, unique_docs = set(), []
        for d in reversed(docs):  # one version per id per batch
            if d.id not in seen and d.id not in {p for p, _ in deletes}:
                seen.add(d.id)
                unique_docs.append(d)
        store.write(unique_docs, [(p, v) for p, v in deletes if p not in seen])
        for text in queries:
            for weights in weights_sets:
                for filters in filters_sets:
                    boosts = dict(zip([t.name for t in layout.text_fields], weights))
                    got = store.bm25(text, boosts=boosts, filters=filters, size=15)
                    want = _fts5_reference(store.path, text, weights, filters, 15)
                    assert [d for d, _ in got] == [d for d, _ in want], (round_, text, weights)
                    assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9, abs=1e-12)
    store.close()


def test_query_terms_are_fts5_tokens_in_order_and_bounded():
    analyzer = Fts5Analyzer(1, "porter unicode61 remove_diacritics 2")
    assert analyzer.query_terms('Red "Kurtas" AND NOT(x) red', 64) == ["red", "kurta", "and", "not", "x"]
    assert analyzer.query_terms("Café crème", 64) == ["cafe", "creme"]
    assert analyzer.query_terms("!!! ???", 64) == []
    assert analyzer.query_terms(" ".join(f"w{i}" for i in range(100)), 64) == [f"w{i}" for i in range(64)]


def test_drop_stop_words_drops_elasticsearchs_english_set_only():
    assert drop_stop_words("Shorts FOR men with a belt").split() == ["Shorts", "men", "belt"]
    assert drop_stop_words("T-Shirt, For Women!") == "T-Shirt,   Women!"  # punctuation left to the tokenizer
    assert drop_stop_words("men's tee") == "men's tee"  # "s" is no stop word
    assert drop_stop_words("show me the forest") == "show me   forest"  # whole words only; "me" is not in the set
    assert drop_stop_words("for the").strip() == ""


def test_packaged_synonyms_hold_no_stop_words():
    """The embedded store drops stop words before expanding synonyms (drop_stop_words says why
    that is safe only for rules without them)."""
    from hybrid_core.synonyms import PACKAGED, load

    words = {w.lower() for rule in load(PACKAGED) for w in re.findall(r"[^\W_]+", rule)}
    assert words and not words & ENGLISH_STOP_WORDS


def test_bm25_ignores_stop_words_as_elasticsearchs_english_analyzer_does(tmp_path, layout):
    store = EmbeddedStore(tmp_path / "s.sqlite", layout)
    store.write([make_doc(layout, "perfume", 1, title="Perfume for Her"),
                 make_doc(layout, "shorts", 1, title="Men Blue Shorts"),
                 make_doc(layout, "shirt", 1, title="Men White Shirt")], [])
    hits = [d for d, _ in store.bm25("shorts for men", boosts={}, filters=[], size=10)]
    assert hits[0] == "shorts" and "perfume" not in hits
    assert store.bm25("for the", boosts={}, filters=[], size=10) == []
    store.close()


def test_fts5_idf_floor():
    assert float(fts5_idf(10, 8)) == pytest.approx(1e-6)
    assert float(fts5_idf(10, 1)) == pytest.approx(np.log(9.5 / 1.5))


def test_all_terms_boost_adds_its_constant_to_rows_holding_every_query_word(tmp_path, layout):
    store = EmbeddedStore(tmp_path / "s.sqlite", layout)
    store.write([make_doc(layout, "men", 1, title="Men Brown Shirt"),
                 make_doc(layout, "women", 1, title="Women Brown Shirt"),
                 make_doc(layout, "long", 1, title="Spykar Men Check Brown Shirt With Pocket"),
                 *(make_doc(layout, f"other{i}", 1, title=f"Puma Red Kurta {i}") for i in range(12))], [])
    plain = dict(store.bm25("men brown shirt", boosts={}, filters=[], size=10))
    boosted = dict(store.bm25("men brown shirt", boosts={}, filters=[], size=10, all_terms_boost=2.5))
    assert boosted.keys() == plain.keys() == {"men", "women", "long"}
    assert boosted["men"] == pytest.approx(plain["men"] + 2.5)
    assert boosted["long"] == pytest.approx(plain["long"] + 2.5)
    assert boosted["women"] == pytest.approx(plain["women"])  # no "men" in it
    assert min(boosted["men"], boosted["long"]) > boosted["women"]
    # stop words are not words the row has to hold, as in Elasticsearch's english analyzer
    for_men = dict(store.bm25("shirt for men", boosts={}, filters=[], size=10, all_terms_boost=2.5))
    assert for_men["men"] == pytest.approx(dict(store.bm25("shirt for men", boosts={}, filters=[], size=10))["men"] + 2.5)
    store.close()


def test_all_terms_boost_counts_a_synonym_group_held_through_any_alternative():
    index = LexicalIndex(1)
    index.apply({i: {term: [1] for term in title.split()} for i, title in enumerate(["red tee", "red t shirt", "red kurta"])})
    group = (("tee",), ("shirt", "t"))
    plain_hits, plain = index.score(["red", group], [1.0], 3)
    hits, boosted = index.score(["red", group], [1.0], 3, all_terms_boost=1.5)
    assert hits.tolist() == plain_hits.tolist() == [0, 1, 2]
    assert (boosted - plain).tolist() == pytest.approx([1.5, 1.5, 0.0])
