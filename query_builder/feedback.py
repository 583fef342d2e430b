"""Pseudo-relevance feedback: a second kNN pass from the first page's own vectors (Rocchio).

A query often says little in some space ("in orange" beside a photo of a T-shirt; a photo
alone, which has no words for the text legs), but the first fused page says more: its top
hits are mostly the right kind of product, and their stored vectors carry what the query lacks. Rocchio's feedback (1971, here without negative
documents) moves the query towards the centroid of those hits:

    feedback vector = unit( mean_{d in top depth} unit(v_d)  +  query_weight * unit(q) )

in one vector field, runs it as one more kNN leg named ``feedback`` (with the query's
filters), and fuses it with the first legs at ``weight``. On the dev queries it pays for
queries with an image (image + "in orange": the image legs find the type, the text the
colour, the text vectors of the first page carry both; a photo alone: the titles of its
nearest neighbours), and hardly for text queries; ``hybrid-search tune`` turns it on per
query kind only where cross-validation says it helps (see docs/evaluation.md).

The cost is one extra round: the first legs must finish, their stored vectors be
fetched (``Store.existing``), and one kNN leg run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hybrid_core.dicts import known_keys
from hybrid_core.errors import ValidationError
from query_builder.checks import non_negative, whole_number

LEG = "feedback"
FIELDS = ("text_vector", "image_vector", "product_vector")
MAX_DEPTH = 100


@dataclass(frozen=True)
class Feedback:
    """Rocchio feedback over ``field``: centroid of the first ``depth`` fused hits plus
    ``query_weight`` times the query's own vector in that field, fused at ``weight``."""

    field: str = "product_vector"
    depth: int = 10
    query_weight: float = 0.5
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.field not in FIELDS:
            raise ValidationError(f"feedback field must be one of {list(FIELDS)}, got {self.field!r}")
        whole_number(self.depth, 1, MAX_DEPTH, "feedback depth")
        for name in ("query_weight", "weight"):
            non_negative(getattr(self, name), f"feedback {name}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Feedback:
        if not isinstance(data, Mapping):
            raise ValidationError(f"feedback must be an object of settings, got {type(data).__name__}")
        return cls(**known_keys(cls, data, "feedback", ValidationError))


def feedback_vector(query_vector: np.ndarray | None, doc_vectors: Sequence[np.ndarray], *, query_weight: float) -> np.ndarray | None:
    """``unit(mean(unit(d)) + query_weight * unit(q))``; ``None`` when there is nothing to average.

    Each document counts once whatever its norm (stored vectors are unit already, but a
    store need not promise it); a missing query vector (an image-only query has no text
    vector) leaves the centroid alone.
    """
    rows = [np.asarray(v, dtype=np.float64) for v in doc_vectors]
    rows = [v / n for v in rows if (n := float(np.linalg.norm(v))) > 0]
    if not rows:
        return None
    vector = np.mean(rows, axis=0)
    if query_vector is not None and query_weight > 0:
        q = np.asarray(query_vector, dtype=np.float64)
        norm = float(np.linalg.norm(q))
        if norm > 0:
            vector = vector + query_weight * q / norm
    norm = float(np.linalg.norm(vector))
    if norm == 0:
        return None
    return (vector / norm).astype(np.float32)
