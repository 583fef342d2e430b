"""Hybrid requests for Elasticsearch, as plain dicts any client can send, and their responses parsed.

Three shapes of the same hybrid query (legs from ``HybridSearcher.plan``):

* ``retrievers``: one ``rrf`` or ``linear`` retriever over a ``standard`` retriever
  (BM25) and one ``knn`` retriever per vector leg, each with ``_name`` so ``explain``
  says which leg contributed what; filters on the compound retriever, which applies
  them to every sub-retriever. RRF and ``linear`` are Enterprise features (403 on
  Basic). Reference: https://www.elastic.co/docs/reference/elasticsearch/rest-apis/retrievers/rrf-retriever
  (weighted entries ``{"retriever": ..., "weight": w}``, ``rank_constant``,
  ``rank_window_size``) and .../retrievers/linear-retriever (``weight``, ``normalizer``
  per entry, ``filter`` applied to all sub-retrievers).
* ``legacy``: top-level ``knn`` clauses with ``boost`` plus a boosted ``query``; the
  server adds raw scores (BM25 is unbounded, kNN is in [0, 1]): a weighted sum with
  **no normalization**, but it runs on a Basic licence. Reference:
  https://www.elastic.co/docs/solutions/search/vector/knn#_combine_approximate_knn_with_other_features
* ``legs``: one search per leg in a single ``_msearch``, fused client-side by
  ``query_builder.fusion``: every fusion method on any licence. Reference:
  https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-msearch
"""

from __future__ import annotations

import json
import re
from typing import Any

from hybrid_core.errors import ValidationError
from hybrid_core.es_dsl import bm25_query, filtered, knn_clause, vector_excludes
from hybrid_core.filters import Condition, to_es
from hybrid_core.layout import FieldLayout
from hybrid_core.results import Hit, LegScore
from query_builder.query import HybridQuery
from query_builder.searcher import LegPlan

MODES = ("retrievers", "legacy", "legs", "auto")


def _lexical(plan: LegPlan, query: HybridQuery, layout: FieldLayout) -> dict[str, Any]:
    """A BM25 leg's query: the query's own words, or the photo's (``photo_words``), over the text fields."""
    assert plan.text is not None
    return bm25_query(plan.text, layout, query.boosts, query.fusion.all_terms_boost if plan.all_terms_boost_applies else 0.0,
                      plan.faint_text, plan.faint_weight)


def _leg_retriever(plan: LegPlan, query: HybridQuery, layout: FieldLayout, named: bool) -> dict[str, Any]:
    name = {"_name": plan.name} if named else {}
    if plan.field is None:
        return {"standard": {"query": _lexical(plan, query, layout), **name}}
    assert plan.vector is not None
    clause = knn_clause(plan.field, plan.vector, k=query.k, num_candidates=query.candidates, filters=[], layout=layout)
    return {"knn": {**clause, **name}}


def retrievers_body(
    query: HybridQuery,
    plans: list[LegPlan],
    layout: FieldLayout,
    filters: list[Condition],
    *,
    explain: bool = False,
    named: bool = True,
) -> dict[str, Any]:
    """One ``rrf`` or ``linear`` retriever over every leg (``named``: ``_name`` per leg, 8.18+)."""
    if not plans:
        raise ValidationError("no leg applies to this query")
    fusion = query.fusion
    children = [_leg_retriever(plan, query, layout, named) for plan in plans]
    if fusion.method == "rrf":
        weights = [fusion.weight(p.name) for p in plans]
        entries: list[dict[str, Any]] = (
            children if all(w == 1.0 for w in weights)  # the plain form also runs on 8.16 .. 9.0
            else [{"retriever": child, "weight": w} for child, w in zip(children, weights)]
        )
        compound: dict[str, Any] = {
            "rrf": {"retrievers": entries, "rank_constant": fusion.rank_constant, "rank_window_size": fusion.rank_window_size}
        }
    else:
        compound = {
            "linear": {
                "retrievers": [
                    {"retriever": child, "weight": fusion.weight(p.name), "normalizer": fusion.normalizer}
                    for child, p in zip(children, plans)
                ],
                "rank_window_size": fusion.rank_window_size,
            }
        }
    if filters:
        next(iter(compound.values()))["filter"] = to_es(filters)
    body: dict[str, Any] = {
        "retriever": compound,
        "from": query.offset,
        "size": query.size,
        "_source": vector_excludes(layout),
    }
    if explain:
        body["explain"] = True
    return body


def legacy_body(query: HybridQuery, plans: list[LegPlan], layout: FieldLayout, filters: list[Condition]) -> dict[str, Any]:
    """Boosted ``query`` + boosted top-level ``knn``: raw scores summed by the server (Basic licence)."""
    fusion = query.fusion
    if fusion.method != "linear" or fusion.normalizer != "none":
        raise ValidationError(
            "the legacy mode is a server-side sum of raw scores: use --fusion linear --normalizer none, "
            "or the retrievers mode (Enterprise) or the legs mode (client-side, any licence) for "
            f"{fusion.method}{'/' + fusion.normalizer if fusion.method == 'linear' else ''}"
        )
    body: dict[str, Any] = {"from": query.offset, "size": query.size, "_source": vector_excludes(layout)}
    knn, lexical = [], []
    for plan in plans:
        weight = fusion.weight(plan.name)
        if plan.field is None:
            match = _lexical(plan, query, layout)
            next(iter(match.values()))["boost"] = weight  # multi_match, or the bool around it
            lexical.append(match)
        else:
            assert plan.vector is not None
            clause = knn_clause(plan.field, plan.vector, k=query.k, num_candidates=query.candidates, filters=filters, layout=layout)
            knn.append({**clause, "boost": weight})  # KnnSearch has no _name (specification/_types/Knn.ts)
    if lexical:  # the query's words and the photo's: their scores add, as the server adds every clause
        body["query"] = filtered(lexical[0] if len(lexical) == 1 else {"bool": {"should": lexical}}, filters)
    if knn:
        body["knn"] = knn
    return body


def leg_bodies(query: HybridQuery, plans: list[LegPlan], layout: FieldLayout, filters: list[Condition]) -> list[dict[str, Any]]:
    """One search body per leg (ids and scores only), for ``_msearch``."""
    bodies = []
    for plan in plans:
        if plan.field is None:
            body: dict[str, Any] = {"query": filtered(_lexical(plan, query, layout), filters)}
        else:
            assert plan.vector is not None
            body = {"knn": knn_clause(plan.field, plan.vector, k=query.k, num_candidates=query.candidates, filters=filters, layout=layout)}
        body.update({"size": query.k, "_source": False})
        bodies.append(body)
    return bodies


def msearch_searches(index: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Header/body pairs for ``Elasticsearch.msearch(searches=...)``."""
    searches: list[dict[str, Any]] = []
    for body in bodies:
        searches += [{"index": index}, body]
    return searches


def _compact_vectors(value: Any, vectors: list[list[float]]) -> Any:
    """Replace query vectors by placeholders so they print on one line."""
    if isinstance(value, dict):
        compacted = {}
        for key, item in value.items():
            if key == "query_vector":
                compacted[key] = f"@@VECTOR{len(vectors)}@@"
                vectors.append(item)
            else:
                compacted[key] = _compact_vectors(item, vectors)
        return compacted
    if isinstance(value, list):
        return [_compact_vectors(v, vectors) for v in value]
    return value


def console(index: str, body: dict[str, Any] | list[dict[str, Any]]) -> str:
    """Kibana Dev Tools console text: ``GET index/_search`` + JSON, or ``_msearch`` + NDJSON."""
    if isinstance(body, list):
        return f"GET {index}/_msearch\n" + "\n".join(json.dumps(line) for line in body) + "\n"
    vectors: list[list[float]] = []
    text = json.dumps(_compact_vectors(body, vectors), indent=2)
    for number, vector in enumerate(vectors):
        text = text.replace(f'"@@VECTOR{number}@@"', json.dumps(vector))
    return f"GET {index}/_search\n{text}\n"


def parse_leg_responses(response: dict[str, Any], names: list[str]) -> dict[str, list[tuple[str, float]]]:
    """``_msearch`` responses to one best-first ``(id, score)`` list per leg; a failed leg raises."""
    responses = response.get("responses", [])
    if len(responses) != len(names):
        raise ValidationError(f"_msearch answered {len(responses)} searches for {len(names)} legs")
    legs = {}
    for name, item in zip(names, responses):
        if "error" in item:
            reason = item["error"].get("reason") if isinstance(item["error"], dict) else item["error"]
            raise ValidationError(f"leg {name} failed in Elasticsearch: {reason}")
        legs[name] = [(hit["_id"], float(hit["_score"])) for hit in item["hits"]["hits"]]
    return legs


_INDEX = re.compile(r"at index \[(\d+)\](?: \[([^\]]+)\])?")
_RANK = re.compile(r"rank \[(\d+)\]")


def _legs_from_explanation(explanation: dict[str, Any] | None, names: list[str]) -> dict[str, LegScore]:
    """Per-leg rank (RRF only) and raw score from an ``rrf``/``linear`` explanation, where present."""
    legs: dict[str, LegScore] = {}
    for detail in (explanation or {}).get("details", []):
        description = detail.get("description", "")
        where = _INDEX.search(description)
        if not where or "not found" in description or not detail.get("details"):
            continue
        index = int(where.group(1))
        name = where.group(2) or (names[index] if index < len(names) else str(index))
        rank = _RANK.search(description)
        legs[name] = LegScore(int(rank.group(1)) if rank else None, float(detail["details"][0]["value"]))
    return legs


def parse_search_response(response: dict[str, Any], names: list[str], *, start_rank: int = 1) -> list[Hit]:
    """A ``_search`` response to hits: fused score, and per-leg details when ``explain`` was on."""
    hits = []
    for offset, hit in enumerate(response.get("hits", {}).get("hits", [])):
        hits.append(
            Hit(
                id=hit["_id"],
                score=float(hit["_score"]) if hit.get("_score") is not None else 0.0,
                rank=start_rank + offset,
                legs=_legs_from_explanation(hit.get("_explanation"), names),
                source=hit.get("_source") or {},
            )
        )
    return hits
