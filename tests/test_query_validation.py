"""Bad queries are refused with a clear message before any model or store is touched."""

from __future__ import annotations

import math
import re

import pytest

from hybrid_core.errors import FilterError, ValidationError
from query_builder.diversify import Diversity
from query_builder.query import FusionConfig, HybridQuery
from query_builder.searcher import HybridSearcher


class Untouchable:
    """Stands in for the store and the models: any use is a failure of the test."""

    def __init__(self, spec=None) -> None:
        self.spec = spec

    def __getattr__(self, name):
        raise AssertionError(f"{name} was called before validation refused the query")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FusionConfig(weights={"bm25": math.nan}), "weight of bm25 must be a finite number >= 0"),
        (lambda: FusionConfig(weights={"text": math.inf}), "weight of text must be a finite number >= 0"),
        (lambda: FusionConfig(weights={"image": -0.5}), "weight of image must be a finite number >= 0"),
        (lambda: FusionConfig(weights={"cross": True}), "weight of cross must be a finite number >= 0"),
        (lambda: FusionConfig(weights={"colour": 1}), "unknown leg 'colour'"),
        (lambda: FusionConfig(rank_window_size=0), "rank_window_size must be an integer in 1..10000"),
        (lambda: FusionConfig(rank_window_size=10_001), "rank_window_size must be an integer in 1..10000"),
        (lambda: FusionConfig(rank_constant=0), "rank_constant must be an integer >= 1"),
        (lambda: FusionConfig(method="sum"), "unknown fusion 'sum'"),
        (lambda: HybridQuery(text="x", num_candidates=50), "num_candidates must be an integer in 100..10000"),
        (lambda: HybridQuery(text="x", num_candidates=20_000), "num_candidates must be an integer in 100..10000"),
        (lambda: HybridQuery(text="x", size=20, offset=90), "offset \\+ size = 110 is beyond the fusion window \\(100\\)"),
        (lambda: HybridQuery(text="x", size=0), "size must be >= 1"),
        (lambda: HybridQuery(text="x", offset=-1), "offset must be >= 0"),
        (lambda: HybridQuery(text=""), "a query needs text, an image, or both"),
        (lambda: HybridQuery(text=" \n\t "), "a query needs text, an image, or both"),
        (lambda: HybridQuery(text="x" * 100_000), "query text has 100000 characters, the limit is 2000"),
        (lambda: HybridQuery(text=42), "text must be a string"),
        (lambda: HybridQuery(text="x", legs=("bm25", "audio")), "unknown legs \\['audio'\\]"),
        (lambda: HybridQuery(text="x", boosts={"title": -1}), "boost of title must be a finite number >= 0"),
        (lambda: Diversity(relevance_weight=2), "relevance_weight must be a number in 0..1"),
    ],
)
def test_bad_query_settings_are_refused_when_built(make, message):
    with pytest.raises(ValidationError, match=message):
        make()


@pytest.mark.parametrize(
    "query, error, message",
    [
        (HybridQuery(text="x", filters={"size": "M"}), FilterError, "cannot filter on 'size'; filterable fields are"),
        (HybridQuery(text="x", filters={"price": {"gte": "cheap"}}), FilterError, "'cheap' is not a number"),
        (HybridQuery(text="x", boosts={"brand": 2}), ValidationError, "boosts name unknown text fields \\['brand'\\]"),
        (HybridQuery(text="x", diversity=Diversity(field="title")), ValidationError, "diversity field 'title' is not a vector field"),
    ],
)
def test_queries_the_layout_refuses_touch_neither_models_nor_store(layout, text_space, image_space, query, error, message):
    searcher = HybridSearcher(Untouchable(), layout, Untouchable(text_space.spec), Untouchable(image_space.spec))
    with pytest.raises(error, match=message):
        searcher.search(query)


def test_the_command_line_reports_a_bad_query_and_exits_2(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from hybrid_cli.main import cli

    monkeypatch.setenv("HYBRID_SEARCH_STORE_PATH", str(tmp_path / "none.sqlite"))
    result = CliRunner().invoke(cli, ["search", "red kurta", "--weights", "bm25=nan"])
    assert result.exit_code == 2 and "weight of bm25 must be a finite number >= 0" in result.output
    assert not (tmp_path / "none.sqlite").exists(), "no store was opened"


def test_range_checks_refuse_bools_nans_and_out_of_range_values_naming_the_setting():
    from query_builder.checks import non_negative, whole_number

    whole_number(5, 1, 10, "depth")
    non_negative(0, "weight")
    non_negative(2.5, "weight")
    for bad in (True, 0, 11, 2.0, "3"):
        with pytest.raises(ValidationError, match=rf"depth must be an integer in 1\.\.10, got {re.escape(repr(bad))}"):
            whole_number(bad, 1, 10, "depth")
    for bad in (False, -0.1, float("nan"), float("inf"), "1"):
        with pytest.raises(ValidationError, match="weight must be a finite number >= 0"):
            non_negative(bad, "weight")
