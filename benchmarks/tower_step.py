"""What one training step of an image tower costs on this CPU, per architecture and input size:
the step `train-image-tower` runs (augmentation, the channels-last forward pass, the symmetric
InfoNCE loss, backward, AdamW), on a 256-photo batch of synthetic photos (the cost does not depend
on what the pixels show). A run's epoch is about 130 such steps plus validation, so this is what
decides how many epochs fit in the training budget.

    python benchmarks/tower_step.py [--arch mobilenetv3_small_100:128x96 --arch catalogue_resnet_small:80x64]
        [--precision fp32 --precision bf16]

``--precision bf16`` runs the forward pass under CPU autocast, as ``train-image-tower --precision
bf16`` does (``auto`` there picks it where the CPU has AMX tiles).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import click
from machine import describe as describe_machine  # benchmarks/machine.py, beside this script

DEFAULT = ("mobilenetv3_small_100:128x96", "catalogue_resnet_small:80x64")


def _step_seconds(architecture: str, size: tuple[int, int], precision: str, batch: int, warmup: int, steps: int) -> dict:
    import torch
    import torch.nn.functional as F

    from hybrid_core.spaces import EmbeddingSpace
    from tower_training.augment import augment
    from tower_training.train import TrainConfig, contrastive_loss, embed_for_training, tower_model_config, tower_spec

    with tempfile.TemporaryDirectory() as tmp:  # a model config's file name is its model name
        config = TrainConfig("unused.jsonl", tmp, architecture=architecture, image_size=size)
        path = Path(tmp) / "catalogue-tower.json"
        path.write_text(json.dumps(tower_model_config(config)))
        model, _ = EmbeddingSpace(tower_spec(None, model_config=path)).load().open_clip_model()
    visual = model.visual.to(memory_format=torch.channels_last).train()
    scale = torch.nn.Parameter(torch.tensor(2.66))
    optimizer = torch.optim.AdamW([*visual.parameters(), scale], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    photos = torch.randn(batch, 3, *size, generator=generator)
    targets = F.normalize(torch.randn(batch, 384, generator=generator), dim=-1)

    def step() -> None:
        images = augment(photos, generator).contiguous(memory_format=torch.channels_last)
        logits = scale.exp() * embed_for_training(visual, images, precision) @ targets.T
        loss = contrastive_loss(logits, targets @ targets.T > 0.97, multi_positive=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - started) / steps
    return {
        "architecture": architecture,
        "image_size": list(size),
        "precision": precision,
        "parameters": sum(p.numel() for p in visual.parameters()),
        "step_s": round(seconds, 3),
    }


def _has_amx() -> bool:
    import torch

    return bool(torch.cpu._is_amx_tile_supported())


@click.command()
@click.option("--arch", "archs", multiple=True, default=DEFAULT, show_default=True, help="ARCHITECTURE:HEIGHTxWIDTH, repeatable.")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(["fp32", "bf16"]), default=("fp32",), show_default=True,
              help="Repeatable: each architecture is timed at each.")
@click.option("--batch", type=int, default=256, show_default=True)
@click.option("--warmup", type=int, default=3, show_default=True)
@click.option("--steps", type=int, default=8, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default="benchmarks/results/tower_step.json", show_default=True)
def main(archs: tuple[str, ...], precisions: tuple[str, ...], batch: int, warmup: int, steps: int, threads: int, out: str) -> None:
    import torch

    torch.set_num_threads(threads)
    rows = []
    for spec in archs:
        architecture, _, size = spec.partition(":")
        height, width = (int(v) for v in size.lower().split("x"))
        for precision in precisions:
            row = _step_seconds(architecture, (height, width), precision, batch, warmup, steps)
            rows.append(row)
            click.echo(
                f"{architecture} at {height}x{width}, {precision}: {row['step_s']:.3f} s per {batch}-photo step, "
                f"{row['parameters'] / 1e6:.2f} M parameters"
            )
    base = rows[0]["step_s"]
    for row in rows:
        row["vs_first"] = round(row["step_s"] / base, 2)
    result = {
        "command": "python benchmarks/tower_step.py " + " ".join(sys.argv[1:]),
        "machine": describe_machine(), "batch": batch, "cpu_amx": _has_amx(), "threads": threads, "steps": steps, "rows": rows,
    }
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    click.echo(f"written: {out}")


if __name__ == "__main__":
    main()
