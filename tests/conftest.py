"""Shared fixtures. Models are real: the packaged MiniLM and a tiny randomly initialised
OpenCLIP (``tiny-clip-test``). The random CLIP's vectors mean nothing: tests that use it
check mechanics (shapes, spaces, plumbing), never retrieval quality."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from hybrid_core.layout import build_layout  # noqa: E402
from hybrid_core.sample_catalogue import write_sample_catalogue  # noqa: E402
from hybrid_core.spaces import EmbeddingSpace, default_text_spec, random_clip_spec  # noqa: E402
from hybrid_core.stores.embedded import EmbeddedStore  # noqa: E402

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
