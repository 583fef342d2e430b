"""Attribute captions for the image tower: caption text, shared rows, and the loss term (pure tensors)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tower_training.captions import attribute_caption, caption_index
from tower_training.train import caption_loss, contrastive_loss

FIELDS = ("gender", "colour", "article_type")


def test_a_caption_joins_the_fields_present_in_order():
    assert attribute_caption({"gender": "Men", "colour": "Navy Blue", "article_type": "Socks"}, FIELDS) == "Men Navy Blue Socks"
    assert attribute_caption({"gender": None, "colour": " Red ", "article_type": "Kurtas"}, FIELDS) == "Red Kurtas"
    assert attribute_caption({"gender": "", "colour": None}, FIELDS) is None
    assert attribute_caption({"colour": "Red", "article_type": "Kurtas"}, ("article_type", "colour")) == "Kurtas Red"


def test_identical_captions_share_one_row_and_missing_ones_are_minus_one():
    products = [
        {"gender": "Men", "colour": "Black", "article_type": "Tshirts"},
        {"gender": "Women", "colour": "Red", "article_type": "Kurtas"},
        {"gender": None, "colour": None, "article_type": None},
        {"gender": "Men", "colour": "Black", "article_type": "Tshirts"},
    ]
    captions, index = caption_index(products, FIELDS)
    assert captions == ["Men Black Tshirts", "Women Red Kurtas"]
    assert index.tolist() == [0, 1, -1, 0]


def test_the_caption_loss_is_the_multi_positive_infonce_over_photos_that_have_a_caption():
    torch.manual_seed(0)
    embedded = F.normalize(torch.randn(5, 8), dim=1)
    captions = F.normalize(torch.randn(3, 8), dim=1)
    own = torch.tensor([0, 2, -1, 0, 1])
    scale = torch.tensor(math.log(10.0))
    has = own >= 0
    ids = own[has]
    by_hand = contrastive_loss(10.0 * embedded[has] @ captions[ids].T, ids[:, None] == ids[None, :], multi_positive=True)
    assert torch.allclose(caption_loss(embedded, own, captions, scale), by_hand)
    # photos 0 and 3 share a caption: each is a positive of the other's, so swapping them costs nothing
    swapped = own.clone()
    swapped[[0, 3]] = swapped[[3, 0]]
    assert torch.allclose(caption_loss(embedded, swapped, captions, scale), by_hand)
    # a photo moved onto its caption lowers the loss
    closer = embedded.clone()
    closer[1] = captions[2]
    assert caption_loss(closer, own, captions, scale) < by_hand


def test_a_batch_with_fewer_than_two_captions_adds_nothing_but_keeps_the_graph():
    embedded = F.normalize(torch.randn(3, 4), dim=1).requires_grad_()
    loss = caption_loss(embedded, torch.tensor([-1, 0, -1]), F.normalize(torch.randn(1, 4), dim=1), torch.tensor(2.0))
    assert loss.detach().item() == 0.0 and loss.requires_grad
    loss.backward()
    assert embedded.grad is not None
