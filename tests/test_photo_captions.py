"""Photo captions: the indexer writes each product's photo, read in the image space's vocabulary, to a
BM25 field beside the title, so a product whose title leaves out what its photo shows is found by
those words; a field weighed 0 neither scores nor matches, on either store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from evaluation.harness import STRATEGIES, run_strategies
from hybrid_core.config import Settings
from hybrid_core.errors import ValidationError
from hybrid_core.es_dsl import bm25_query, text_fields
from hybrid_core.images import ImageLimits
from hybrid_core.layout import PHOTO_CAPTION, build_layout
from hybrid_core.spaces import default_image_spec, default_text_spec
from hybrid_core.stores.embedded import EmbeddedStore
from indexer.pipeline import IndexingRuntime, process_batch
from query_builder.query import FusionConfig, HybridQuery


def test_the_layout_has_a_caption_field_where_the_image_space_has_a_vocabulary(text_space, image_space):
    layout = build_layout(default_text_spec(), default_image_spec())
    caption = layout.photo_caption
    assert caption is not None and caption.name == PHOTO_CAPTION and caption.boost < layout.text_fields[0].boost
    assert [f.name for f in layout.text_fields] == ["title", "description", PHOTO_CAPTION]
    # another vocabulary reads the photos otherwise: a store built with one refuses a layout with the other
    spec = default_image_spec()
    assert layout.signature()["photo_caption"] == f"photo:{spec.vocabulary}" + (f"+{spec.photo_reader}" if spec.photo_reader else "")
    assert build_layout(default_text_spec(), default_image_spec(), photo_captions=False).photo_caption is None
    assert build_layout(text_space.spec, image_space.spec).photo_caption is None  # the random CLIP has no vocabulary
    assert build_layout(text_space.spec, None).photo_caption is None
    assert "photo_caption" not in build_layout(text_space.spec, None).signature()
    assert Settings.from_env({"HYBRID_SEARCH_PHOTO_CAPTIONS": "false"}).layout().photo_caption is None
    assert Settings.from_env({}).layout().photo_caption is not None
    props = build_layout(default_text_spec(), default_image_spec()).to_es_mapping()["mappings"]["properties"]
    assert props[PHOTO_CAPTION] == {"type": "text", "analyzer": "english"}


def test_the_indexer_writes_each_photo_s_reading_and_bm25_finds_it(tower_indexed, tower_space, sample_catalogue):
    layout, store, searcher = tower_indexed
    assert layout.photo_caption is not None
    lines = [json.loads(line) for line in sample_catalogue.read_text().splitlines()]
    sources = store.sources([p["id"] for p in lines])
    for product in lines[:5]:
        photo = Image.open(sample_catalogue.parent / product["image"]).convert("RGB")
        expected = " ".join(v for v in tower_space.read_photos(tower_space.embed_images([photo]))[0] if v)
        assert sources[product["id"]][PHOTO_CAPTION] == expected and expected

    # a product whose title names none of what its photo shows is found by the photo's words ...
    first = lines[0]
    runtime = IndexingRuntime(store, layout, searcher.text_space, tower_space, ImageLimits())
    item = {"id": "BARE", "title": "Zqx 4411", "image": first["image"]}
    report = process_batch([{"ref": "bare", "version": 1, "data": item}], runtime, images_root=str(sample_catalogue.parent))
    assert report.written == 1 and not report.errors
    caption = store.sources(["BARE"])["BARE"][PHOTO_CAPTION]
    assert caption == sources[first["id"]][PHOTO_CAPTION]
    assert "BARE" in [i for i, _ in store.bm25(caption, boosts={}, filters=[], size=100)]
    found = searcher.search(HybridQuery(text=caption, legs=("bm25",), size=100, fusion=FusionConfig(rank_window_size=100)))
    assert "BARE" in [h.id for h in found.hits]
    # ... and not where the caption field is weighed 0 (the title alone, as the protocol's BM25 row runs)
    assert "BARE" not in [i for i, _ in store.bm25(caption, boosts={PHOTO_CAPTION: 0.0}, filters=[], size=100)]
    # eval's protocol row "BM25" searches the title alone; "BM25 + photo captions" is the leg as the layout runs it
    table = run_strategies(searcher, [{"id": "q", "text": caption, "relevance": {"BARE": 2}}], sample_catalogue.parent,
                           tuple(s for s in STRATEGIES if s.legs == ("bm25",)))
    assert set(table["text"]) == {"BM25", "BM25, all words +2", "BM25 + photo captions", "BM25 + photo captions, all words +2"}
    assert table["text"]["BM25"]["R@100 fine"] == 0.0 and table["text"]["BM25 + photo captions"]["R@100 fine"] == 1.0
    # a product without a photo has no caption; one updated without its photo loses it
    process_batch([{"ref": "bare", "version": 2, "data": {"id": "BARE", "title": "Zqx 4411"}}], runtime)
    assert PHOTO_CAPTION not in store.sources(["BARE"])["BARE"]
    with pytest.raises(ValidationError, match="weigh every text field 0"):
        searcher.search(HybridQuery(text="red", legs=("bm25",), boosts={f.name: 0.0 for f in layout.text_fields}))


def test_a_field_weighed_zero_neither_scores_nor_matches(tmp_path, layout, text_space, image_space):
    """A field weighed 0 is as if the products did not have it (matches, term statistics, lengths):
    the embedded store scores as one without descriptions; the Elasticsearch body leaves it out."""
    products = [{"id": "A", "title": "Plain shirt", "description": "with a mauve collar"},
                {"id": "B", "title": "Mauve shirt"},
                {"id": "C", "title": "Mauve scarf", "description": "mauve mauve"},
                {"id": "D", "title": "Shirt in mauve and grey with a long name"}]
    stores = {}
    for name, described in (("with", True), ("without", False)):
        store = stores[name] = EmbeddedStore(tmp_path / f"{name}.sqlite", layout)
        items = [{"ref": p["id"], "version": 1, "data": p if described else {"id": p["id"], "title": p["title"]}} for p in products]
        process_batch(items, IndexingRuntime(store, layout, text_space, image_space, ImageLimits()))
    with_, without = stores["with"], stores["without"]
    for text in ("mauve shirt", "mauve", "collar", "grey shirt"):
        for bonus in (0.0, 2.0):
            title_only = with_.bm25(text, boosts={"description": 0.0}, filters=[], size=10, all_terms_boost=bonus)
            alone = without.bm25(text, boosts={}, filters=[], size=10, all_terms_boost=bonus)
            assert [i for i, _ in title_only] == [i for i, _ in alone]
            assert [s for _, s in title_only] == pytest.approx([s for _, s in alone])
    assert not with_.bm25("collar", boosts={"description": 0.0}, filters=[], size=10)
    assert [i for i, _ in with_.bm25("collar", boosts={}, filters=[], size=10)] == ["A"]
    # the description counts where it is weighed: A holds both words only with it, and gets the bonus then
    bonus = dict(with_.bm25("mauve shirt", boosts={}, filters=[], size=10, all_terms_boost=2.0))
    plain = dict(with_.bm25("mauve shirt", boosts={}, filters=[], size=10))
    assert bonus["A"] - plain["A"] == pytest.approx(2.0)
    # the other way round: the title weighed 0, only the descriptions match
    assert dict(with_.bm25("mauve", boosts={"title": 0.0}, filters=[], size=10)).keys() == {"A", "C"}
    for store in stores.values():
        store.close()

    assert text_fields(layout, {"description": 0.0}) == ["title^2.0"]
    body = bm25_query("mauve shirt", layout, {"description": 0.0}, all_terms_boost=2.0)
    assert [c.get("multi_match", c.get("constant_score", {}).get("filter", {}).get("multi_match"))["fields"]
            for c in body["bool"]["should"]] == [["title^2.0"], ["title^2.0"]]



def test_caption_accuracy_is_the_share_of_photos_read_as_their_own_value(tower_space):
    from evaluation.harness import caption_accuracy

    vocabulary = tower_space.vocabulary()
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, tower_space.dims)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    read = tower_space.read_photos(images)  # the reading captions are written with (the trained reader, if any)
    products = [dict(zip(vocabulary.fields, r)) for r in read]
    assert caption_accuracy(tower_space, products, images) == {f: 1.0 for f in vocabulary.fields}
    products[0] = {**products[0], "colour": "Not A Colour"}
    products[1] = {**products[1], "gender": None}  # not judged: left out of the share
    shares = caption_accuracy(tower_space, products, images)
    assert shares["colour"] == pytest.approx(7 / 8) and shares["gender"] == 1.0 and shares["article_type"] == 1.0
