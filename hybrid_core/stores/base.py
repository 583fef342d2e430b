"""The contract every store keeps: versioned writes, per-leg retrieval, listable item errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from hybrid_core.filters import Condition
from hybrid_core.layout import FieldLayout

RankedIds = list[tuple[str, float]]


@dataclass
class StoredDoc:
    """A document ready to write: source, vectors by field, and the hashes of what they were made from."""

    id: str
    version: int
    source: dict[str, Any]
    vectors: dict[str, np.ndarray]
    spaces: dict[str, tuple[str, str]]  # vector field -> (space name, model id)
    text_hash: str
    image_hash: str | None = None


@dataclass
class ExistingDoc:
    """What a store already holds for an id (deleted ids keep their version as a tombstone)."""

    id: str
    version: int
    deleted: bool
    text_hash: str | None = None
    image_hash: str | None = None
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class WriteOutcome:
    """Per id: ``written``, ``deleted`` or ``stale`` (an equal or newer version was already there)."""

    status: dict[str, str] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for s in self.status.values() if s == status)


@dataclass
class ItemErrorRecord:
    """A bad catalogue item, kept where ``hybrid-search errors`` lists it."""

    item: str
    reason: str
    product_id: str | None = None
    version: int | None = None
    task_id: str | None = None
    at: str | None = None


class Store(Protocol):
    """What the indexer writes through and the query builder reads from."""

    layout: FieldLayout
    concurrent_legs: bool  # whether a search gains from running its legs in threads (I/O-bound legs)

    def existing(self, ids: list[str]) -> dict[str, ExistingDoc]: ...

    def write(self, docs: list[StoredDoc], deletes: list[tuple[str, int]]) -> WriteOutcome: ...

    def record_errors(self, errors: list[ItemErrorRecord]) -> None: ...

    def list_errors(self, limit: int = 100) -> list[ItemErrorRecord]: ...

    def bm25(
        self, text: str, *, boosts: dict[str, float], filters: list[Condition], size: int, all_terms_boost: float = 0.0,
        faint_text: str = "", faint_weight: float = 0.0,
    ) -> RankedIds:
        """BM25 over the text fields (``es_dsl.bm25_query`` says what each argument adds)."""
        ...

    def knn(
        self, field: str, vector: np.ndarray, *, k: int, num_candidates: int, filters: list[Condition]
    ) -> RankedIds: ...

    def sources(self, ids: list[str]) -> dict[str, dict[str, Any]]: ...

    def word_counts(self, phrases: list[str], *, filters: list[Condition], near: list[str]) -> tuple[list[int], list[int]]:
        """Per phrase, how many products matching ``filters`` hold every word of it in their text
        fields, as the store's BM25 reads them (stemmed; a synonym rule's phrase where any of its
        wordings is there), and how many of the ids ``near`` do: the word check's evidence
        (``query_builder.word_check``), in one read (one ``_msearch`` on Elasticsearch)."""
        ...

    def hits(self, ids: list[str]) -> tuple[dict[str, ExistingDoc], dict[str, dict[str, Any]]]:
        """``existing(ids)`` and ``sources(ids)`` from one read: both feedback legs start from the
        same first page, one needing its vectors and the other its text."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...
