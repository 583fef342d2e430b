"""The Elasticsearch store: a versioned index behind an alias, bulk writes with external versions.

* The alias (``products``) points at a concrete index named after the layout
  (``products-v1-<hash of the layout>``), so a model change builds a new index beside
  the live one and ``swap_alias`` moves readers atomically.
* Writes go through ``elasticsearch.helpers.streaming_bulk`` (chunked, 429s retried
  with backoff) with ``version_type=external_gte``: Elasticsearch itself refuses an
  older version (409, reported as ``stale``), so retries and reordering cannot regress a
  product. Deletes carry versions too. Other per-item failures raise ``IndexWriteError``
  listing each id and reason; connection errors and exhausted 429/503s raise
  ``TransientStoreError`` so the Celery task retries with backoff.
* Bad catalogue items go to a small ``<alias>-errors`` index that ``hybrid-search
  errors`` lists.
* The worker reuses stored vectors of unchanged inputs, and MMR and feedback read the first
  hits' vectors, all through ``_source``. Elasticsearch 9.2+ leaves ``dense_vector`` values
  out of ``_source`` on new indices unless ``index.mapping.exclude_source_vectors`` is
  false, so the index is created with that setting there (older versions do not know it
  and keep vectors anyway); an index that drops them is reported once, not silently used.

References: bulk API and versioning, https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-bulk
(``version``, ``version_type``: ``external_gte``); aliases, .../operation/operation-indices-update-aliases;
vectors in ``_source``, https://www.elastic.co/docs/reference/elasticsearch/mapping-reference/dense-vector.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from typing import Any

import numpy as np

from hybrid_core.errors import IndexWriteError, LayoutError, StoreError, TransientStoreError
from hybrid_core.es_dsl import bm25_query, filtered, knn_clause, word_count_body
from hybrid_core.filters import Condition
from hybrid_core.layout import LAYOUT_VERSION, FieldLayout
from hybrid_core.stores.base import ExistingDoc, ItemErrorRecord, RankedIds, StoredDoc, WriteOutcome

TRANSIENT_STATUSES = (429, 502, 503, 504)
EXCLUDE_SOURCE_VECTORS_SINCE = (9, 2)  # the version whose new indices leave vectors out of _source by default

log = logging.getLogger(__name__)


def cluster_version(info: dict[str, Any]) -> tuple[int, int]:
    """(major, minor) from ``GET /`` (``9.2.0``, ``9.3.0-SNAPSHOT``)."""
    number = str(info["version"]["number"]).split("-")[0].split(".")
    return int(number[0]), int(number[1])


def index_body(layout: FieldLayout, version: tuple[int, int]) -> dict[str, Any]:
    """The create-index body for a cluster of ``version``: the layout's mapping, plus, from 9.2,
    ``index.mapping.exclude_source_vectors: false`` so vectors stay readable in ``_source``."""
    body = layout.to_es_mapping()
    if version >= EXCLUDE_SOURCE_VECTORS_SINCE:
        body["settings"]["index"]["mapping"] = {"exclude_source_vectors": False}
    return body


def layout_hash(layout: FieldLayout) -> str:
    return hashlib.sha256(json.dumps(layout.signature(), sort_keys=True).encode()).hexdigest()[:10]


def bulk_actions(docs: list[StoredDoc], deletes: list[tuple[str, int]], index: str) -> list[dict[str, Any]]:
    """Bulk actions with external versions (pure, so the request is testable without a cluster)."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    actions: list[dict[str, Any]] = []
    for doc in docs:
        source = dict(doc.source)
        source.update({name: [float(x) for x in np.asarray(vec, dtype=np.float32)] for name, vec in doc.vectors.items()})
        source.update({"text_hash": doc.text_hash, "image_hash": doc.image_hash, "indexed_at": now})
        actions.append(
            {"_op_type": "index", "_index": index, "_id": doc.id, "version": doc.version, "version_type": "external_gte", "_source": source}
        )
    for pid, version in deletes:
        actions.append({"_op_type": "delete", "_index": index, "_id": pid, "version": version, "version_type": "external_gte"})
    return actions


class ElasticsearchStore:
    """Store on an Elasticsearch cluster; the client is injected, construction does no I/O."""

    concurrent_legs = True  # each leg is a round trip to the cluster: they overlap

    def __init__(
        self,
        client: Any,
        layout: FieldLayout,
        *,
        alias: str = "products",
        refresh: bool | str = False,
        chunk_size: int = 500,
        max_retries: int = 5,
        initial_backoff: float = 1.0,
    ) -> None:
        self.client = client
        self.layout = layout
        self.alias = alias
        self.errors_index = f"{alias}-errors"
        self.refresh = refresh
        self.chunk_size = chunk_size
        self.max_retries = max_retries
        self.initial_backoff = initial_backoff
        self._checked = False
        self._warned_no_vectors = False

    @property
    def concrete_index(self) -> str:
        return f"{self.alias}-v{LAYOUT_VERSION}-{layout_hash(self.layout)}"

    # -- index management ------------------------------------------------------------------

    def ensure_index(self) -> str:
        """Create the layout's index behind the alias, or check the alias points at this layout."""
        from elasticsearch import ApiError, TransportError

        try:
            if self.client.indices.exists_alias(name=self.alias):
                mapping = self.client.indices.get_mapping(index=self.alias)
                for index, body in mapping.body.items() if hasattr(mapping, "body") else mapping.items():
                    differences = self.layout.differences(body.get("mappings", {}).get("_meta", {}))
                    if differences:  # other vectors, or text fields the index does not map (photo captions, say)
                        raise LayoutError(
                            f"alias {self.alias} points at {index}, built for another layout ({differences}): "
                            "build the new layout under another alias (HYBRID_SEARCH_ES_ALIAS=products-next), index, then "
                            "hybrid-search es-swap products-next; or use the same settings"
                        )
            else:
                self.create_index(self.concrete_index)
                self.client.indices.update_aliases(actions=[{"add": {"index": self.concrete_index, "alias": self.alias, "is_write_index": True}}])
            if not self.client.indices.exists(index=self.errors_index):
                self.client.indices.create(
                    index=self.errors_index,
                    mappings={"properties": {"at": {"type": "date"}, "item": {"type": "keyword"}, "product_id": {"type": "keyword"},
                                             "version": {"type": "long"}, "reason": {"type": "text"}, "task_id": {"type": "keyword"}}},
                )
        except (ApiError, TransportError) as exc:
            raise self._translate(exc, f"prepare index {self.alias}") from exc
        self._checked = True
        return self.concrete_index

    def create_index(self, name: str) -> None:
        body = index_body(self.layout, cluster_version(self.client.info()))
        self.client.indices.create(index=name, settings=body["settings"], mappings=body["mappings"])

    def swap_alias(self, new_index: str) -> None:
        """Point the alias at ``new_index`` in one atomic step (readers never see no index)."""
        current = list(self.client.indices.get_alias(name=self.alias).keys()) if self.client.indices.exists_alias(name=self.alias) else []
        actions = [{"remove": {"index": old, "alias": self.alias}} for old in current if old != new_index]
        actions.append({"add": {"index": new_index, "alias": self.alias, "is_write_index": True}})
        self.client.indices.update_aliases(actions=actions)

    def _ready(self) -> None:
        if not self._checked:
            self.ensure_index()

    @staticmethod
    def _translate(exc: Exception, what: str) -> StoreError:
        status = getattr(exc, "status_code", None) or getattr(getattr(exc, "meta", None), "status", None)
        if status in TRANSIENT_STATUSES or exc.__class__.__name__ in ("ConnectionError", "ConnectionTimeout", "TransportError"):
            return TransientStoreError(f"{what}: Elasticsearch unavailable ({exc.__class__.__name__}: {status or exc})")
        return StoreError(f"{what}: {exc}")

    # -- writes ----------------------------------------------------------------------------

    def existing(self, ids: list[str]) -> dict[str, ExistingDoc]:
        """Versions and hashes of live documents (vectors too where the cluster returns them)."""
        if not ids:
            return {}
        from elasticsearch import ApiError, TransportError

        self._ready()
        wanted = ["version", "text_hash", "image_hash", *(v.name for v in self.layout.vector_fields)]
        try:
            response = self.client.mget(index=self.alias, ids=ids, source_includes=wanted)
        except (ApiError, TransportError) as exc:
            raise self._translate(exc, "read existing documents") from exc
        return self._existing_docs(response["docs"])

    def _existing_docs(self, docs: list[dict[str, Any]]) -> dict[str, ExistingDoc]:
        found = {}
        for doc in docs:
            if not doc.get("found"):
                continue
            src = doc.get("_source", {})
            vectors = {v.name: np.asarray(src[v.name], dtype=np.float32) for v in self.layout.vector_fields if src.get(v.name)}
            if not vectors and src.get("text_hash") and not self._warned_no_vectors:
                self._warned_no_vectors = True  # every document has a text vector: the index drops them from _source
                log.warning(
                    "%s returns documents without their vectors (Elasticsearch 9.2+ index created with "
                    "index.mapping.exclude_source_vectors true, the default): unchanged products are re-encoded and "
                    "MMR and feedback change nothing; rebuild the index with hybrid-search (it sets the setting false) "
                    "under another alias and es-swap", self.alias)
            found[doc["_id"]] = ExistingDoc(doc["_id"], int(doc.get("_version", src.get("version", 0))), False,
                                            src.get("text_hash"), src.get("image_hash"), vectors)
        return found

    def write(self, docs: list[StoredDoc], deletes: list[tuple[str, int]]) -> WriteOutcome:
        from elasticsearch import ApiError, TransportError
        from elasticsearch.helpers import streaming_bulk

        for doc in docs:
            for name, vector in doc.vectors.items():
                space, model_id = doc.spaces.get(name, ("?", "?"))
                self.layout.vector(name).check(np.asarray(vector), space=space, model_id=model_id, item=f"product {doc.id}")
        outcome = WriteOutcome()
        actions = bulk_actions(docs, deletes, self.alias)
        if not actions:
            return outcome
        self._ready()
        failures: list[dict[str, Any]] = []
        transient: list[dict[str, Any]] = []
        try:
            for ok, info in streaming_bulk(
                self.client,
                actions,
                chunk_size=self.chunk_size,
                max_retries=self.max_retries,
                initial_backoff=self.initial_backoff,
                raise_on_error=False,
                raise_on_exception=False,
                refresh=self.refresh,
            ):
                op, result = next(iter(info.items()))
                pid, status = result.get("_id"), result.get("status")
                if ok:
                    outcome.status[pid] = "deleted" if op == "delete" else "written"
                elif status == 409:
                    outcome.status[pid] = "stale"
                elif op == "delete" and status == 404:
                    outcome.status[pid] = "deleted"  # nothing to delete; the version is recorded
                elif status in TRANSIENT_STATUSES:
                    transient.append({"id": pid, "status": status})
                else:
                    failures.append({"id": pid, "status": status, "reason": json.dumps(result.get("error"))})
        except (ApiError, TransportError) as exc:
            raise self._translate(exc, f"bulk write of {len(actions)} actions") from exc
        if transient:
            raise TransientStoreError(f"{len(transient)} documents still rejected after retries: {transient[:5]}")
        if failures:
            raise IndexWriteError(f"{len(failures)} of {len(actions)} documents failed", errors=failures)
        return outcome

    def record_errors(self, errors: list[ItemErrorRecord]) -> None:
        if not errors:
            return
        from elasticsearch.helpers import bulk

        self._ready()
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        bulk(self.client, ({"_index": self.errors_index, "_source": {**e.__dict__, "at": e.at or now}} for e in errors), refresh=True)

    def list_errors(self, limit: int = 100) -> list[ItemErrorRecord]:
        self._ready()
        response = self.client.search(index=self.errors_index, size=limit, sort=[{"at": "desc"}])
        return [ItemErrorRecord(**{k: h["_source"].get(k) for k in ItemErrorRecord.__dataclass_fields__}) for h in response["hits"]["hits"]]

    # -- reads -----------------------------------------------------------------------------

    def bm25(
        self, text: str, *, boosts: dict[str, float], filters: list[Condition], size: int, all_terms_boost: float = 0.0,
        faint_text: str = "", faint_weight: float = 0.0,
    ) -> RankedIds:
        self._ready()
        query = filtered(bm25_query(text, self.layout, boosts, all_terms_boost, faint_text, faint_weight), filters)
        response = self.client.search(index=self.alias, query=query, size=size, source=False)
        return [(h["_id"], float(h["_score"])) for h in response["hits"]["hits"]]

    def knn(self, field: str, vector: np.ndarray, *, k: int, num_candidates: int, filters: list[Condition]) -> RankedIds:
        self._ready()
        clause = knn_clause(field, vector, k=k, num_candidates=num_candidates, filters=filters, layout=self.layout)
        response = self.client.search(index=self.alias, knn=clause, size=k, source=False)
        return [(h["_id"], float(h["_score"])) for h in response["hits"]["hits"]]

    def sources(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        self._ready()
        excludes = [v.name for v in self.layout.vector_fields]
        response = self.client.mget(index=self.alias, ids=ids, source_excludes=excludes)
        return {d["_id"]: d["_source"] for d in response["docs"] if d.get("found")}

    def word_counts(self, phrases: list[str], *, filters: list[Condition], near: list[str]) -> tuple[list[int], list[int]]:
        """One ``_msearch`` of ``size: 0`` counts (``es_dsl.word_count_body``): each phrase in all, then
        each among ``near``."""
        if not phrases:
            return [], []
        from elasticsearch import ApiError, TransportError

        self._ready()
        searches: list[dict[str, Any]] = []
        for within in (None, near):
            for phrase in phrases:
                searches += [{"index": self.alias}, word_count_body(phrase, self.layout, filters, within)]
        try:
            responses = self.client.msearch(searches=searches)["responses"]
        except (ApiError, TransportError) as exc:
            raise self._translate(exc, "count the query's words") from exc
        counts = []
        for phrase, response in zip(phrases + phrases, responses):
            if "error" in response:
                raise StoreError(f"count the query's words: {phrase!r} failed: {response['error']}")
            counts.append(int(response["hits"]["total"]["value"]))
        return counts[: len(phrases)], counts[len(phrases) :]

    def hits(self, ids: list[str]) -> tuple[dict[str, ExistingDoc], dict[str, dict[str, Any]]]:
        """One ``_mget`` of the whole ``_source`` instead of two of its halves (vectors for one
        feedback leg, text for the other): one round trip and one lookup per id on the cluster."""
        if not ids:
            return {}, {}
        from elasticsearch import ApiError, TransportError

        self._ready()
        try:
            docs = self.client.mget(index=self.alias, ids=ids)["docs"]
        except (ApiError, TransportError) as exc:
            raise self._translate(exc, "read the first page's documents") from exc
        vector_fields = {v.name for v in self.layout.vector_fields}
        sources = {d["_id"]: {k: v for k, v in d.get("_source", {}).items() if k not in vector_fields} for d in docs if d.get("found")}
        return self._existing_docs(docs), sources

    def count(self) -> int:
        self._ready()
        return int(self.client.count(index=self.alias)["count"])

    def close(self) -> None:
        self.client.close()
