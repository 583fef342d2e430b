"""The embedded store: versioned writes, exact kNN, BM25 with field weights, filters inside every leg,
and several processes writing while another reads."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from hybrid_core.filters import parse_filters
from hybrid_core.stores.base import StoredDoc
from hybrid_core.stores.embedded import EmbeddedStore


def make_doc(layout, pid: str, version: int, *, title: str = "plain product", colour: str = "Red", seed: int = 0, description: str = ""):
    rng = np.random.default_rng(seed)
    vectors, spaces = {}, {}
    for vf in layout.vector_fields:
        vec = rng.normal(size=vf.dims).astype(np.float32)
        vectors[vf.name] = vec / np.linalg.norm(vec)
        spaces[vf.name] = (vf.space, vf.model_id)
    source = {"id": pid, "title": title, "colour": colour, "version": version}
    if description:
        source["description"] = description
    return StoredDoc(pid, version, source, vectors, spaces, text_hash=f"t{seed}", image_hash=f"i{seed}")


def test_older_versions_never_overwrite_newer(store, layout):
    assert store.write([make_doc(layout, "p1", 10, title="new title")], []).status == {"p1": "written"}
    assert store.write([make_doc(layout, "p1", 9, title="old title")], []).status == {"p1": "stale"}
    assert store.sources(["p1"])["p1"]["title"] == "new title"
    # equal version rewrites (external_gte): a redelivered batch is idempotent
    assert store.write([make_doc(layout, "p1", 10, title="new title")], []).status == {"p1": "written"}


def test_deletes_leave_a_versioned_tombstone(store, layout):
    store.write([make_doc(layout, "p1", 5)], [])
    assert store.write([], [("p1", 4)]).status == {"p1": "stale"}
    assert store.write([], [("p1", 6)]).status == {"p1": "deleted"}
    assert store.count() == 0 and store.sources(["p1"]) == {}
    # an older upsert arriving after the delete does not resurrect the product
    assert store.write([make_doc(layout, "p1", 5)], []).status == {"p1": "stale"}
    assert store.write([], [("never-seen", 3)]).status == {"never-seen": "deleted"}
    assert store.write([make_doc(layout, "never-seen", 2)], []).status == {"never-seen": "stale"}
    assert store.write([make_doc(layout, "p1", 7)], []).status == {"p1": "written"}
    assert store.count() == 1
    assert store.knn("text_vector", make_doc(layout, "p1", 7).vectors["text_vector"], k=5, num_candidates=10, filters=[])[0][0] == "p1"


def test_knn_is_exact_and_scores_like_elasticsearch_cosine(store, layout):
    docs = [make_doc(layout, f"d{i:02d}", 1, seed=i) for i in range(50)]
    store.write(docs, [])
    query = np.random.default_rng(99).normal(size=384).astype(np.float32)
    got = store.knn("text_vector", query, k=7, num_candidates=20, filters=[])
    unit = query / np.linalg.norm(query)
    expected = sorted(((float(d.vectors["text_vector"] @ unit), d.id) for d in docs), reverse=True)[:7]
    assert [d for d, _ in got] == [d for _, d in expected]
    assert [s for _, s in got] == pytest.approx([(1 + c) / 2 for c, _ in expected], abs=1e-6)


def test_knn_sees_updates_and_deletes_incrementally(store, layout):
    store.write([make_doc(layout, "a", 1, seed=1), make_doc(layout, "b", 1, seed=2)], [])
    qa = make_doc(layout, "a", 1, seed=1).vectors["image_vector"]
    assert store.knn("image_vector", qa, k=1, num_candidates=1, filters=[])[0][0] == "a"
    store.write([make_doc(layout, "a", 2, seed=3)], [])  # a's vectors change
    after = dict(store.knn("image_vector", qa, k=2, num_candidates=2, filters=[]))
    assert after["a"] < 0.9  # was (1 + 1) / 2 = 1.0 before the update
    store.write([], [("b", 5)])
    assert [d for d, _ in store.knn("image_vector", qa, k=5, num_candidates=5, filters=[])] == ["a"]


def test_filters_apply_inside_each_leg_before_the_cut(store, layout):
    docs = [make_doc(layout, f"r{i}", 1, colour="Red", seed=i, title="cotton shirt") for i in range(30)]
    docs += [make_doc(layout, f"b{i}", 1, colour="Blue", seed=100 + i, title="cotton shirt blue") for i in range(3)]
    store.write(docs, [])
    blue = parse_filters({"colour": "Blue"}, layout)
    query = docs[0].vectors["text_vector"]  # nearest is a red one
    got = store.knn("text_vector", query, k=3, num_candidates=10, filters=blue)
    assert sorted(d for d, _ in got) == ["b0", "b1", "b2"]  # a post-filter of the top 3 would return nothing
    bm25 = store.bm25("cotton shirt", boosts={}, filters=blue, size=3)
    assert sorted(d for d, _ in bm25) == ["b0", "b1", "b2"]


def test_bm25_field_weights_and_stemming(store, layout):
    store.write(
        [
            make_doc(layout, "t", 1, title="kurtas for summer", description="cotton"),
            make_doc(layout, "d", 1, title="summer wear", description="a kurta in cotton"),
        ],
        [],
    )
    title_heavy = store.bm25("kurta", boosts={"title": 10.0, "description": 1.0}, filters=[], size=5)
    desc_heavy = store.bm25("kurta", boosts={"title": 0.1, "description": 10.0}, filters=[], size=5)
    assert [d for d, _ in title_heavy] == ["t", "d"]  # "kurtas" matches "kurta" (porter)
    assert [d for d, _ in desc_heavy] == ["d", "t"]
    assert all(score > 0 for _, score in title_heavy)
    assert store.bm25("!!! ???", boosts={}, filters=[], size=5) == []


def _writer(path: str, layout, prefix: str, n: int) -> None:
    store = EmbeddedStore(path, layout, busy_timeout_s=60)
    for start in range(0, n, 10):
        store.write([make_doc(layout, f"{prefix}{i}", 1, seed=i) for i in range(start, start + 10)], [])
    store.close()


@pytest.mark.slow
def test_several_processes_write_while_one_reads(tmp_path, layout):
    path = str(tmp_path / "shared.sqlite")
    reader = EmbeddedStore(path, layout)
    reader.count()  # create the schema once
    ctx = mp.get_context("spawn")
    writers = [ctx.Process(target=_writer, args=(path, layout, p, 200)) for p in ("x", "y", "z")]
    for w in writers:
        w.start()
    seen = 0
    query = np.ones(384, dtype=np.float32)
    while any(w.is_alive() for w in writers):
        seen = max(seen, len(reader.knn("text_vector", query, k=1000, num_candidates=1000, filters=[])))
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert reader.count() == 600
    assert len(reader.knn("text_vector", query, k=1000, num_candidates=1000, filters=[])) == 600


def test_hnsw_legs_find_what_exact_search_finds_through_updates_and_deletes(tmp_path, layout):
    """Above ``exact_knn_max_rows`` an unfiltered leg searches an HNSW graph; on a small catalogue with
    num_candidates covering it, the graph must return exactly the exact answer, kept current by refresh."""
    exact = EmbeddedStore(tmp_path / "s.sqlite", layout, exact_knn_max_rows=None)
    graph = EmbeddedStore(tmp_path / "s.sqlite", layout, exact_knn_max_rows=0)
    rng = np.random.default_rng(5)
    exact.write([make_doc(layout, f"d{i:03d}", 1, seed=i) for i in range(300)], [])
    queries = [rng.normal(size=384).astype(np.float32) for _ in range(5)]
    image_queries = [rng.normal(size=layout.vector("image_vector").dims).astype(np.float32) for _ in range(5)]

    def same_answers():
        for field, field_queries in (("text_vector", queries), ("image_vector", image_queries)):
            for q in field_queries:
                want = exact.knn(field, q, k=20, num_candidates=400, filters=[])
                got = graph.knn(field, q, k=20, num_candidates=400, filters=[])
                assert [d for d, _ in got] == [d for d, _ in want]
                assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)

    # the first search above the threshold is exact and starts the build in the background
    for field, field_queries in (("text_vector", queries), ("image_vector", image_queries)):
        assert graph.knn(field, field_queries[0], k=5, num_candidates=400, filters=[]) == exact.knn(
            field, field_queries[0], k=5, num_candidates=400, filters=[]
        )
    exact.write([make_doc(layout, "during-build", 1, seed=77)], [])  # a change the snapshot misses
    graph.build_graphs()  # waits for the builds under way
    assert set(graph._ann) == {"text_vector", "image_vector", "product_vector"} and not exact._ann
    same_answers()
    # new versions move vectors, deletes remove rows, new rows arrive: the graph follows
    exact.write([make_doc(layout, f"d{i:03d}", 2, seed=1000 + i) for i in range(0, 300, 7)], [(f"d{i:03d}", 3) for i in range(1, 300, 11)])
    exact.write([make_doc(layout, f"n{i:03d}", 1, seed=5000 + i) for i in range(50)], [])
    same_answers()
    deleted = {f"d{i:03d}" for i in range(1, 300, 11)}
    assert not deleted & {d for q in queries for d, _ in graph.knn("text_vector", q, k=50, num_candidates=400, filters=[])}
    # a filtered leg stays exact
    blue = parse_filters({"colour": "Red"}, layout)
    assert graph.knn("text_vector", queries[0], k=5, num_candidates=50, filters=blue) == exact.knn(
        "text_vector", queries[0], k=5, num_candidates=50, filters=blue
    )
    exact.close()
    graph.close()
