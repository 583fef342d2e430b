"""Hybrid search on Elasticsearch in every execution mode, with the embedded searcher's planning.

Modes: ``retrievers`` (server-side ``rrf``/``linear``; Enterprise or trial licence),
``legacy`` (server-side raw weighted sum; any licence), ``legs`` (one ``_msearch``,
fused client-side with ``query_builder.fusion``; any licence, every fusion), and
``auto``, which reads ``GET /`` and ``GET _license`` once and picks ``retrievers``
where the licence and version allow the requested fusion, else ``legs``.

Version gates (from the reference pages' ``applies_to``): the ``rrf`` retriever from
8.15 (GA 8.16), the ``linear`` retriever from 8.18, weighted ``rrf`` entries from
9.2, ``_name`` on retrievers from 8.18.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hybrid_core.errors import ConfigError, ValidationError
from hybrid_core.filters import Condition
from hybrid_core.results import SearchResult
from hybrid_core.stores.elasticsearch import cluster_version
from query_builder.es_requests import (
    MODES,
    leg_bodies,
    legacy_body,
    msearch_searches,
    parse_leg_responses,
    parse_search_response,
    retrievers_body,
)
from query_builder.query import HybridQuery
from query_builder.searcher import HybridSearcher, LegPlan, QueryVectors, explain, fusion_report

RETRIEVER_LICENCES = ("enterprise", "trial")


@dataclass(frozen=True)
class Cluster:
    """What ``auto`` needs to know about the cluster."""

    version: tuple[int, int]
    licence: str

    def retrievers_allowed(self, query: HybridQuery, plans: list[LegPlan]) -> str | None:
        """``None`` if the retrievers mode can run this query here, else the reason it cannot."""
        if self.licence not in RETRIEVER_LICENCES:
            return f"the {self.licence} licence does not include rrf/linear retrievers (Enterprise or trial)"
        fusion = query.fusion
        if fusion.method == "rrf":
            if self.version < (8, 15):
                return f"the rrf retriever needs Elasticsearch 8.15+, this cluster is {self.version}"
            if any(fusion.weight(p.name) != 1.0 for p in plans) and self.version < (9, 2):
                return f"weighted rrf needs Elasticsearch 9.2+, this cluster is {self.version}"
        elif self.version < (8, 18):
            return f"the linear retriever needs Elasticsearch 8.18+, this cluster is {self.version}"
        return None


def read_cluster(client: Any) -> Cluster:
    licence = client.license.get()["license"]["type"]
    return Cluster(cluster_version(client.info()), str(licence).lower())


class ElasticsearchHybridSearcher(HybridSearcher):
    """``search(HybridQuery)`` against an ``ElasticsearchStore`` in the configured mode."""

    def __init__(self, store, layout, text_space, image_space=None, *, mode: str = "auto", explain: bool = True, **kwargs) -> None:
        super().__init__(store, layout, text_space, image_space, **kwargs)
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; choose one of {list(MODES)}")
        self.mode = mode
        self.explain = explain
        self._cluster: Cluster | None = None

    @property
    def client(self) -> Any:
        return self.store.client

    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = read_cluster(self.client)
        return self._cluster

    def resolve_mode(self, query: HybridQuery, plans: list[LegPlan]) -> str:
        for option, wanted in (("diversity", query.diversity), ("feedback", query.feedback), ("term feedback", query.term_feedback)):
            # MMR here re-ranks by the fused score (Elasticsearch's diversify retriever ranks by similarity
            # to one query vector instead); feedback needs the fused first page before its own leg can be
            # built. All run client-side over the fused legs.
            if wanted is not None:
                if self.mode in ("retrievers", "legacy"):
                    raise ValidationError(f"{option} runs client-side: use --mode legs or auto, not {self.mode}")
                return "legs"
        if self.mode == "legacy":
            return "legacy"
        if self.mode == "legs":
            return "legs"
        if self.mode in ("retrievers", "auto") and self.client is None:
            return "retrievers"  # printing the request only: no cluster to check against
        reason = self.cluster().retrievers_allowed(query, plans)
        if self.mode == "retrievers" and reason:
            raise ValidationError(f"retrievers mode cannot run here: {reason}; use --mode legs (client-side fusion, any licence)")
        return "retrievers" if reason is None else "legs"

    def requests(self, query: HybridQuery) -> tuple[str, Any, list[LegPlan]]:
        """The mode and the request(s) this query becomes: a body, or ``_msearch`` header/body pairs
        (with feedback, the first round's: the feedback leg is built from its answer)."""
        mode, request, plans, _, _ = self._prepare(query)
        return mode, request, plans

    def _prepare(self, query: HybridQuery) -> tuple[str, Any, list[LegPlan], QueryVectors, list[Condition]]:
        filters = self.check(query)
        legs = self.applicable_legs(query)
        vectors = self.encode(query, self.wanted(query, legs))
        if self.client is not None:  # printing the request only: no cluster to place the words against
            self.check_words(query, vectors, filters, legs)
        plans = self.plan(query, vectors, legs)
        mode = self.resolve_mode(query, plans)
        if mode == "retrievers":
            named = self._cluster is None or self._cluster.version >= (8, 18)
            body = retrievers_body(query, plans, self.layout, filters, explain=self.explain, named=named)
            return mode, body, plans, vectors, filters
        if mode == "legacy":
            return mode, legacy_body(query, plans, self.layout, filters), plans, vectors, filters
        return mode, msearch_searches(self.store.alias, leg_bodies(query, plans, self.layout, filters)), plans, vectors, filters

    def search(self, query: HybridQuery) -> SearchResult:
        t0 = time.perf_counter()
        mode, request, plans, vectors, filters = self._prepare(query)
        t1 = time.perf_counter()
        names = [p.name for p in plans]
        notes: dict[str, Any] = {}
        if mode == "legs":
            legs = parse_leg_responses(self.client.msearch(searches=request).body, names)
            legs, fused, notes = self.with_feedback(query, vectors, legs, filters)
            fused = self.diversify(fused, query)
            page = fused[query.offset : query.offset + query.size]
            hits = explain(page, legs, start_rank=query.offset + 1, sources=self.store.sources([d for d, _ in page]))
            sizes = {name: len(ranked) for name, ranked in legs.items()}
        else:
            # the body exactly as built and tested (its keys "from" and "_source" are not Python kwargs)
            response = self.client.search(index=self.store.alias, body=request).body
            hits = parse_search_response(response, names, start_rank=query.offset + 1)
            sizes = {name: -1 for name in names}  # the server does not say how many each leg found
        t2 = time.perf_counter()
        return SearchResult(
            hits=hits,
            legs=sizes,
            fusion=fusion_report(query, mode=mode, **self.rewrites(query, vectors), **notes),
            took_ms={"encode_and_plan": 1000 * (t1 - t0), "elasticsearch_and_fuse": 1000 * (t2 - t1)},
        )
