"""The tuning grid's fusion: one query's legs as arrays, fused by vector arithmetic.

``tune`` fuses the same legs tens of thousands of ways per query kind (seven legs for image + text
queries: 42,591 weight vectors and methods before the all-words bonus). ``query_builder.fusion``
does it a document at a time in Python dicts, about a millisecond per query; here each leg is an
array over the union of the query's documents, and a fusion is a few array operations. The result
is the same list: the same terms (``weight / (rank_constant + rank)``, ``weight * normalized``)
added in the same leg order, so the same floating-point sums, ordered by score and then by id as
``query_builder.fusion`` orders them; tests check the two against each other.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hybrid_core.stores.base import RankedIds
from query_builder.fusion import normalize_leg
from query_builder.query import FusionConfig


class GridLegs:
    """One query's leg rankings (``name -> best-first (id, score)``), each cut to ``window``."""

    def __init__(self, runs: Mapping[str, RankedIds], window: int) -> None:
        self.window = window
        self.cut = {name: list(ranked[:window]) for name, ranked in runs.items()}
        self.ids = sorted({doc for ranked in self.cut.values() for doc, _ in ranked})  # ascending: the tie order
        index = {doc: i for i, doc in enumerate(self.ids)}
        n = len(self.ids)
        self._rank: dict[str, np.ndarray] = {}
        self._present: dict[str, np.ndarray] = {}
        for name, ranked in self.cut.items():
            positions = np.fromiter((index[doc] for doc, _ in ranked), dtype=np.int64, count=len(ranked))
            rank = np.full(n, np.inf)
            rank[positions] = np.arange(1, len(ranked) + 1, dtype=np.float64)
            present = np.zeros(n, dtype=bool)
            present[positions] = True
            self._rank[name], self._present[name] = rank, present
        self._normalized: dict[tuple[str, str], np.ndarray] = {}

    def _normalized_scores(self, name: str, normalizer: str) -> np.ndarray:
        key = (name, normalizer)
        if key not in self._normalized:
            values = np.zeros(len(self.ids))
            index = {doc: i for i, doc in enumerate(self.ids)}
            for doc, score in normalize_leg(self.cut[name], normalizer):
                values[index[doc]] = score
            self._normalized[key] = values
        return self._normalized[key]

    def fused_ids(self, legs: Mapping[str, str], fusion: FusionConfig, k: int | None = None) -> list[str]:
        """The ids ``query_builder.fusion`` would rank first for ``fusion`` over ``legs`` (fused leg name
        -> the ranking standing for it here, e.g. ``bm25`` -> ``bm25+2``); legs of weight 0 are left
        out (as ``fusion_legs`` leaves them); the first ``k`` (default: the window)."""
        if fusion.rank_window_size != self.window:
            raise ValueError(f"these legs were cut to {self.window}, the fusion's window is {fusion.rank_window_size}")
        scores = np.zeros(len(self.ids))
        present = np.zeros(len(self.ids), dtype=bool)
        for name, source in legs.items():
            weight = fusion.weight(name)
            if fusion.method == "rrf":
                scores = scores + weight / (fusion.rank_constant + self._rank[source])
            else:
                scores = scores + weight * self._normalized_scores(source, fusion.normalizer)
            present |= self._present[source]
        candidates = np.flatnonzero(present)
        order = candidates[np.argsort(-scores[candidates], kind="stable")]  # ids ascending within equal scores
        return [self.ids[i] for i in order[: self.window if k is None else k]]
