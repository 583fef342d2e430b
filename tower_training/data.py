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
from torchvision import transforms


@dataclass(frozen=True)
class Photos:
    """Every photo as the tower's transform makes it, held as compactly as is exact.

    OpenCLIP's eval transform resizes on the PIL image, so what ``ToTensor`` hands on is a byte
    per channel divided by 255: those bytes are kept (a quarter of float32's memory: 0.54 GB
    instead of 2.2 GB for Myntra's 35k train photos at 80x64, 1.3 GB instead of 5.2 GB at 128x96) and each batch is divided and
    normalized as it is read, by the same operations in the same order, so a batch is
    bit-identical to running the transform. A transform whose output is not bytes over 255
    is kept as float32.
    """

    stored: torch.Tensor  # [n, 3, h, w]: uint8 (bytes before division by 255) or float32 (as transformed)
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None  # applied per batch to uint8 storage

    def __len__(self) -> int:
        return len(self.stored)

    def __getitem__(self, index) -> torch.Tensor:
        """The photos at ``index`` (a slice, an index tensor), normalized float as the transform gives them."""
        part = self.stored[index]
        if part.dtype != torch.uint8:
            return part.clone()
        part = part.float().div(255)
        return self.normalize(part) if self.normalize is not None else part

    @property
    def nbytes(self) -> int:
        return self.stored.numel() * self.stored.element_size()


@dataclass
class TowerData:
    ids: list[str]
    titles: list[str]
    images: Photos  # indexing gives normalized float [n, 3, h, w], as the model's eval transform does
    text_vectors: torch.Tensor  # [n, 384], unit rows, frozen


def read_split(catalogue: Path, split: str) -> list[dict]:
    with catalogue.open() as lines:
        return [p for p in map(json.loads, lines) if p.get("split") == split]


def is_validation(product_id: str, fraction: float) -> bool:
    """A fixed slice of the train split, chosen by a hash of the id (stable across runs)."""
    digest = hashlib.sha256(f"val:{product_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def split_normalize(preprocess: Callable) -> tuple[Callable, Callable | None]:
    """``preprocess`` as (everything before a final ``Normalize``, that ``Normalize``), so the
    pixels can be stored before normalization; ``(preprocess, None)`` when it does not end in one."""
    if isinstance(preprocess, transforms.Compose) and preprocess.transforms and isinstance(preprocess.transforms[-1], transforms.Normalize):
        return transforms.Compose(preprocess.transforms[:-1]), preprocess.transforms[-1]
    return preprocess, None


def _pil_head(to_pixels: Callable) -> Callable | None:
    """The part of ``to_pixels`` before a final ``ToTensor`` (whose output is the image's bytes over
    255), so the bytes can be taken straight from the PIL image; ``None`` when it does not end so."""
    if isinstance(to_pixels, transforms.Compose) and to_pixels.transforms and isinstance(to_pixels.transforms[-1], transforms.ToTensor):
        return transforms.Compose(to_pixels.transforms[:-1])
    return None


def _pil_bytes(img) -> torch.Tensor | None:
    """An 8-bit RGB PIL image as ``[3, h, w]`` uint8, the layout ``ToTensor`` gives it; ``None`` otherwise."""
    if not isinstance(img, Image.Image) or img.mode != "RGB":
        return None
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _as_bytes(pixels: torch.Tensor) -> torch.Tensor | None:
    """``pixels`` as uint8 if dividing those bytes by 255 gives back exactly ``pixels``, else ``None``."""
    if pixels.dtype == torch.uint8:
        return pixels
    if pixels.dtype != torch.float32:
        return None
    stored = (pixels * 255).round().clamp(0, 255).to(torch.uint8)
    return stored if torch.equal(stored.float().div(255), pixels) else None


def load_images(products: list[dict], root: Path, preprocess: Callable, progress: Callable[[int], None] | None = None) -> Photos:
    """Every photo through ``preprocess``, written into one tensor allocated at the first photo's
    shape (stacking a list would hold every photo twice at the end of loading), as bytes while
    every photo so far is exactly bytes over 255 (``Photos``); the first that is not turns the
    store into float32 from there on, normalized as ``preprocess`` would."""
    if not products:
        raise ValueError("no photos to load")
    to_pixels, normalize = split_normalize(preprocess)
    head = _pil_head(to_pixels)
    images: torch.Tensor | None = None
    for i, product in enumerate(products):
        with Image.open(root / product["image"]) as img:
            # the common case: bytes straight from the resized image, no float round trip to check
            before = head(img.convert("RGB")) if head is not None else None
            pixels = _pil_bytes(before)
            if pixels is not None:
                pixels = pixels.float().div(255) if images is not None and images.dtype != torch.uint8 else pixels
            elif before is not None:
                pixels = to_pixels.transforms[-1](before)
            else:
                pixels = to_pixels(img.convert("RGB"))
        if images is None:
            compact = _as_bytes(pixels) is not None
            images = torch.empty((len(products), *pixels.shape), dtype=torch.uint8 if compact else torch.float32)
        if images.dtype == torch.uint8:
            as_bytes = _as_bytes(pixels)
            if as_bytes is not None:
                images[i] = as_bytes
            else:  # rare: a photo the transform did not leave as bytes; keep every photo exact
                so_far = Photos(images[:i], normalize)[:]
                images = torch.empty((len(products), *pixels.shape), dtype=torch.float32)
                images[:i] = so_far
        if images.dtype != torch.uint8:
            images[i] = normalize(pixels) if normalize is not None else pixels
        if progress:
            progress(1)
    return Photos(images, normalize)


def build(products: list[dict], root: Path, preprocess: Callable, text_vectors: np.ndarray, progress=None) -> TowerData:
    return TowerData(
        ids=[p["id"] for p in products],
        titles=[p["title"] for p in products],
        images=load_images(products, root, preprocess, progress),
        text_vectors=torch.from_numpy(np.asarray(text_vectors, dtype=np.float32)),
    )
