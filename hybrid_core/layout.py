"""The field layout: the one definition of a product document, for writer, reader and stores.

``mappings/products.json`` is this layout rendered for the default models
(``hybrid-search mappings`` prints it; a test keeps the file and the code equal).
Each vector field is tied to the space that fills it, so a store can refuse a
vector of the wrong dims or from another model instead of mixing spaces silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_core.errors import LayoutError
from hybrid_core.spaces import SpaceSpec

LAYOUT_VERSION = 1


@dataclass(frozen=True)
class TextField:
    """A BM25 field; ``boost`` is its default weight in the BM25 leg. ``source``: what fills it, the
    product's own ``text`` or, for ``photo_caption``, the product's photo read in the image space's
    vocabulary (``"photo:<vocabulary>"``, ``"photo:<vocabulary>+<photo reader>"``, see ``PHOTO_CAPTION``)."""

    name: str
    boost: float = 1.0
    source: str = "text"

    @property
    def from_photo(self) -> bool:
        return self.source.startswith("photo:")


@dataclass(frozen=True)
class AttributeField:
    """A filterable attribute: ``keyword`` (exact match) or a number (range)."""

    name: str
    type: str = "keyword"  # keyword | float | integer

    @property
    def numeric(self) -> bool:
        return self.type in ("float", "integer")


@dataclass(frozen=True)
class VectorField:
    """A dense vector field filled by one space (``source``: what is embedded)."""

    name: str
    space: str
    dims: int
    model_id: str
    source: str  # "text" | "image" | "text+image"
    similarity: str = "cosine"

    def check(self, vector: np.ndarray, *, space: str, model_id: str, item: str = "") -> None:
        """Refuse a vector of other dims or from another model, naming both."""
        who = f"{item}: " if item else ""
        if space != self.space or model_id != self.model_id:
            raise LayoutError(
                f"{who}{self.name} holds vectors of space {self.space!r} ({self.model_id}), "
                f"got one from space {space!r} ({model_id})"
            )
        if vector.ndim != 1 or vector.shape[0] != self.dims:
            raise LayoutError(f"{who}{self.name} has {self.dims} dims, got a vector of shape {vector.shape}")
        if not np.all(np.isfinite(vector)):
            raise LayoutError(f"{who}{self.name}: vector has NaN or infinite values")


TEXT_FIELDS = (TextField("title", 2.0), TextField("description", 1.0))
# The photo's words as a BM25 field: each product's photo read in the image space's vocabulary, facet by
# facet ("Women Green Kurtas"), written by the indexer next to the title. Marketplace titles often leave
# out what the photo shows (half the sparse variant's titles lost their colour and type words); the
# caption lets BM25 and its all-words bonus find those products by the words a shopper types. It is
# weighed below the title, which the seller wrote and which wins where the two disagree (the tower reads
# a test photo's article type right 82 % of the time, its colour 65 %, its gender 82 %: docs/evaluation.md).
PHOTO_CAPTION = "photo_caption"
PHOTO_CAPTION_BOOST = 1.0
ATTRIBUTE_FIELDS = (
    AttributeField("brand"),
    AttributeField("master_category"),
    AttributeField("sub_category"),
    AttributeField("article_type"),
    AttributeField("colour"),
    AttributeField("usage"),
    AttributeField("gender"),
    AttributeField("season"),
    AttributeField("price", "float"),
    AttributeField("year", "integer"),
)


@dataclass(frozen=True)
class FieldLayout:
    """Text, attribute and vector fields of the product index."""

    text_fields: tuple[TextField, ...]
    attribute_fields: tuple[AttributeField, ...]
    vector_fields: tuple[VectorField, ...]
    spaces: dict[str, SpaceSpec] = field(hash=False, compare=False)
    # search-time synonym rules (``hybrid_core.synonyms``): not in the signature, since changing them
    # needs no reindexing (Elasticsearch applies them in the search analyzer only)
    synonyms: tuple[str, ...] = field(default=(), compare=False)

    def vector(self, name: str) -> VectorField:
        for vf in self.vector_fields:
            if vf.name == name:
                return vf
        raise LayoutError(f"no vector field {name!r}; the layout has {[v.name for v in self.vector_fields]}")

    def has_vector(self, name: str) -> bool:
        return any(vf.name == name for vf in self.vector_fields)

    def attribute(self, name: str) -> AttributeField:
        for af in self.attribute_fields:
            if af.name == name:
                return af
        raise LayoutError(f"no attribute field {name!r}; filterable fields are {[a.name for a in self.attribute_fields]}")

    @property
    def attribute_names(self) -> list[str]:
        return [a.name for a in self.attribute_fields]

    @property
    def photo_caption(self) -> TextField | None:
        """The text field the indexer fills with the photo's reading, if the layout has one."""
        return next((f for f in self.text_fields if f.from_photo), None)

    def signature(self) -> dict[str, Any]:
        """What must match between a store and the code that writes or reads it."""
        caption = self.photo_caption
        extra = {"photo_caption": caption.source} if caption else {}  # another vocabulary reads photos otherwise
        return {
            **extra,
            "layout_version": LAYOUT_VERSION,
            "text_fields": [f.name for f in self.text_fields],
            "attribute_fields": {a.name: a.type for a in self.attribute_fields},
            "vector_fields": {
                v.name: {"space": v.space, "dims": v.dims, "model_id": v.model_id, "source": v.source, "similarity": v.similarity}
                for v in self.vector_fields
            },
        }

    def differences(self, stored: dict[str, Any]) -> str:
        """What a stored signature (a store's or an index's ``_meta``) has otherwise than this layout,
        key by key ("text_fields: stored [...], this configuration [...]"); empty where they agree on
        every key this layout's signature holds, or the stored one does."""
        mine = self.signature()
        return "; ".join(f"{key}: stored {json.dumps(stored.get(key))}, this configuration {json.dumps(mine.get(key))}"
                         for key in sorted(set(mine) | set(stored) - {"text_boosts"}) if stored.get(key) != mine.get(key))

    def to_es_mapping(self) -> dict[str, Any]:
        """The index body (settings + mappings) for Elasticsearch 8.15+ and 9.x."""
        properties: dict[str, Any] = {
            "id": {"type": "keyword"},
            "version": {"type": "long"},
            "images": {"type": "keyword", "index": False},
            "text_hash": {"type": "keyword", "index": False},
            "image_hash": {"type": "keyword", "index": False},
            "indexed_at": {"type": "date"},
        }
        for tf in self.text_fields:
            properties[tf.name] = {"type": "text", "analyzer": "english"}
            if self.synonyms:
                properties[tf.name]["search_analyzer"] = SEARCH_ANALYZER
        properties["title"]["fields"] = {"keyword": {"type": "keyword", "ignore_above": 256}}
        for af in self.attribute_fields:
            properties[af.name] = {"type": af.type}
        for vf in self.vector_fields:
            properties[vf.name] = {
                "type": "dense_vector",
                "dims": vf.dims,
                "index": True,
                "similarity": vf.similarity,
                "index_options": {"type": "int8_hnsw"},
            }
        meta = self.signature()
        meta["text_boosts"] = {f.name: f.boost for f in self.text_fields}
        settings: dict[str, Any] = {"index": {"number_of_shards": 1, "number_of_replicas": 0}}
        if self.synonyms:
            settings["analysis"] = synonym_analysis(self.synonyms)
        return {"settings": settings, "mappings": {"dynamic": False, "_meta": meta, "properties": properties}}


SEARCH_ANALYZER = "english_synonyms"


def synonym_analysis(rules: tuple[str, ...]) -> dict[str, Any]:
    """Index analysis settings for a search analyzer that is the built-in ``english`` analyzer
    rebuilt (as Elastic's language-analyzer reference spells it out) with a ``synonym_graph``
    filter after lowercasing: the terms it makes are the ones ``english`` indexed, plus the
    synonyms' (rules are written as plain words; the stemmer after them stems them all)."""
    return {
        "filter": {
            "english_possessive_stemmer": {"type": "stemmer", "language": "possessive_english"},
            "english_stop": {"type": "stop", "stopwords": "_english_"},
            "english_stemmer": {"type": "stemmer", "language": "english"},
            "catalogue_synonyms": {"type": "synonym_graph", "synonyms": list(rules)},
        },
        "analyzer": {
            SEARCH_ANALYZER: {
                "tokenizer": "standard",
                "filter": ["english_possessive_stemmer", "lowercase", "catalogue_synonyms", "english_stop", "english_stemmer"],
            }
        },
    }


def build_layout(
    text_space: SpaceSpec, image_space: SpaceSpec | None, synonyms: tuple[str, ...] = (), *, photo_captions: bool = True
) -> FieldLayout:
    """The layout for a text space, an optional image space and search-time synonym rules; with
    ``photo_captions`` and an image space that has a photo vocabulary and a text tower to read it
    with, a ``photo_caption`` text field too."""
    vectors = [VectorField("text_vector", text_space.name, text_space.dims, text_space.model_id, "text")]
    spaces = {text_space.name: text_space}
    if image_space is not None:
        if image_space.name == text_space.name:
            raise LayoutError(f"the text and image spaces need different names, both are {text_space.name!r}")
        if not image_space.has_image:
            raise LayoutError(f"image space {image_space.name!r} ({image_space.kind}) has no image encoder")
        spaces[image_space.name] = image_space
        vectors.append(VectorField("image_vector", image_space.name, image_space.dims, image_space.model_id, "image"))
        if image_space.has_text:
            vectors.append(
                VectorField("product_vector", image_space.name, image_space.dims, image_space.model_id, "text+image")
            )
    text_fields = TEXT_FIELDS
    if photo_captions and image_space is not None and image_space.vocabulary and image_space.has_text:
        reader = f"+{Path(image_space.photo_reader).name}" if image_space.photo_reader else ""  # it reads photos otherwise
        text_fields += (TextField(PHOTO_CAPTION, PHOTO_CAPTION_BOOST, f"photo:{image_space.vocabulary}{reader}"),)
    return FieldLayout(text_fields, ATTRIBUTE_FIELDS, tuple(vectors), spaces, tuple(synonyms))
