"""Attribute captions: a second text view of each training photo, built from the catalogue's own fields.

A title such as "Puma Men's Toe Crusher Black T-shirt" mixes what a photo shows (a black men's
T-shirt) with what it cannot (the brand's model name). Pulling the photo toward the title's MiniLM
vector alone spends the tower's capacity on the second part, which does not generalize. A caption
joined from structured fields of the same product ("Men Black Tshirts") is a target the photo can
actually predict, and it sits in the same MiniLM space as a shopper's query. Only the train split's
fields are read: they are training labels like the titles, never a test product's judgment.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def attribute_caption(product: dict, fields: Sequence[str]) -> str | None:
    """The product's non-empty ``fields`` joined in order, or ``None`` when it has none of them."""
    parts = [str(product[f]).strip() for f in fields if product.get(f) not in (None, "") and str(product[f]).strip()]
    return " ".join(parts) or None


def caption_index(products: Sequence[dict], fields: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """The distinct captions and, per product, the index of its own (``-1``: the product has none).

    Products with the same caption share one row, so identical captions are positives of each
    other in the loss (as identical titles are) and each is encoded once."""
    captions: dict[str, int] = {}
    index = []
    for product in products:
        caption = attribute_caption(product, fields)
        index.append(-1 if caption is None else captions.setdefault(caption, len(captions)))
    return list(captions), torch.tensor(index, dtype=torch.long)
