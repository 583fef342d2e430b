"""Batched, per-sample augmentation suited to product photos.

Geometry (small scale, shift and rotation, horizontal flip) and light (brightness,
contrast) change; hue and saturation never do: colour is what a shopper asks for, so
an augmentation that turns a red kurta orange would teach the tower to ignore it.
All of it runs on the whole batch at once (one ``affine_grid``), so it costs little
next to the model on a CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(images: torch.Tensor, generator: torch.Generator, *, strength: float = 1.0) -> torch.Tensor:
    """``images``: normalized float ``[n, 3, h, w]``; returns a new tensor of the same shape."""
    n = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    scale = uniform(1.0 - 0.15 * strength, 1.0 + 0.05 * strength)
    angle = uniform(-6.0, 6.0) * strength * math.pi / 180
    shift_x = uniform(-0.08, 0.08) * strength
    shift_y = uniform(-0.08, 0.08) * strength
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift_x], dim=1), torch.stack([sin * flip, cos, shift_y], dim=1)], dim=1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # padding with the batch's own border colour would leak; product photos sit on white/grey,
    # and zeros in normalized space are a neutral grey
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    brightness = uniform(-0.15, 0.15).view(n, 1, 1, 1) * strength
    contrast = uniform(1 - 0.15 * strength, 1 + 0.15 * strength).view(n, 1, 1, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + brightness
    # random erasing of one small patch in a quarter of the images (occlusion, logos, tags)
    h, w = images.shape[2], images.shape[3]
    erase = torch.rand(n, generator=generator) < 0.25 * strength
    if erase.any():
        ph, pw = max(1, h // 5), max(1, w // 5)
        ys = torch.randint(0, h - ph + 1, (n,), generator=generator)
        xs = torch.randint(0, w - pw + 1, (n,), generator=generator)
        for i in torch.nonzero(erase).flatten().tolist():
            out[i, :, ys[i] : ys[i] + ph, xs[i] : xs[i] + pw] = 0.0
    return out
