"""Shared fixtures. Models are real: the packaged MiniLM and a tiny randomly initialised
OpenCLIP (``tiny-clip-test``). The random CLIP's vectors mean nothing: tests that use it
check mechanics (shapes, spaces, plumbing), never retrieval quality."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# derived data (phrase vectors) goes to a folder of this run, not the user's cache; workers inherit it
os.environ["HYBRID_SEARCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="hybrid-search-test-cache-")

from hybrid_core.images import ImageLimits  # noqa: E402
from hybrid_core.layout import build_layout  # noqa: E402
from hybrid_core.sample_catalogue import write_sample_catalogue  # noqa: E402
from hybrid_core.spaces import PACKAGED_TOWER, EmbeddingSpace, catalogue_tower_spec, default_text_spec, random_clip_spec  # noqa: E402
from hybrid_core.stores.embedded import EmbeddedStore  # noqa: E402
from indexer.pipeline import IndexingRuntime, process_batch  # noqa: E402
from query_builder.searcher import HybridSearcher  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MYNTRA = SHARED / "data" / "myntra"


@pytest.fixture(scope="session")
def text_space() -> EmbeddingSpace:
    return EmbeddingSpace(default_text_spec()).load()


@pytest.fixture(scope="session")
def image_space() -> EmbeddingSpace:
    """Mechanics only: a random tiny CLIP."""
    return EmbeddingSpace(random_clip_spec()).load()


@pytest.fixture(scope="session")
def layout(text_space, image_space):
    return build_layout(text_space.spec, image_space.spec)


@pytest.fixture
def store(tmp_path, layout) -> EmbeddedStore:
    s = EmbeddedStore(tmp_path / "store.sqlite", layout)
    yield s
    s.close()


@pytest.fixture(scope="session")
def sample_catalogue(tmp_path_factory) -> Path:
    return write_sample_catalogue(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="session")
def myntra() -> Path:
    if not (MYNTRA / "catalogue.jsonl").exists():
        pytest.skip(f"the Myntra evaluation data is not at {MYNTRA} (only developers' machines and CI have ../shared)")
    return MYNTRA


@pytest.fixture
def indexed(store, layout, text_space, image_space, sample_catalogue):
    """The sample catalogue indexed in ``store``, a searcher over it, and six graded text queries
    (grade 2: the asked colour and type, 1: the type) in the evaluation format."""
    items = [{"ref": "s", "version": 1, "data": json.loads(line)} for line in sample_catalogue.read_text().splitlines()]
    process_batch(items, IndexingRuntime(store, layout, text_space, image_space, ImageLimits()), images_root=str(sample_catalogue.parent))
    searcher = HybridSearcher(store, layout, text_space, image_space)
    grade = {}
    for p in items:
        d = p["data"]
        grade[d["id"]] = d
    queries = []
    for i, (colour, kind) in enumerate([("green", "Kurtas"), ("black", "Watches"), ("blue", "Jeans"), ("red", "Tshirts"), ("white", "Shoes"), ("black", "Kurtas")]):
        rel = {pid: (2 if d["colour"].lower() == colour else 1) for pid, d in grade.items() if d["article_type"] == kind}
        queries.append({"id": f"t{i}", "text": f"{colour} {kind.lower()}", "relevance": rel})
    return searcher, queries


@pytest.fixture(scope="session")
def tower_space():
    """The packaged trained tower: its image space is the MiniLM text space (locked-text tuning)."""
    if not PACKAGED_TOWER.exists():
        pytest.skip(f"the packaged tower is not at {PACKAGED_TOWER}")
    return EmbeddingSpace(catalogue_tower_spec()).load()


@pytest.fixture
def tower_indexed(tmp_path, text_space, tower_space, sample_catalogue):
    """The sample catalogue indexed with the packaged tower as the image space: its layout, store and a searcher."""
    layout = build_layout(text_space.spec, tower_space.spec)
    store = EmbeddedStore(tmp_path / "tower.sqlite", layout)
    items = [{"ref": f"sample:{n}", "version": 1, "data": json.loads(line)} for n, line in enumerate(sample_catalogue.read_text().splitlines())]
    process_batch(items, IndexingRuntime(store, layout, text_space, tower_space, ImageLimits()),
                  images_root=str(sample_catalogue.parent))
    yield layout, store, HybridSearcher(store, layout, text_space, tower_space)
    store.close()
