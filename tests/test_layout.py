"""The field layout is the contract: one definition, rendered to mappings/products.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hybrid_core.errors import LayoutError
from hybrid_core.layout import build_layout
from hybrid_core.spaces import default_image_spec, default_text_spec, random_clip_spec
from hybrid_core.stores.base import StoredDoc
from hybrid_core.stores.embedded import EmbeddedStore
from hybrid_core.synonyms import load as load_synonyms

ROOT = Path(__file__).resolve().parents[1]


def test_mappings_file_is_the_layout_for_the_default_models():
    expected = build_layout(default_text_spec(), default_image_spec(), load_synonyms("packaged")).to_es_mapping()
    on_disk = json.loads((ROOT / "mappings" / "products.json").read_text())
    assert on_disk == expected, "regenerate with: hybrid-search mappings > mappings/products.json"


def test_mapping_has_bm25_keyword_numeric_and_vector_fields():
    body = build_layout(default_text_spec(), default_image_spec()).to_es_mapping()
    props = body["mappings"]["properties"]
    assert props["title"] == {"type": "text", "analyzer": "english", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
    assert props["description"]["analyzer"] == "english"
    assert props["colour"] == {"type": "keyword"} and props["price"] == {"type": "float"}
    assert props["text_vector"]["dims"] == 384 and props["text_vector"]["similarity"] == "cosine"
    assert {"image_vector", "product_vector"} <= props.keys()
    assert body["mappings"]["_meta"]["vector_fields"]["text_vector"]["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_vector_field_refuses_other_dims_or_space(layout):
    field = layout.vector("text_vector")
    good = np.ones(field.dims, dtype=np.float32)
    field.check(good, space=field.space, model_id=field.model_id)
    with pytest.raises(LayoutError, match="has 384 dims, got a vector of shape \\(64,\\)"):
        field.check(np.ones(64, dtype=np.float32), space=field.space, model_id=field.model_id)
    with pytest.raises(LayoutError, match="holds vectors of space 'text'"):
        field.check(good, space="image", model_id="open_clip/x")
    with pytest.raises(LayoutError, match="NaN"):
        field.check(np.full(field.dims, np.nan, dtype=np.float32), space=field.space, model_id=field.model_id)


def test_store_refuses_a_vector_from_another_space(store, layout):
    doc = StoredDoc(
        id="p1",
        version=1,
        source={"id": "p1", "title": "x"},
        vectors={"image_vector": np.ones(64, dtype=np.float32)},
        spaces={"image_vector": ("image", "open_clip/other-model")},
        text_hash="h",
    )
    with pytest.raises(LayoutError, match="product p1: image_vector holds vectors of space 'image'"):
        store.write([doc], [])
    assert store.count() == 0


def test_store_built_for_other_models_is_refused(tmp_path, layout, text_space):
    path = tmp_path / "s.sqlite"
    EmbeddedStore(path, layout).count()
    other = build_layout(text_space.spec, random_clip_spec(seed=5))
    with pytest.raises(LayoutError, match="built for another layout or other models") as refused:
        EmbeddedStore(path, other).count()
    assert "vector_fields: stored" in str(refused.value) and "text_fields" not in str(refused.value)


def test_a_store_or_index_without_photo_captions_is_refused_naming_the_field(tmp_path):
    """Stores and indexes built before photo captions (or with them off) lack the field: the layout
    names the difference rather than index captions nothing would search."""
    with_captions = build_layout(default_text_spec(), default_image_spec())
    without = build_layout(default_text_spec(), default_image_spec(), photo_captions=False)
    path = tmp_path / "old.sqlite"
    EmbeddedStore(path, without).count()
    with pytest.raises(LayoutError, match=r"photo_caption: stored null, this configuration \"photo:.*text_fields: stored"):
        EmbeddedStore(path, with_captions).count()
    assert with_captions.differences(with_captions.to_es_mapping()["mappings"]["_meta"]) == ""  # an index's _meta
    assert "text_fields" in with_captions.differences(without.to_es_mapping()["mappings"]["_meta"])


def test_layout_without_image_space_has_only_the_text_vector(text_space):
    layout = build_layout(text_space.spec, None)
    assert [v.name for v in layout.vector_fields] == ["text_vector"]
    with pytest.raises(LayoutError, match="no vector field 'image_vector'"):
        layout.vector("image_vector")
