"""Hybrid search against a store: encode the query once, run each leg, fuse, explain.

The legs (see ``query.LEG_HELP``) are planned from what the query has and what the
layout holds: a leg that does not apply (no image, no image space) is skipped, not
run empty. Each leg returns its ``rank_window_size`` best documents with the
filters applied inside the leg; the fusion functions in ``query_builder.fusion``
combine them; every hit reports its fused score and, per leg, rank and raw score.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_core.errors import ValidationError
from hybrid_core.filters import Condition, parse_filters
from hybrid_core.images import ImageLimits, decode_image
from hybrid_core.layout import FieldLayout
from hybrid_core.results import Hit, LegScore, SearchResult
from hybrid_core.spaces import EmbeddingSpace, shares_text_tower
from hybrid_core.stores.base import ExistingDoc, RankedIds, Store
from hybrid_core.synonyms import SynonymRules
from hybrid_core.vectors import unit
from query_builder.diversify import mmr
from query_builder.feedback import LEG as FEEDBACK_LEG
from query_builder.feedback import Feedback, feedback_vector
from query_builder.fusion import linear, rrf
from query_builder.query import LEXICAL_LEGS, MAX_WINDOW, FusionConfig, HybridQuery
from query_builder.term_feedback import LEG as TERM_FEEDBACK_LEG
from query_builder.term_feedback import TermFeedback, feedback_text
from query_builder.word_check import checked_text, named_by, placed, query_phrases

# Every search's legs run on this pool: it bounds how many run at once and serves searches first
# come, first served. In-process legs (the embedded store) go as one task per search, in turn
# (a hand-off per leg costs more than a sub-millisecond leg); I/O-bound legs (Elasticsearch) as
# one task per leg, so their round trips overlap. Under benchmarks/load.py (20 clients, 2 cores),
# running in-process legs in the callers' threads instead made p95 6.2 s (unbounded) or 1.5 s
# (a semaphore: bounded, not fair) against 0.8 s here.
_LEG_POOL = ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2)), thread_name_prefix="hybrid-leg")


@dataclass
class QueryVectors:
    """The query in every space it can be put in (``None`` where it cannot)."""

    text: np.ndarray | None = None  # query text in the text space
    cross: np.ndarray | None = None  # query text in the image space
    image: np.ndarray | None = None  # query image in the image space (the text space too, where it shares the text tower)
    combined: np.ndarray | None = None  # normalized mean of cross and image
    photo_words: str | None = None  # the words the photo reads as (its vocabulary phrase), then the query's own
    bm25_text: str | None = None  # the query's words BM25 searches, after the word check (None: the query's text)
    unplaced_words: list[str] = field(default_factory=list)  # the words the word check could not place


@dataclass(frozen=True)
class LegPlan:
    """One leg to run: BM25 over ``text`` (``field`` None; ``faint_text`` at ``faint_weight``) or kNN
    over ``field`` with ``vector``."""

    name: str
    field: str | None = None
    vector: np.ndarray | None = None
    text: str | None = None
    faint_text: str = ""
    faint_weight: float = 0.0

    @property
    def all_terms_boost_applies(self) -> bool:
        """``FusionConfig.all_terms_boost`` shapes every BM25 leg: the query's own words and the photo's
        (a product holding all of "Men Tshirts red" is what a photo of a men's T-shirt with "in red" asks
        for; on the dev image + text queries the bonus lifts the leg alone from 0.806 to 0.824 NDCG@10)."""
        return self.name in LEXICAL_LEGS


class HybridSearcher:
    """``search(HybridQuery) -> SearchResult``. Store and models are injected; construction does no I/O."""

    def __init__(
        self,
        store: Store,
        layout: FieldLayout,
        text_space: EmbeddingSpace,
        image_space: EmbeddingSpace | None = None,
        *,
        image_limits: ImageLimits | None = None,
        parallel_legs: bool | None = None,
        vector_synonyms: bool = True,
    ) -> None:
        """``parallel_legs``: run the legs in threads; by default where the store says it pays
        (``Store.concurrent_legs``: Elasticsearch round trips overlap, the embedded store's
        sub-millisecond legs do not, a thread hand-off costs more than it saves).
        ``vector_synonyms``: the vector legs embed the query in the layout's synonym rules'
        canonical wording (``SynonymRules.canonical``; BM25 gets the rules either way)."""
        self.store = store
        self.layout = layout
        self.text_space = text_space
        self.image_space = image_space
        self.image_limits = image_limits or ImageLimits()
        self.parallel_legs = parallel_legs
        self._rules = SynonymRules(layout.synonyms) if vector_synonyms and layout.synonyms else None
        self._bm25_rules = SynonymRules(layout.synonyms) if layout.synonyms else None  # the stores' BM25 expands them always

    # -- encoding --------------------------------------------------------------------------

    def _query_image(self, image: Any):
        if isinstance(image, Path):
            # a path is the caller's own file (the command line's --image); catalogue items never get here
            try:
                size = image.stat().st_size
            except OSError as exc:
                raise ValueError(f"image {image} not found or not readable ({exc.strerror})") from None
            if size > self.image_limits.max_bytes:
                raise ValueError(f"image {image} is {size} bytes, the limit is {self.image_limits.max_bytes}")
            return decode_image(image.read_bytes(), str(image), self.image_limits)
        if isinstance(image, (bytes, bytearray)):
            return decode_image(bytes(image), "query image", self.image_limits)
        if hasattr(image, "convert"):
            return image.convert("RGB")
        raise ValidationError(f"query image must be a path, bytes or a PIL image, got {type(image).__name__}")

    def vector_text(self, text: str) -> str:
        """The words the vector legs embed for a query's ``text``."""
        return self._rules.canonical(text) if self._rules is not None else text

    def rewrites(self, query: HybridQuery, vectors: QueryVectors | None = None) -> dict[str, str]:
        """For ``SearchResult.fusion``: what the vector legs embedded, where it is not the query's text,
        and the words the photo was searched with."""
        embedded = self.vector_text(query.text) if query.text else None
        out = {"vector_text": embedded} if embedded is not None and embedded != query.text else {}
        if vectors is not None and vectors.photo_words:
            out["photo_words"] = vectors.photo_words
        if vectors is not None and vectors.unplaced_words:
            out["bm25_text"] = vectors.bm25_text
            out["unplaced_words"] = list(vectors.unplaced_words)
        return out

    def encode(self, query: HybridQuery, wanted: set[str]) -> QueryVectors:
        """Encode only what the wanted legs need."""
        vectors = QueryVectors()
        text = self.vector_text(query.text) if query.text else None
        if text and "text" in wanted:
            vectors.text = self.text_space.embed_query(text)
        if self.image_space is None:
            return vectors
        if text and wanted & {"cross", "product"}:
            if shares_text_tower(self.image_space, self.text_space):
                vectors.cross = vectors.text if vectors.text is not None else self.text_space.embed_query(text)
            else:
                vectors.cross = self.image_space.embed_query(text)
        if query.image is not None and wanted & {"image", "caption", "product", "photo_words"}:
            try:
                picture = self._query_image(query.image)
            except ValueError as exc:
                raise ValidationError(f"query image: {exc}") from None
            vectors.image = self.image_space.embed_images([picture])[0]
        if vectors.cross is not None and vectors.image is not None:
            vectors.combined = unit(vectors.cross + vectors.image)
        if vectors.image is not None and "photo_words" in wanted:
            vectors.photo_words = self.photo_words(vectors.image, query.text)
        return vectors

    def photo_words(self, image: np.ndarray, text: str | None) -> str | None:
        """What the photo is searched with in words: its reading in the vocabulary, facet by facet, with
        any value the query's text names in place of the photo's (``hybrid_core.vocabulary``)."""
        vocabulary = self.image_space.vocabulary() if self.image_space is not None else None
        read = self.image_space.read_photos(image[None, :]) if vocabulary is not None else None
        if vocabulary is None or read is None:
            return None
        return vocabulary.worded(read[0], text, canonical=self.vector_text) or None

    # -- planning --------------------------------------------------------------------------

    def wanted(self, query: HybridQuery, legs: list[str]) -> set[str]:
        """The legs whose query vectors must be encoded: those that run, plus what feedback adds to."""
        wanted = set(legs)
        if self.checks_words(query, legs):
            wanted.add("text")
        if query.feedback is not None:
            wanted.add("text" if query.feedback.field == "text_vector" else "product")
        return wanted

    def checks_words(self, query: HybridQuery, legs: list[str]) -> bool:
        """Whether the word check runs: the query asks for it, has text and a BM25 leg, and the
        layout has the text vectors that place its words."""
        return query.word_check is not None and bool(query.text) and "bm25" in legs and self.layout.has_vector("text_vector")

    def check_words(self, query: HybridQuery, vectors: QueryVectors, filters: list[Condition], legs: list[str]) -> None:
        """Set ``vectors.bm25_text`` to the query's words that its nearest products use and
        ``vectors.unplaced_words`` to the others (``query_builder.word_check``): one kNN on the text
        vectors, then one read of two counts per word (in the filtered catalogue, and among those
        neighbours). Words the image space's photo vocabulary names (colours, types, genders) are
        placed without counting; a query of such words alone needs neither request."""
        vectors.bm25_text, vectors.unplaced_words = None, []  # this query's answer only, where vectors are reused
        if not self.checks_words(query, legs) or vectors.text is None:
            return
        settings = query.word_check
        assert settings is not None and query.text is not None
        phrases = query_phrases(query.text, self._bm25_rules)
        if len(phrases) < 2:
            return  # a lone word is searched whatever it is: leaving it out leaves nothing
        vocabulary = self.image_space.vocabulary() if self.image_space is not None else None
        keep = named_by(phrases, vocabulary.names if vocabulary is not None else None)
        unnamed = [p for p, named in zip(phrases, keep) if not named]
        if not unnamed:
            return  # every word is one the taxonomy names: nothing to place
        neighbours = self.store.knn(
            "text_vector", vectors.text, k=settings.depth, num_candidates=min(MAX_WINDOW, max(settings.depth, query.candidates)), filters=filters
        )
        if not neighbours:
            return
        everywhere, near = self.store.word_counts(unnamed, filters=filters, near=[doc_id for doc_id, _ in neighbours])
        counted = iter(placed(near, everywhere, settings.min_count))
        keep = [named or next(counted) for named in keep]
        vectors.bm25_text, vectors.unplaced_words = checked_text(query.text, phrases, keep)

    def reads_image_as_text(self) -> bool:
        """Whether a query photo can be matched against the products' text vectors (the ``caption``
        leg): only where the image tower was trained into the text model's own space (locked-text
        tuning, ``shares_text_tower``), so a photo's vector is a point among the titles' vectors.
        The photo then finds products whose titles say what it shows, however their photos look;
        on the dev image queries that leg alone (NDCG@10 0.744) beats image kNN (0.676)."""
        return (
            shares_text_tower(self.image_space, self.text_space)
            and self.layout.has_vector("text_vector")
            and self.layout.has_vector("image_vector")
        )

    def reads_photo_words(self) -> bool:
        """Whether a query photo can be searched in words (the ``photo_words`` leg): where the image
        space has a photo vocabulary and the layout has text fields for BM25."""
        return self.image_space is not None and bool(self.image_space.spec.vocabulary) and bool(self.layout.text_fields)

    def applicable_legs(self, query: HybridQuery) -> list[str]:
        """Legs that can run for this query on this layout, in canonical order."""
        has_image_space = self.image_space is not None and self.layout.has_vector("image_vector")
        legs = []
        if query.text:
            legs += ["bm25", "text"]
            if has_image_space:
                legs.append("cross")
        if query.image is not None:
            if self.image_space is None:
                raise ValidationError("this configuration has no image space, so image queries cannot run")
            legs.append("image")
            if self.reads_image_as_text():
                legs.append("caption")
            if self.reads_photo_words():
                legs.append("photo_words")
        if has_image_space and self.layout.has_vector("product_vector"):
            legs.append("product")
        if query.legs is not None:
            legs = [leg for leg in legs if leg in query.legs]
            if not legs:
                raise ValidationError(f"none of the requested legs {list(query.legs)} applies to this query")
        return legs

    def plan(self, query: HybridQuery, vectors: QueryVectors, legs: list[str]) -> list[LegPlan]:
        plans = []
        for leg in legs:
            if leg == "bm25":
                faint = " ".join(vectors.unplaced_words)
                weight = query.word_check.unplaced_weight if faint and query.word_check is not None else 0.0
                plans.append(LegPlan("bm25", text=vectors.bm25_text or query.text, faint_text=faint, faint_weight=weight))
            elif leg == "text":
                plans.append(LegPlan("text", "text_vector", vectors.text))
            elif leg == "cross":
                plans.append(LegPlan("cross", "image_vector", vectors.cross))
            elif leg == "image":
                plans.append(LegPlan("image", "image_vector", vectors.image))
            elif leg == "caption":
                plans.append(LegPlan("caption", "text_vector", vectors.image))
            elif leg == "photo_words":
                if vectors.photo_words:  # a vocabulary whose best phrase is empty after the query's facets: nothing to search
                    plans.append(LegPlan("photo_words", text=vectors.photo_words))
            elif leg == "product":
                vector = next(v for v in (vectors.combined, vectors.cross, vectors.image) if v is not None)
                plans.append(LegPlan("product", "product_vector", vector))
        return plans

    # -- running ---------------------------------------------------------------------------

    def run_leg(self, plan: LegPlan, query: HybridQuery, filters: list[Condition]) -> RankedIds:
        if plan.field is None:
            assert plan.text is not None
            boost = query.fusion.all_terms_boost if plan.all_terms_boost_applies else 0.0
            return self.store.bm25(plan.text, boosts=query.boosts, filters=filters, size=query.k, all_terms_boost=boost,
                                   faint_text=plan.faint_text, faint_weight=plan.faint_weight)
        assert plan.vector is not None
        return self.store.knn(plan.field, plan.vector, k=query.k, num_candidates=query.candidates, filters=filters)

    def check(self, query: HybridQuery) -> list[Condition]:
        """Everything about the query that the layout decides, before any model or store call."""
        filters = parse_filters(query.filters, self.layout)
        unknown_boosts = sorted(set(query.boosts) - {t.name for t in self.layout.text_fields})
        if unknown_boosts:
            raise ValidationError(
                f"boosts name unknown text fields {unknown_boosts}; text fields are {[t.name for t in self.layout.text_fields]}"
            )
        if self.layout.text_fields and not any(query.boosts.get(t.name, t.boost) > 0 for t in self.layout.text_fields):
            raise ValidationError(f"boosts weigh every text field 0 ({query.boosts}); BM25 would search none of them")
        for option, settings in (("diversity", query.diversity), ("feedback", query.feedback)):
            if settings is not None and not self.layout.has_vector(settings.field):
                raise ValidationError(
                    f"{option} field {settings.field!r} is not a vector field of this layout; "
                    f"vector fields are {[v.name for v in self.layout.vector_fields]}"
                )
        return filters

    def leg_results(self, query: HybridQuery) -> dict[str, RankedIds]:
        """Each applicable leg's own ranking (its window), unfused: what tuning re-fuses many ways."""
        filters = self.check(query)
        legs = self.applicable_legs(query)
        vectors = self.encode(query, self.wanted(query, legs))
        self.check_words(query, vectors, filters, legs)
        return self.run_legs(self.plan(query, vectors, legs), query, filters)

    def run_legs(self, plans: list[LegPlan], query: HybridQuery, filters: list[Condition]) -> dict[str, RankedIds]:
        """Every leg, concurrently where there are several (NumPy's matrix products and SQLite release
        the GIL, so kNN legs over large matrices overlap on the cores); results in plan order."""
        parallel = self.parallel_legs if self.parallel_legs is not None else getattr(self.store, "concurrent_legs", True)
        if not parallel or len(plans) < 2:
            return _LEG_POOL.submit(lambda: {plan.name: self.run_leg(plan, query, filters) for plan in plans}).result()
        futures = [(plan.name, _LEG_POOL.submit(self.run_leg, plan, query, filters)) for plan in plans]
        return {name: future.result() for name, future in futures}

    def feedback(
        self,
        settings: Feedback,
        vectors: QueryVectors,
        fused: list[tuple[str, float]],
        filters: list[Condition],
        *,
        k: int,
        num_candidates: int,
        stored: Mapping[str, ExistingDoc] | None = None,
    ) -> RankedIds | None:
        """The feedback leg's ranking: kNN over ``settings.field`` from the centroid of the first
        ``depth`` fused hits' stored vectors plus the query's own (``None`` when there is nothing to average).

        ``stored``: those hits as ``Store.existing`` returns them, when the caller has them already
        (tuning tries many settings on the same first page)."""
        top = [doc_id for doc_id, _ in fused[: settings.depth]]
        if stored is None:
            stored = self.store.existing(top) if top else {}
        docs = [stored[d].vectors[settings.field] for d in top if d in stored and settings.field in stored[d].vectors]
        vector = feedback_vector(feedback_query_vector(settings, vectors), docs, query_weight=settings.query_weight)
        if vector is None:
            return None
        return self.store.knn(settings.field, vector, k=k, num_candidates=num_candidates, filters=filters)

    def term_feedback(
        self,
        settings: TermFeedback,
        text: str | None,
        fused: list[tuple[str, float]],
        filters: list[Condition],
        *,
        boosts: Mapping[str, float],
        k: int,
        stored: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> tuple[RankedIds | None, str]:
        """The term feedback leg's ranking (``None`` when there are no words to search) and its text:
        BM25 over the query's words (``text``) and those the first ``depth`` fused hits share.

        ``stored``: those hits' sources as ``Store.sources`` returns them, when the caller has them
        already (tuning tries many settings on the same first page)."""
        top = [doc_id for doc_id, _ in fused[: settings.depth]]
        if stored is None:
            stored = self.store.sources(top) if top else {}
        sources = [stored[d] for d in top if d in stored]
        words = feedback_text(text, sources, [f.name for f in self.layout.text_fields], settings)
        if not words:
            return None, words
        return self.store.bm25(words, boosts=dict(boosts), filters=filters, size=k), words

    def with_feedback(
        self, query: HybridQuery, vectors: QueryVectors, results: dict[str, RankedIds], filters: list[Condition]
    ) -> tuple[dict[str, RankedIds], list[tuple[str, float]], dict[str, Any]]:
        """The legs and their fusion, after the feedback round when the query asks for one, and what
        the round searched for (``{"term_feedback_text": ...}``) for the result's fusion report.

        Both feedback legs start from the first fused page, so neither waits for the other: that page is
        read once for both, and where the store's legs overlap (Elasticsearch round trips) their
        searches run at once, as the first legs do."""
        fused = self.fuse(results, query)
        existing, sources = None, None
        if query.feedback is not None and query.term_feedback is not None:
            # both read the first page: one read (one _mget on Elasticsearch) serves them
            top = [doc_id for doc_id, _ in fused[: max(query.feedback.depth, query.term_feedback.depth)]]
            existing, sources = self.store.hits(top) if top else ({}, {})
        rounds: dict[str, Any] = {}
        if query.feedback is not None:
            settings = query.feedback
            rounds[FEEDBACK_LEG] = lambda: (
                self.feedback(settings, vectors, fused, filters, k=query.k, num_candidates=query.candidates, stored=existing),
                None,
            )
        if query.term_feedback is not None:
            terms = query.term_feedback
            rounds[TERM_FEEDBACK_LEG] = lambda: self.term_feedback(
                terms, vectors.bm25_text or query.text, fused, filters, boosts=query.boosts, k=query.k, stored=sources
            )
        if not rounds:
            return results, fused, {}
        parallel = self.parallel_legs if self.parallel_legs is not None else getattr(self.store, "concurrent_legs", True)
        if parallel and len(rounds) > 1:
            futures = {name: _LEG_POOL.submit(run) for name, run in rounds.items()}
            answers = {name: future.result() for name, future in futures.items()}
        else:
            answers = {name: run() for name, run in rounds.items()}
        extra = {name: ranked for name, (ranked, _) in answers.items() if ranked is not None}
        notes = {"term_feedback_text": answers[TERM_FEEDBACK_LEG][1]} if TERM_FEEDBACK_LEG in answers else {}
        if not extra:
            return results, fused, notes
        results = {**results, **extra}
        return results, self.fuse(results, query), notes

    def diversify(self, fused: list[tuple[str, float]], query: HybridQuery) -> list[tuple[str, float]]:
        """MMR over the first ``top_n`` fused hits (their stored vectors); the rest keep their order."""
        if query.diversity is None:
            return fused
        top = fused[: query.diversity.top_n]
        stored = self.store.existing([doc_id for doc_id, _ in top])
        vectors = {doc_id: doc.vectors[query.diversity.field] for doc_id, doc in stored.items() if query.diversity.field in doc.vectors}
        return mmr(top, vectors, relevance_weight=query.diversity.relevance_weight) + fused[query.diversity.top_n :]

    def search(self, query: HybridQuery) -> SearchResult:
        """Run every applicable leg, fuse them, and return one explained page of hits."""
        filters = self.check(query)
        legs = self.applicable_legs(query)
        t0 = time.perf_counter()
        vectors = self.encode(query, self.wanted(query, legs))
        t_encoded = time.perf_counter()
        self.check_words(query, vectors, filters, legs)
        t1 = time.perf_counter()
        results = self.run_legs(self.plan(query, vectors, legs), query, filters)
        t2 = time.perf_counter()
        results, fused, notes = self.with_feedback(query, vectors, results, filters)
        fused = self.diversify(fused, query)
        page = fused[query.offset : query.offset + query.size]
        sources = self.store.sources([doc_id for doc_id, _ in page])
        t3 = time.perf_counter()
        hits = explain(page, results, start_rank=query.offset + 1, sources=sources)
        return SearchResult(
            hits=hits,
            legs={name: len(ranked) for name, ranked in results.items()},
            fusion=fusion_report(query, **self.rewrites(query, vectors), **notes),
            took_ms={"encode": 1000 * (t_encoded - t0), "word_check": 1000 * (t1 - t_encoded), "legs": 1000 * (t2 - t1),
                     "fuse_and_fetch": 1000 * (t3 - t2)},
        )

    @staticmethod
    def fuse(results: dict[str, RankedIds], query: HybridQuery) -> list[tuple[str, float]]:
        return fuse_legs(results, query.fusion, query.feedback, query.term_feedback)


def feedback_query_vector(settings: Feedback, vectors: QueryVectors) -> np.ndarray | None:
    """The query's own vector in the feedback field: the text vector, or in the image space the
    same vector the product leg uses (text and image averaged where the query has both)."""
    if settings.field == "text_vector":
        return vectors.text
    return next((v for v in (vectors.combined, vectors.cross, vectors.image) if v is not None), None)


def fusion_report(query: HybridQuery, **extra: Any) -> dict[str, Any]:
    """What ``SearchResult.fusion`` says about how the hits were combined."""
    report = {**query.fusion.to_dict(), **extra}
    if query.diversity is not None:
        report["diversity"] = query.diversity.to_dict()
    if query.feedback is not None:
        report["feedback"] = query.feedback.to_dict()
    if query.term_feedback is not None:
        report["term_feedback"] = query.term_feedback.to_dict()
    if query.word_check is not None:
        report["word_check"] = query.word_check.to_dict()
    return report


def fuse_legs(
    results: dict[str, RankedIds], fusion: FusionConfig, feedback: Feedback | None = None, term_feedback: TermFeedback | None = None
) -> list[tuple[str, float]]:
    """The legs' rankings fused as ``fusion`` says (a leg it does not weigh counts 1); the feedback
    legs, when present, at ``feedback.weight`` and ``term_feedback.weight``."""
    weights = {name: fusion.weight(name) for name in results if name not in (FEEDBACK_LEG, TERM_FEEDBACK_LEG)}
    if FEEDBACK_LEG in results:
        weights[FEEDBACK_LEG] = feedback.weight if feedback is not None else 1.0
    if TERM_FEEDBACK_LEG in results:
        weights[TERM_FEEDBACK_LEG] = term_feedback.weight if term_feedback is not None else 1.0
    if fusion.method == "rrf":
        return rrf(results, weights=weights, rank_constant=fusion.rank_constant, rank_window_size=fusion.rank_window_size)
    return linear(results, weights=weights, normalizer=fusion.normalizer, rank_window_size=fusion.rank_window_size)


def explain(
    page: list[tuple[str, float]],
    legs: dict[str, RankedIds],
    *,
    start_rank: int = 1,
    sources: dict[str, dict[str, Any]] | None = None,
) -> list[Hit]:
    """Hits with, for each leg that returned the document, its 1-based rank and raw score."""
    positions = {
        name: {doc_id: (rank, score) for rank, (doc_id, score) in enumerate(ranked, start=1)}
        for name, ranked in legs.items()
    }
    hits = []
    for offset, (doc_id, score) in enumerate(page):
        per_leg = {}
        for name, found in positions.items():
            if doc_id in found:
                rank, raw = found[doc_id]
                per_leg[name] = LegScore(rank, float(raw))
        hits.append(Hit(doc_id, float(score), start_rank + offset, per_leg, (sources or {}).get(doc_id, {})))
    return hits
