"""IR metrics through ranx: runs and qrels are ``{query_id: {doc_id: score}}``; results are ``dict[str, float]``.

Broad relevance is grade >= 1, fine is grade 2 (ranx's ``-l2`` suffix sets the level).
"""

from __future__ import annotations

from collections.abc import Mapping

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
