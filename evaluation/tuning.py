"""Choosing the fusion per query kind from the dev queries, with an honest estimate of how it generalizes.

Every leg runs once per query (its window of 100); each candidate fusion then
re-fuses those rankings in Python with the searcher's own ``fuse_legs``, so a grid
of hundreds of candidates costs seconds, and the chosen fusion ranks exactly as
``search`` will. Per-query NDCG@10 comes from ranx.

The in-sample best of a grid is optimistic. ``cross_validate`` splits the queries
into folds, picks the best candidate on the other folds and scores it on the held
one: that mean is the estimate to quote (the held-out query set is worded
differently, so what only fits the dev wording will not hold).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.metrics import per_query
from hybrid_core.errors import ValidationError
from hybrid_core.stores.base import RankedIds
from query_builder.profile import FusionProfile, query_kind
from query_builder.query import FusionConfig, HybridQuery
from query_builder.searcher import HybridSearcher, fuse_legs

WINDOW = 100
WEIGHT_GRID = (0.0, 0.5, 1.0, 2.0, 4.0)
WEIGHT_GRID_FIVE_LEGS = (0.0, 0.5, 1.0, 2.0)  # 5 legs x 5 weights would be ~8,000 candidates
OBJECTIVE = "NDCG@10"

LegRuns = dict[str, dict[str, RankedIds]]  # query id -> leg -> ranking


def collect_legs(
    searcher: HybridSearcher, queries: Sequence[Mapping[str, Any]], images_root: Path, progress: Callable[[int], None] | None = None
) -> LegRuns:
    """Every applicable leg's ranking for every query (window ``WINDOW``)."""
    runs: LegRuns = {}
    for q in queries:
        image = images_root / q["image"] if q.get("image") else None
        hq = HybridQuery(text=q.get("text"), image=image, size=WINDOW, fusion=FusionConfig(rank_window_size=WINDOW))
        runs[q["id"]] = searcher.leg_results(hq)
        if progress:
            progress(1)
    return runs


def candidate_fusions(legs: Sequence[str], weights: Sequence[float] = WEIGHT_GRID) -> list[FusionConfig]:
    """RRF (rank constants 10 and 60) and min-max linear fusion over every weight vector of the grid,
    leaving out all-zero vectors and multiples of one already listed (they rank identically)."""
    vectors: list[tuple[float, ...]] = []
    seen: set[tuple[float, ...]] = set()
    for combo in itertools.product(weights, repeat=len(legs)):
        top = max(combo)
        if top == 0:
            continue
        key = tuple(round(w / top, 6) for w in combo)
        if key not in seen:
            seen.add(key)
            vectors.append(combo)
    fusions = []
    for combo in vectors:
        named = dict(zip(legs, (float(w) for w in combo), strict=True))
        for constant in (10, 60):
            fusions.append(FusionConfig("rrf", named, rank_constant=constant, rank_window_size=WINDOW))
        fusions.append(FusionConfig("linear", named, normalizer="minmax", rank_window_size=WINDOW))
    return fusions


def score_matrix(qrels: Mapping[str, Mapping[str, int]], leg_runs: LegRuns, fusions: Sequence[FusionConfig]) -> np.ndarray:
    """``[fusion, query]`` NDCG@10 (queries in ``qrels`` order)."""
    ids = list(qrels)
    matrix = np.zeros((len(fusions), len(ids)))
    for row, fusion in enumerate(fusions):
        run = {}
        for qid in ids:
            fused = fuse_legs({n: r for n, r in leg_runs[qid].items() if fusion.weight(n) > 0}, fusion)
            run[qid] = {doc: float(len(fused) - i) for i, (doc, _) in enumerate(fused)}
        scores = per_query(qrels, run, OBJECTIVE)
        matrix[row] = [scores[q] for q in ids]
    return matrix


def cross_validate(matrix: np.ndarray, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Pick the best row on k-1 folds of the columns, score it on the held fold; repeat per fold."""
    n = matrix.shape[1]
    if n < folds:
        raise ValidationError(f"{n} queries cannot be split into {folds} folds")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    assignment = np.empty(n, dtype=int)
    for position, column in enumerate(order):
        assignment[column] = position % folds
    held_scores = np.zeros(n)
    chosen = []
    for fold in range(folds):
        train, held = assignment != fold, assignment == fold
        best = int(np.argmax(matrix[:, train].mean(axis=1)))
        chosen.append(best)
        held_scores[held] = matrix[best, held]
    per_fold = [float(held_scores[assignment == f].mean()) for f in range(folds)]
    return {"estimate": float(held_scores.mean()), "per_fold": per_fold, "chosen": chosen}


@dataclass
class KindTuning:
    kind: str
    queries: int
    best: FusionConfig
    in_sample: float
    cross_validated: dict[str, Any]
    default_rrf: float
    best_single_leg: tuple[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "objective": OBJECTIVE,
            "chosen": self.best.to_dict(),
            "in_sample": self.in_sample,
            "cross_validated": self.cross_validated,
            "default_rrf": self.default_rrf,
            "best_single_leg": {"leg": self.best_single_leg[0], "score": self.best_single_leg[1]},
        }


def tune_kind(kind: str, qrels: Mapping[str, Mapping[str, int]], leg_runs: LegRuns, folds: int = 5) -> KindTuning:
    legs = sorted({leg for qid in qrels for leg in leg_runs[qid]}, key=lambda n: ("bm25", "text", "cross", "image", "product").index(n))
    fusions = candidate_fusions(legs, WEIGHT_GRID if len(legs) < 5 else WEIGHT_GRID_FIVE_LEGS)
    matrix = score_matrix(qrels, leg_runs, fusions)
    means = matrix.mean(axis=1)
    best = int(np.argmax(means))
    default = score_matrix(qrels, leg_runs, [FusionConfig(rank_window_size=WINDOW)])[0].mean()
    singles = {}
    for leg in legs:
        alone = FusionConfig("rrf", {n: float(n == leg) for n in legs}, rank_window_size=WINDOW)
        singles[leg] = float(score_matrix(qrels, leg_runs, [alone])[0].mean())
    top_leg = max(singles, key=singles.__getitem__)
    return KindTuning(kind, len(qrels), fusions[best], float(means[best]), cross_validate(matrix, folds),
                      float(default), (top_leg, singles[top_leg]))


def tune(
    searcher: HybridSearcher,
    queries: Sequence[Mapping[str, Any]],
    images_root: Path,
    *,
    folds: int = 5,
    progress: Callable[[int], None] | None = None,
) -> tuple[FusionProfile, dict[str, KindTuning]]:
    """A fusion profile (the in-sample best per query kind) and how each choice was made."""
    leg_runs = collect_legs(searcher, queries, images_root, progress)
    by_kind: dict[str, dict[str, dict[str, int]]] = {}
    for q in queries:
        kind = query_kind(q.get("text"), q.get("image"))
        by_kind.setdefault(kind, {})[q["id"]] = {d: int(g) for d, g in q["relevance"].items()}
    results = {kind: tune_kind(kind, qrels, leg_runs, folds) for kind, qrels in by_kind.items()}
    profile = FusionProfile({k: r.best for k, r in results.items()}, {"tuning": {k: r.to_dict() for k, r in results.items()}})
    return profile, results
