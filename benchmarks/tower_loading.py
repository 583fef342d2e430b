"""What loading the tower's training photos costs in time and peak memory: the loader
(``tower_training.data.load_images``: one preallocated tensor of bytes, normalized per batch)
against the two it replaced, a preallocated float32 tensor and, before that, a stacked list of
per-photo float32 tensors. Each runs in its own process, so each peak RSS is its own; loading is
where a training run's memory peaks (every photo held at the tower's input size).

    python benchmarks/tower_loading.py --catalogue ../shared/data/myntra/catalogue.jsonl [--limit N]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click


def _load(catalogue: str, limit: int | None, how: str) -> dict:
    import torch

    from hybrid_core.spaces import EmbeddingSpace
    from tower_training.data import load_images, read_split
    from tower_training.train import TrainConfig, tower_model_config, tower_spec

    products = read_split(Path(catalogue), "train")[:limit]
    with tempfile.TemporaryDirectory() as tmp:  # a model config's file name is its model name
        config_path = Path(tmp) / "catalogue-tower.json"
        config_path.write_text(json.dumps(tower_model_config(TrainConfig(catalogue, tmp))))
        _, preprocess = EmbeddingSpace(tower_spec(None, model_config=config_path)).load().open_clip_model()
    root = Path(catalogue).parent
    start = time.perf_counter()
    if how == "bytes":
        photos = load_images(products, root, preprocess)
        images = photos.stored
        # reading it back costs a division and a normalization per batch: time one epoch's worth
        read_start = time.perf_counter()
        for i in range(0, len(photos), 256):
            photos[i : i + 256]
        read_s = time.perf_counter() - read_start
    elif how == "float32":  # the loader before bytes: float32 as transformed, preallocated
        from PIL import Image

        images = None
        for i, product in enumerate(products):
            with Image.open(root / product["image"]) as img:
                tensor = preprocess(img.convert("RGB"))
            if images is None:
                images = torch.empty((len(products), *tensor.shape), dtype=tensor.dtype)
            images[i] = tensor
    else:  # the loader before that: one tensor per photo, stacked at the end
        from PIL import Image

        tensors = []
        for product in products:
            with Image.open(root / product["image"]) as img:
                tensors.append(preprocess(img.convert("RGB")))
        images = torch.stack(tensors)
    seconds = time.perf_counter() - start - (read_s if how == "bytes" else 0.0)
    return {"how": how, "epoch_read_s": read_s if how == "bytes" else None, "photos": len(products), "tensor_mb": images.numel() * images.element_size() / 2**20,
            "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


@click.command()
@click.option("--catalogue", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--limit", type=int, default=None, help="Only the first N train products.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Also write the figures as JSON.")
@click.option("--child", type=click.Choice(["bytes", "float32", "stacked"]), hidden=True)
def main(catalogue, limit, out_file, child) -> None:
    if child:
        click.echo(json.dumps(_load(catalogue, limit, child)))
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rows = []
    for how in ("bytes", "float32", "stacked"):
        args = [sys.executable, __file__, "--catalogue", catalogue, "--child", how] + (["--limit", str(limit)] if limit else [])
        out = subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        read = f", every photo read back normalized in 256-photo batches in {r['epoch_read_s']:.1f} s" if r["epoch_read_s"] is not None else ""
        click.echo(f"{how:8s} {r['photos']} photos, tensor {r['tensor_mb']:,.0f} MB: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:,.0f} MB{read}")
    for other in rows[1:]:
        click.echo(f"peak RSS, bytes / {other['how']}: {rows[0]['peak_rss_mb'] / other['peak_rss_mb']:.2f}")
    if out_file:
        Path(out_file).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
