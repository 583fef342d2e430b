"""Diversification of the first page: maximal marginal relevance over image vectors.

A catalogue often holds the same look many times (one shirt in five listings, or
one photo re-used by resellers); a hybrid ranking that is right about relevance
still fills the first page with copies. MMR (Carbonell & Goldstein, 1998) re-ranks
the top ``top_n`` fused hits greedily, each pick trading relevance against its
similarity to what is already picked:

    pick = argmax  lambda * relevance(d) - (1 - lambda) * max_{s in picked} cos(d, s)

``relevance`` is the fused score min-max scaled over the candidates, so ``lambda``
means the same for RRF and linear fusion. Pure functions on ids, scores and vectors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hybrid_core.errors import ValidationError

MAX_TOP_N = 1000


@dataclass(frozen=True)
class Diversity:
    """MMR settings: ``relevance_weight`` is lambda (1 = no diversification), over the first ``top_n``."""

    relevance_weight: float = 0.7
    top_n: int = 50
    field: str = "image_vector"

    def __post_init__(self) -> None:
        weight = self.relevance_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or not 0 <= weight <= 1:
            raise ValidationError(f"diversity relevance_weight must be a number in 0..1, got {weight!r}")
        if isinstance(self.top_n, bool) or not isinstance(self.top_n, int) or not 2 <= self.top_n <= MAX_TOP_N:
            raise ValidationError(f"diversity top_n must be an integer in 2..{MAX_TOP_N}, got {self.top_n!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mmr(
    ranked: Sequence[tuple[str, float]],
    vectors: Mapping[str, np.ndarray],
    *,
    relevance_weight: float,
) -> list[tuple[str, float]]:
    """Re-order ``ranked`` (best first, ``(id, fused score)``) by MMR; scores are kept as they were.

    A candidate without a vector is similar to nothing (it competes on relevance alone).
    Ties go to the better fused rank, so ``relevance_weight=1`` returns ``ranked`` unchanged.
    """
    if len(ranked) < 2:
        return list(ranked)
    scores = np.array([s for _, s in ranked], dtype=np.float64)
    spread = scores.max() - scores.min()
    relevance = (scores - scores.min()) / spread if spread > 1e-12 else np.ones_like(scores)
    dims = next((len(v) for v in vectors.values()), 0)
    matrix = np.zeros((len(ranked), max(dims, 1)), dtype=np.float64)
    for i, (doc_id, _) in enumerate(ranked):
        vector = vectors.get(doc_id)
        if vector is not None:
            norm = float(np.linalg.norm(vector))
            if norm > 0:
                matrix[i] = np.asarray(vector, dtype=np.float64) / norm
    similarity = matrix @ matrix.T
    max_similarity = np.full(len(ranked), -np.inf)  # nothing picked yet: no penalty
    picked: list[int] = []
    remaining = np.ones(len(ranked), dtype=bool)
    for _ in range(len(ranked)):
        penalty = np.where(np.isfinite(max_similarity), max_similarity, 0.0)
        value = relevance_weight * relevance - (1 - relevance_weight) * penalty
        value = np.where(remaining, value, -np.inf)
        best = int(np.argmax(value))  # first maximum: the better fused rank wins ties
        picked.append(best)
        remaining[best] = False
        max_similarity = np.maximum(max_similarity, similarity[best])
    return [ranked[i] for i in picked]


def distinct_looks(ids: Sequence[str], vectors: Mapping[str, np.ndarray], *, threshold: float = 0.95) -> int:
    """How many different looks ``ids`` show: a hit is a new look unless its vector's cosine to an
    earlier look's first hit is at least ``threshold``. Hits without a vector count as new looks."""
    leaders: list[np.ndarray] = []
    looks = 0
    for doc_id in ids:
        vector = vectors.get(doc_id)
        if vector is None:
            looks += 1
            continue
        unit = np.asarray(vector, dtype=np.float64)
        unit = unit / (np.linalg.norm(unit) or 1.0)
        if not any(float(unit @ leader) >= threshold for leader in leaders):
            leaders.append(unit)
            looks += 1
    return looks
