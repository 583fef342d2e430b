"""Choosing the fusion per query kind from the dev queries, with an honest estimate of how it generalizes.

Every leg runs once per query (its window of 100); each candidate fusion then
re-fuses those rankings in Python with the searcher's own ``fuse_legs``, so a grid
of hundreds of candidates costs seconds, and the chosen fusion ranks exactly as
``search`` will. Per-query NDCG@10 comes from ranx.

The in-sample best of a grid is optimistic. ``cross_validate`` splits the queries
into folds, picks the best candidate on the other folds and scores it on the held
one: that mean is the estimate to quote (the held-out query set is worded
differently, so what only fits the dev wording will not hold).

The BM25 leg runs once more per ``ALL_TERMS_BOOSTS`` value (the bonus for products holding
every query word, ``FusionConfig.all_terms_boost``), stored as ``bm25+<boost>``; a candidate
with that boost fuses that ranking in place of plain BM25.

Pseudo-relevance feedback (``query_builder.feedback``) is tuned on top of the chosen
fusion, per kind: each candidate runs its feedback leg through the searcher's own
``feedback`` (the first page's stored vectors, one kNN), then fuses as ``search`` does.
Its estimate is nested: in each fold the fusion *and* the feedback are picked on the
other folds. A kind keeps feedback only if that nested estimate beats the fusion's own.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.metrics import per_query
from hybrid_core.errors import ValidationError
from hybrid_core.stores.base import RankedIds
from query_builder.feedback import Feedback
from query_builder.profile import FusionProfile, query_kind
from query_builder.query import FusionConfig, HybridQuery
from query_builder.searcher import HybridSearcher, QueryVectors, fuse_legs

WINDOW = 100
WEIGHT_GRID = (0.0, 0.5, 1.0, 2.0, 4.0)
WEIGHT_GRID_FIVE_LEGS = (0.0, 0.5, 1.0, 2.0)  # 5 legs x 5 weights would be ~8,000 candidates
OBJECTIVE = "NDCG@10"
ALL_TERMS_BOOSTS = (0.0, 2.0)  # dev text queries, full: 1 and 3 score within 0.003 of 2 (cross-validated)

FEEDBACK_FIELDS = ("text_vector", "image_vector", "product_vector")
FEEDBACK_DEPTHS = (5, 10, 20, 40)
FEEDBACK_QUERY_WEIGHTS = (0.0, 0.5, 1.0)
FEEDBACK_WEIGHTS = (1.0, 2.0, 4.0, 8.0, 16.0)

LegRuns = dict[str, dict[str, RankedIds]]  # query id -> leg -> ranking


def collect_legs(
    searcher: HybridSearcher, queries: Sequence[Mapping[str, Any]], images_root: Path, progress: Callable[[int], None] | None = None
) -> LegRuns:
    """Every applicable leg's ranking for every query (window ``WINDOW``), and BM25 again with each
    non-zero ``ALL_TERMS_BOOSTS`` value (``boosted_leg``)."""
    runs: LegRuns = {}
    for q in queries:
        image = images_root / q["image"] if q.get("image") else None
        hq = HybridQuery(text=q.get("text"), image=image, size=WINDOW, fusion=FusionConfig(rank_window_size=WINDOW))
        runs[q["id"]] = searcher.leg_results(hq)
        if "bm25" in runs[q["id"]]:
            for boost in (b for b in ALL_TERMS_BOOSTS if b):
                boosted = replace(hq, image=None, legs=("bm25",), fusion=FusionConfig(rank_window_size=WINDOW, all_terms_boost=boost))
                runs[q["id"]][boosted_leg(boost)] = searcher.leg_results(boosted)["bm25"]
        if progress:
            progress(1)
    return runs


def boosted_leg(boost: float) -> str:
    """The ``LegRuns`` key of BM25 run with ``all_terms_boost=boost``."""
    return f"bm25+{boost:g}"


def fusion_legs(runs: Mapping[str, RankedIds], fusion: FusionConfig) -> dict[str, RankedIds]:
    """The rankings ``fusion`` fuses for one query: its weighted legs, BM25 as its boost ran."""
    legs = {n: r for n, r in runs.items() if "+" not in n and fusion.weight(n) > 0}
    if "bm25" in legs and fusion.all_terms_boost:
        legs["bm25"] = runs[boosted_leg(fusion.all_terms_boost)]
    return legs


def collect_vectors(searcher: HybridSearcher, queries: Sequence[Mapping[str, Any]], images_root: Path) -> dict[str, QueryVectors]:
    """Every query in every space feedback may need (text, and the image space)."""
    vectors = {}
    for q in queries:
        image = images_root / q["image"] if q.get("image") else None
        vectors[q["id"]] = searcher.encode(HybridQuery(text=q.get("text"), image=image), {"text", "product"})
    return vectors


def candidate_feedback(
    fields: Sequence[str] = FEEDBACK_FIELDS,
    depths: Sequence[int] = FEEDBACK_DEPTHS,
    query_weights: Sequence[float] = FEEDBACK_QUERY_WEIGHTS,
    weights: Sequence[float] = FEEDBACK_WEIGHTS,
) -> list[Feedback]:
    return [Feedback(f, d, q, w) for f, d, q, w in itertools.product(fields, depths, query_weights, weights)]


def feedback_matrix(
    searcher: HybridSearcher,
    qrels: Mapping[str, Mapping[str, int]],
    leg_runs: LegRuns,
    vectors: Mapping[str, QueryVectors],
    fusion: FusionConfig,
    candidates: Sequence[Feedback],
) -> np.ndarray:
    """``[candidate, query]`` NDCG@10 of ``fusion`` plus each feedback candidate; row 0 is ``fusion`` alone.

    The feedback leg depends on field, depth and query weight, not on its fusion weight, so it
    runs once per (field, depth, query weight) and is re-fused per weight; each query's first hits
    are read from the store once, for the deepest candidate."""
    ids = list(qrels)
    first = {qid: fusion_legs(leg_runs[qid], fusion) for qid in ids}
    fused = {qid: fuse_legs(first[qid], fusion) for qid in ids}
    runs: list[dict[str, list[tuple[str, float]]]] = [fused]
    deepest = max((c.depth for c in candidates), default=0)
    stored = {qid: searcher.store.existing([d for d, _ in fused[qid][:deepest]]) for qid in ids}  # one read per query
    legs: dict[tuple[str, int, float], dict[str, RankedIds | None]] = {}
    for candidate in candidates:
        key = (candidate.field, candidate.depth, candidate.query_weight)
        if key not in legs:
            legs[key] = {
                qid: searcher.feedback(candidate, vectors[qid], fused[qid], [], k=WINDOW, num_candidates=2 * WINDOW, stored=stored[qid])
                for qid in ids
            }
        run = {}
        for qid in ids:
            ranked = legs[key][qid]
            run[qid] = fused[qid] if ranked is None else fuse_legs({**first[qid], "feedback": ranked}, fusion, candidate)
        runs.append(run)
    matrix = np.zeros((len(runs), len(ids)))
    for row, run in enumerate(runs):
        scores = per_query(qrels, {qid: {doc: float(len(f) - i) for i, (doc, _) in enumerate(f)} for qid, f in run.items()}, OBJECTIVE)
        matrix[row] = [scores[q] for q in ids]
    return matrix


def _folds(n: int, folds: int, seed: int) -> np.ndarray:
    if n < folds:
        raise ValidationError(f"{n} queries cannot be split into {folds} folds")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    assignment = np.empty(n, dtype=int)
    for position, column in enumerate(order):
        assignment[column] = position % folds
    return assignment


def nested_cross_validate(
    fusion_matrix: np.ndarray, feedback_rows: Callable[[int], np.ndarray], folds: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Like ``cross_validate``, but each fold picks the fusion (a row of ``fusion_matrix``) and then
    a row of ``feedback_rows(fusion)`` (row 0: no feedback) on the other folds, and scores that."""
    assignment = _folds(fusion_matrix.shape[1], folds, seed)
    held_scores = np.zeros(fusion_matrix.shape[1])
    chosen = []
    for fold in range(folds):
        train, held = assignment != fold, assignment == fold
        fusion = int(np.argmax(fusion_matrix[:, train].mean(axis=1)))
        rows = feedback_rows(fusion)
        best = int(np.argmax(rows[:, train].mean(axis=1)))
        chosen.append([fusion, best])
        held_scores[held] = rows[best, held]
    per_fold = [float(held_scores[assignment == f].mean()) for f in range(folds)]
    return {"estimate": float(held_scores.mean()), "per_fold": per_fold, "chosen": chosen}


def candidate_fusions(
    legs: Sequence[str], weights: Sequence[float] = WEIGHT_GRID, all_terms_boosts: Sequence[float] = (0.0,)
) -> list[FusionConfig]:
    """RRF (rank constants 10 and 60) and min-max linear fusion over every weight vector of the grid,
    leaving out all-zero vectors and multiples of one already listed (they rank identically); each
    with every ``all_terms_boosts`` value where BM25 is weighted."""
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
        for boost in all_terms_boosts if named.get("bm25") else (0.0,):
            for constant in (10, 60):
                fusions.append(FusionConfig("rrf", named, rank_constant=constant, rank_window_size=WINDOW, all_terms_boost=boost))
            fusions.append(FusionConfig("linear", named, normalizer="minmax", rank_window_size=WINDOW, all_terms_boost=boost))
    return fusions


def score_matrix(qrels: Mapping[str, Mapping[str, int]], leg_runs: LegRuns, fusions: Sequence[FusionConfig]) -> np.ndarray:
    """``[fusion, query]`` NDCG@10 (queries in ``qrels`` order)."""
    ids = list(qrels)
    matrix = np.zeros((len(fusions), len(ids)))
    for row, fusion in enumerate(fusions):
        run = {}
        for qid in ids:
            fused = fuse_legs(fusion_legs(leg_runs[qid], fusion), fusion)
            run[qid] = {doc: float(len(fused) - i) for i, (doc, _) in enumerate(fused)}
        scores = per_query(qrels, run, OBJECTIVE)
        matrix[row] = [scores[q] for q in ids]
    return matrix


def cross_validate(matrix: np.ndarray, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Pick the best row on k-1 folds of the columns, score it on the held fold; repeat per fold."""
    n = matrix.shape[1]
    assignment = _folds(n, folds, seed)
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
    feedback: dict[str, Any] | None = None  # the feedback search: chosen (or None), scores

    @property
    def chosen_feedback(self) -> Feedback | None:
        chosen = (self.feedback or {}).get("chosen")
        return Feedback.from_dict(chosen) if chosen else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "objective": OBJECTIVE,
            "chosen": self.best.to_dict(),
            "in_sample": self.in_sample,
            "cross_validated": self.cross_validated,
            "default_rrf": self.default_rrf,
            "best_single_leg": {"leg": self.best_single_leg[0], "score": self.best_single_leg[1]},
            **({"feedback": self.feedback} if self.feedback is not None else {}),
        }


def tune_kind(
    kind: str,
    qrels: Mapping[str, Mapping[str, int]],
    leg_runs: LegRuns,
    folds: int = 5,
    *,
    feedback: tuple[HybridSearcher, Mapping[str, QueryVectors], Sequence[Feedback]] | None = None,
) -> KindTuning:
    """The best fusion for this kind; with ``feedback`` (searcher, query vectors, candidates), also
    whether a feedback round on top of it pays, by nested cross-validation."""
    present = {leg for qid in qrels for leg in leg_runs[qid] if "+" not in leg}
    legs = sorted(present, key=lambda n: ("bm25", "text", "cross", "image", "product").index(n))
    boosts = [b for b in ALL_TERMS_BOOSTS if not b or all(boosted_leg(b) in leg_runs[qid] for qid in qrels)]
    fusions = candidate_fusions(legs, WEIGHT_GRID if len(legs) < 5 else WEIGHT_GRID_FIVE_LEGS, boosts)
    matrix = score_matrix(qrels, leg_runs, fusions)
    means = matrix.mean(axis=1)
    best = int(np.argmax(means))
    default = score_matrix(qrels, leg_runs, [FusionConfig(rank_window_size=WINDOW)])[0].mean()
    singles = {}
    for leg in legs:
        alone = FusionConfig("rrf", {n: float(n == leg) for n in legs}, rank_window_size=WINDOW)
        singles[leg] = float(score_matrix(qrels, leg_runs, [alone])[0].mean())
        if leg == "bm25":
            for boost in (b for b in boosts if b):
                singles[boosted_leg(boost)] = float(score_matrix(qrels, leg_runs, [replace(alone, all_terms_boost=boost)])[0].mean())
    top_leg = max(singles, key=singles.__getitem__)
    result = KindTuning(kind, len(qrels), fusions[best], float(means[best]), cross_validate(matrix, folds),
                        float(default), (top_leg, singles[top_leg]))
    if feedback is not None:
        result.feedback = tune_feedback(qrels, leg_runs, fusions, matrix, best, result.cross_validated, folds, *feedback)
    return result


def tune_feedback(
    qrels: Mapping[str, Mapping[str, int]],
    leg_runs: LegRuns,
    fusions: Sequence[FusionConfig],
    matrix: np.ndarray,
    best: int,
    without: Mapping[str, Any],
    folds: int,
    searcher: HybridSearcher,
    vectors: Mapping[str, QueryVectors],
    candidates: Sequence[Feedback],
) -> dict[str, Any]:
    """Feedback on top of fusion ``best``: the in-sample best candidate, the nested estimate, and the
    choice (``None`` unless the nested estimate beats ``without``, the fusion's own estimate)."""
    cache: dict[int, np.ndarray] = {}

    def rows(fusion: int) -> np.ndarray:
        if fusion not in cache:
            cache[fusion] = feedback_matrix(searcher, qrels, leg_runs, vectors, fusions[fusion], candidates)
        return cache[fusion]

    in_sample_rows = rows(best).mean(axis=1)
    top = int(np.argmax(in_sample_rows))
    nested = nested_cross_validate(matrix, rows, folds)
    keep = top > 0 and nested["estimate"] > float(without["estimate"])
    return {
        "chosen": candidates[top - 1].to_dict() if keep else None,
        "best_candidate": candidates[top - 1].to_dict() if top > 0 else None,
        "in_sample": float(in_sample_rows[top]),
        "cross_validated": nested,
        "without_feedback_cross_validated": float(without["estimate"]),
        "candidates": len(candidates),
    }


def tune(
    searcher: HybridSearcher,
    queries: Sequence[Mapping[str, Any]],
    images_root: Path,
    *,
    folds: int = 5,
    progress: Callable[[int], None] | None = None,
    feedback: Sequence[Feedback] | None = None,
) -> tuple[FusionProfile, dict[str, KindTuning]]:
    """A fusion profile (the in-sample best per query kind, with feedback where it pays) and how each
    choice was made. ``feedback``: the candidates to try (default ``candidate_feedback()``; ``[]`` skips)."""
    leg_runs = collect_legs(searcher, queries, images_root, progress)
    candidates = candidate_feedback() if feedback is None else list(feedback)
    vectors = collect_vectors(searcher, queries, images_root) if candidates else {}
    by_kind: dict[str, dict[str, dict[str, int]]] = {}
    for q in queries:
        kind = query_kind(q.get("text"), q.get("image"))
        by_kind.setdefault(kind, {})[q["id"]] = {d: int(g) for d, g in q["relevance"].items()}
    results = {
        kind: tune_kind(kind, qrels, leg_runs, folds, feedback=(searcher, vectors, candidates) if candidates else None)
        for kind, qrels in by_kind.items()
    }
    profile = FusionProfile(
        {k: r.best for k, r in results.items()},
        {"tuning": {k: r.to_dict() for k, r in results.items()}},
        {k: r.chosen_feedback for k, r in results.items() if r.chosen_feedback is not None},
    )
    return profile, results
