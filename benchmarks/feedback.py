"""What pseudo-relevance feedback, one leg, or the word check costs per search: the tuned profile with and
without its feedback (vector and term); with ``--drop-leg``, without that leg (its weight set to 0); with
``--drop-word-check``, the queries with text without the word check (query_builder/word_check.py).

Runs the dev queries of each kind against an index ``hybrid-search eval`` built (the test split in
the embedded store), with query vectors encoded once beforehand so the figure is the search path
only (legs, fusion, the feedback round). Same process, same queries, interleaved per query.

    python benchmarks/feedback.py --index /tmp/es-hybrid-search-eval/test-full-<tag>.sqlite \\
        --queries ../shared/eval/dev_queries.jsonl --images-root ../shared/data/myntra \\
        --profile evaluation/profiles/fusion-profile-full.json [--drop-leg photo_words] [--drop-word-check]
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
from machine import describe as describe_machine  # benchmarks/machine.py, beside this script


def _precomputed(base: type) -> type:
    """``base`` (a searcher class) with each query encoded once, in every space feedback may need,
    and looked up afterwards: the timings are the search path, not the encoders."""

    class Precomputed(base):  # type: ignore[misc, valid-type]
        def encode(self, query, wanted):
            table = self.__dict__.setdefault("_encoded", {})
            key = (query.text, str(query.image))
            if key not in table:
                table[key] = super().encode(query, {"text", "product", "photo_words"})  # every vector and the photo's words
            return table[key]

    return Precomputed


@click.command()
@click.option("--index", type=click.Path(exists=True, dir_okay=False), required=True, help="An eval index (SQLite).")
@click.option("--queries", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--images-root", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--profile", type=click.Path(exists=True, dir_okay=False), required=True, help="A fusion profile (as `hybrid-search tune` writes).")
@click.option("--drop-leg", help="Also time each kind whose fusion weighs this leg with its weight set to 0 (what the leg costs).")
@click.option("--drop-word-check", is_flag=True, help="Also time each kind with text without the word check (what it costs).")
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Also write the figures as JSON.")
def main(index, queries, images_root, profile, drop_leg, drop_word_check, repeats, out_file) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hybrid_core.config import Settings
    from hybrid_core.stores.embedded import EmbeddedStore
    from query_builder.profile import FusionProfile, query_kind
    from query_builder.query import LEG_NAMES, HybridQuery
    from query_builder.searcher import HybridSearcher

    settings = Settings.from_env()
    layout = settings.layout()
    text_space, image_space = settings.embedding_spaces()
    store = EmbeddedStore(Path(index), layout)
    searcher = _precomputed(HybridSearcher)(store, layout, text_space, image_space)
    with_feedback = FusionProfile.load(profile)
    if drop_leg is not None and drop_leg not in LEG_NAMES:
        raise click.UsageError(f"--drop-leg {drop_leg!r} is not a leg; legs are {', '.join(LEG_NAMES)}")
    with_feedback_kinds = set(with_feedback.feedback) | set(with_feedback.term_feedback)
    # kinds whose fusion names the leg: a leg left unnamed runs at weight 1 only where it applies at all
    weighing = {k for k, f in with_feedback.kinds.items() if drop_leg and f.weights.get(drop_leg, 0) > 0}
    # kinds whose fusion runs the BM25 leg, which the word check shapes
    checking = {k for k in ("text", "text+image") if drop_word_check and with_feedback.kinds.get(k) is not None
                and with_feedback.kinds[k].weight("bm25") > 0}
    kinds = with_feedback_kinds | weighing | checking
    if not kinds:
        raise click.UsageError(f"{profile} keeps no feedback for any query kind" + (f" and weighs no {drop_leg} leg" if drop_leg else "")
                               + ": nothing to compare")
    without = replace(with_feedback, feedback={}, term_feedback={})
    dropped = {k: replace(f, weights={**f.weights, drop_leg: 0.0}) for k, f in with_feedback.kinds.items() if k in weighing}
    without_leg = replace(with_feedback, kinds={**with_feedback.kinds, **dropped})
    root = Path(images_root)
    listed = [json.loads(line) for line in Path(queries).read_text().splitlines() if line.strip()]
    by_kind: dict[str, list[HybridQuery]] = {}
    for q in listed:
        kind = query_kind(q.get("text"), q.get("image"))
        if kind in kinds:
            by_kind.setdefault(kind, []).append(HybridQuery(text=q.get("text"), image=root / q["image"] if q.get("image") else None, size=10))
    for group in by_kind.values():
        for query in group:
            searcher.encode(query, set())
    store.build_graphs()
    result = {"command": "python benchmarks/feedback.py " + " ".join(sys.argv[1:]), "machine": describe_machine(), "kinds": {}}
    vector_only = replace(with_feedback, term_feedback={})
    for kind, group in by_kind.items():
        profiles = [("with feedback" if kind in with_feedback_kinds else "as tuned", with_feedback)]
        if kind in with_feedback_kinds:
            profiles.insert(0, ("without feedback", without))
        if kind in with_feedback.term_feedback and kind in with_feedback.feedback:
            profiles.insert(1, ("vector feedback only", vector_only))  # what the term leg adds on top
        if kind in weighing:
            profiles.append((f"without {drop_leg}", without_leg))
        if kind in checking:
            profiles.append(("without word check", with_feedback))
        samples: dict[str, list[float]] = {name: [] for name, _ in profiles}
        for _ in range(repeats):
            for query in group:
                for name, chosen in profiles:
                    applied = chosen.apply(query)
                    if name == "without word check":
                        applied = replace(applied, word_check=None)
                    started = time.perf_counter()
                    searcher.search(applied)
                    samples[name].append(1000 * (time.perf_counter() - started))
        figures = {name: {"p50_ms": float(np.percentile(s, 50)), "p95_ms": float(np.percentile(s, 95))} for name, s in samples.items()}
        for name, kept in (("feedback", with_feedback.feedback), ("term_feedback", with_feedback.term_feedback)):
            if kind in kept:
                figures[name] = kept[kind].to_dict()
        figures["queries"] = len(group)
        if "without feedback" in figures:
            figures["p50_ratio"] = figures["with feedback"]["p50_ms"] / figures["without feedback"]["p50_ms"]
        result["kinds"][kind] = figures
        timed = "; ".join(f"{name} p50 {figures[name]['p50_ms']:.2f} / p95 {figures[name]['p95_ms']:.2f} ms" for name, _ in profiles)
        click.echo(f"{kind} ({len(group)} queries x {repeats}): {timed}")
    if out_file:
        Path(out_file).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
