"""Fitting a photo reader (``hybrid_core.photo_reader``) for an image space, from a labelled catalogue.

Each product's photo is loaded as the indexer loads it (``hybrid_core.images.load_image``, the same
limits) and embedded in the space, with the space's own transform; its labels are the product's
values of the vocabulary's facets. A photo that cannot be read is left out and counted, as the
indexer would refuse it, so one bad file never stops a fit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_core.errors import ConfigError
from hybrid_core.images import load_image
from hybrid_core.photo_reader import PhotoReader
from hybrid_core.spaces import EmbeddingSpace
from hybrid_core.vocabulary import facet_value

BATCH = 256


@dataclass
class ReaderFit:
    reader: PhotoReader
    photos: int
    unreadable: list[str]  # "<product id>: <why>"


def fit_photo_reader(
    space: EmbeddingSpace, products: Sequence[Mapping[str, Any]], images_root: Path, *, source: str = "",
    progress: Callable[[int], None] | None = None,
) -> ReaderFit:
    """A reader of ``space``'s vocabulary facets, fitted on ``products``' photos."""
    vocabulary = space.vocabulary()
    if vocabulary is None:
        raise ConfigError(f"space {space.name!r} has no photo vocabulary: a reader reads a vocabulary's facets")
    with_photo = [p for p in products if isinstance(p.get("image"), str) and p["image"]]
    vectors, labels, unreadable = [], [], []
    for start in range(0, len(with_photo), BATCH):
        images, rows = [], []
        for product in with_photo[start : start + BATCH]:
            try:
                images.append(load_image(product["image"], root=images_root).image)
            except (OSError, ValueError) as exc:
                unreadable.append(f"{product.get('id', '?')}: {exc}")
                continue
            rows.append(tuple(facet_value(product, f) for f in vocabulary.fields))
        if images:
            vectors.append(space.embed_images(images))
            labels.extend(rows)
        if progress:
            progress(len(with_photo[start : start + BATCH]))
    if not labels:
        raise ConfigError(f"no readable photo among {len(products):,} products: nothing to fit a reader on")
    reader = PhotoReader.fit(np.concatenate(vectors), labels, vocabulary.fields, model_id=space.model_id, source=source)
    return ReaderFit(reader, len(labels), unreadable)
