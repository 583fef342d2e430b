"""Golden tests: the Elasticsearch requests of every mode, pinned field by field.

Each body was checked against Elastic's reference (cited per test) and the
elasticsearch-specification types (specification/_types/Retriever.ts, Knn.ts):
* retrievers: https://www.elastic.co/docs/reference/elasticsearch/rest-apis/retrievers/rrf-retriever
  and .../retrievers/linear-retriever, .../retrievers/knn-retriever, .../retrievers/standard-retriever
* knn search + query: https://www.elastic.co/docs/solutions/search/vector/knn (boosted knn and query are summed)
* msearch: https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-msearch
* bulk with versions: https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-bulk
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from elastic_transport import ObjectApiResponse
from elasticsearch import Elasticsearch

from hybrid_core.errors import IndexWriteError, TransientStoreError, ValidationError
from hybrid_core.filters import parse_filters
from hybrid_core.layout import build_layout
from hybrid_core.spaces import SpaceSpec
from hybrid_core.stores.base import StoredDoc
from hybrid_core.stores.elasticsearch import ElasticsearchStore, bulk_actions
from hybrid_core.es_dsl import bm25_query
from query_builder.es_requests import (
    console,
    legacy_body,
    leg_bodies,
    msearch_searches,
    parse_leg_responses,
    parse_search_response,
    retrievers_body,
)
from query_builder.es_searcher import Cluster
from query_builder.query import FusionConfig, HybridQuery
from query_builder.searcher import LegPlan

TEXT = SpaceSpec(name="text", kind="sentence-transformers", model="m", dims=3, label="mini")
IMAGE = SpaceSpec(name="image", kind="open_clip", model="tiny", dims=2, init_seed=0)
LAYOUT = build_layout(TEXT, IMAGE)
T = np.array([1.0, 0.0, 0.0], dtype=np.float32)
C = np.array([0.0, 1.0], dtype=np.float32)
PLANS = [LegPlan("bm25", text="red kurta"), LegPlan("text", "text_vector", T), LegPlan("cross", "image_vector", C)]
MULTI_MATCH = {"multi_match": {"query": "red kurta", "fields": ["title^2.0", "description^1.0"], "type": "best_fields"}}
SOURCE = {"excludes": ["text_vector", "image_vector", "product_vector"]}


def query(**fusion):
    return HybridQuery(text="red kurta", size=5, offset=5, fusion=FusionConfig(rank_window_size=50, **fusion))


def knn(field, vector, **extra):
    return {"field": field, "query_vector": [float(x) for x in vector], "k": 50, "num_candidates": 100, **extra}


def test_rrf_retriever_unweighted_uses_the_plain_form():
    body = retrievers_body(query(), PLANS, LAYOUT, [])
    assert body == {
        "retriever": {
            "rrf": {
                "retrievers": [
                    {"standard": {"query": MULTI_MATCH, "_name": "bm25"}},
                    {"knn": {**knn("text_vector", T), "_name": "text"}},
                    {"knn": {**knn("image_vector", C), "_name": "cross"}},
                ],
                "rank_constant": 60,
                "rank_window_size": 50,
            }
        },
        "from": 5,
        "size": 5,
        "_source": SOURCE,
    }


def test_rrf_retriever_weighted_entries_filters_and_explain():
    filters = parse_filters({"colour": "Red", "price": {"lt": 50}}, LAYOUT)
    body = retrievers_body(query(weights={"bm25": 2.0, "cross": 0.5}, rank_constant=20), PLANS, LAYOUT, filters, explain=True)
    rrf = body["retriever"]["rrf"]
    assert rrf["retrievers"] == [
        {"retriever": {"standard": {"query": MULTI_MATCH, "_name": "bm25"}}, "weight": 2.0},
        {"retriever": {"knn": {**knn("text_vector", T), "_name": "text"}}, "weight": 1.0},
        {"retriever": {"knn": {**knn("image_vector", C), "_name": "cross"}}, "weight": 0.5},
    ]
    assert rrf["rank_constant"] == 20
    # one filter on the compound retriever: "applies to all of the specified sub-retrievers"
    assert rrf["filter"] == [{"term": {"colour": "Red"}}, {"range": {"price": {"lt": 50.0}}}]
    assert body["explain"] is True


def test_linear_retriever_weight_and_normalizer_per_entry():
    body = retrievers_body(query(method="linear", normalizer="l2_norm", weights={"text": 3.0}), PLANS, LAYOUT, [], named=False)
    assert body["retriever"] == {
        "linear": {
            "retrievers": [
                {"retriever": {"standard": {"query": MULTI_MATCH}}, "weight": 1.0, "normalizer": "l2_norm"},
                {"retriever": {"knn": knn("text_vector", T)}, "weight": 3.0, "normalizer": "l2_norm"},
                {"retriever": {"knn": knn("image_vector", C)}, "weight": 1.0, "normalizer": "l2_norm"},
            ],
            "rank_window_size": 50,
        }
    }


def test_legacy_body_is_a_boosted_query_plus_boosted_knn_with_filters_in_each():
    filters = parse_filters({"gender": ["Men", "Unisex"]}, LAYOUT)
    body = legacy_body(query(method="linear", normalizer="none", weights={"bm25": 0.2}), PLANS, LAYOUT, filters)
    terms = [{"terms": {"gender": ["Men", "Unisex"]}}]
    assert body == {
        "from": 5,
        "size": 5,
        "_source": SOURCE,
        "query": {"bool": {"must": [{"multi_match": {**MULTI_MATCH["multi_match"], "boost": 0.2}}], "filter": terms}},
        "knn": [knn("text_vector", T, filter=terms, boost=1.0), knn("image_vector", C, filter=terms, boost=1.0)],
    }


def test_legacy_refuses_what_a_raw_sum_cannot_do():
    with pytest.raises(ValidationError, match="legacy mode is a server-side sum of raw scores"):
        legacy_body(query(), PLANS, LAYOUT, [])
    with pytest.raises(ValidationError, match="linear/minmax"):
        legacy_body(query(method="linear"), PLANS, LAYOUT, [])


def test_legs_are_one_msearch_with_a_body_per_leg():
    filters = parse_filters({"colour": "Red"}, LAYOUT)
    bodies = leg_bodies(query(), PLANS, LAYOUT, filters)
    term = [{"term": {"colour": "Red"}}]
    assert bodies == [
        {"query": {"bool": {"must": [MULTI_MATCH], "filter": term}}, "size": 50, "_source": False},
        {"knn": knn("text_vector", T, filter=term), "size": 50, "_source": False},
        {"knn": knn("image_vector", C, filter=term), "size": 50, "_source": False},
    ]
    searches = msearch_searches("products", bodies)
    assert searches[0::2] == [{"index": "products"}] * 3 and searches[1::2] == bodies
    text = console("products", searches)
    assert text.startswith("GET products/_msearch\n") and len(text.strip().splitlines()) == 7
    assert json.loads(text.splitlines()[2]) == bodies[0]


def test_console_text_is_pasteable_into_kibana():
    body = retrievers_body(query(), PLANS, LAYOUT, [])
    text = console("products", body)
    first, rest = text.split("\n", 1)
    assert first == "GET products/_search"
    assert json.loads(rest) == body
    assert '"query_vector": [1.0, 0.0, 0.0]' in rest  # vectors on one line


def test_knn_bounds_are_validated():
    with pytest.raises(ValidationError, match="num_candidates must be an integer in 50..10000"):
        HybridQuery(text="x", fusion=FusionConfig(rank_window_size=50), num_candidates=20)
    with pytest.raises(ValidationError, match="query vector for text_vector must have 3 dims"):
        leg_bodies(query(), [LegPlan("text", "text_vector", np.ones(4))], LAYOUT, [])


def test_leg_responses_parse_in_order_and_errors_name_the_leg():
    response = {
        "responses": [
            {"hits": {"hits": [{"_id": "a", "_score": 3.0}, {"_id": "b", "_score": 1.5}]}},
            {"hits": {"hits": [{"_id": "b", "_score": 0.9}]}},
        ]
    }
    assert parse_leg_responses(response, ["bm25", "text"]) == {"bm25": [("a", 3.0), ("b", 1.5)], "text": [("b", 0.9)]}
    with pytest.raises(ValidationError, match="leg text failed in Elasticsearch: no such field"):
        parse_leg_responses({"responses": [{"hits": {"hits": []}}, {"error": {"reason": "no such field"}}]}, ["bm25", "text"])


def test_server_side_explanations_parse_into_per_leg_rank_and_score():
    # shapes from RRFRankDoc/LinearRankDoc.explain in x-pack/plugin/rank-rrf
    rrf_hit = {
        "_id": "p1",
        "_score": 0.0325,
        "_source": {"title": "Red Kurta"},
        "_explanation": {
            "value": 0.0325,
            "description": "rrf score: [0.0325] computed for initial ranks [1, 2] with rankConstant: [60]",
            "details": [
                {"value": 0.0164, "description": "rrf score: [0.0164], for rank [1] in query at index [0] [bm25] computed as [1 / (1 + 60)], for matching query with score", "details": [{"value": 7.5, "description": "weight(...)"}]},
                {"value": 0.0161, "description": "rrf score: [0.0161], for rank [2] in query at index [1] [text] computed as [1 / (2 + 60)], for matching query with score", "details": [{"value": 0.91, "description": "within top k"}]},
                {"value": 0.0, "description": "rrf score: [0], result not found in query at index [2] [cross]"},
            ],
        },
    }
    linear_hit = {
        "_id": "p2",
        "_score": 1.4,
        "_explanation": {
            "value": 1.4,
            "description": "weighted linear combination score: [1.4] computed for normalized scores [0.9, 0.5] and weights [1.0, 1.0]",
            "details": [
                {"value": 0.9, "description": "weighted score: [0.9] in query at index [0] [bm25] computed as [1.0 * 0.9] using score normalizer [minmax] for original matching query with score:", "details": [{"value": 6.1, "description": "..."}]},
                {"value": 0.5, "description": "weighted score: [0.5] in query at index [1] computed as [1.0 * 0.5] using score normalizer [minmax] for original matching query with score:", "details": [{"value": 0.8, "description": "..."}]},
            ],
        },
    }
    hits = parse_search_response({"hits": {"hits": [rrf_hit, linear_hit]}}, ["bm25", "text", "cross"], start_rank=6)
    assert [(h.id, h.rank, h.score) for h in hits] == [("p1", 6, 0.0325), ("p2", 7, 1.4)]
    assert {k: (v.rank, v.score) for k, v in hits[0].legs.items()} == {"bm25": (1, 7.5), "text": (2, 0.91)}
    assert {k: (v.rank, v.score) for k, v in hits[1].legs.items()} == {"bm25": (None, 6.1), "text": (None, 0.8)}
    assert hits[0].source == {"title": "Red Kurta"}


def test_auto_mode_gates_on_licence_and_version():
    plans = PLANS
    assert Cluster((9, 2), "enterprise").retrievers_allowed(query(weights={"bm25": 2}), plans) is None
    assert "weighted rrf needs Elasticsearch 9.2+" in Cluster((9, 1), "trial").retrievers_allowed(query(weights={"bm25": 2}), plans)
    assert Cluster((9, 1), "trial").retrievers_allowed(query(), plans) is None
    assert "basic licence does not include" in Cluster((9, 2), "basic").retrievers_allowed(query(), plans)
    assert "linear retriever needs Elasticsearch 8.18+" in Cluster((8, 17), "enterprise").retrievers_allowed(query(method="linear"), plans)


def doc(pid, version):
    return StoredDoc(pid, version, {"id": pid, "title": "t"}, {"text_vector": T}, {"text_vector": ("text", LAYOUT.vector("text_vector").model_id)}, "h")


def test_bulk_actions_use_external_gte_versions():
    actions = bulk_actions([doc("a", 7)], [("b", 9)], "products")
    assert actions[0]["_op_type"] == "index" and actions[0]["_id"] == "a"
    assert (actions[0]["version"], actions[0]["version_type"]) == (7, "external_gte")
    assert actions[0]["_source"]["text_vector"] == [1.0, 0.0, 0.0] and actions[0]["_source"]["text_hash"] == "h"
    assert actions[1] == {"_op_type": "delete", "_index": "products", "_id": "b", "version": 9, "version_type": "external_gte"}


class BulkClient(Elasticsearch):
    """The real client class with ``bulk`` answering canned per-item results (as elasticsearch-py's own
    helper tests do with a failing bulk client); nothing is sent anywhere."""

    def __init__(self, *rounds):
        super().__init__("http://127.0.0.1:9")
        self.rounds = list(rounds)
        self.calls = 0

    def options(self, **_):
        return self

    def bulk(self, *args, **kwargs):
        self.calls += 1
        items = self.rounds.pop(0)
        body = {"errors": any(i[next(iter(i))]["status"] >= 300 for i in items), "items": items}
        return ObjectApiResponse(body=body, meta=None)


def item(op, pid, status, error=None):
    result = {"_id": pid, "status": status}
    if error:
        result["error"] = error
    return {op: result}


def es_store(client):
    store = ElasticsearchStore(client, LAYOUT, initial_backoff=0, max_retries=2)
    store._checked = True  # skip index creation: no cluster here
    return store


def test_bulk_outcomes_stale_on_409_and_deleted_on_404():
    client = BulkClient([item("index", "a", 201), item("index", "b", 409, {"type": "version_conflict_engine_exception"}), item("delete", "c", 404)])
    outcome = es_store(client).write([doc("a", 2), doc("b", 1)], [("c", 5)])
    assert outcome.status == {"a": "written", "b": "stale", "c": "deleted"}


def test_bulk_item_failures_raise_with_every_id():
    client = BulkClient([item("index", "a", 201), item("index", "b", 400, {"type": "mapper_parsing_exception", "reason": "bad"})])
    with pytest.raises(IndexWriteError) as info:
        es_store(client).write([doc("a", 1), doc("b", 1)], [])
    assert info.value.errors[0]["id"] == "b" and "mapper_parsing_exception" in info.value.errors[0]["reason"]


def test_bulk_429s_are_retried_then_reported_as_transient():
    def busy():  # the helper consumes the items it reads: a fresh list per answer
        return [item("index", "a", 429, {"type": "es_rejected_execution_exception"})]

    client = BulkClient(busy(), busy(), busy())
    with pytest.raises(TransientStoreError, match="still rejected after retries"):
        es_store(client).write([doc("a", 1)], [])
    assert client.calls == 3  # the first try and max_retries=2 retries
    recovered = BulkClient(busy(), [item("index", "a", 201)])
    assert es_store(recovered).write([doc("a", 1)], []).status == {"a": "written"}


class WireClient(Elasticsearch):
    """The real client; ``perform_request`` records what would go on the wire and answers canned JSON."""

    def __init__(self, answers):
        super().__init__("http://127.0.0.1:9")
        self.answers = answers
        self.sent = []

    def options(self, **_):
        return self

    def perform_request(self, method, path, *, params=None, headers=None, body=None, **kwargs):
        self.sent.append((method, path, body))
        return ObjectApiResponse(body=self.answers[path.rsplit("/", 1)[-1]], meta=None)


def test_searcher_sends_the_built_bodies_unchanged(layout, text_space, image_space):
    from query_builder.es_searcher import ElasticsearchHybridSearcher

    hit = {"_id": "p1", "_score": 0.5, "_source": {"title": "Red Kurta"}}
    answers = {
        "_search": {"hits": {"hits": [hit]}},
        "_msearch": {"responses": [{"hits": {"total": {"value": 1, "relation": "eq"}, "hits": [{"_id": "p1", "_score": 1.0}]}}] * 4},
        "_mget": {"docs": [{"_id": "p1", "found": True, "_source": {"title": "Red Kurta"}}]},
    }
    client = WireClient(answers)
    store = ElasticsearchStore(client, layout)
    store._checked = True
    query = HybridQuery(text="red kurta", size=3, offset=1, fusion=FusionConfig(rank_window_size=10))

    server = ElasticsearchHybridSearcher(store, layout, text_space, image_space, mode="retrievers")
    server._cluster = Cluster((9, 2), "enterprise")
    _, body, _ = server.requests(query)
    result = server.search(query)
    method, path, sent = client.sent[-1]
    assert (method, path) == ("POST", "/products/_search") and sent == body and sent["from"] == 1 and "_source" in sent
    assert result.hits[0].id == "p1" and result.fusion["mode"] == "retrievers"
    # before it, the word check: the text leg's neighbourhood, then one _msearch counting the words in all and among it
    (_, knn_path, neighbourhood), (_, count_path, counts) = client.sent[-3:-1]
    assert knn_path == "/products/_search" and neighbourhood["knn"]["field"] == "text_vector" and neighbourhood["knn"]["k"] == 100
    everywhere, near = counts[1:4:2], counts[5::2]
    assert count_path == "/_msearch" and [b["query"]["multi_match"]["query"] for b in everywhere] == ["red", "kurta"]
    assert all(b["size"] == 0 and b["track_total_hits"] is True for b in everywhere + near)
    assert [b["query"]["bool"]["filter"] for b in near] == [[{"ids": {"values": ["p1"]}}]] * 2

    first_page = HybridQuery(text="red kurta", size=3, fusion=FusionConfig(rank_window_size=10))
    legs = ElasticsearchHybridSearcher(store, layout, text_space, image_space, mode="legs").search(first_page)
    assert [p for _, p, _ in client.sent[-2:]] == ["/_msearch", "/products/_mget"]
    assert set(legs.legs) == {"bm25", "text", "cross", "product"} and legs.hits[0].legs["bm25"].rank == 1


def test_index_body_keeps_vectors_in_source_from_9_2(layout):
    from hybrid_core.stores.elasticsearch import cluster_version, index_body

    assert index_body(layout, (9, 2))["settings"]["index"]["mapping"] == {"exclude_source_vectors": False}
    for older in ((9, 1), (8, 19), (8, 15)):  # the setting is unknown there and vectors stay in _source anyway
        assert "mapping" not in index_body(layout, older)["settings"]["index"]
    assert index_body(layout, (9, 3))["mappings"] == layout.to_es_mapping()["mappings"]
    assert cluster_version({"version": {"number": "9.3.0-SNAPSHOT"}}) == (9, 3)


@pytest.mark.parametrize(("number", "keeps"), [("9.2.1", True), ("8.19.3", False)])
def test_store_creates_its_index_for_the_cluster_version(layout, number, keeps):
    client = WireClient({"": {"version": {"number": number}}, "products-v1-x": {"acknowledged": True}})
    ElasticsearchStore(client, layout).create_index("products-v1-x")
    (_, info_path, _), (method, path, body) = client.sent
    assert info_path == "/" and (method, path) == ("PUT", "/products-v1-x")
    assert body["mappings"] == layout.to_es_mapping()["mappings"]
    assert (body["settings"]["index"].get("mapping") == {"exclude_source_vectors": False}) is keeps


def test_an_index_that_drops_vectors_from_source_is_reported_once(layout, caplog):
    doc = {"_id": "p1", "found": True, "_version": 3, "_source": {"version": 3, "text_hash": "t", "image_hash": "i"}}
    client = WireClient({"_mget": {"docs": [doc]}})
    store = ElasticsearchStore(client, layout)
    store._checked = True
    with caplog.at_level("WARNING", logger="hybrid_core.stores.elasticsearch"):
        first = store.existing(["p1"])
        store.existing(["p1"])
    assert first["p1"].version == 3 and first["p1"].vectors == {}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "index.mapping.exclude_source_vectors" in warnings[0]
    with_vectors = {**doc, "_source": {**doc["_source"], "text_vector": [0.1] * 384}}
    quiet = ElasticsearchStore(WireClient({"_mget": {"docs": [with_vectors]}}), layout)
    quiet._checked = True
    caplog.clear()
    assert set(quiet.existing(["p1"])["p1"].vectors) == {"text_vector"} and not caplog.records


def test_all_terms_boost_adds_a_constant_score_and_clause_to_the_bm25_leg():
    every_word = {"multi_match": {"query": "red kurta", "fields": ["title^2.0", "description^1.0"], "type": "cross_fields", "operator": "and"}}
    boosted = {"bool": {"should": [MULTI_MATCH, {"constant_score": {"filter": every_word, "boost": 2.0}}]}}
    assert bm25_query("red kurta", LAYOUT, {}, 2.0) == boosted
    assert bm25_query("red kurta", LAYOUT, {}, 0.0) == MULTI_MATCH
    compound = json.dumps(retrievers_body(query(all_terms_boost=2.0), PLANS, LAYOUT, []))
    assert json.dumps({"standard": {"query": boosted}})[:-2] in compound  # the BM25 retriever's query, whatever else it holds
    [body] = leg_bodies(query(all_terms_boost=2.0), PLANS[:1], LAYOUT, [])
    assert body["query"] == boosted
    legacy = legacy_body(query(method="linear", normalizer="none", weights={"bm25": 0.2}, all_terms_boost=2.0), PLANS[:1], LAYOUT, [])
    assert legacy["query"] == {"bool": {**boosted["bool"], "boost": 0.2}}


def test_all_terms_boost_is_validated():
    with pytest.raises(ValidationError, match="all_terms_boost must be a finite number >= 0"):
        FusionConfig(all_terms_boost=-1.0)
    with pytest.raises(ValidationError, match="all_terms_boost"):
        FusionConfig(all_terms_boost=float("nan"))
