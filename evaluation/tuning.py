"""Choosing the fusion per query kind from the dev queries, with an honest estimate of how it generalizes.

Every leg runs once per query (its window of 100); each candidate fusion then
re-fuses those rankings: the grid with ``evaluation.grid_fusion`` (the searcher's
``fuse_legs`` as array arithmetic, the same sums in the same order, checked against it
in tests), feedback candidates with ``fuse_legs`` itself, so the chosen fusion ranks
exactly as ``search`` will and a grid of tens of thousands of candidates costs minutes.
Per-query NDCG@10 is ranx's formula (``evaluation.metrics.GradedNdcg``, checked against ranx).

The in-sample best of a grid is optimistic. ``cross_validate`` splits the queries
into folds, picks the best candidate on the other folds and scores it on the held
one: that mean is the estimate to quote (the held-out query set is worded
differently, so what only fits the dev wording will not hold).

Each BM25 leg (the query's words, ``bm25``, and the photo's, ``photo_words``) runs once more per
``ALL_TERMS_BOOSTS`` value (the bonus for products holding every word of the leg,
``FusionConfig.all_terms_boost``), stored as ``bm25+<boost>`` and ``photo_words+<boost>``; a
candidate with that boost fuses those rankings in place of the plain ones.

Pseudo-relevance feedback (``query_builder.feedback``) is tuned on top of the chosen
fusion, per kind: each candidate runs its feedback leg through the searcher's own
``feedback`` (the first page's stored vectors, one kNN), then fuses as ``search`` does.
Its estimate is nested: in each fold the fusion *and* the feedback are picked on the
other folds. A kind keeps feedback only if that nested estimate beats the fusion's own by
``MIN_FEEDBACK_GAIN`` (a round that ties costs a read and a search for nothing).

Term feedback (``query_builder.term_feedback``: BM25 over the words the first page shares)
is tried on top of that, from the same first page: each candidate runs the searcher's own
``term_feedback`` and fuses with the fusion and its vector feedback as ``search`` does. Its
estimate nests one level deeper (fusion, then vector feedback, then term feedback, each
picked on the other folds); a kind keeps it only if that estimate beats the best estimate
without it by ``MIN_FEEDBACK_GAIN``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.grid_fusion import GridLegs
from evaluation.metrics import GradedNdcg
from hybrid_core.errors import ValidationError
from hybrid_core.stores.base import RankedIds
from query_builder.feedback import Feedback
from query_builder.profile import FusionProfile, query_kind
from query_builder.query import LEG_NAMES, LEXICAL_LEGS, FusionConfig, HybridQuery
from query_builder.searcher import HybridSearcher, QueryVectors, fuse_legs
from query_builder.term_feedback import TermFeedback

WINDOW = 100
WEIGHT_GRID = (0.0, 0.5, 1.0, 2.0, 4.0)
WEIGHT_GRID_FIVE_LEGS = (0.0, 0.5, 1.0, 2.0)  # five legs or more: 4,161 candidates for 5 (5 weights: ~8,000), 17,859 for 6
OBJECTIVE = "NDCG@10"
OBJECTIVE_K = 10  # GradedNdcg's k: the objective's cut-off
ALL_TERMS_BOOSTS = (0.0, 2.0)  # dev text queries, full: 1 and 3 score within 0.003 of 2 (cross-validated)

FEEDBACK_FIELDS = ("text_vector", "image_vector", "product_vector")
FEEDBACK_DEPTHS = (5, 10, 20, 40)
FEEDBACK_QUERY_WEIGHTS = (0.0, 0.5, 1.0)
FEEDBACK_WEIGHTS = (1.0, 2.0, 4.0, 8.0, 16.0)
# A feedback round is one more read and search per query (two round trips on Elasticsearch): it is kept
# only for a gain worth that, not a tie. The full text queries once kept term feedback for +0.00001
# cross-validated NDCG@10; every other kept round gained 0.003 or more.
MIN_FEEDBACK_GAIN = 0.001
TERM_FEEDBACK_DEPTHS = (10, 20, 40)
TERM_FEEDBACK_SHARES = (0.3, 0.5)
TERM_FEEDBACK_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0)

LegRuns = dict[str, dict[str, RankedIds]]  # query id -> leg -> ranking


def collect_legs(
    searcher: HybridSearcher, queries: Sequence[Mapping[str, Any]], images_root: Path, progress: Callable[[int], None] | None = None
) -> LegRuns:
    """Every applicable leg's ranking for every query (window ``WINDOW``), and each BM25 leg again
    with each non-zero ``ALL_TERMS_BOOSTS`` value (``boosted_leg``)."""
    runs: LegRuns = {}
    for q in queries:
        image = images_root / q["image"] if q.get("image") else None
        hq = HybridQuery(text=q.get("text"), image=image, size=WINDOW, fusion=FusionConfig(rank_window_size=WINDOW))
        runs[q["id"]] = searcher.leg_results(hq)
        lexical = tuple(leg for leg in LEXICAL_LEGS if leg in runs[q["id"]])
        for boost in (b for b in ALL_TERMS_BOOSTS if b) if lexical else ():
            boosted = replace(hq, image=image if "photo_words" in lexical else None, legs=lexical,
                              fusion=FusionConfig(rank_window_size=WINDOW, all_terms_boost=boost))
            for leg, ranked in searcher.leg_results(boosted).items():
                runs[q["id"]][boosted_leg(boost, leg)] = ranked
        if progress:
            progress(1)
    return runs


def boosted_leg(boost: float, leg: str = "bm25") -> str:
    """The ``LegRuns`` key of a BM25 leg run with ``all_terms_boost=boost``."""
    return f"{leg}+{boost:g}"


def fusion_sources(names: Iterable[str], fusion: FusionConfig) -> dict[str, str]:
    """Which ranking stands for each leg ``fusion`` fuses (its weighted legs; the BM25 legs as its boost
    ran them), by ``LegRuns`` key."""
    sources = {n: n for n in names if "+" not in n and fusion.weight(n) > 0}
    if fusion.all_terms_boost:
        for leg in LEXICAL_LEGS:
            if leg in sources:
                sources[leg] = boosted_leg(fusion.all_terms_boost, leg)
    return sources


def fusion_legs(runs: Mapping[str, RankedIds], fusion: FusionConfig) -> dict[str, RankedIds]:
    """The rankings ``fusion`` fuses for one query: its weighted legs, the BM25 legs as its boost ran them."""
    return {name: runs[source] for name, source in fusion_sources(runs, fusion).items()}


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
    return _ndcg_rows(qrels, runs)


def candidate_term_feedback(
    depths: Sequence[int] = TERM_FEEDBACK_DEPTHS,
    shares: Sequence[float] = TERM_FEEDBACK_SHARES,
    weights: Sequence[float] = TERM_FEEDBACK_WEIGHTS,
) -> list[TermFeedback]:
    return [TermFeedback(depth=d, min_share=s, weight=w) for d, s, w in itertools.product(depths, shares, weights)]


@dataclass
class FeedbackSearch:
    """What tuning needs to run feedback legs: the searcher, each query's vectors and text, and the
    candidates (vector feedback; term feedback, tried on top of it)."""

    searcher: HybridSearcher
    vectors: Mapping[str, QueryVectors]
    texts: Mapping[str, str | None]
    candidates: Sequence[Feedback]
    term_candidates: Sequence[TermFeedback] = ()


def _ndcg_rows(qrels: Mapping[str, Mapping[str, int]], runs: Sequence[Mapping[str, list[tuple[str, float]]]]) -> np.ndarray:
    """``[run, query]`` NDCG@10 of fused runs (queries in ``qrels`` order)."""
    ids = list(qrels)
    ndcg = GradedNdcg(qrels, OBJECTIVE_K)
    matrix = np.zeros((len(runs), len(ids)))
    for row, run in enumerate(runs):
        matrix[row] = [ndcg.score(qid, [doc for doc, _ in run.get(qid, ())]) for qid in ids]
    return matrix


def term_feedback_matrix(
    search: FeedbackSearch,
    qrels: Mapping[str, Mapping[str, int]],
    leg_runs: LegRuns,
    fusion: FusionConfig,
    feedback: Feedback | None,
    term_legs: dict[tuple[int, float, int], dict[str, RankedIds | None]] | None = None,
) -> np.ndarray:
    """``[candidate, query]`` NDCG@10 of ``fusion`` with its vector ``feedback`` (or none) plus each
    term feedback candidate of ``search``; row 0 is without term feedback (the same scores as that
    feedback's row of ``feedback_matrix``).

    The term leg depends on the first page (``fusion``), depth, share and term cap, not on its weight
    or on the vector feedback, so it runs once per (depth, share, cap) into ``term_legs`` (pass the
    same dict for the same fusion to share them) and is re-fused per candidate."""
    ids = list(qrels)
    searcher = search.searcher
    first = {qid: fusion_legs(leg_runs[qid], fusion) for qid in ids}
    fused = {qid: fuse_legs(first[qid], fusion) for qid in ids}
    base = dict(first)
    if feedback is not None:
        for qid in ids:
            ranked = searcher.feedback(feedback, search.vectors[qid], fused[qid], [], k=WINDOW, num_candidates=2 * WINDOW)
            if ranked is not None:
                base[qid] = {**first[qid], "feedback": ranked}
    runs = [{qid: fuse_legs(base[qid], fusion, feedback) for qid in ids}]
    term_legs = {} if term_legs is None else term_legs
    deepest = max((c.depth for c in search.term_candidates), default=0)
    stored: dict[str, Mapping[str, Any]] | None = None
    for candidate in search.term_candidates:
        key = (candidate.depth, candidate.min_share, candidate.max_terms)
        if key not in term_legs:
            if stored is None:  # one read per query, for the deepest candidate
                stored = {qid: searcher.store.sources([d for d, _ in fused[qid][:deepest]]) for qid in ids}
            term_legs[key] = {
                qid: searcher.term_feedback(candidate, search.texts.get(qid), fused[qid], [], boosts={}, k=WINDOW, stored=stored[qid])[0]
                for qid in ids
            }
        run = {}
        for qid in ids:
            ranked = term_legs[key][qid]
            legs = base[qid] if ranked is None else {**base[qid], "term_feedback": ranked}
            run[qid] = fuse_legs(legs, fusion, feedback, candidate)
        runs.append(run)
    return _ndcg_rows(qrels, runs)


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
    fusion_matrix: np.ndarray,
    feedback_rows: Callable[[int], np.ndarray],
    folds: int = 5,
    seed: int = 0,
    term_rows: Callable[[int, int], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Like ``cross_validate``, but each fold picks the fusion (a row of ``fusion_matrix``) and then
    a row of ``feedback_rows(fusion)`` (row 0: no feedback) on the other folds, and scores that; with
    ``term_rows``, then also a row of ``term_rows(fusion, feedback row)`` (row 0: no term feedback)."""
    assignment = _folds(fusion_matrix.shape[1], folds, seed)
    held_scores = np.zeros(fusion_matrix.shape[1])
    chosen = []
    for fold in range(folds):
        train, held = assignment != fold, assignment == fold
        fusion = int(np.argmax(fusion_matrix[:, train].mean(axis=1)))
        rows = feedback_rows(fusion)
        best = int(np.argmax(rows[:, train].mean(axis=1)))
        if term_rows is None:
            chosen.append([fusion, best])
            held_scores[held] = rows[best, held]
            continue
        terms = term_rows(fusion, best)
        term = int(np.argmax(terms[:, train].mean(axis=1)))
        chosen.append([fusion, best, term])
        held_scores[held] = terms[term, held]
    per_fold = [float(held_scores[assignment == f].mean()) for f in range(folds)]
    return {"estimate": float(held_scores.mean()), "per_fold": per_fold, "chosen": chosen}


def candidate_fusions(
    legs: Sequence[str], weights: Sequence[float] = WEIGHT_GRID, all_terms_boosts: Sequence[float] = (0.0,)
) -> list[FusionConfig]:
    """RRF (rank constants 10 and 60) and min-max linear fusion over every weight vector of the grid,
    leaving out all-zero vectors and multiples of one already listed (they rank identically); each
    with every ``all_terms_boosts`` value where a BM25 leg is weighted."""
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
        for boost in all_terms_boosts if any(named.get(leg) for leg in LEXICAL_LEGS) else (0.0,):
            for constant in (10, 60):
                fusions.append(FusionConfig("rrf", named, rank_constant=constant, rank_window_size=WINDOW, all_terms_boost=boost))
            fusions.append(FusionConfig("linear", named, normalizer="minmax", rank_window_size=WINDOW, all_terms_boost=boost))
    return fusions


def score_matrix(qrels: Mapping[str, Mapping[str, int]], leg_runs: LegRuns, fusions: Sequence[FusionConfig]) -> np.ndarray:
    """``[fusion, query]`` NDCG@10 (queries in ``qrels`` order)."""
    ids = list(qrels)
    ndcg = GradedNdcg(qrels, OBJECTIVE_K)
    grids = {qid: GridLegs(leg_runs[qid], WINDOW) for qid in ids}  # the same fused order as fuse_legs, by array arithmetic
    matrix = np.zeros((len(fusions), len(ids)))
    for row, fusion in enumerate(fusions):
        for col, qid in enumerate(ids):
            top = grids[qid].fused_ids(fusion_sources(leg_runs[qid], fusion), fusion, k=OBJECTIVE_K)
            matrix[row, col] = ndcg.score(qid, top)
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
    feedback: dict[str, Any] | None = None  # the feedback search: chosen (or None), scores; term feedback under "term_feedback"

    @property
    def chosen_feedback(self) -> Feedback | None:
        chosen = (self.feedback or {}).get("chosen")
        return Feedback.from_dict(chosen) if chosen else None

    @property
    def chosen_term_feedback(self) -> TermFeedback | None:
        chosen = ((self.feedback or {}).get("term_feedback") or {}).get("chosen")
        return TermFeedback.from_dict(chosen) if chosen else None

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
    feedback: FeedbackSearch | None = None,
) -> KindTuning:
    """The best fusion for this kind; with ``feedback``, also whether a feedback round on top of it
    pays (vector feedback, then term feedback), by nested cross-validation."""
    present = {leg for qid in qrels for leg in leg_runs[qid] if "+" not in leg}
    legs = sorted(present, key=LEG_NAMES.index)
    boosts = [b for b in ALL_TERMS_BOOSTS if not b or all(
        boosted_leg(b, leg) in leg_runs[qid] for qid in qrels for leg in LEXICAL_LEGS if leg in leg_runs[qid])]
    fusions = candidate_fusions(legs, WEIGHT_GRID if len(legs) < 5 else WEIGHT_GRID_FIVE_LEGS, boosts)
    matrix = score_matrix(qrels, leg_runs, fusions)
    means = matrix.mean(axis=1)
    best = int(np.argmax(means))
    default = score_matrix(qrels, leg_runs, [FusionConfig(rank_window_size=WINDOW)])[0].mean()
    singles = {}
    for leg in legs:
        alone = FusionConfig("rrf", {n: float(n == leg) for n in legs}, rank_window_size=WINDOW)
        singles[leg] = float(score_matrix(qrels, leg_runs, [alone])[0].mean())
        if leg in LEXICAL_LEGS:
            for boost in (b for b in boosts if b):
                singles[boosted_leg(boost, leg)] = float(score_matrix(qrels, leg_runs, [replace(alone, all_terms_boost=boost)])[0].mean())
    top_leg = max(singles, key=singles.__getitem__)
    result = KindTuning(kind, len(qrels), fusions[best], float(means[best]), cross_validate(matrix, folds),
                        float(default), (top_leg, singles[top_leg]))
    if feedback is not None:
        result.feedback = tune_feedback(qrels, leg_runs, fusions, matrix, best, result.cross_validated, folds, feedback)
    return result


def round_pays(with_round: float, without: float) -> bool:
    """Whether a feedback round's cross-validated estimate beats the estimate without it by ``MIN_FEEDBACK_GAIN``."""
    return with_round > without + MIN_FEEDBACK_GAIN


def tune_feedback(
    qrels: Mapping[str, Mapping[str, int]],
    leg_runs: LegRuns,
    fusions: Sequence[FusionConfig],
    matrix: np.ndarray,
    best: int,
    without: Mapping[str, Any],
    folds: int,
    search: FeedbackSearch,
) -> dict[str, Any]:
    """Feedback on top of fusion ``best``: the in-sample best candidate, the nested estimate, and the
    choice (``None`` unless the nested estimate beats ``without``, the fusion's own estimate); then,
    under ``"term_feedback"``, the same for term feedback on top of the fusion and the feedback kept
    (kept only if its deeper-nested estimate beats the best estimate so far)."""
    candidates = search.candidates
    cache: dict[int, np.ndarray] = {}

    def rows(fusion: int) -> np.ndarray:
        if fusion not in cache:
            cache[fusion] = feedback_matrix(search.searcher, qrels, leg_runs, search.vectors, fusions[fusion], candidates)
        return cache[fusion]

    in_sample_rows = rows(best).mean(axis=1)
    top = int(np.argmax(in_sample_rows))
    nested = nested_cross_validate(matrix, rows, folds)
    keep = top > 0 and round_pays(nested["estimate"], float(without["estimate"]))
    result: dict[str, Any] = {
        "chosen": candidates[top - 1].to_dict() if keep else None,
        "best_candidate": candidates[top - 1].to_dict() if top > 0 else None,
        "in_sample": float(in_sample_rows[top]),
        "cross_validated": nested,
        "without_feedback_cross_validated": float(without["estimate"]),
        "candidates": len(candidates),
    }
    if not search.term_candidates:
        return result
    term_cache: dict[tuple[int, int], np.ndarray] = {}
    term_legs: dict[int, dict[tuple[int, float, int], dict[str, RankedIds | None]]] = {}

    def term_rows(fusion: int, row: int) -> np.ndarray:
        if (fusion, row) not in term_cache:
            term_cache[fusion, row] = term_feedback_matrix(search, qrels, leg_runs, fusions[fusion], candidates[row - 1] if row else None,
                                                           term_legs.setdefault(fusion, {}))
        return term_cache[fusion, row]

    term_in_sample = term_rows(best, top if keep else 0).mean(axis=1)
    term_top = int(np.argmax(term_in_sample))
    term_nested = nested_cross_validate(matrix, rows, folds, term_rows=term_rows)
    so_far = nested["estimate"] if keep else float(without["estimate"])
    term_keep = term_top > 0 and round_pays(term_nested["estimate"], so_far)
    chosen = search.term_candidates[term_top - 1].to_dict() if term_top > 0 else None
    result["term_feedback"] = {
        "chosen": chosen if term_keep else None,
        "best_candidate": chosen,
        "in_sample": float(term_in_sample[term_top]),
        "cross_validated": term_nested,
        "without_term_feedback_cross_validated": so_far,
        "candidates": len(search.term_candidates),
    }
    return result


def tune(
    searcher: HybridSearcher,
    queries: Sequence[Mapping[str, Any]],
    images_root: Path,
    *,
    folds: int = 5,
    progress: Callable[[int], None] | None = None,
    feedback: Sequence[Feedback] | None = None,
    term_feedback: Sequence[TermFeedback] | None = None,
) -> tuple[FusionProfile, dict[str, KindTuning]]:
    """A fusion profile (the in-sample best per query kind, with feedback where it pays) and how each
    choice was made. ``feedback`` and ``term_feedback``: the candidates to try (default
    ``candidate_feedback()`` and ``candidate_term_feedback()``; ``[]`` skips; no vector candidates skips both)."""
    leg_runs = collect_legs(searcher, queries, images_root, progress)
    candidates = candidate_feedback() if feedback is None else list(feedback)
    term_candidates = candidate_term_feedback() if term_feedback is None else list(term_feedback)
    search = None
    if candidates:
        search = FeedbackSearch(searcher, collect_vectors(searcher, queries, images_root), {q["id"]: q.get("text") for q in queries},
                                candidates, term_candidates)
    by_kind: dict[str, dict[str, dict[str, int]]] = {}
    for q in queries:
        kind = query_kind(q.get("text"), q.get("image"))
        by_kind.setdefault(kind, {})[q["id"]] = {d: int(g) for d, g in q["relevance"].items()}
    results = {kind: tune_kind(kind, qrels, leg_runs, folds, feedback=search) for kind, qrels in by_kind.items()}
    profile = FusionProfile(
        {k: r.best for k, r in results.items()},
        {"tuning": {k: r.to_dict() for k, r in results.items()}},
        {k: r.chosen_feedback for k, r in results.items() if r.chosen_feedback is not None},
        {k: r.chosen_term_feedback for k, r in results.items() if r.chosen_term_feedback is not None},
    )
    return profile, results
