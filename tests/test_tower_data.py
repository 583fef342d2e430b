"""The tower's photo loader: one preallocated tensor, in catalogue order, through the model's
transform, stored as bytes where that is exact and read back bit-identical to the transform."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from tower_training.data import Photos, load_images, split_normalize

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # OpenCLIP's


def _photos(tmp_path, colours, size=(6, 8)):
    products = []
    for i, colour in enumerate(colours):
        Image.new("RGB", size, colour).save(tmp_path / f"p{i}.png")
        products.append({"id": f"p{i}", "image": f"p{i}.png"})
    return products


def _noisy_photos(tmp_path, n, seed=0):
    """Photos with every byte value in play, so a resize interpolates and rounding would show."""
    rng = np.random.default_rng(seed)
    products = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (50, 37, 3), dtype=np.uint8)).save(tmp_path / f"n{i}.png")
        products.append({"id": f"n{i}", "image": f"n{i}.png"})
    return products


def _transformed(products, root, preprocess):
    out = []
    for p in products:
        with Image.open(root / p["image"]) as img:
            out.append(preprocess(img.convert("RGB")))
    return torch.stack(out)


def test_photos_land_in_order_with_the_transforms_shape(tmp_path):
    products = _photos(tmp_path, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    seen = []
    photos = load_images(products, tmp_path, transforms.Compose([transforms.Resize((4, 3)), transforms.ToTensor()]), seen.append)
    images = photos[:]
    assert len(photos) == 3 and images.shape == (3, 3, 4, 3) and images.dtype == torch.float32 and seen == [1, 1, 1]
    # each photo's own colour channel is full, the others empty: rows were not mixed up
    assert [int(images[i].mean(dim=(1, 2)).argmax()) for i in range(3)] == [0, 1, 2]
    assert torch.equal(images[1, 1], torch.ones(4, 3)) and float(images[1, 0].sum()) == 0.0


def test_an_openclip_style_transform_is_stored_as_bytes_and_read_back_bit_identical(tmp_path):
    products = _noisy_photos(tmp_path, 5)
    preprocess = transforms.Compose([transforms.Resize((16, 12)), transforms.CenterCrop((16, 12)), transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    photos = load_images(products, tmp_path, preprocess)
    expected = _transformed(products, tmp_path, preprocess)
    assert photos.stored.dtype == torch.uint8
    assert photos.nbytes * 4 == expected.numel() * expected.element_size()
    assert torch.equal(photos[:], expected)
    index = torch.tensor([4, 0, 2])
    assert torch.equal(photos[index], expected[index]) and torch.equal(photos[1:3], expected[1:3])


def test_the_packaged_towers_own_transform_is_stored_as_bytes_exactly(tmp_path):
    from hybrid_core.spaces import EmbeddingSpace
    from tower_training.train import TrainConfig, tower_model_config, tower_spec

    config_path = tmp_path / "catalogue-tower.json"  # a model config's file name is its model name
    config_path.write_text(json.dumps(tower_model_config(TrainConfig("unused", str(tmp_path)))))
    _, preprocess = EmbeddingSpace(tower_spec(None, model_config=config_path)).load().open_clip_model()
    products = _noisy_photos(tmp_path, 3, seed=1)
    photos = load_images(products, tmp_path, preprocess)
    assert photos.stored.dtype == torch.uint8
    assert torch.equal(photos[:], _transformed(products, tmp_path, preprocess))


def test_a_transform_that_is_not_bytes_is_kept_as_float(tmp_path):
    products = _noisy_photos(tmp_path, 3)
    preprocess = transforms.Compose([transforms.ToTensor(), transforms.Lambda(lambda x: x * 0.5 + 0.001)])
    photos = load_images(products, tmp_path, preprocess)
    assert photos.stored.dtype == torch.float32
    assert torch.equal(photos[:], _transformed(products, tmp_path, preprocess))


def test_one_photo_that_is_not_bytes_turns_the_store_float_without_changing_any_photo(tmp_path):
    products = _noisy_photos(tmp_path, 4)
    class Marked:
        """to_tensor, but one photo (the third) comes out not as bytes over 255."""

        def __init__(self):
            self.calls = 0

        def __call__(self, img):
            self.calls += 1
            tensor = transforms.functional.to_tensor(img)
            return tensor * 0.999 if self.calls == 3 else tensor

    marked = Marked()
    preprocess = transforms.Compose([marked, transforms.Normalize(MEAN, STD)])
    photos = load_images(products, tmp_path, preprocess)
    marked.calls = 0
    expected = _transformed(products, tmp_path, preprocess)
    assert photos.stored.dtype == torch.float32
    assert torch.equal(photos[:], expected)


def test_split_normalize_only_takes_a_final_normalize():
    normalize = transforms.Normalize(MEAN, STD)
    head, tail = split_normalize(transforms.Compose([transforms.ToTensor(), normalize]))
    assert tail is normalize and len(head.transforms) == 1
    plain = transforms.Compose([normalize, transforms.ToTensor()])
    assert split_normalize(plain) == (plain, None)


def test_reading_a_batch_does_not_alias_the_store():
    photos = Photos(torch.full((2, 3, 2, 2), 7.0))
    batch = photos[:]
    batch += 1
    assert float(photos.stored.max()) == 7.0


def test_no_photos_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no photos"):
        load_images([], tmp_path, transforms.ToTensor())
