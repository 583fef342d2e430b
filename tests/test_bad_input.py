"""The bad-input corpus (tests/bad_input): each bad line gives one clear per-item error, the good lines are
indexed, and the worker stays up. In process, then through the command line and a real worker."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from hybrid_core.images import ImageLimits
from indexer.pipeline import IndexingRuntime, process_batch
from indexer.producer import catalogue_items
from tests.test_queue import open_store, redis, run_cli  # noqa: F401 (redis is a fixture)

CORPUS = Path(__file__).parent / "bad_input"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
HUGE = 100 * 1024 * 1024


@pytest.fixture
def corpus(tmp_path) -> Path:
    """The corpus copied, plus a 100 MB image (a sparse file: no disk or time spent)."""
    shutil.copytree(CORPUS, tmp_path / "bad_input")
    with (tmp_path / "bad_input" / "images" / "huge.jpg").open("wb") as handle:
        handle.truncate(HUGE)
    return tmp_path / "bad_input" / "catalogue.jsonl"


def errors_by_line(errors) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item, reason in errors:
        line = re.match(r"catalogue\.jsonl:(\d+)", item)
        assert line, f"the error does not name its line: {item}"
        found.setdefault(line.group(1), []).append(reason)
    return found


def check(found: dict[str, list[str]]) -> None:
    assert set(found) == set(EXPECTED["errors_by_line"]), "every bad line, and only those, has an error"
    for line, reasons in found.items():
        assert len(reasons) == 1, f"line {line} has {len(reasons)} errors: {reasons}"
        assert EXPECTED["errors_by_line"][line] in reasons[0], f"line {line}: {reasons[0]!r}"


def test_the_corpus_in_one_batch(corpus, store, layout, text_space, image_space):
    items = [{**item, "version": n} for n, item in enumerate(catalogue_items(corpus), start=1)]  # as the producer stamps them
    runtime = IndexingRuntime(store, layout, text_space, image_space, ImageLimits())
    report = process_batch(items, runtime, images_root=str(corpus.parent))
    check(errors_by_line((e.item, e.reason) for e in report.errors))
    assert report.written == len(EXPECTED["written"]) and set(store.versions()) == set(EXPECTED["written"])
    assert store.sources(["dup"])["dup"]["title"] == "first"


@pytest.mark.integration
def test_the_corpus_through_a_real_worker(redis, corpus, tmp_path):
    from tests.queue_helpers import Worker, WorkerEnv

    wenv = WorkerEnv(redis.url, tmp_path / "store.sqlite", batch_size=8)
    worker = Worker(wenv, tmp_path / "worker.log").wait_ready()
    try:
        done = run_cli(wenv, "index", str(corpus))
        assert done.returncode == 0, done.stderr
        errors = json.loads(run_cli(wenv, "errors", "--json", "--limit", "100").stdout)
        check(errors_by_line((e["item"], e["reason"]) for e in errors))
        assert worker.process.poll() is None, "the worker is still running"
        follow_up = tmp_path / "follow-up.jsonl"
        follow_up.write_text(json.dumps({"id": "after", "title": "Green Kurta"}) + "\n")
        assert run_cli(wenv, "index", str(follow_up)).returncode == 0
    finally:
        worker.stop()
    assert set(open_store(wenv).versions()) == {*EXPECTED["written"], "after"}
