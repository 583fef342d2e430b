"""Leg-level Elasticsearch query DSL as plain dicts: one BM25 query, one kNN clause.

Shared by the Elasticsearch store (per-leg searches) and the query builder (the
compound ``rrf``/``linear`` retrievers and the legacy ``knn`` + ``query`` body), so a
leg means the same request whichever mode runs it. Checked against:

* multi_match: https://www.elastic.co/docs/reference/query-languages/query-dsl/query-dsl-multi-match-query
  (``fields`` with ``^boost``, ``type: best_fields``, default ``operator: or``; ``type: cross_fields``
  with ``operator: and``: every word in at least one of the fields)
* ids query: https://www.elastic.co/docs/reference/query-languages/query-dsl/query-dsl-ids-query (``values``)
* track_total_hits: https://www.elastic.co/docs/reference/elasticsearch/rest-apis/search-api (``true``: an exact count)
* constant_score: https://www.elastic.co/docs/reference/query-languages/query-dsl/query-dsl-constant-score-query
  (``filter``, ``boost``: every match scores ``boost``)
* knn search / knn clause: https://www.elastic.co/docs/reference/elasticsearch/rest-apis/retrievers/knn-retriever
  (``field``, ``query_vector``, ``k`` <= ``num_candidates`` <= 10,000, ``filter`` is a pre-filter)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hybrid_core.errors import ValidationError
from hybrid_core.filters import Condition, to_es
from hybrid_core.layout import FieldLayout

MAX_NUM_CANDIDATES = 10_000


def text_fields(layout: FieldLayout, boosts: dict[str, float] | None = None) -> list[str]:
    """``["title^2.0", "description^1.0"]``: the layout's boosts, overridden per query. A field
    weighed 0 is left out, so that it neither scores nor matches (as the embedded store does)."""
    boosts = boosts or {}
    weights = ((f.name, float(boosts.get(f.name, f.boost))) for f in layout.text_fields)
    return [f"{name}^{weight}" for name, weight in weights if weight > 0]


def bm25_query(
    text: str,
    layout: FieldLayout,
    boosts: dict[str, float] | None = None,
    all_terms_boost: float = 0.0,
    faint_text: str = "",
    faint_weight: float = 0.0,
) -> dict[str, Any]:
    """The BM25 leg: ``multi_match`` (any word); with ``all_terms_boost``, a ``bool`` that adds that
    constant where every word is present (the ``and`` clause adds no score of its own, so a boost
    of 0 and the plain ``multi_match`` rank alike); with ``faint_text``, those words too, their
    score times ``faint_weight`` (the words the word check could not place: tie-breakers, not
    needed for the bonus)."""
    fields = text_fields(layout, boosts)
    match = {"multi_match": {"query": text, "fields": fields, "type": "best_fields"}}
    faint = bool(faint_text.strip()) and faint_weight > 0
    if not all_terms_boost and not faint:
        return match
    should: list[dict[str, Any]] = [match]
    if faint:
        should.append({"multi_match": {"query": faint_text, "fields": fields, "type": "best_fields", "boost": float(faint_weight)}})
    if all_terms_boost:
        should.append({"constant_score": {"filter": every_word_query(text, layout, boosts), "boost": float(all_terms_boost)}})
    return {"bool": {"should": should}}


def every_word_query(text: str, layout: FieldLayout, boosts: dict[str, float] | None = None) -> dict[str, Any]:
    """Products holding every word of ``text`` in at least one of the text fields."""
    return {"multi_match": {"query": text, "fields": text_fields(layout, boosts), "type": "cross_fields", "operator": "and"}}


def word_count_body(phrase: str, layout: FieldLayout, filters: list[Condition], within: list[str] | None = None) -> dict[str, Any]:
    """A ``size: 0`` search whose exact ``hits.total`` is how many products (matching ``filters``,
    among the ids ``within`` where given) hold every word of ``phrase``: the store's analysis
    (stemming, the search analyzer's synonyms) decides, as it does for the BM25 leg."""
    clauses = to_es(filters) if filters else []
    if within is not None:
        clauses.append({"ids": {"values": list(within)}})
    query = every_word_query(phrase, layout)
    if clauses:
        query = {"bool": {"must": [query], "filter": clauses}}
    return {"size": 0, "track_total_hits": True, "query": query}


def filtered(query: dict[str, Any], filters: list[Condition]) -> dict[str, Any]:
    """The query inside ``bool.must`` with the filters in ``bool.filter`` (no effect on score)."""
    if not filters:
        return query
    return {"bool": {"must": [query], "filter": to_es(filters)}}


def query_vector(vector: np.ndarray) -> list[float]:
    values = np.asarray(vector, dtype=np.float32)
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise ValidationError(f"a query vector must be 1-D and finite, got shape {values.shape}")
    return [float(v) for v in values]


def knn_clause(
    field: str, vector: np.ndarray, *, k: int, num_candidates: int, filters: list[Condition], layout: FieldLayout
) -> dict[str, Any]:
    spec = layout.vector(field)
    if np.asarray(vector).shape != (spec.dims,):
        raise ValidationError(f"query vector for {field} must have {spec.dims} dims, got shape {np.asarray(vector).shape}")
    if not 1 <= k <= num_candidates <= MAX_NUM_CANDIDATES:
        raise ValidationError(
            f"knn on {field}: need 1 <= k <= num_candidates <= {MAX_NUM_CANDIDATES}, got k={k}, num_candidates={num_candidates}"
        )
    clause: dict[str, Any] = {"field": field, "query_vector": query_vector(vector), "k": k, "num_candidates": num_candidates}
    if filters:
        clause["filter"] = to_es(filters)
    return clause


def vector_excludes(layout: FieldLayout) -> dict[str, Any]:
    """``_source`` without the vectors: they are large and nobody reads them in a result."""
    return {"excludes": [v.name for v in layout.vector_fields]}
