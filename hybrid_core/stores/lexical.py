"""In-memory BM25 for the embedded store, scored exactly as SQLite FTS5's ``bm25()``.

Why not ask FTS5: its ``bm25()`` is evaluated for every row that matches any query word,
and in a product catalogue "men", "women" or "for" match most rows, so a five-word query
over 44k products spent ~130 ms scoring and sorting in SQLite. Here the postings of each
term are NumPy arrays, a query is a handful of vector operations over them and a top-k
``argpartition`` (about 1-2 ms at 44k).

What stays the same as FTS5: the tokenizer is FTS5's own (``tokenize`` string of the
store's FTS table, run by an in-memory FTS5 table, so stemming and diacritics agree), and
the score is FTS5's formula: ``idf = ln((N - n + 0.5) / (n + 0.5))`` clamped to 1e-6,
``tf`` = sum of per-column weights over the instances in the row, ``|D|`` = the row's
tokens in all columns, ``k1`` = 1.2, ``b`` = 0.75. A test checks scores against FTS5's.

Layout: a *segment* of postings built in bulk (CSC-like: term -> slice of positions and
per-column counts) plus a small *delta* of rows changed since; a changed row's old
postings are masked out of the segment. The delta is folded into a new segment when it
grows past a fraction of the index, the way Lucene merges segments.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass, field

import numpy as np

K1 = 1.2
B = 0.75
# a synonym match: its alternatives, each one term or several (a phrase: all must be in the row)
TermGroup = tuple[tuple[str, ...], ...]
IDF_FLOOR = 1e-6
# Elasticsearch's `_english_` stop words (Lucene's EnglishAnalyzer set), which the index's `english`
# analyzer drops from queries and titles alike. FTS5 keeps every word, so without this "shorts for
# men" also matched the few dozen titles that say "for" ("Perfume for Her"), each with a high IDF.
ENGLISH_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
_WORD = re.compile(r"[^\W_]+")


def drop_stop_words(text: str) -> str:
    """``text`` without its English stop words (whole words, any case), as the `english`
    analyzer reads a query; the remaining words keep their order and punctuation.

    The embedded store drops them before synonym expansion, Elasticsearch's search analyzer
    after it: a rule whose phrase holds a stop word ("tee for men") would match there and not
    here. The packaged rules hold none (a test checks)."""
    return _WORD.sub(lambda m: " " if m.group(0).lower() in ENGLISH_STOP_WORDS else m.group(0), text)


def fts5_idf(n_rows: int, n_hit: np.ndarray | int) -> np.ndarray:
    """FTS5's IDF: negative values (terms in more than half the rows) become 1e-6."""
    idf = np.log((n_rows - np.asarray(n_hit, dtype=np.float64) + 0.5) / (np.asarray(n_hit, dtype=np.float64) + 0.5))
    return np.where(idf <= 0.0, IDF_FLOOR, idf)


def fts5_term_score(idf: float, tf: np.ndarray, doc_len: np.ndarray, avgdl: float) -> np.ndarray:
    """One query term's contribution to FTS5's BM25 for each row (``tf`` already weighted)."""
    return idf * (tf * (K1 + 1.0)) / (tf + K1 * (1.0 - B + B * doc_len / avgdl))


class Fts5Analyzer:
    """Turns texts into terms exactly as an FTS5 table with the same ``tokenize`` option does.

    A private in-memory FTS5 table is filled and read back through ``fts5vocab`` (its
    ``instance`` view lists every token with its row and column), so there is no second
    stemmer to drift from the on-disk index.
    """

    def __init__(self, columns: int, tokenize: str) -> None:
        self.columns = columns
        self._lock = threading.Lock()  # one private connection, shared by a store's threads
        self._conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        names = ", ".join(f"c{i}" for i in range(columns))
        self._conn.execute(f"CREATE VIRTUAL TABLE t USING fts5({names}, tokenize = {_sql_string(tokenize)})")
        self._conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")

    def _tokens(self, rows: list[tuple[str, ...]], select: str) -> list[tuple]:
        """Insert ``rows`` into the private table, run ``select`` on its vocabulary, roll back."""
        columns = len(rows[0])
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(
                    f"INSERT INTO t (rowid, {', '.join(f'c{i}' for i in range(columns))}) VALUES (?{', ?' * columns})",
                    [(i + 1, *row) for i, row in enumerate(rows)],
                )
                return self._conn.execute(select).fetchall()
            finally:
                self._conn.execute("ROLLBACK")

    def analyze(self, rows: list[list[str]]) -> list[dict[str, list[int]]]:
        """Per row: term -> count in each column."""
        if not rows:
            return []
        counts = self._tokens([tuple(row) for row in rows], "SELECT doc, term, col, count(*) FROM v GROUP BY doc, term, col")
        column_index = {f"c{i}": i for i in range(self.columns)}
        out: list[dict[str, list[int]]] = [{} for _ in rows]
        for doc, term, col, n in counts:
            terms = out[doc - 1]
            per_column = terms.get(term)
            if per_column is None:
                per_column = terms[term] = [0] * self.columns
            per_column[column_index[col]] = n
        return out

    def query_terms(self, text: str, limit: int) -> list[str]:
        """The distinct terms of a query, in order of first appearance, at most ``limit``."""
        rows = self._tokens([(text,)], "SELECT term, offset FROM v ORDER BY offset")
        return list(dict.fromkeys(term for term, _ in rows))[:limit]


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class _Segment:
    """Postings of one bulk build: term -> positions[start:end] and counts[start:end, column]."""

    slices: dict[str, tuple[int, int]] = field(default_factory=dict)
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), dtype=np.float64))


class LexicalIndex:
    """BM25 postings over row positions (the same positions as the store's vector matrices)."""

    def __init__(self, columns: int, *, merge_fraction: float = 0.05, merge_minimum: int = 2000) -> None:
        self.columns = columns
        self.merge_fraction = merge_fraction
        self.merge_minimum = merge_minimum
        self._rows: dict[int, dict[str, list[int]]] = {}  # every live row's terms (the source of a rebuild)
        # tokens per row and column: a column weighed 0 leaves the length too, as a field Elasticsearch
        # does not search has no norm in the score
        self._doc_len = np.zeros((0, columns), dtype=np.float64)
        self._total_tokens = np.zeros(columns, dtype=np.float64)
        self._segment = _Segment(counts=np.zeros((0, columns)))
        self._in_segment = np.zeros(0, dtype=bool)  # position's segment postings are current
        self._delta: dict[str, dict[int, list[int]]] = {}
        self._delta_rows: set[int] = set()

    @property
    def n_rows(self) -> int:
        return len(self._rows)

    def _ensure(self, size: int) -> None:
        if size > len(self._doc_len):
            capacity = max(size, 2 * len(self._doc_len), 1024)
            grown_len = np.zeros((capacity, self.columns))
            grown_len[: len(self._doc_len)] = self._doc_len
            self._doc_len = grown_len
            grown = np.zeros(capacity, dtype=bool)
            grown[: len(self._in_segment)] = self._in_segment
            self._in_segment = grown

    def apply(self, changes: dict[int, dict[str, list[int]] | None]) -> None:
        """``changes``: position -> its terms now, or ``None`` for a row that is gone."""
        if not changes:
            return
        self._ensure(max(changes) + 1)
        for pos, terms in changes.items():
            old = self._rows.pop(pos, None)
            if old is not None:
                self._total_tokens -= self._doc_len[pos]
                if pos in self._delta_rows:
                    for term in old:
                        postings = self._delta[term]
                        del postings[pos]
                        if not postings:
                            del self._delta[term]
                    self._delta_rows.discard(pos)
            self._in_segment[pos] = False
            self._doc_len[pos] = 0
            if terms is None:
                continue
            self._rows[pos] = terms
            length = np.sum(list(terms.values()), axis=0) if terms else np.zeros(self.columns)
            self._doc_len[pos] = length
            self._total_tokens += length
            self._delta_rows.add(pos)
        if len(self._delta_rows) > max(self.merge_minimum, self.merge_fraction * len(self._rows)):
            self._merge()  # a bulk load goes straight into a segment
            return
        for pos, terms in changes.items():
            if terms is not None:
                for term, counts in terms.items():
                    self._delta.setdefault(term, {})[pos] = counts

    def _merge(self) -> None:
        """Fold every live row into one new segment (and empty the delta)."""
        vocabulary: dict[str, int] = {}
        term_ids: list[int] = []
        positions: list[int] = []
        counts: list[list[int]] = []
        for pos, terms in self._rows.items():
            for term, c in terms.items():
                term_ids.append(vocabulary.setdefault(term, len(vocabulary)))
                positions.append(pos)
                counts.append(c)
        ids = np.asarray(term_ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        bounds = np.searchsorted(sorted_ids, np.arange(len(vocabulary) + 1))
        self._segment = _Segment(
            slices={term: (int(bounds[i]), int(bounds[i + 1])) for term, i in vocabulary.items()},
            positions=np.asarray(positions, dtype=np.int64)[order],
            counts=np.asarray(counts, dtype=np.float64).reshape(-1, self.columns)[order],
        )
        self._in_segment[:] = False
        if self._rows:
            self._in_segment[np.fromiter(self._rows, dtype=np.int64, count=len(self._rows))] = True
        self._delta = {}
        self._delta_rows = set()

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """Current positions holding ``term`` and their per-column counts."""
        parts_pos, parts_counts = [], []
        span = self._segment.slices.get(term)
        if span is not None:
            pos = self._segment.positions[span[0] : span[1]]
            current = self._in_segment[pos]
            parts_pos.append(pos[current])
            parts_counts.append(self._segment.counts[span[0] : span[1]][current])
        delta = self._delta.get(term)
        if delta:
            parts_pos.append(np.fromiter(delta, dtype=np.int64, count=len(delta)))
            parts_counts.append(np.asarray(list(delta.values()), dtype=np.float64).reshape(-1, self.columns))
        if not parts_pos:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.columns))
        return np.concatenate(parts_pos), np.concatenate(parts_counts)

    def score(
        self,
        terms: list[str | TermGroup],
        weights: list[float],
        size: int,
        all_terms_boost: float = 0.0,
        faint_terms: list[str | TermGroup] | None = None,
        faint_weight: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positions matching any term and their FTS5 BM25 scores (unsorted; ``size`` is the array
        length the caller's position arrays have), plus ``all_terms_boost`` where a row holds every
        term (a group: any of its alternatives), as Elasticsearch's ``constant_score`` over an
        ``operator: and`` match adds it. ``faint_terms`` score at ``faint_weight`` times their BM25
        and are not needed for the bonus (a second ``multi_match`` with a ``boost``, on Elasticsearch).

        A ``TermGroup`` (synonyms, ``hybrid_core.synonyms``) is scored as Lucene scores what
        Elasticsearch's ``synonym_graph`` makes of it: its one-term alternatives as one term whose
        postings are their union (a row's frequency the sum over those it holds, the document
        frequency the number of rows holding any: a ``SynonymQuery``), and each alternative of
        several terms as a phrase clause of its own, whose weight is the sum of its terms' IDFs and
        whose frequency in a row holding all of them is that of its rarest (co-occurrence stands in
        for adjacency: the postings keep no positions). One departure: a row holding several of
        these clauses counts the best, where Lucene's graph query adds them up; adding ranks
        "Tee ... T-shirt" titles above every "Brown T-shirt" for the query "brown t-shirt" (dev
        queries: BM25 NDCG@10 0.789 with the sum, against 0.793 without synonyms)."""
        n = self.n_rows
        faint = [t for t in (faint_terms or []) if t not in terms] if faint_weight > 0 else []
        if n == 0 or not (terms or faint):
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        w = np.asarray(weights, dtype=np.float64)
        scores = np.zeros(size)
        held_terms = np.zeros(size, dtype=np.int64)
        for term in terms:
            held, term_scores = self._term_scores(term, w, size)
            scores[held] += term_scores
            held_terms[held] += 1
        matched = held_terms > 0
        for term in faint:
            held, term_scores = self._term_scores(term, w, size)
            scores[held] += faint_weight * term_scores
            matched[held] = True
        hits = np.flatnonzero(matched)
        if all_terms_boost and terms:
            scores[hits[held_terms[hits] == len(terms)]] += all_terms_boost
        return hits, scores[hits]

    def _term_scores(self, term: str | TermGroup, w: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows holding one query term and its BM25 contribution to each (see ``score``)."""
        searched = (w > 0).astype(np.float64)  # lengths count the columns searched (all of them, unless one is weighed 0)
        avgdl = float(self._total_tokens @ searched) / self.n_rows
        clauses = self._clauses(term, w, size)
        if len(clauses) == 1:
            pos, tf, idf = clauses[0]
            return pos, fts5_term_score(idf, tf, self._doc_len[pos] @ searched, avgdl)
        best = np.zeros(size)  # a row holding several alternatives counts its best one
        for pos, tf, idf in clauses:
            best[pos] = np.maximum(best[pos], fts5_term_score(idf, tf, self._doc_len[pos] @ searched, avgdl))
        held = np.flatnonzero(best > 0)
        return held, best[held]

    def holding(self, terms: list[str | TermGroup], size: int) -> np.ndarray:
        """A mask over positions: the rows holding every term (a group: any of its alternatives),
        as ``score`` counts a row for ``all_terms_boost``."""
        mask = np.full(size, bool(terms))
        ones = np.ones(self.columns)
        for term in terms:
            held = np.zeros(size, dtype=bool)
            for pos, _, _ in self._clauses(term, ones, size):
                held[pos] = True
            mask &= held
        return mask

    def _clauses(self, term: str | TermGroup, w: np.ndarray, size: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """(positions, weighted frequencies, IDF) of each clause a query term makes (see ``score``)."""
        n = self.n_rows
        if isinstance(term, str):
            pos, counts = self.postings(term)
            tf = counts @ w
            held = tf > 0  # a row holding the term only in fields weighed 0 does not match
            return [(pos[held], tf[held], float(fts5_idf(n, int(held.sum()))))]
        clauses = []
        single = [alternative[0] for alternative in term if len(alternative) == 1]
        if single:
            tf = np.zeros(size)
            for one in single:
                pos, counts = self.postings(one)
                tf[pos] += counts @ w
            pos = np.flatnonzero(tf > 0)
            clauses.append((pos, tf[pos], float(fts5_idf(n, pos.size))))
        for phrase in (alternative for alternative in term if len(alternative) > 1):
            pos, counts = self.postings(phrase[0])
            freq, idf = counts @ w, float(fts5_idf(n, pos.size))
            for word in phrase[1:]:
                other_pos, other_counts = self.postings(word)
                idf += float(fts5_idf(n, other_pos.size))
                pos, mine, theirs = np.intersect1d(pos, other_pos, assume_unique=True, return_indices=True)
                freq = np.minimum(freq[mine], (other_counts @ w)[theirs])
            clauses.append((pos[freq > 0], freq[freq > 0], idf))
        return clauses
