"""What loading the tower's training photos costs in time and peak memory: the preallocated loader
(``tower_training.data.load_images``) against stacking a list of per-photo tensors, the way it
loaded before. Each runs in its own process, so each peak RSS is its own; loading is where a
training run's memory peaks (every photo held as float32 at the tower's input size).

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
    if how == "preallocated":
        images = load_images(products, root, preprocess)
    else:  # the previous loader: one tensor per photo, stacked at the end
        from PIL import Image

        tensors = []
        for product in products:
            with Image.open(root / product["image"]) as img:
                tensors.append(preprocess(img.convert("RGB")))
        images = torch.stack(tensors)
    seconds = time.perf_counter() - start
    return {"how": how, "photos": len(products), "tensor_mb": images.numel() * images.element_size() / 2**20,
            "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


@click.command()
@click.option("--catalogue", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--limit", type=int, default=None, help="Only the first N train products.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Also write the figures as JSON.")
@click.option("--child", type=click.Choice(["preallocated", "stacked"]), hidden=True)
def main(catalogue, limit, out_file, child) -> None:
    if child:
        click.echo(json.dumps(_load(catalogue, limit, child)))
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rows = []
    for how in ("preallocated", "stacked"):
        args = [sys.executable, __file__, "--catalogue", catalogue, "--child", how] + (["--limit", str(limit)] if limit else [])
        out = subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        click.echo(f"{how:13s} {r['photos']} photos, tensor {r['tensor_mb']:,.0f} MB: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:,.0f} MB")
    click.echo(f"peak RSS, preallocated / stacked: {rows[0]['peak_rss_mb'] / rows[1]['peak_rss_mb']:.2f}")
    if out_file:
        Path(out_file).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
