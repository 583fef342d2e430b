"""Vector arithmetic shared by the write path, the read path and the stores."""

from __future__ import annotations

import numpy as np


def unit(vector: np.ndarray) -> np.ndarray:
    """The float32 vector scaled to length 1 (a zero vector stays zero): the mean of unit vectors
    is not a unit vector, and cosine/dot-product fields expect one."""
    vec = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec
