"""The training data: train-split photos through the tower's own eval transform, and frozen title vectors."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image


@dataclass
class TowerData:
    ids: list[str]
    titles: list[str]
    images: torch.Tensor  # [n, 3, h, w], normalized as the model's eval transform does
    text_vectors: torch.Tensor  # [n, 384], unit rows, frozen


def read_split(catalogue: Path, split: str) -> list[dict]:
    with catalogue.open() as lines:
        return [p for p in map(json.loads, lines) if p.get("split") == split]


def is_validation(product_id: str, fraction: float) -> bool:
    """A fixed slice of the train split, chosen by a hash of the id (stable across runs)."""
    digest = hashlib.sha256(f"val:{product_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def load_images(products: list[dict], root: Path, preprocess: Callable, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Every photo through ``preprocess``, written into one tensor allocated at the first photo's
    shape: stacking a list of them instead would hold every photo twice at the end of loading,
    which was most of a full run's peak memory (35k photos at 128x96 are 5.2 GB as float32)."""
    if not products:
        raise ValueError("no photos to load")
    images: torch.Tensor | None = None
    for i, product in enumerate(products):
        with Image.open(root / product["image"]) as img:
            tensor = preprocess(img.convert("RGB"))
        if images is None:
            images = torch.empty((len(products), *tensor.shape), dtype=tensor.dtype)
        images[i] = tensor
        if progress:
            progress(1)
    return images


def build(products: list[dict], root: Path, preprocess: Callable, text_vectors: np.ndarray, progress=None) -> TowerData:
    return TowerData(
        ids=[p["id"] for p in products],
        titles=[p["title"] for p in products],
        images=load_images(products, root, preprocess, progress),
        text_vectors=torch.from_numpy(np.asarray(text_vectors, dtype=np.float32)),
    )
