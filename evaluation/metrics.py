"""IR metrics through ranx: runs and qrels are ``{query_id: {doc_id: score}}``; results are ``dict[str, float]``.

Broad relevance is grade >= 1, fine is grade 2 (ranx's ``-l2`` suffix sets the level).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

METRICS = {
    "NDCG@10": "ndcg@10",
    "P@10": "precision@10",
    "P@20": "precision@20",
    "P@50": "precision@50",
    "P@100": "precision@100",
    "P@10 fine": "precision@10-l2",
    "P@20 fine": "precision@20-l2",
    "P@50 fine": "precision@50-l2",
    "P@100 fine": "precision@100-l2",
    "R@100 fine": "recall@100-l2",
    "MRR fine": "mrr-l2",
}


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of every metric over the queries of ``qrels``; a query with no hits scores 0. Inputs are not mutated."""
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    if not qrels:
        return {name: 0.0 for name in METRICS}
    # ranx needs every query in the run; an empty result list is a zero, not a missing query
    filled = {q: dict(run.get(q) or {"__none__": 0.0}) for q in qrels}
    scores = ranx_evaluate(Qrels({q: dict(r) for q, r in qrels.items()}), Run(filled), list(METRICS.values()), make_comparable=True)
    return {name: float(scores[metric]) for name, metric in METRICS.items()}


def per_query(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], name: str) -> dict[str, float]:
    """One metric (a key of ``METRICS``) for each query of ``qrels``."""
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    metric = METRICS[name]
    filled = Run({q: dict(run.get(q) or {"__none__": 0.0}) for q in qrels})
    ranx_evaluate(Qrels({q: dict(r) for q, r in qrels.items()}), filled, metric, make_comparable=True)
    return {q: float(filled.scores[metric][q]) for q in qrels}


class GradedNdcg:
    """NDCG@k of best-first id lists against fixed graded qrels, as ranx's ``ndcg`` computes it
    (Järvelin and Kekäläinen: gain = grade, grades below 1 count 0, discount log2(rank + 1)).

    ``tune`` scores tens of thousands of fusions per query kind; ranx's per-call conversions were
    half of its time. The ideal DCG of each query is computed once here; tests check every score
    against ranx's."""

    def __init__(self, qrels: Mapping[str, Mapping[str, int]], k: int = 10) -> None:
        self.k = k
        self.grades = {q: {d: int(g) for d, g in r.items() if int(g) >= 1} for q, r in qrels.items()}
        self.ideal = {}
        for q, grades in self.grades.items():
            top = np.array(sorted(grades.values(), reverse=True)[:k], dtype=np.float64)
            self.ideal[q] = float(np.sum(top / np.log2(np.arange(1, len(top) + 1) + 1))) if len(top) else 0.0

    def score(self, qid: str, ranked: Sequence[str]) -> float:
        """One query's NDCG@k; an empty list scores 0, a query with nothing relevant 0."""
        grades = self.grades[qid]
        n = min(self.k, len(ranked))
        if not n or not grades:
            return 0.0
        gains = np.array([grades.get(d, 0) for d in ranked[:n]], dtype=np.float64)
        dcg = float(np.sum(gains / np.log2(np.arange(1, n + 1) + 1)))
        return dcg / (self.ideal[qid] or 1.0)
