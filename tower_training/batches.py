"""Batches of look-alike titles, so in-batch negatives teach the distinctions random batches rarely show.

In a random batch of 256 catalogue photos, a "Women Red Kurta" competes mostly with shoes and
watches: the loss is low long before the tower tells red from maroon or men's from women's shirts,
and those are what fine-grained queries and own-photo retrieval turn on. Composing each batch of
groups of title neighbours (an anchor plus a few of its nearest, not-identical titles) puts those
distinctions into every step. Identical titles are left out of the neighbour pool: they are
positives of each other (see ``contrastive_loss``), not hard negatives.
"""

from __future__ import annotations

import torch


def title_neighbours(vectors: torch.Tensor, pool: int, *, same_above: float, chunk: int = 2048) -> torch.Tensor:
    """``[n, pool]`` indices of each title's nearest titles, excluding itself and any whose cosine
    similarity is above ``same_above`` (unit rows in ``vectors``)."""
    pool = min(pool, len(vectors) - 1)
    rows = []
    for start in range(0, len(vectors), chunk):
        sims = vectors[start : start + chunk] @ vectors.T
        sims.masked_fill_(sims > same_above, float("-inf"))
        own = torch.arange(start, start + len(sims))
        sims[torch.arange(len(sims)), own] = float("-inf")
        rows.append(sims.topk(pool, dim=1).indices)
    return torch.cat(rows)


def neighbour_batch(anchors: torch.Tensor, neighbours: torch.Tensor, group: int, generator: torch.Generator) -> torch.Tensor:
    """Each anchor followed by ``group - 1`` of its neighbours drawn without replacement; an item
    drawn twice into one batch (two anchors sharing a neighbour) is kept once, since two copies of
    one photo would be scored as each other's negatives."""
    if group <= 1:
        return anchors
    draw = torch.rand(len(anchors), neighbours.shape[1], generator=generator).argsort(dim=1)[:, : group - 1]
    picked = neighbours[anchors].gather(1, draw)
    batch = torch.cat([anchors.unsqueeze(1), picked], dim=1).flatten()
    first = torch.zeros(len(batch), dtype=torch.bool)
    seen: set[int] = set()
    for i, item in enumerate(batch.tolist()):
        if item not in seen:
            seen.add(item)
            first[i] = True
    return batch[first]
