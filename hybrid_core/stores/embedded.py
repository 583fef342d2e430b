"""The embedded default store: one SQLite file (FTS5 for BM25) plus exact NumPy kNN.

Why this shape: a product's text, attributes and vectors live in one row, so one
transaction changes all of them; SQLite's WAL lets several worker processes write
(serialized by ``BEGIN IMMEDIATE`` and a busy timeout) while searches read a
consistent snapshot. Vectors are also kept in memory as float32 matrices for exact
kNN; every committed change gets a strictly increasing ``seq``, so a reader
refreshes its matrices incrementally (only rows with a newer ``seq``) before each
search instead of reloading the table.

Scores follow Elasticsearch where they can: kNN over ``cosine`` reports
``(1 + cos) / 2``. BM25 is FTS5's (porter stemming, per-field weights; *not*
numerically equal to Lucene's BM25), computed from in-memory postings that are
refreshed the same way as the vectors (``lexical.py`` says why); the FTS5 table
stays the durable text index that any SQLite client can query.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_core.errors import LayoutError, StoreError, TransientStoreError, ValidationError
from hybrid_core.filters import Condition, to_sql
from hybrid_core.layout import FieldLayout
from hybrid_core.stores.ann import HnswField
from hybrid_core.stores.base import ExistingDoc, ItemErrorRecord, RankedIds, StoredDoc, WriteOutcome
from hybrid_core.stores.lexical import Fts5Analyzer, LexicalIndex, TermGroup, drop_stop_words
from hybrid_core.synonyms import SynonymRules
from hybrid_core.vectors import unit

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
MAX_QUERY_TOKENS = 64
FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"


def _blob(vector: np.ndarray) -> bytes:
    return unit(vector).astype("<f4").tobytes()


def _translate(exc: sqlite3.Error, what: str) -> StoreError:
    message = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return TransientStoreError(f"{what}: database busy ({exc})")
    return StoreError(f"{what}: {exc}")


class _VectorIndex:
    """In-memory float32 matrices of every vector field, refreshed incrementally by ``seq``."""

    def __init__(self, fields: dict[str, int]) -> None:
        self.fields = fields
        self.seq = 0
        self.size = 0
        self.capacity = 0
        self.rowids = np.zeros(0, dtype=np.int64)
        self.ids: list[str] = []
        self.position: dict[int, int] = {}
        self.id_position: dict[str, int] = {}  # each id's current row (a re-added id gets a new rowid)
        self.matrix = {name: np.zeros((0, dims), dtype=np.float32) for name, dims in fields.items()}
        self.present = {name: np.zeros(0, dtype=bool) for name in fields}

    def _grow(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        capacity = max(needed, self.capacity * 2, 1024)
        self.rowids = np.resize(self.rowids, capacity)
        for name, dims in self.fields.items():
            grown = np.zeros((capacity, dims), dtype=np.float32)
            grown[: self.size] = self.matrix[name][: self.size]
            self.matrix[name] = grown
            present = np.zeros(capacity, dtype=bool)
            present[: self.size] = self.present[name][: self.size]
            self.present[name] = present
        self.capacity = capacity

    def apply(self, rows: list[sqlite3.Row]) -> list[int]:
        """Take changed rows in; returns each row's position."""
        positions = []
        new = sum(1 for row in rows if row["rowid"] not in self.position)
        self._grow(self.size + new)
        for row in rows:
            pos = self.position.get(row["rowid"])
            if pos is None:
                pos = self.size
                self.size += 1
                self.position[row["rowid"]] = pos
                self.rowids[pos] = row["rowid"]
                self.ids.append(row["id"])
                self.id_position[row["id"]] = pos
            positions.append(pos)
            for name in self.fields:
                blob = None if row["deleted"] else row[name]
                if blob is None:
                    self.present[name][pos] = False
                else:
                    self.matrix[name][pos] = np.frombuffer(blob, dtype="<f4")
                    self.present[name][pos] = True
            self.seq = max(self.seq, row["seq"])
        return positions


class EmbeddedStore:
    """SQLite + NumPy store for one field layout. Construction does no I/O."""

    concurrent_legs = False  # legs are in-process CPU work of about a millisecond: run them in turn

    def __init__(
        self, path: str | Path, layout: FieldLayout, *, busy_timeout_s: float = 30.0, exact_knn_max_rows: int | None = 20_000
    ) -> None:
        """``exact_knn_max_rows``: above this many rows an unfiltered kNN leg searches an HNSW graph
        (``ann.py``); ``None``: always exact."""
        self.path = Path(path)
        self.layout = layout
        self.busy_timeout_s = busy_timeout_s
        self.exact_knn_max_rows = exact_knn_max_rows
        self._ann: dict[str, HnswField] = {}  # graphs ready to search
        self._ann_changes: dict[str, list[int]] = {}  # graphs being built: rows changed since their snapshot
        self._ann_builds: dict[str, threading.Thread] = {}
        self._ann_failed: set[str] = set()  # a build that failed is not retried: the field stays exact
        self._local = threading.local()
        self._index_lock = threading.Lock()
        self._index = _VectorIndex({vf.name: vf.dims for vf in layout.vector_fields})
        self._analyzer_instance: Fts5Analyzer | None = None
        self._analyzer_lock = threading.Lock()
        self._lexical = LexicalIndex(len(layout.text_fields))
        self._synonyms = SynonymRules(layout.synonyms)
        self._initialized = False
        for name in [*layout.attribute_names, *(v.name for v in layout.vector_fields), *(t.name for t in layout.text_fields)]:
            if not _IDENT.match(name):
                raise LayoutError(f"field name {name!r} is not a plain identifier")

    # -- connection and schema -------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as exc:
                raise _translate(exc, f"cannot open store {self.path}") from exc
            self._local.conn = conn
            if not self._initialized:
                self._init_schema(conn)
                self._initialized = True
        return conn

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        attr_cols = ", ".join(
            f'"{a.name}" {"REAL" if a.type == "float" else "INTEGER" if a.type == "integer" else "TEXT"}'
            for a in self.layout.attribute_fields
        )
        vec_cols = ", ".join(f'"{v.name}" BLOB' for v in self.layout.vector_fields)
        text_cols = ", ".join(t.name for t in self.layout.text_fields)
        signature = json.dumps(self.layout.signature(), sort_keys=True)
        with self._transaction(conn, "create the store schema"):
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = conn.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta (key, value) VALUES ('layout', ?)", (signature,))
                conn.execute(
                    f"""CREATE TABLE products (
                        rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, version INTEGER NOT NULL,
                        deleted INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL, indexed_at TEXT,
                        source TEXT, text_hash TEXT, image_hash TEXT, {attr_cols}, {vec_cols})"""
                )
                conn.execute("CREATE INDEX products_seq ON products (seq)")
                for a in self.layout.attribute_fields:
                    conn.execute(f'CREATE INDEX "products_{a.name}" ON products ("{a.name}")')
                conn.execute(
                    f"CREATE VIRTUAL TABLE products_fts USING fts5({text_cols}, "
                    f"tokenize = '{FTS_TOKENIZE}')"
                )
                conn.execute(
                    """CREATE TABLE item_errors (n INTEGER PRIMARY KEY, at TEXT NOT NULL, item TEXT NOT NULL,
                       product_id TEXT, version INTEGER, reason TEXT NOT NULL, task_id TEXT)"""
                )
            elif row["value"] != signature:
                raise LayoutError(
                    f"store {self.path} was built for another layout or other models ({self.layout.differences(json.loads(row['value']))}); "
                    "use a new store path and index into it, or the same settings"
                )

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection, what: str) -> Iterator[None]:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _translate(exc, what) from exc
        try:
            yield
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc, what) from exc
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise _translate(exc, what) from exc

    @property
    def _analyzer(self) -> Fts5Analyzer:
        # made on first use, in the process that searches (not before a worker forks)
        with self._analyzer_lock:
            if self._analyzer_instance is None:
                self._analyzer_instance = Fts5Analyzer(len(self.layout.text_fields), FTS_TOKENIZE)
            return self._analyzer_instance

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- writes ----------------------------------------------------------------------------

    def existing(self, ids: list[str]) -> dict[str, ExistingDoc]:
        if not ids:
            return {}
        conn = self._conn()
        vec_cols = ", ".join(f'"{v.name}"' for v in self.layout.vector_fields)
        found: dict[str, ExistingDoc] = {}
        try:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = conn.execute(
                    f"SELECT id, version, deleted, text_hash, image_hash, {vec_cols} FROM products "
                    f"WHERE id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for row in rows:
                    vectors = {
                        v.name: np.frombuffer(row[v.name], dtype="<f4").copy()
                        for v in self.layout.vector_fields
                        if row[v.name] is not None
                    }
                    found[row["id"]] = ExistingDoc(
                        row["id"], row["version"], bool(row["deleted"]), row["text_hash"], row["image_hash"], vectors
                    )
        except sqlite3.Error as exc:
            raise _translate(exc, "read existing documents") from exc
        return found

    def _check(self, doc: StoredDoc) -> None:
        for name, vector in doc.vectors.items():
            space, model_id = doc.spaces.get(name, ("?", "?"))
            self.layout.vector(name).check(np.asarray(vector), space=space, model_id=model_id, item=f"product {doc.id}")

    def write(self, docs: list[StoredDoc], deletes: list[tuple[str, int]]) -> WriteOutcome:
        """Upsert and delete in one transaction; an older version never replaces a newer one."""
        for doc in docs:
            self._check(doc)
        outcome = WriteOutcome()
        if not docs and not deletes:
            return outcome
        conn = self._conn()
        attrs = self.layout.attribute_names
        vecs = [v.name for v in self.layout.vector_fields]
        texts = [t.name for t in self.layout.text_fields]
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        columns = ["version", "deleted", "seq", "indexed_at", "source", "text_hash", "image_hash", *attrs, *vecs]
        assignments = ", ".join(f'"{c}" = ?' for c in columns)
        with self._transaction(conn, f"write {len(docs)} documents and {len(deletes)} deletes"):
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM products").fetchone()[0]
            for doc in docs:
                row = conn.execute("SELECT rowid, version FROM products WHERE id = ?", (doc.id,)).fetchone()
                if row is not None and row["version"] > doc.version:
                    outcome.status[doc.id] = "stale"
                    continue
                seq += 1
                values = [
                    doc.version, 0, seq, now, json.dumps(doc.source, ensure_ascii=False), doc.text_hash, doc.image_hash,
                    *(doc.source.get(a) for a in attrs),
                    *(_blob(doc.vectors[v]) if v in doc.vectors else None for v in vecs),
                ]
                if row is None:
                    cursor = conn.execute(
                        f"INSERT INTO products (id, {', '.join(chr(34) + c + chr(34) for c in columns)}) "
                        f"VALUES (?, {', '.join('?' * len(columns))})",
                        [doc.id, *values],
                    )
                    rowid = cursor.lastrowid
                else:
                    rowid = row["rowid"]
                    conn.execute(f"UPDATE products SET {assignments} WHERE rowid = ?", [*values, rowid])
                    conn.execute("DELETE FROM products_fts WHERE rowid = ?", (rowid,))
                conn.execute(
                    f"INSERT INTO products_fts (rowid, {', '.join(texts)}) VALUES (?, {', '.join('?' * len(texts))})",
                    [rowid, *(doc.source.get(t, "") for t in texts)],
                )
                outcome.status[doc.id] = "written"
            for pid, version in deletes:
                row = conn.execute("SELECT rowid, version FROM products WHERE id = ?", (pid,)).fetchone()
                if row is not None and row["version"] > version:
                    outcome.status[pid] = "stale"
                    continue
                seq += 1
                tombstone = [version, 1, seq, now, None, None, None, *(None for _ in attrs), *(None for _ in vecs)]
                if row is None:
                    conn.execute(
                        f"INSERT INTO products (id, {', '.join(chr(34) + c + chr(34) for c in columns)}) "
                        f"VALUES (?, {', '.join('?' * len(columns))})",
                        [pid, *tombstone],
                    )
                else:
                    conn.execute(f"UPDATE products SET {assignments} WHERE rowid = ?", [*tombstone, row["rowid"]])
                    conn.execute("DELETE FROM products_fts WHERE rowid = ?", (row["rowid"],))
                outcome.status[pid] = "deleted"
        return outcome

    def record_errors(self, errors: list[ItemErrorRecord]) -> None:
        if not errors:
            return
        conn = self._conn()
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._transaction(conn, f"record {len(errors)} item errors"):
            conn.executemany(
                "INSERT INTO item_errors (at, item, product_id, version, reason, task_id) VALUES (?, ?, ?, ?, ?, ?)",
                [(e.at or now, e.item, e.product_id, e.version, e.reason, e.task_id) for e in errors],
            )

    def list_errors(self, limit: int = 100) -> list[ItemErrorRecord]:
        try:
            rows = self._conn().execute(
                "SELECT at, item, product_id, version, reason, task_id FROM item_errors ORDER BY n DESC LIMIT ?", (limit,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, "list item errors") from exc
        return [ItemErrorRecord(r["item"], r["reason"], r["product_id"], r["version"], r["task_id"], r["at"]) for r in rows]

    def clear_errors(self) -> int:
        conn = self._conn()
        with self._transaction(conn, "clear item errors"):
            return conn.execute("DELETE FROM item_errors").rowcount

    # -- reads -----------------------------------------------------------------------------

    def _refresh(self) -> _VectorIndex:
        conn = self._conn()
        vec_cols = ", ".join(f'"{v.name}"' for v in self.layout.vector_fields)
        with self._index_lock:
            try:
                rows = conn.execute(
                    f"SELECT rowid, id, deleted, seq, source, {vec_cols} FROM products WHERE seq > ? ORDER BY seq",
                    (self._index.seq,),
                ).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc, "refresh vectors") from exc
            if rows:
                positions = self._index.apply(rows)
                for name, graph in self._ann.items():
                    graph.sync(self._index.matrix[name], self._index.present[name], positions)
                for changed in self._ann_changes.values():
                    changed.extend(positions)
                live = [(pos, json.loads(row["source"])) for pos, row in zip(positions, rows) if not row["deleted"]]
                texts = [[source.get(t.name) or "" for t in self.layout.text_fields] for _, source in live]
                changes: dict[int, dict[str, list[int]] | None] = {pos: None for pos in positions}
                changes.update(zip((pos for pos, _ in live), self._analyzer.analyze(texts)))
                self._lexical.apply(changes)
            return self._index

    def _allowed_rowids(self, filters: list[Condition]) -> np.ndarray:
        clause, params = to_sql(filters)
        try:
            rows = self._conn().execute(f"SELECT rowid FROM products WHERE deleted = 0 AND {clause}", params).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, "apply filters") from exc
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def knn(self, field: str, vector: np.ndarray, *, k: int, num_candidates: int, filters: list[Condition]) -> RankedIds:
        """Exact cosine kNN (``num_candidates`` is accepted for parity; exact search needs no candidates)."""
        spec = self.layout.vector(field)
        query = np.asarray(vector, dtype=np.float32)
        if query.shape != (spec.dims,) or not np.all(np.isfinite(query)):
            raise ValidationError(f"query vector for {field} must be {spec.dims} finite floats, got shape {query.shape}")
        if k < 1 or num_candidates < k:
            raise ValidationError(f"knn on {field}: need 1 <= k <= num_candidates, got k={k}, num_candidates={num_candidates}")
        norm = float(np.linalg.norm(query))
        if norm == 0:
            return []
        query = query / norm
        index = self._refresh()
        if not filters and self.exact_knn_max_rows is not None and index.size > self.exact_knn_max_rows:
            with self._index_lock:
                graph = self._ann.get(field)
                if graph is None:
                    self._start_graph(field)
                else:
                    found = graph.search(query, k, num_candidates)
                    # exact scores (and so the exact order) for what the graph found
                    cosine = index.matrix[field][found] @ query
                    ids = index.ids
            if graph is not None:
                return [(doc_id, (1.0 + cos) / 2.0) for doc_id, cos in _top(found, cosine, ids, k)]
        with self._index_lock:
            n = index.size
            mask = index.present[field][:n].copy()
            matrix = index.matrix[field][:n]
            rowids = index.rowids[:n]
            ids = index.ids
        if filters:
            mask &= np.isin(rowids, self._allowed_rowids(filters))
        candidates = np.flatnonzero(mask)
        if candidates.size == 0:
            return []
        # one pass over the whole matrix, then pick the candidates' scores: gathering candidate rows
        # first would copy the matrix (67 MB at 44k x 384) on every query
        cosine = (matrix @ query)[candidates]
        return [(doc_id, (1.0 + cos) / 2.0) for doc_id, cos in _top(candidates, cosine, ids, k)]

    def _start_graph(self, field: str) -> threading.Thread | None:
        """Build ``field``'s HNSW graph in a background thread (caller holds the index lock).

        Searches stay exact until it is ready, so no search waits the seconds a build takes (about
        3 s per field at 44k rows) and a one-shot command never builds one. The build works on a
        snapshot; rows that change meanwhile are replayed into the graph before it is used."""
        if field in self._ann or field in self._ann_failed:
            return None
        if field in self._ann_changes:
            return self._ann_builds[field]
        index = self._index
        matrix, present, size = index.matrix[field][: index.size].copy(), index.present[field][: index.size].copy(), index.size
        self._ann_changes[field] = []
        dims = self.layout.vector(field).dims

        def build() -> None:
            # one thread: hnswlib's own worker threads would abort the process (std::terminate) if it
            # exited mid-build, as a one-shot command does; the fields build side by side instead
            graph = HnswField(dims, threads=1)
            try:
                graph.sync(matrix, present, range(size))
            except Exception:  # a failed build leaves the field on exact search, which is correct, only slower
                with self._index_lock:
                    self._ann_changes.pop(field, None)
                    self._ann_failed.add(field)
                raise
            with self._index_lock:
                changed = self._ann_changes.pop(field)
                graph.sync(self._index.matrix[field], self._index.present[field], dict.fromkeys(changed))
                self._ann[field] = graph

        thread = self._ann_builds[field] = threading.Thread(target=build, name=f"hnsw-{field}", daemon=True)
        thread.start()
        return thread

    def build_graphs(self) -> None:
        """Build every vector field's HNSW graph now, when the store is above ``exact_knn_max_rows``
        (a search server calls this at start; otherwise the first search starts it in the background)."""
        index = self._refresh()
        if self.exact_knn_max_rows is None or index.size <= self.exact_knn_max_rows:
            return
        with self._index_lock:
            threads = [self._start_graph(v.name) for v in self.layout.vector_fields]
        for thread in threads:
            if thread is not None:
                thread.join()

    def bm25(
        self, text: str, *, boosts: dict[str, float], filters: list[Condition], size: int, all_terms_boost: float = 0.0,
        faint_text: str = "", faint_weight: float = 0.0,
    ) -> RankedIds:
        """BM25 over the text fields with per-field weights, any query word matching (like
        ``multi_match``'s default ``or``), plus ``all_terms_boost`` for rows holding every query
        term, plus ``faint_text``'s words at ``faint_weight`` (``es_dsl.bm25_query`` makes the same of
        it); filters applied before the cut; ties by id."""
        terms = self._query_terms(text)
        if not terms or size < 1:
            return []
        faint = self._query_terms(faint_text) if faint_text and faint_weight > 0 else []
        weights = [float(boosts.get(t.name, t.boost)) for t in self.layout.text_fields]
        index = self._refresh()
        with self._index_lock:
            hits, scores = self._lexical.score(terms, weights, index.size, all_terms_boost, faint, faint_weight)
            rowids = index.rowids[: index.size]
            ids = index.ids
        if filters and hits.size:
            keep = np.isin(rowids[hits], self._allowed_rowids(filters))
            hits, scores = hits[keep], scores[keep]
        return _top(hits, scores, ids, size)

    def word_counts(self, phrases: list[str], *, filters: list[Condition], near: list[str]) -> tuple[list[int], list[int]]:
        """Rows holding every term of each phrase (``_query_terms``: the BM25 leg's own analysis), in
        the filtered catalogue and among ``near``."""
        if not phrases:
            return [], []
        terms = [self._query_terms(p) for p in phrases]
        index = self._refresh()
        with self._index_lock:
            size = index.size
            held = [self._lexical.holding(t, size) for t in terms]
            rowids = index.rowids[:size]
            positions = [index.id_position[i] for i in near if i in index.id_position]
        scope = np.ones(size, dtype=bool)
        if filters:
            scope &= np.isin(rowids, self._allowed_rowids(filters))
        close = np.zeros(size, dtype=bool)
        close[positions] = True
        close &= scope
        return [int(np.count_nonzero(mask & scope)) for mask in held], [int(np.count_nonzero(mask & close)) for mask in held]

    def _query_terms(self, text: str) -> list[str | TermGroup]:
        """The BM25 terms of a query, in order, at most ``MAX_QUERY_TOKENS``: FTS5's tokens, and
        where a synonym rule matches, one group of the alternatives' tokens (as Elasticsearch's
        search analyzer expands the same rules; ``LexicalIndex.score`` says how a group scores)."""
        text = drop_stop_words(text)  # as Elasticsearch's `english` analyzer does
        if not self._synonyms:
            return list(self._analyzer.query_terms(text, MAX_QUERY_TOKENS))
        clauses = self._synonyms.expand(text)
        phrases = list(dict.fromkeys(" ".join(alt) for clause in clauses for alt in clause.alternatives))
        tokens = dict(zip(phrases, (tuple(sorted(t)) for t in self._analyzer.analyze([[p] for p in phrases]))))
        terms: list[str | TermGroup] = []
        for clause in clauses:
            found = list(dict.fromkeys(tokens[" ".join(alt)] for alt in clause.alternatives if tokens[" ".join(alt)]))
            # a row holding "wrist watch" holds "watch": the longer alternative would count it twice
            alternatives = tuple(a for a in found if not any(set(b) < set(a) for b in found))
            if not clause.is_synonym or len(alternatives) == 1:
                terms.extend(t for alt in alternatives for t in alt)
            elif alternatives:
                terms.append(alternatives)
        return list(dict.fromkeys(terms))[:MAX_QUERY_TOKENS]

    def sources(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        rows = self._conn().execute(
            f"SELECT id, source FROM products WHERE deleted = 0 AND id IN ({', '.join('?' * len(ids))})", ids
        ).fetchall()
        return {r["id"]: json.loads(r["source"]) for r in rows}

    def hits(self, ids: list[str]) -> tuple[dict[str, ExistingDoc], dict[str, dict[str, Any]]]:
        """Two local reads: nothing to save here by merging them."""
        return self.existing(ids), self.sources(ids)

    def versions(self) -> dict[str, tuple[int, bool]]:
        """Every id with its version and whether it is deleted (for checks and tests)."""
        rows = self._conn().execute("SELECT id, version, deleted FROM products").fetchall()
        return {r["id"]: (r["version"], bool(r["deleted"])) for r in rows}

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM products WHERE deleted = 0").fetchone()[0])


def _top(positions: np.ndarray, scores: np.ndarray, ids: list[str], k: int) -> RankedIds:
    """The ``k`` best (id, score), score descending, ties by id (as ``ORDER BY score DESC, id``)."""
    if positions.size > k:
        cut = np.argpartition(-scores, k - 1)[:k]
        kth = scores[cut].min()
        cut = np.flatnonzero(scores >= kth)  # keep ties at the cut so the id tiebreak is exact
    else:
        cut = np.arange(positions.size)
    ranked = sorted((-float(scores[i]), ids[positions[i]]) for i in cut)[:k]
    return [(doc_id, -neg) for neg, doc_id in ranked]
