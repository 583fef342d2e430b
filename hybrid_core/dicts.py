"""Building dataclasses from plain dicts (config files, JSON payloads) with a clear error for unknown keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def known_keys(cls: type, data: Mapping[str, Any], what: str, error: type[Exception]) -> dict[str, Any]:
    """``data`` as keyword arguments for ``cls``; unknown keys raise ``error`` listing the valid ones.

    Missing keys are fine: the dataclass defaults fill them, so older files keep loading.
    """
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{what} has unknown keys {unknown}; valid keys are {sorted(known)}")
    return dict(data)
