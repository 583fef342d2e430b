"""The range checks every settings dataclass of a query makes, with one wording for their errors.

JSON and the command line hand these classes plain values; ``True`` is an ``int`` to Python and
``nan`` a ``float``, so each check refuses both before it compares.
"""

from __future__ import annotations

import math
from typing import Any

from hybrid_core.errors import ValidationError


def whole_number(value: Any, low: int, high: int, what: str) -> None:
    """``value`` is an integer in ``low..high``, else a ``ValidationError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{what} must be an integer in {low}..{high}, got {value!r}")


def non_negative(value: Any, what: str) -> None:
    """``value`` is a finite number >= 0 (a weight, a boost), else a ``ValidationError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValidationError(f"{what} must be a finite number >= 0, got {value!r}")
