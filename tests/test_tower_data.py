"""The tower's photo loader: one preallocated tensor, in catalogue order, through the model's transform."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision import transforms

from tower_training.data import load_images


def _photos(tmp_path, colours):
    products = []
    for i, colour in enumerate(colours):
        Image.new("RGB", (6, 8), colour).save(tmp_path / f"p{i}.png")
        products.append({"id": f"p{i}", "image": f"p{i}.png"})
    return products


def test_photos_land_in_order_with_the_transforms_shape_and_dtype(tmp_path):
    products = _photos(tmp_path, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    seen = []
    images = load_images(products, tmp_path, transforms.Compose([transforms.Resize((4, 3)), transforms.ToTensor()]), seen.append)
    assert images.shape == (3, 3, 4, 3) and images.dtype == torch.float32 and seen == [1, 1, 1]
    # each photo's own colour channel is full, the others empty: rows were not mixed up
    assert [int(images[i].mean(dim=(1, 2)).argmax()) for i in range(3)] == [0, 1, 2]
    assert torch.equal(images[1, 1], torch.ones(4, 3)) and float(images[1, 0].sum()) == 0.0


def test_no_photos_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no photos"):
        load_images([], tmp_path, transforms.ToTensor())
