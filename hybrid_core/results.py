"""What a search returns, whichever store answered and wherever the fusion ran."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class LegScore:
    """Where one leg put a document: 1-based rank and the leg's raw score.

    ``rank`` is ``None`` only where Elasticsearch's ``linear`` explanation does not give it.
    """

    rank: int | None
    score: float


@dataclass
class Hit:
    """One fused result: the fused score and, for every leg that found it, its rank and raw score."""

    id: str
    score: float
    rank: int
    legs: dict[str, LegScore] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    """The page of hits plus what ran: legs (with their sizes), fusion and timings."""

    hits: list[Hit]
    legs: dict[str, int]
    fusion: dict[str, Any]
    took_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hits": [h.to_dict() for h in self.hits],
            "legs": dict(self.legs),
            "fusion": dict(self.fusion),
            "took_ms": dict(self.took_ms),
        }
