"""Fusion: closed-form values, Elasticsearch's edge cases, and a cross-check against ranx.

The semantics pinned here are those of Elasticsearch's ``rrf`` retriever
(RRFRetrieverBuilder.combineInnerRetrieverResults: ``score += weight / (k + rank)``,
1-based ranks, each leg cut to ``rank_window_size``) and ``linear`` retriever
(LinearRetrieverBuilder + MinMaxScoreNormalizer/L2ScoreNormalizer: a flat leg keeps
its minimum, a zero norm leaves scores unchanged, a missing document adds 0).
"""

from __future__ import annotations

import copy
import math
import random

import pytest

from hybrid_core.errors import FusionError, ValidationError
from query_builder.fusion import l2_norm, linear, minmax, rrf

A = [("a", 9.0), ("b", 5.0), ("c", 1.0)]
B = [("b", 0.9), ("d", 0.8)]


def test_rrf_closed_form_with_a_document_in_one_leg_only():
    fused = dict(rrf({"bm25": A, "text": B}))
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61)  # only in bm25
    assert fused["d"] == pytest.approx(1 / 62)  # only in text
    assert fused["c"] == pytest.approx(1 / 63)
    assert [d for d, _ in rrf({"bm25": A, "text": B})] == ["b", "a", "d", "c"]


def test_rrf_weights_multiply_each_legs_contribution():
    fused = dict(rrf({"bm25": A, "text": B}, weights={"bm25": 2.0, "text": 0.5}, rank_constant=10))
    assert fused["b"] == pytest.approx(2 / 12 + 0.5 / 11)
    assert fused["d"] == pytest.approx(0.5 / 12)


def test_rrf_ignores_raw_scores():
    rescaled = [(d, s * 1000 - 7) for d, s in A]
    assert rrf([A, B]) == rrf([rescaled, B])


def test_empty_legs_and_no_legs():
    assert rrf({}) == []
    assert rrf({"bm25": [], "text": []}) == []
    assert linear({"bm25": []}) == []
    assert rrf({"bm25": [], "text": B}) == rrf({"text": B})


def test_ties_are_broken_by_doc_id():
    # z and a each appear once at rank 1 of a leg of equal weight: equal scores
    fused = rrf([[("z", 1.0)], [("a", 1.0)]])
    assert [d for d, _ in fused] == ["a", "z"]
    assert fused[0][1] == fused[1][1]
    lin = linear([[("z", 3.0), ("q", 1.0)], [("a", 5.0), ("r", 2.0)]])
    assert [d for d, _ in lin][:2] == ["a", "z"]


def test_zero_weights_keep_documents_at_zero_score():
    fused = rrf({"bm25": A, "text": B}, weights={"text": 0.0})
    scores = dict(fused)
    assert scores["d"] == 0.0
    assert [d for d, _ in fused][-1] == "d"
    assert dict(linear({"bm25": A, "text": B}, weights={"bm25": 0, "text": 0})) == {"a": 0, "b": 0, "c": 0, "d": 0}


def test_window_cuts_every_leg_before_fusion_and_the_result_after():
    leg1 = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
    leg2 = [("c", 3.0), ("d", 2.0), ("e", 1.0)]
    fused = rrf([leg1, leg2], rank_window_size=2)
    # c is rank 3 in leg1 (cut) and rank 1 in leg2: only the leg2 contribution counts
    assert dict(rrf([leg1, leg2]))["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert len(fused) == 2
    assert dict(rrf([leg1, leg2], rank_window_size=10))["c"] == pytest.approx(1 / 63 + 1 / 61)
    lin = linear([leg1, leg2], rank_window_size=2, normalizer="none")
    assert len(lin) == 2 and dict(lin).get("c", 3.0) == 3.0


def test_linear_minmax_closed_form():
    fused = dict(linear({"bm25": A, "text": B}, weights={"bm25": 1, "text": 2}))
    assert fused["a"] == pytest.approx(1.0)
    assert fused["b"] == pytest.approx(0.5 + 2 * 1.0)
    assert fused["c"] == pytest.approx(0.0)
    assert fused["d"] == pytest.approx(0.0)


def test_minmax_flat_leg_keeps_its_minimum_like_elasticsearch():
    assert minmax([0.7, 0.7, 0.7]) == [0.7, 0.7, 0.7]
    assert minmax([2.0]) == [2.0]
    assert minmax([1.0, 1.0 + 1e-8]) == [1.0, 1.0]
    assert minmax([]) == []
    fused = dict(linear({"a": [("x", 0.4), ("y", 0.4)], "b": [("y", 2.0), ("z", 1.0)]}))
    assert fused == pytest.approx({"x": 0.4, "y": 1.4, "z": 0.0})


def test_l2_norm_and_zero_norm():
    assert l2_norm([3.0, 4.0]) == pytest.approx([0.6, 0.8])
    assert l2_norm([0.0, 0.0]) == [0.0, 0.0]
    fused = dict(linear([[("a", 3.0), ("b", 4.0)]], normalizer="l2_norm"))
    assert fused == pytest.approx({"a": 0.6, "b": 0.8})


def test_none_normalizer_sums_raw_scores():
    assert dict(linear([A, B], normalizer="none"))["b"] == pytest.approx(5.9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weights": {"bm25": -1.0}}, ">= 0"),
        ({"weights": {"bm25": float("nan")}}, "finite"),
        ({"weights": {"bm25": float("inf")}}, "finite"),
        ({"weights": {"nope": 1.0}}, "unknown legs"),
        ({"rank_window_size": 0}, ">= 1"),
    ],
)
def test_invalid_arguments_are_refused(kwargs, message):
    for fuse in (rrf, linear):
        with pytest.raises(FusionError, match=message):
            fuse({"bm25": A, "text": B}, **kwargs)


def test_other_refusals():
    with pytest.raises(FusionError, match="rank_constant"):
        rrf([A], rank_constant=0)
    with pytest.raises(FusionError, match="unknown normalizer 'zscore'; choose one of"):
        linear([A], normalizer="zscore")
    with pytest.raises(FusionError, match="2 weights for 1 legs"):
        rrf([A], weights=[1, 2])
    with pytest.raises(FusionError, match="twice"):
        rrf([[("a", 1.0), ("a", 0.5)]])
    with pytest.raises(FusionError, match="score nan"):
        linear([[("a", float("nan"))]])
    assert issubclass(FusionError, ValidationError) and issubclass(FusionError, ValueError)


def test_inputs_are_not_mutated():
    legs = {"bm25": list(A), "text": list(B)}
    weights = {"bm25": 2.0}
    before = copy.deepcopy((legs, weights))
    rrf(legs, weights=weights, rank_window_size=1)
    linear(legs, weights=weights, rank_window_size=1)
    assert (legs, weights) == before


# -- independent check against ranx ------------------------------------------------------------


def _random_legs(rng: random.Random, n_legs: int) -> list[list[tuple[str, float]]]:
    legs = []
    for _ in range(n_legs):
        docs = rng.sample([f"d{i:03d}" for i in range(60)], rng.randint(1, 40))
        scores = sorted(rng.sample(range(1, 100_000), len(docs)), reverse=True)  # distinct: no rank ambiguity
        legs.append([(d, s / 1000.0) for d, s in zip(docs, scores)])
    return legs


@pytest.fixture(scope="module")
def ranx():
    return pytest.importorskip("ranx", reason="ranx is the independent reference (pip install ranx)")


def _runs(ranx, per_query_legs):
    n_legs = len(per_query_legs[0])
    return [
        ranx.Run({f"q{q}": {d: s for d, s in legs[i]} for q, legs in enumerate(per_query_legs)}) for i in range(n_legs)
    ]


def test_rrf_agrees_with_ranx(ranx):
    rng = random.Random(11)
    queries = [_random_legs(rng, 3) for _ in range(40)]
    reference = ranx.fuse(_runs(ranx, queries), norm=None, method="rrf", params={"k": 60}).to_dict()
    for q, legs in enumerate(queries):
        ours = dict(rrf(legs))
        assert ours.keys() == reference[f"q{q}"].keys()
        for doc, score in ours.items():
            assert score == pytest.approx(reference[f"q{q}"][doc], rel=1e-9)


def test_weighted_rrf_agrees_with_ranx_on_repeated_runs(ranx):
    # ranx has no weighted RRF; an integer weight w is the same leg counted w times
    rng = random.Random(12)
    queries = [_random_legs(rng, 2) for _ in range(30)]
    repeated = [[legs[0], legs[0], legs[0], legs[1]] for legs in queries]
    reference = ranx.fuse(_runs(ranx, repeated), norm=None, method="rrf", params={"k": 20}).to_dict()
    for q, legs in enumerate(queries):
        ours = dict(rrf(legs, weights=[3, 1], rank_constant=20))
        assert ours == pytest.approx(reference[f"q{q}"], rel=1e-9)


def test_linear_minmax_agrees_with_ranx_wsum(ranx):
    rng = random.Random(13)
    queries = [_random_legs(rng, 3) for _ in range(40)]
    queries = [[leg for leg in legs if len(leg) > 1] or legs for legs in queries]  # ranx divides by max - min
    queries = [legs for legs in queries if len(legs) == 3]
    weights = [0.5, 1.0, 2.0]
    reference = ranx.fuse(_runs(ranx, queries), norm="min-max", method="wsum", params={"weights": weights}).to_dict()
    for q, legs in enumerate(queries):
        ours = dict(linear(legs, weights=weights))
        for doc, score in ours.items():
            assert math.isclose(score, reference[f"q{q}"][doc], rel_tol=1e-9, abs_tol=1e-12)
        assert ours.keys() == reference[f"q{q}"].keys()
