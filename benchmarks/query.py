"""Query latency of hybrid search (BM25 + three kNN legs + RRF) against Haystack and LanceDB, in one run.

    .venv/bin/python benchmarks/query.py --catalogue ../shared/data/myntra/catalogue.jsonl \
        --queries ../shared/eval/dev_queries.jsonl

The same documents and vectors in all three systems: every product of the catalogue
is indexed once through the worker's pipeline into an embedded store (reused while
the models stay the same); the test split (8,785) and the whole catalogue (44,072)
are then loaded, with those vectors, into

* ours: the embedded store + ``HybridSearcher`` (FTS5-scored BM25 from in-memory postings, exact NumPy kNN),
* Haystack: ``InMemoryDocumentStore`` x3 (one per vector field, a Document has one
  embedding), ``InMemoryBM25Retriever`` + three ``InMemoryEmbeddingRetriever`` +
  ``DocumentJoiner(join_mode="reciprocal_rank_fusion")`` in a ``Pipeline``,
* LanceDB: one table with three vector columns and a native full-text index on the
  title, four searches fused by its ``RRFReranker``.

Legs: BM25 on the title, text kNN (text_vector), cross-modal kNN (image_vector),
product kNN (product_vector); each leg's window is 100; RRF k = 60; top 10 returned.
Query vectors are computed beforehand, so latency excludes encoding; encoding is
timed on its own. Vectors are unit length, so dot product = cosine everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np
from machine import describe as describe_machine  # benchmarks/machine.py, beside this script

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no network calls inside the timed pipeline
os.environ.setdefault("RUST_LOG", "error")
sys.path.insert(0, str(REPO))

WINDOW = 100
TOP = 10
VECTOR_LEGS = {"text": "text_vector", "cross": "image_vector", "product": "product_vector"}


# -- data ---------------------------------------------------------------------------------


def build_embedded(catalogue: Path, workdir: Path, settings, progress: Callable[[str], None]):
    """Every product through the pipeline once (cached by layout); the test split copied out of it."""
    from hybrid_core.images import ImageLimits
    from hybrid_core.stores.base import StoredDoc
    from hybrid_core.stores.embedded import EmbeddedStore
    from indexer.pipeline import IndexingRuntime, process_batch

    layout = settings.layout()
    text_space, image_space = settings.embedding_spaces()
    tag = hashlib.sha256(json.dumps(layout.signature(), sort_keys=True).encode()).hexdigest()[:8]
    with catalogue.open() as lines:
        products = [json.loads(line) for line in lines]
    everything = EmbeddedStore(workdir / f"all-{tag}.sqlite", layout)
    if everything.count() != len(products):
        runtime = IndexingRuntime(everything, layout, text_space, image_space, ImageLimits())
        for start in range(0, len(products), 256):
            batch = products[start : start + 256]
            items = [{"ref": p["id"], "version": 1, "data": p} for p in batch]
            report = process_batch(items, runtime, images_root=str(catalogue.parent))
            if report.errors:
                raise SystemExit(f"indexing failed: {report.errors[:3]}")
            progress(f"indexed {start + len(batch)}/{len(products)}")
    test_ids = [p["id"] for p in products if p.get("split") == "test"]
    test = EmbeddedStore(workdir / f"test-{tag}.sqlite", layout)
    if test.count() != len(test_ids):
        spaces = {v.name: (v.space, v.model_id) for v in layout.vector_fields}
        for start in range(0, len(test_ids), 1000):
            chunk = test_ids[start : start + 1000]
            held, sources = everything.existing(chunk), everything.sources(chunk)
            test.write([StoredDoc(i, held[i].version, sources[i], held[i].vectors, spaces, held[i].text_hash or "", held[i].image_hash)
                        for i in chunk], [])
    return {"test": test, "all": everything}, text_space, image_space


def export(store) -> dict[str, Any]:
    """ids, titles and the three vector matrices of a store (for the peers)."""
    ids = sorted(store.versions())
    titles, vectors = [], {f: [] for f in VECTOR_LEGS.values()}
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        held, sources = store.existing(chunk), store.sources(chunk)
        for i in chunk:
            titles.append(sources[i]["title"])
            for f in vectors:
                vectors[f].append(held[i].vectors[f])
    return {"ids": ids, "titles": titles, "vectors": {f: np.stack(v).astype(np.float32) for f, v in vectors.items()}}


class Precomputed:
    """Stands in for an embedding space at query time: returns vectors computed beforehand."""

    def __init__(self, spec, table: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self.table = table

    def embed_query(self, text: str) -> np.ndarray:
        return self.table[text]


# -- the three systems --------------------------------------------------------------------


class Ours:
    name = "es-hybrid-search (embedded)"

    def __init__(self, store, settings, text_vectors, cross_vectors) -> None:
        from query_builder.searcher import HybridSearcher

        layout = settings.layout()
        self.searcher = HybridSearcher(store, layout, Precomputed(settings.text_space, text_vectors), Precomputed(settings.image_space, cross_vectors))

    def search(self, text: str) -> list[str]:
        from query_builder.query import FusionConfig, HybridQuery

        query = HybridQuery(text=text, size=TOP, fusion=FusionConfig(rank_window_size=WINDOW), legs=("bm25", *VECTOR_LEGS))
        return [h.id for h in self.searcher.search(query).hits]

    def legs(self, text: str) -> dict[str, list[str]]:
        from query_builder.query import FusionConfig, HybridQuery

        query = HybridQuery(text=text, size=TOP, fusion=FusionConfig(rank_window_size=WINDOW), legs=("bm25", *VECTOR_LEGS))
        return {leg: [d for d, _ in ranked] for leg, ranked in self.searcher.leg_results(query).items()}


class Haystack:
    name = "Haystack InMemoryDocumentStore"

    def __init__(self, data: dict[str, Any]) -> None:
        from haystack import Document, Pipeline
        from haystack.components.joiners import DocumentJoiner
        from haystack.components.retrievers.in_memory import InMemoryBM25Retriever, InMemoryEmbeddingRetriever
        from haystack.document_stores.in_memory import InMemoryDocumentStore

        self.stores = {}
        for leg, field in VECTOR_LEGS.items():
            # its own index per leg (stores with one index name share their documents); no embeddings in results
            store = InMemoryDocumentStore(embedding_similarity_function="dot_product", index=f"bench-{len(data['ids'])}-{leg}",
                                          return_embedding=False)
            matrix = data["vectors"][field]
            store.write_documents([Document(id=i, content=t, embedding=matrix[n].tolist()) for n, (i, t) in enumerate(zip(data["ids"], data["titles"]))])
            self.stores[leg] = store
        self.pipeline = Pipeline()
        self.pipeline.add_component("bm25", InMemoryBM25Retriever(self.stores["text"], top_k=WINDOW))
        for leg in VECTOR_LEGS:
            self.pipeline.add_component(leg, InMemoryEmbeddingRetriever(self.stores[leg], top_k=WINDOW))
        self.pipeline.add_component("joiner", DocumentJoiner(join_mode="reciprocal_rank_fusion", top_k=TOP))
        for leg in ("bm25", *VECTOR_LEGS):
            self.pipeline.connect(f"{leg}.documents", "joiner.documents")

    def run(self, text: str, vectors: dict[str, list[float]], include: set[str] | None = None) -> dict[str, Any]:
        inputs = {"bm25": {"query": text}, **{leg: {"query_embedding": vectors[leg]} for leg in VECTOR_LEGS}}
        return self.pipeline.run(inputs, include_outputs_from=include)

    def search(self, text: str, vectors: dict[str, list[float]]) -> list[str]:
        return [d.id for d in self.run(text, vectors)["joiner"]["documents"]]

    def legs(self, text: str, vectors: dict[str, list[float]]) -> dict[str, list[str]]:
        out = self.run(text, vectors, include={"bm25", *VECTOR_LEGS})
        return {leg: [d.id for d in out[leg]["documents"]] for leg in ("bm25", *VECTOR_LEGS)}


class Lance:
    name = "LanceDB"

    def __init__(self, data: dict[str, Any], folder: Path, table: str) -> None:
        import lancedb
        import pyarrow as pa
        from lancedb.rerankers import RRFReranker

        db = lancedb.connect(str(folder))
        columns = {"id": pa.array(data["ids"]), "title": pa.array(data["titles"])}
        for field, matrix in data["vectors"].items():
            columns[field] = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])
        self.table = db.create_table(table, data=pa.table(columns), mode="overwrite")
        with warnings.catch_warnings():  # create_fts_index still builds the native FTS index; only deprecated in name
            warnings.simplefilter("ignore")
            self.table.create_fts_index("title", use_tantivy=False, replace=True)
        self.reranker = RRFReranker(K=60)

    def leg_tables(self, text: str, vectors: dict[str, np.ndarray]):
        tables = {}
        for leg, field in VECTOR_LEGS.items():
            tables[leg] = (self.table.search(vectors[leg], vector_column_name=field).distance_type("dot")
                           .select(["id"]).with_row_id(True).limit(WINDOW).to_arrow())
        tables["bm25"] = self.table.search(text, query_type="fts", fts_columns="title").select(["id"]).with_row_id(True).limit(WINDOW).to_arrow()
        return tables

    def search(self, text: str, vectors: dict[str, np.ndarray]) -> list[str]:
        tables = self.leg_tables(text, vectors)
        fused = self.reranker.rerank_multivector([tables[leg] for leg in ("bm25", *VECTOR_LEGS)], text)
        return fused["id"].to_pylist()[:TOP]

    def legs(self, text: str, vectors: dict[str, np.ndarray]) -> dict[str, list[str]]:
        return {leg: t["id"].to_pylist() for leg, t in self.leg_tables(text, vectors).items()}


# -- measuring ----------------------------------------------------------------------------


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    values = np.asarray(samples_ms)
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "p99": float(np.percentile(values, 99)), "mean": float(values.mean()), "n": int(values.size)}


def timed(call: Callable[[str], Any], texts: list[str], repeats: int, budget_s: float) -> dict[str, float]:
    """Latency samples: ``repeats`` passes over the queries, or fewer where a system is so slow that
    ``budget_s`` runs out first (at least 20 queries; ``n`` in the result says how many)."""
    for text in texts[:5]:
        call(text)  # warm-up
    samples: list[float] = []
    deadline = time.monotonic() + budget_s
    for _ in range(repeats):
        for text in texts:
            started = time.perf_counter()
            call(text)
            samples.append(1000 * (time.perf_counter() - started))
            if time.monotonic() > deadline and len(samples) >= 20:
                return percentiles(samples)
    return percentiles(samples)


def overlap(a: list[str], b: list[str], k: int) -> float:
    """Shared ids among the first k of each, over the longer of the two (a leg may return fewer than k)."""
    a, b = a[:k], b[:k]
    return len(set(a) & set(b)) / max(1, len(a), len(b))


@click.command()
@click.option("--catalogue", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--queries", type=click.Path(exists=True, dir_okay=False), required=True, help="Text queries are used (dev_queries.jsonl).")
@click.option("--workdir", type=click.Path(file_okay=False), default=None, help="Stores and tables (default: a temp folder).")
@click.option("--repeats", type=int, default=3, show_default=True, help="Passes over the queries per system and size.")
@click.option("--sizes", default="test,all", show_default=True)
@click.option("--budget-s", type=float, default=90.0, show_default=True, help="Most seconds of timing per system and size.")
@click.option("--agreement-queries", type=int, default=60, show_default=True, help="Queries whose top 10 and legs are compared.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default="benchmarks/results/query.json", show_default=True)
def main(catalogue, queries, workdir, repeats, sizes, budget_s, agreement_queries, out_file) -> None:
    from hybrid_core.config import Settings
    from hybrid_core.spaces import shares_text_tower

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    catalogue_path = Path(catalogue).resolve()
    work = Path(workdir or tempfile.mkdtemp(prefix="bench-query-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env()
    stores, text_space, image_space = build_embedded(catalogue_path, work, settings, lambda m: click.echo(m, err=True))
    with Path(queries).open() as lines:
        texts = [q["text"] for q in map(json.loads, lines) if q.get("text") and not q.get("image")]
    text_space.load()
    image_space.load()

    # query encoding, on its own (each text once per space; the text tower is shared where it can be)
    shared = shares_text_tower(image_space, text_space)
    encode_ms, text_vectors, cross_vectors = [], {}, {}
    for text in texts[:10]:
        text_space.embed_texts([text])
    for text in texts:
        started = time.perf_counter()
        text_vectors[text] = text_space.embed_texts([text])[0]
        cross_vectors[text] = text_vectors[text] if shared else image_space.embed_texts([text])[0]
        encode_ms.append(1000 * (time.perf_counter() - started))
    leg_vectors = {t: {"text": text_vectors[t], "cross": cross_vectors[t], "product": cross_vectors[t]} for t in texts}

    result: dict[str, Any] = {
        "command": "python benchmarks/query.py " + " ".join(sys.argv[1:]),
        "machine": describe_machine(),
        "queries": len(texts), "repeats": repeats, "window": WINDOW, "top": TOP,
        "query_encoding_ms": {**percentiles(encode_ms), "text_tower_shared": shared},
        "sizes": {},
    }
    import haystack
    import lancedb

    result["versions"] = {"haystack-ai": haystack.__version__ if hasattr(haystack, "__version__") else "?", "lancedb": lancedb.__version__}
    for size in sizes.split(","):
        store = stores[size]
        data = export(store)
        click.echo(f"{size}: {len(data['ids'])} products; loading peers ...", err=True)
        ours = Ours(store, settings, text_vectors, cross_vectors)
        started = time.perf_counter()
        store.build_graphs()  # as a search server does at start (above exact_knn_max_rows only)
        ours_load = time.perf_counter() - started
        started = time.perf_counter()
        hay = Haystack(data)
        hay_load = time.perf_counter() - started
        as_lists = {t: {k: v.tolist() for k, v in vs.items()} for t, vs in leg_vectors.items()}
        started = time.perf_counter()
        lance = Lance(data, work / "lance", f"products_{size}")
        lance_load = time.perf_counter() - started
        systems = {
            ours.name: lambda t: ours.search(t),
            hay.name: lambda t: hay.search(t, as_lists[t]),
            lance.name: lambda t: lance.search(t, leg_vectors[t]),
        }
        latency = {}
        for name, call in systems.items():
            click.echo(f"  timing {name} ...", err=True)
            latency[name] = timed(call, texts, repeats, budget_s)
        # what each returns, and leg by leg where they differ
        compared = texts[:agreement_queries]
        tops = {name: {t: call(t) for t in compared} for name, call in systems.items()}
        legs = {ours.name: {t: ours.legs(t) for t in compared}, hay.name: {t: hay.legs(t, as_lists[t]) for t in compared},
                lance.name: {t: lance.legs(t, leg_vectors[t]) for t in compared}}
        agreement = {}
        for peer in (hay.name, lance.name):
            agreement[peer] = {
                "queries": len(compared),
                "top10_overlap": statistics.mean(overlap(tops[ours.name][t], tops[peer][t], TOP) for t in compared),
                "top10_identical_order": statistics.mean(float(tops[ours.name][t] == tops[peer][t]) for t in compared),
                "leg_overlap@100": {leg: statistics.mean(overlap(legs[ours.name][t][leg], legs[peer][t][leg], WINDOW) for t in compared)
                                    for leg in ("bm25", *VECTOR_LEGS)},
            }
        ours_p50 = latency[ours.name]["p50"]
        result["sizes"][size] = {
            "products": len(data["ids"]),
            "latency_ms": latency,
            "p50_ratio_peer_to_ours": {n: latency[n]["p50"] / ours_p50 for n in latency if n != ours.name},
            "p95_ratio_peer_to_ours": {n: latency[n]["p95"] / latency[ours.name]["p95"] for n in latency if n != ours.name},
            "peer_load_s": {hay.name: hay_load, lance.name: lance_load},
            "ours_graph_build_s": ours_load,
            "agreement_with_ours": agreement,
        }
        for name, lat in latency.items():
            click.echo(f"  {name}: p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms, p99 {lat['p99']:.2f} ms")
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    Path(out_file).write_text(json.dumps(result, indent=2) + "\n")
    enc = result["query_encoding_ms"]
    click.echo(f"query encoding: p50 {enc['p50']:.2f} ms, p95 {enc['p95']:.2f} ms, p99 {enc['p99']:.2f} ms (text tower shared: {shared})")
    click.echo(f"written: {out_file}")


if __name__ == "__main__":
    main()
