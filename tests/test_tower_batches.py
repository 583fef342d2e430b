"""Look-alike batches for the image tower: the neighbour pool and the batch composition (pure tensors)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tower_training.batches import neighbour_batch, title_neighbours


def _vectors() -> torch.Tensor:
    # 0 and 1 identical titles; 2 close to 0; 3 a little further; 4 and 5 elsewhere
    raw = torch.tensor(
        [
            [1.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [1.0, 0.3, 0.0],
            [1.0, 0.8, 0.0],
            [0.0, 0.0, 1.0],
            [0.0, 0.5, 1.0],
        ]
    )
    return F.normalize(raw, dim=1)


def test_neighbours_are_nearest_first_and_skip_self_and_identical_titles():
    neighbours = title_neighbours(_vectors(), 2, same_above=0.97, chunk=4)  # chunk < n: rows from two chunks
    assert neighbours.shape == (6, 2)
    assert neighbours[0].tolist() == [2, 3]  # not itself, not its identical twin 1
    assert neighbours[1].tolist() == [2, 3]
    assert neighbours[4].tolist()[0] == 5 and neighbours[5].tolist()[0] == 4
    for i, row in enumerate(neighbours.tolist()):
        assert i not in row


def test_the_pool_shrinks_to_what_the_data_has():
    assert title_neighbours(_vectors()[:3], 20, same_above=0.97).shape == (3, 2)


def test_a_batch_is_each_anchor_then_its_look_alikes():
    generator = torch.Generator().manual_seed(0)
    nearest = title_neighbours(_vectors(), 1, same_above=0.97)
    assert neighbour_batch(torch.tensor([0, 4]), nearest, 2, generator).tolist() == [0, 2, 4, 5]
    pool = title_neighbours(_vectors(), 2, same_above=0.97)
    batch = neighbour_batch(torch.tensor([0]), pool, 3, generator).tolist()
    assert batch[0] == 0 and sorted(batch[1:]) == [2, 3]  # drawn without replacement


def test_group_one_is_the_plain_random_batch_and_draws_are_seeded():
    neighbours = title_neighbours(_vectors(), 3, same_above=0.97)
    anchors = torch.tensor([3, 1, 5])
    assert neighbour_batch(anchors, neighbours, 1, torch.Generator()).tolist() == [3, 1, 5]
    first = neighbour_batch(anchors, neighbours, 2, torch.Generator().manual_seed(7))
    again = neighbour_batch(anchors, neighbours, 2, torch.Generator().manual_seed(7))
    assert first.tolist() == again.tolist()


def test_shared_look_alikes_are_kept_once():
    # 0 and 1 share the pool {2, 3}: drawing both from each pool repeats them, kept once, in first-seen order
    neighbours = title_neighbours(_vectors(), 2, same_above=0.97)
    batch = neighbour_batch(torch.tensor([0, 1]), neighbours, 3, torch.Generator().manual_seed(0)).tolist()
    assert batch[0] == 0 and sorted(batch) == [0, 1, 2, 3] and batch.index(1) == 3
