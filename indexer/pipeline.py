"""One batch of catalogue updates: validate, load images, encode per model pass, write once.

Independent of Celery so it can be called (and tested) directly; the task in
``indexer.tasks`` is a thin wrapper that adds acknowledgement and retries.

Per batch: each item is validated on its own (a bad one becomes an
``ItemErrorRecord``, the others go on); the newest version of an id within the batch
wins; ids the store already holds at a newer version are dropped before any
encoding; inputs whose content hash is unchanged keep their stored vectors; every
model runs one pass over the whole batch; the store gets one ``write`` call.

Photos are read and decoded in a helper thread while the text model runs (both
release the GIL), so reading them costs the batch almost nothing.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_core.errors import ItemError
from hybrid_core.images import ImageLimits, load_image
from hybrid_core.layout import FieldLayout
from hybrid_core.products import Product, Update, image_hash, parse_update
from hybrid_core.spaces import EmbeddingSpace, shares_text_tower
from hybrid_core.stores.base import ExistingDoc, ItemErrorRecord, Store, StoredDoc
from hybrid_core.vectors import unit

log = logging.getLogger(__name__)


@dataclass
class IndexingRuntime:
    """What a worker process holds for its lifetime: the store and the (lazily loaded) models."""

    store: Store
    layout: FieldLayout
    text_space: EmbeddingSpace
    image_space: EmbeddingSpace | None
    limits: ImageLimits = field(default_factory=ImageLimits)


@dataclass
class BatchReport:
    """Counts per outcome, plus the bad items (also written to the store's error list)."""

    written: int = 0
    deleted: int = 0
    stale: int = 0
    reused_vectors: int = 0
    errors: list[ItemErrorRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "deleted": self.deleted,
            "stale": self.stale,
            "reused_vectors": self.reused_vectors,
            "errors": len(self.errors),
        }


@dataclass
class _Pending:
    update: Update
    text_hash: str
    image_hash: str | None = None
    images: list[Any] = field(default_factory=list)
    previous: ExistingDoc | None = None
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    reused: bool = True  # every vector came from the store (nothing encoded)

    @property
    def product(self) -> Product:
        assert self.update.product is not None
        return self.update.product

    def reusable(self, name: str, current_hash: str | None, stored_hash: str | None) -> np.ndarray | None:
        if self.previous is None or self.previous.deleted or current_hash != stored_hash:
            return None
        return self.previous.vectors.get(name)


def process_batch(
    items: list[dict[str, Any]],
    runtime: IndexingRuntime,
    *,
    images_root: str | None = None,
    title_field: str = "title",
    task_id: str | None = None,
) -> BatchReport:
    """Index one batch; bad items are recorded, the rest is written in one store call."""
    report = BatchReport()
    layout, store = runtime.layout, runtime.store
    text_space, image_space = runtime.text_space, runtime.image_space

    def fail(where: str, reason: str, update: Update | None = None) -> None:
        report.errors.append(
            ItemErrorRecord(where, reason, update.id if update else None, update.version if update else None, task_id)
        )

    newest: dict[str, Update] = {}
    for item in items:
        try:
            update = parse_update(item, layout, title_field=title_field)
        except ItemError as exc:
            fail(exc.item, exc.reason)
            continue
        kept = newest.get(update.id)
        if kept is not None and update.version == kept.version:
            if (update.op, update.product) == (kept.op, kept.product):
                continue  # the same update delivered twice (queues deliver at least once)
            # two different items claim the same version of one product: which is right cannot be known
            fail(update.ref, f"duplicate: product {update.id} version {update.version} is also in {kept.ref} of this batch; "
                             f"the first is kept", update)
            continue
        if kept is None or update.version > kept.version:
            newest[update.id] = update

    existing = store.existing(list(newest))
    model_ids = [text_space.model_id] + ([image_space.model_id] if image_space else [])
    image_model_ids = [image_space.model_id] if image_space else []
    pending: list[_Pending] = []
    deletes: list[tuple[str, int]] = []
    root = Path(images_root) if images_root else None
    for update in newest.values():
        previous = existing.get(update.id)
        if previous is not None and previous.version > update.version:
            report.stale += 1
            continue
        if update.op == "delete":
            deletes.append((update.id, update.version))
            continue
        pending.append(_Pending(update, update.product.text_hash(model_ids), previous=previous))  # type: ignore[union-attr]

    with_images = [p for p in pending if image_space is not None and p.product.images]
    photos: Future | None = None
    if with_images:
        photos = _photo_reader().submit(_read_photos, with_images, root, runtime.limits, image_model_ids)
    try:
        _encode_text(pending, text_space)
    finally:
        failed = photos.result() if photos is not None else {}
    for entry in pending:
        if id(entry) in failed:
            fail(entry.update.ref, failed[id(entry)], entry.update)
    pending = [p for p in pending if id(p) not in failed]
    if image_space is not None:
        _encode_images(pending, text_space, image_space)
    report.reused_vectors += sum(1 for p in pending if p.reused)
    captions = _photo_captions(pending, layout, image_space)

    docs = [
        StoredDoc(
            id=p.product.id,
            version=p.product.version,
            source={**p.product.source(), **captions.get(id(p), {})},
            vectors=p.vectors,
            spaces={name: (layout.vector(name).space, layout.vector(name).model_id) for name in p.vectors},
            text_hash=p.text_hash,
            image_hash=p.image_hash,
        )
        for p in pending
    ]
    outcome = store.write(docs, deletes)
    report.written += outcome.count("written")
    report.deleted += outcome.count("deleted")
    report.stale += outcome.count("stale")
    store.record_errors(report.errors)
    return report


def _photo_captions(pending: list[_Pending], layout: FieldLayout, image_space: EmbeddingSpace | None) -> dict[int, dict[str, str]]:
    """Per entry with a photo, ``{"photo_caption": its reading}`` when the layout has that field: the
    photo vector read facet by facet (``EmbeddingSpace.read_photos``: the space's trained reader, else
    its vocabulary zero-shot). It is computed from the image vector on every write (one matrix product
    for the batch), so it never goes stale against a reused vector."""
    caption_field = layout.photo_caption
    with_photo = [p for p in pending if "image_vector" in p.vectors]
    read = (image_space.read_photos(np.stack([p.vectors["image_vector"] for p in with_photo]))
            if caption_field is not None and image_space is not None and with_photo else None)
    if read is None:
        return {}
    out = {}
    for p, row in zip(with_photo, read):
        caption = " ".join(v for v in row if v)
        if caption:
            out[id(p)] = {caption_field.name: caption}
    return out


_READERS: dict[int, ThreadPoolExecutor] = {}


def _photo_reader() -> ThreadPoolExecutor:
    """One reader thread per process (made after a worker forks, never inherited)."""
    reader = _READERS.get(os.getpid())
    if reader is None:
        reader = _READERS[os.getpid()] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="photo-reader")
    return reader


def _read_photos(entries: list[_Pending], root: Path | None, limits: ImageLimits, model_ids: list[str]) -> dict[int, str]:
    """Read and decode every entry's photos; returns why, for the entries whose photos failed."""
    failed: dict[int, str] = {}
    for entry in entries:
        try:
            loaded = [load_image(ref, root=root, limits=limits) for ref in entry.product.images]
        except ValueError as exc:
            failed[id(entry)] = str(exc)
            continue
        entry.images = [img.image for img in loaded]
        entry.image_hash = image_hash([img.content for img in loaded], model_ids)
    return failed


def _encode_text(pending: list[_Pending], text_space: EmbeddingSpace) -> None:
    """Text vectors: reuse unchanged ones, one model pass for the rest."""
    need_text: list[_Pending] = []
    for p in pending:
        vector = p.reusable("text_vector", p.text_hash, p.previous.text_hash if p.previous else None)
        if vector is not None:
            p.vectors["text_vector"] = vector
        else:
            need_text.append(p)
            p.reused = False
    if need_text:
        vectors = text_space.embed_texts([p.product.embedding_text for p in need_text])
        for p, vector in zip(need_text, vectors):
            p.vectors["text_vector"] = vector


def _encode_images(pending: list[_Pending], text_space: EmbeddingSpace, image_space: EmbeddingSpace) -> None:
    """Image and product vectors (photos already read): reuse unchanged ones, one pass for the rest."""
    need_cross: list[_Pending] = []
    need_image: list[_Pending] = []
    for p in pending:
        stored_image_hash = p.previous.image_hash if p.previous else None
        image_vector = p.reusable("image_vector", p.image_hash, stored_image_hash) if p.images else None
        if image_vector is not None:
            p.vectors["image_vector"] = image_vector
        elif p.images:
            need_image.append(p)
        product_vector = p.reusable("product_vector", p.text_hash, p.previous.text_hash if p.previous else None)
        if product_vector is not None and p.image_hash == stored_image_hash:
            p.vectors["product_vector"] = product_vector
        else:
            need_cross.append(p)
    for p in (*need_image, *need_cross):
        p.reused = False
    if need_image:
        flat = [img for p in need_image for img in p.images]
        image_vectors = image_space.embed_images(flat)
        start = 0
        for p in need_image:
            count = len(p.images)
            p.vectors["image_vector"] = unit(image_vectors[start : start + count].mean(axis=0))
            start += count
    if need_cross:
        if shares_text_tower(image_space, text_space):
            # the image space's text tower is the text model: its vectors are already here
            cross = [p.vectors["text_vector"] for p in need_cross]
        else:
            cross = image_space.embed_texts([p.product.embedding_text for p in need_cross])
        for p, text_in_image_space in zip(need_cross, cross):
            image_vector = p.vectors.get("image_vector")
            combined = text_in_image_space if image_vector is None else text_in_image_space + image_vector
            p.vectors["product_vector"] = unit(combined)
