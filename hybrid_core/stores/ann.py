"""Approximate kNN for the embedded store's larger catalogues: an HNSW graph per vector field.

Why: exact kNN reads the whole float32 matrix for every leg (67 MB per field at 44k x 384),
about 3 ms a leg on a 2-core machine and memory-bound, so three vector legs alone exceed a
10 ms budget. HNSW (hnswlib, the graph Elasticsearch's ``dense_vector`` also uses) visits a
few thousand vectors instead. ``num_candidates`` means what it means in Elasticsearch: the
size of the candidate queue searched (hnswlib's ``ef``), so recall is set per query the same
way on both backends. The hits are re-scored from the float32 matrix, so scores are exact
and the ranking among the hits is the exact one; only which documents are found is
approximate.

The graph's labels are the store's row positions. The store builds it in the background the
first time a field is searched above its threshold (searches stay exact meanwhile; see
``EmbeddedStore._start_graph``), then keeps it current by the same incremental refresh as the
matrices (changed rows re-added, removed rows marked deleted).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class HnswField:
    """One vector field's graph over the rows of its matrix that hold a vector."""

    def __init__(self, dims: int, *, m: int = 16, ef_construction: int = 100, threads: int = 2) -> None:
        import hnswlib

        self.threads = threads
        self._graph = hnswlib.Index(space="ip", dim=dims)  # unit vectors: inner product = cosine
        self._graph.init_index(max_elements=1024, M=m, ef_construction=ef_construction, allow_replace_deleted=False)
        self._added = np.zeros(0, dtype=bool)  # label ever added (the graph knows it, maybe deleted)
        self._live = np.zeros(0, dtype=bool)  # label searchable
        self.count = 0

    def _grow(self, size: int) -> None:
        if size > len(self._added):
            capacity = max(size, 2 * len(self._added), 1024)
            self._graph.resize_index(capacity)
            self._added = np.concatenate([self._added, np.zeros(capacity - len(self._added), dtype=bool)])
            self._live = np.concatenate([self._live, np.zeros(capacity - len(self._live), dtype=bool)])

    def sync(self, matrix: np.ndarray, present: np.ndarray, positions: Iterable[int]) -> None:
        """Make the graph agree with ``matrix``/``present`` at ``positions`` (rows that changed)."""
        positions = np.fromiter(positions, dtype=np.int64)
        if positions.size == 0:
            return
        self._grow(int(positions.max()) + 1)
        has = present[positions]
        gone = positions[~has & self._live[positions]]
        for label in gone.tolist():
            self._graph.mark_deleted(label)
        self._live[gone] = False
        now = positions[has]
        if now.size:
            for label in now[self._added[now] & ~self._live[now]].tolist():
                self._graph.unmark_deleted(label)
            # adding a known label replaces its vector
            self._graph.add_items(matrix[now], now, num_threads=self.threads, replace_deleted=False)
            self._added[now] = True
            self._live[now] = True
        self.count = int(self._live.sum())

    def search(self, vector: np.ndarray, k: int, num_candidates: int) -> np.ndarray:
        """Row positions of (approximately) the ``k`` nearest rows; unordered."""
        k = min(k, self.count)
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        self._graph.set_ef(max(num_candidates, k))
        labels, _ = self._graph.knn_query(vector.reshape(1, -1), k=k, num_threads=1)
        return labels[0].astype(np.int64)
