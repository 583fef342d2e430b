"""The evaluation run: index the test split once per variant, run every strategy on every query kind.

Protocol: ../shared/eval/README.md. The catalogue's attribute fields are judgments:
they are indexed as filterable keywords by the normal layout but no strategy filters
on them and no query reads them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.metrics import evaluate, per_query
from hybrid_core.errors import ValidationError
from hybrid_core.spaces import EmbeddingSpace
from hybrid_core.stores.base import Store
from indexer.pipeline import IndexingRuntime, process_batch
from query_builder.diversify import Diversity, distinct_looks
from query_builder.profile import FusionProfile
from query_builder.profile import query_kind as _kind
from query_builder.query import FusionConfig, HybridQuery
from query_builder.searcher import HybridSearcher
from query_builder.word_check import WordCheck

VARIANTS = {"full": "title", "sparse": "title_sparse"}
DEPTH = 100


CAPTIONED = "BM25 + photo captions"  # the BM25 leg as the layout runs it: the title and the photo's words
LOOKS_THRESHOLD = 0.95  # image-vector cosine at which two hits show the same look (see docs/evaluation.md)
DIVERSITY = Diversity(relevance_weight=0.7, top_n=50)


@dataclass(frozen=True)
class Strategy:
    name: str
    legs: tuple[str, ...] | None
    fusion: FusionConfig = field(default_factory=lambda: FusionConfig(rank_window_size=DEPTH))
    profile: FusionProfile | None = None  # per query kind fusion (and legs), overriding ``fusion``
    diversity: Diversity | None = None
    # False: BM25 searches the product's own text only, as the protocol's "BM25 on the text field" does,
    # not the photo captions the indexer writes beside it (``hybrid_core.layout.PHOTO_CAPTION``)
    captions: bool = True

    def query(self, q: dict[str, Any], images_root: Path, caption_field: str | None = None) -> HybridQuery:
        """The query this strategy runs (``caption_field``: the layout's photo caption field, if it has
        one). A single leg runs as itself: the word check (on by default) consults the text kNN leg, so
        it belongs to the hybrids, and the single-leg rows stay the protocol's plain legs."""
        image = images_root / q["image"] if q.get("image") else None
        word_check = WordCheck() if self.legs is None or len(self.legs) > 1 else None
        boosts = {caption_field: 0.0} if caption_field and not self.captions else {}
        hq = HybridQuery(text=q.get("text"), image=image, size=DEPTH, fusion=self.fusion, legs=self.legs, diversity=self.diversity,
                         word_check=word_check, boosts=boosts)
        return self.profile.apply(hq) if self.profile else hq


def with_tuned(strategies: tuple[Strategy, ...], profile: FusionProfile | None) -> tuple[Strategy, ...]:
    """The protocol's strategies, plus MMR on the best hybrid, plus the tuned profile (when given; and
    without its feedback (vector and term), when it has any, so the report shows what feedback adds)."""
    extra = [Strategy("hybrid RRF + MMR", None, diversity=DIVERSITY)]
    if profile is not None:
        extra = [Strategy("tuned", None, profile=profile), Strategy("tuned + MMR", None, profile=profile, diversity=DIVERSITY)]
        if profile.feedback or profile.term_feedback:
            extra.insert(1, Strategy("tuned, no feedback", None, profile=replace(profile, feedback={}, term_feedback={})))
    return strategies + tuple(extra)


BOOSTED = FusionConfig(rank_window_size=DEPTH, all_terms_boost=2.0)
STRATEGIES = (
    Strategy("BM25", ("bm25",), captions=False),
    Strategy("BM25, all words +2", ("bm25",), BOOSTED, captions=False),
    Strategy(CAPTIONED, ("bm25",)),
    Strategy(f"{CAPTIONED}, all words +2", ("bm25",), BOOSTED),
    Strategy("text kNN", ("text",)),
    Strategy("cross-modal kNN", ("cross",)),
    Strategy("image kNN", ("image",)),
    Strategy("caption kNN", ("caption",)),
    Strategy("photo words", ("photo_words",)),
    Strategy("photo words, all words +2", ("photo_words",), BOOSTED),
    Strategy("product vector", ("product",)),
    Strategy("hybrid RRF", None),
    Strategy("hybrid linear", None, FusionConfig(method="linear", normalizer="minmax", rank_window_size=DEPTH)),
)


def query_kind(query: dict[str, Any]) -> str:
    return _kind(query.get("text"), query.get("image"))


def load_queries(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open() as lines:
        return [json.loads(line) for line in lines if line.strip()]


def index_test_split(
    catalogue: Path, store: Store, runtime: IndexingRuntime, variant: str, *, batch_size: int = 256, progress: Callable[[int], None] | None = None
) -> int:
    """Index the test split through the worker's pipeline (reused when already complete)."""
    with catalogue.open() as lines:
        products = [p for p in map(json.loads, lines) if p.get("split") == "test"]
    if store.count() == len(products):
        return len(products)
    for start in range(0, len(products), batch_size):
        batch = products[start : start + batch_size]
        items = [{"ref": f"{catalogue.name}:{p['id']}", "version": 1, "data": p} for p in batch]
        report = process_batch(items, runtime, images_root=str(catalogue.parent), title_field=VARIANTS[variant])
        if report.errors:
            raise ValidationError(f"{len(report.errors)} test products failed to index: {report.errors[:3]}")
        if progress:
            progress(len(batch))
    return len(products)


def run_strategies(
    searcher: HybridSearcher,
    queries: list[dict[str, Any]],
    images_root: Path,
    strategies: tuple[Strategy, ...] = STRATEGIES,
    progress: Callable[[int], None] | None = None,
    per_query_out: dict[str, dict[str, dict[str, float]]] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{kind: {strategy: metrics}}`` for every strategy whose legs apply to the kind.

    Besides the IR metrics, ``looks@10``: the mean number of distinct looks (image vectors
    below ``LOOKS_THRESHOLD`` cosine of each other) among the first ten hits. ``per_query_out``,
    if given, receives each query's NDCG@10 as ``{kind: {strategy: {query id: score}}}``."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for q in queries:
        by_kind.setdefault(query_kind(q), []).append(q)
    table: dict[str, dict[str, dict[str, float]]] = {}
    caption_field = searcher.layout.photo_caption.name if searcher.layout.photo_caption else None
    for kind, group in by_kind.items():
        qrels = {q["id"]: {d: int(g) for d, g in q["relevance"].items()} for q in group}
        for strategy in strategies:
            if strategy.name.startswith(CAPTIONED) and caption_field is None:
                continue  # the same leg as plain BM25 where the layout has no caption field
            run: dict[str, dict[str, float]] = {}
            looks = []
            try:
                for q in group:
                    result = searcher.search(strategy.query(q, images_root, caption_field))
                    run[q["id"]] = {h.id: float(len(result.hits) - i) for i, h in enumerate(result.hits)}
                    first = [h.id for h in result.hits[:10]]
                    stored = searcher.store.existing(first)
                    vectors = {i: d.vectors["image_vector"] for i, d in stored.items() if "image_vector" in d.vectors}
                    looks.append(distinct_looks(first, vectors, threshold=LOOKS_THRESHOLD))
                    if progress:
                        progress(1)
            except ValidationError as exc:
                if "applies to this query" in str(exc):
                    continue  # e.g. image kNN for text-only queries
                raise
            table.setdefault(kind, {})[strategy.name] = {**evaluate(qrels, run), "looks@10": float(np.mean(looks))}
            if per_query_out is not None:
                per_query_out.setdefault(kind, {})[strategy.name] = per_query(qrels, run, "NDCG@10")
    return table


def split_image_vectors(store: Store, catalogue: Path) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The test products (catalogue order) and their stored image vectors, one row each."""
    with catalogue.open() as lines:
        products = [p for p in map(json.loads, lines) if p.get("split") == "test"]
    ids = [p["id"] for p in products]
    existing = {}
    for start in range(0, len(ids), 500):  # one request per 500 on Elasticsearch
        existing.update(store.existing(ids[start : start + 500]))
    return products, np.stack([existing[i].vectors["image_vector"] for i in ids])


def own_photo_ranks(image_space: EmbeddingSpace, products: list[dict[str, Any]], images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each test product, the rank of its own photo among ``images`` given its title (the title
    encoded by the image space's text tower: cross-modal; 0 = first), and the row of the photo
    ranked first."""
    titles = image_space.embed_texts([p["title"] for p in products])
    ranks, first = [], []
    for start in range(0, len(products), 1024):
        sims = titles[start : start + 1024] @ images.T
        own = sims[np.arange(sims.shape[0]), np.arange(start, start + sims.shape[0])]
        ranks.append((sims > own[:, None]).sum(axis=1))
        first.append(sims.argmax(axis=1))
    return np.concatenate(ranks), np.concatenate(first)


def own_photo_recall(image_space: EmbeddingSpace, products: list[dict[str, Any]], images: np.ndarray, k: int = 10) -> float:
    """Share of test products whose own photo is among the k image vectors nearest to their title."""
    ranks, _ = own_photo_ranks(image_space, products, images)
    return float((ranks < k).mean())


JUDGED = ("article_type", "colour", "gender")


def caption_accuracy(image_space: EmbeddingSpace, products: list[dict[str, Any]], images: np.ndarray) -> dict[str, float] | None:
    """Per facet of the space's photo vocabulary that the products carry as an attribute, the share of
    products whose photo reads as their own value: how far the ``photo_caption`` field can be trusted
    (the test split's attributes are used as judgments here, as everywhere in evaluation, never as text).
    ``None`` where the space has no vocabulary."""
    vocabulary = image_space.vocabulary()
    read = image_space.read_photos(images) if vocabulary is not None else None
    if vocabulary is None or read is None:
        return None
    out = {}
    for i, facet in enumerate(vocabulary.fields):
        judged = [(r[i], p.get(facet)) for r, p in zip(read, products) if isinstance(p.get(facet), str)]
        if judged:
            out[facet] = float(np.mean([value == truth for value, truth in judged]))
    return out


def attribute_oracle_recall(products: list[dict[str, Any]], fields: tuple[str, ...] = JUDGED, k: int = 10) -> float:
    """Own-photo Recall@k of a tower that sees exactly ``fields`` in a photo and nothing else: a
    title's own photo then ties with every product sharing those values, in random order, so it
    is in the first k with probability min(1, k / group size). What the rest of recall needs is
    what the title says beyond them (brand, print, a model's look)."""
    groups = Counter(tuple(p.get(f) for f in fields) for p in products)
    return float(np.mean([min(1.0, k / groups[tuple(p.get(f) for f in fields)]) for p in products]))


def own_photo_misses(products: list[dict[str, Any]], ranks: np.ndarray, first: np.ndarray, k: int = 10) -> dict[str, Any]:
    """Of the titles whose photo is not in the first ``k``, how the photo ranked first differs from
    the product: in article type, else colour, else gender (the judged attributes), else none."""
    missed = np.flatnonzero(ranks >= k)
    counts = Counter()
    for i in missed:
        top = products[int(first[i])]
        counts[next((f for f in JUDGED if top.get(f) != products[i].get(f)), "none")] += 1
    return {"misses": len(missed), "first_hit_differs_in": {f: counts[f] for f in (*JUDGED, "none")}}


def cosine_spread(images: np.ndarray, titles: list[str], *, pairs: int = 200_000, seed: int = 0) -> dict[str, float]:
    """How close photos of unrelated products, and of products with identical titles, sit in the
    image space: what ``LOOKS_THRESHOLD`` means for the tower that made ``images``, measured
    with it rather than stated once for an earlier one.

    ``random_p99.9``: the 99.9th percentile of cosines over ``pairs`` random pairs of different
    products; ``same_title_median``: the median over every pair of products sharing a title
    (``None`` when no title repeats)."""
    unit = images / np.maximum(np.linalg.norm(images, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(unit), pairs)
    b = (a + rng.integers(1, len(unit), pairs)) % len(unit)  # never a product with itself
    # in chunks: 200,000 pairs of 384-d rows at once would be two 300 MB copies
    random_cos = np.concatenate([np.einsum("ij,ij->i", unit[a[s : s + 10_000]], unit[b[s : s + 10_000]]) for s in range(0, pairs, 10_000)])
    groups: dict[str, list[int]] = {}
    for i, title in enumerate(titles):
        groups.setdefault(title, []).append(i)
    same = [float(unit[i] @ unit[j]) for rows in groups.values() for x, i in enumerate(rows) for j in rows[x + 1 :]]
    return {
        "threshold": LOOKS_THRESHOLD,
        "random_pairs": pairs,
        "random_p99.9": float(np.quantile(random_cos, 0.999)),
        "same_title_pairs": len(same),
        "same_title_median": float(np.median(same)) if same else None,
    }


def markdown_table(rows: dict[str, dict[str, float]], columns: list[str]) -> str:
    lines = ["| strategy | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[c]:.3f}" for c in columns) + " |")
    return "\n".join(lines)
