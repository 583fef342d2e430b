"""Reworded dev queries (evaluation/reword.py): one judged phrase in other words, deterministic, and
reported next to the dev figures by `eval --reworded` and `eval-report`."""

from __future__ import annotations

import json
import re
import shutil

from click.testing import CliRunner

from evaluation.report import reworded_section, write_report
from evaluation.reword import REQUESTS, SUFFIX, TABLES, reword, reword_queries, rewrite


def _alternatives(phrase: str) -> tuple[str, ...]:
    return next(table[phrase] for table in TABLES.values() if phrase in table)


def test_one_phrase_is_reworded_into_one_of_its_alternatives_and_the_rest_is_kept():
    for qid, text in [("dev-1", "women black t-shirt"), ("dev-2", "men navy blue socks"), ("dev-3", "in red"), ("dev-4", "grey kurta")]:
        again = reword(qid, text)
        assert again == reword(qid, text)  # deterministic
        assert again != text.lower()
        words, new_words = text.lower().split(), again.split()
        changed = [p for table in TABLES.values() for p in table if re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", text.lower())]
        assert any(again == text.lower().replace(p, alt, 1) for p in changed for alt in _alternatives(p)), (text, again)
        assert len(set(words) - set(new_words)) <= 2  # one phrase (at most two words) went away


def test_phrases_inside_other_words_are_left_alone():
    # "shirt" in "t-shirt" / "sweatshirt", "men" in "women", "ring" in "earring": never rewritten there
    for qid in (f"q{i}" for i in range(40)):
        assert reword(qid, "sweatshirt") in {"sweatshirt", *_alternatives("sweatshirt")}
        assert reword(qid, "women") in {"women", *_alternatives("women")}
        assert reword(qid, "earring") in {"earring", *_alternatives("earring")}
        assert reword(qid, "t-shirt") in {"t-shirt", *_alternatives("t-shirt")}
    assert reword("q", "Purple Orchid") == "purple orchid"  # nothing known: only lower-cased


def test_reworded_queries_keep_judgments_and_images_and_drop_image_only_queries():
    queries = [
        {"id": "a", "text": "men black watch", "relevance": {"p1": 2}, "want": {"colour": "Black"}},
        {"id": "b", "image": "images/1.jpg", "relevance": {"p2": 1}},
        {"id": "c", "text": "in blue", "image": "images/2.jpg", "relevance": {"p3": 2}},
    ]
    out = reword_queries(queries)
    assert [q["id"] for q in out] == [f"a{SUFFIX}", f"c{SUFFIX}"]
    assert out[0]["relevance"] == {"p1": 2} and out[0]["want"] == {"colour": "Black"} and out[1]["image"] == "images/2.jpg"
    assert out[0]["text"] != "men black watch" and out[1]["text"] != "in blue"
    assert queries[0]["text"] == "men black watch"  # input not mutated


def test_text_queries_may_come_as_requests_and_image_text_queries_never():
    kinds = {rewrite(f"q{i}", "men navy blue socks", request=True)[1] for i in range(60)}
    assert kinds == {"request", "article type", "gender", "colour"}
    wrapped = {rewrite(f"q{i}", "men navy blue socks", request=True)[0] for i in range(200)}
    assert {template.format("men navy blue socks") for template in REQUESTS} <= wrapped
    queries = [{"id": f"q{i}", "text": "in red", "image": "images/1.jpg", "relevance": {}} for i in range(40)]
    assert {q["reworded"] for q in reword_queries(queries)} == {"phrasing"}
    assert rewrite("q", "purple orchid", request=True)[1] == "request"  # a request needs no known phrase


def _row(ndcg: float, fine: float = 0.5) -> dict[str, float]:
    return {"NDCG@10": ndcg, "P@10 fine": fine}


def test_report_section_shows_the_change_and_what_beats_tuned_once_reworded():
    dev = {"text": {"BM25": _row(0.80), "product vector": _row(0.84), "hybrid RRF": _row(0.87), "tuned": _row(0.89)}}
    again = {"text": {"BM25": _row(0.50), "product vector": _row(0.72), "hybrid RRF": _row(0.74), "tuned": _row(0.71)}}
    lines = reworded_section(dev, again)
    assert "| BM25 | 0.800 | 0.500 | -0.300 | 0.500 | 0.500 |" in lines
    assert "Ahead of tuned when reworded: hybrid RRF 0.740, product vector 0.720 (tuned 0.710)." in lines
    assert "Ahead of tuned when reworded: none." in reworded_section(dev, dev)


def test_eval_reworded_runs_the_reworded_queries_and_the_report_shows_them(tmp_path, sample_catalogue):
    from hybrid_cli.main import cli

    catalogue = tmp_path / "catalogue.jsonl"
    lines = [json.loads(line) for line in sample_catalogue.read_text().splitlines()]
    catalogue.write_text("".join(json.dumps({**p, "split": "test"}) + "\n" for p in lines))
    shutil.copytree(sample_catalogue.parent / "images", tmp_path / "images")  # photos outside the catalogue's folder are refused
    kurtas = {p["id"]: (2 if p["colour"] == "Green" else 1) for p in lines if p["article_type"] == "Kurtas"}
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps(q) + "\n" for q in [
        {"id": "t1", "text": "women green kurta", "relevance": kurtas},
        {"id": "i1", "image": "images/S011.png", "relevance": kurtas},
    ]))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["eval", "--queries", str(queries), "--catalogue", str(catalogue), "--out", str(out), "--reworded"])
    assert result.exit_code == 0, result.output
    again = json.loads((out / "results-full-reworded.json").read_text())
    assert again["counts"] == {"text": 1} and again["reworded"] is True and "own_photo_recall@10" not in again
    assert {"BM25", "text kNN", "product vector", "hybrid RRF"} <= set(again["kinds"]["text"])
    assert again["reworded_as"] == {f"t1{SUFFIX}": reword_queries([{"id": "t1", "text": "women green kurta"}])[0]["reworded"]}
    per_query = again["per_query"]["NDCG@10"]["text"]
    assert set(per_query["BM25"]) == {f"t1{SUFFIX}"} and per_query["BM25"][f"t1{SUFFIX}"] == again["kinds"]["text"]["BM25"]["NDCG@10"]
    assert not (out / "results-full.json").exists()  # the dev results are not overwritten
    (out / "results-full.json").write_text(json.dumps({**again, "reworded": False, "counts": {"text": 1}}))
    report = write_report(out, tmp_path / "docs" / "evaluation.md").read_text()
    assert "### Reworded dev queries (full)" in report and "#### text queries, reworded" in report
    result = CliRunner().invoke(cli, ["eval", "--queries", str(queries), "--catalogue", str(catalogue), "--out", str(out)])
    assert result.exit_code == 0, result.output
    dev = json.loads((out / "results-full.json").read_text())
    assert 0 <= dev["own_photo_recall@10"] <= 1 and dev["image_cosines"]["random_pairs"] == 200_000
    assert 0 < dev["own_photo_oracle@10"] <= 1 and sum(dev["own_photo_misses"]["first_hit_differs_in"].values()) == dev["own_photo_misses"]["misses"]
    assert "99.9 % of 200,000 random pairs of test photos are below" in write_report(out, tmp_path / "docs" / "evaluation.md").read_text()


def test_report_breaks_the_change_down_by_what_was_reworded():
    dev_scores = {"text": {"BM25": {"a": 0.8, "b": 0.6, "c": 0.9}, "tuned": {"a": 0.9, "b": 0.7, "c": 0.95}}}
    again = {"text": {"BM25": {f"a{SUFFIX}": 0.2, f"b{SUFFIX}": 0.6, f"c{SUFFIX}": 0.5},
                      "tuned": {f"a{SUFFIX}": 0.7, f"b{SUFFIX}": 0.7, f"c{SUFFIX}": 0.75}}}
    kinds = {f"a{SUFFIX}": "colour", f"b{SUFFIX}": "gender", f"c{SUFFIX}": "colour"}
    dev = {"text": {"BM25": _row(0.77), "tuned": _row(0.85)}}
    rw = {"text": {"BM25": _row(0.43), "tuned": _row(0.72)}}
    lines = reworded_section(dev, rw, dev_scores, again, kinds)
    assert "| reworded | queries | BM25 | tuned |" in lines
    assert "| colour | 2 | -0.500 | -0.200 |" in lines  # (0.2-0.8 + 0.5-0.9) / 2, (0.7-0.9 + 0.75-0.95) / 2
    assert "| gender | 1 | +0.000 | +0.000 |" in lines
    assert lines.index("| colour | 2 | -0.500 | -0.200 |") < lines.index("| gender | 1 | +0.000 | +0.000 |")  # largest group first
    assert not any(line.startswith("| reworded") for line in reworded_section(dev, rw))  # without per-query scores: no breakdown


def test_rewrite_says_what_it_reworded():
    from evaluation.reword import rewrite

    assert rewrite("q1", "navy blue socks")[1] in {"article type", "colour"}
    assert rewrite("q", "Purple Orchid") == ("purple orchid", None)
    kinds = {rewrite(f"q{i}", "women grey t-shirt")[1] for i in range(60)}
    assert kinds == {"article type", "gender", "colour"}
    assert all(q["reworded"] == rewrite(q["id"].removesuffix(SUFFIX), "men black watch", request=True)[1]
               for q in reword_queries([{"id": "z", "text": "men black watch", "relevance": {}}]))
