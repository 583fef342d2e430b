"""What photo captions cost the indexer: reading a batch's image vectors facet by facet
(``EmbeddingSpace.read_photos``: the space's trained photo reader, else its vocabulary zero-shot), as
``indexer/pipeline.py`` does on every write, against encoding the same batch's photos.

Random unit vectors stand in for the image vectors (the reading costs the same for any vector); the
photo encoding is timed on the sample catalogue's photos, repeated to fill the batch.

    python benchmarks/photo_captions.py [--batch 128] [--repeats 20] [--zero-shot]

``--zero-shot`` reads through the vocabulary's phrases even where the space has a trained photo reader
(the reading before readers, and any space without one).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import click


@click.command()
@click.option("--batch", type=int, default=128, show_default=True, help="Products per batch (the worker's default).")
@click.option("--repeats", type=int, default=20, show_default=True)
@click.option("--zero-shot", is_flag=True, help="Read through the vocabulary's phrases, not the space's photo reader.")
def main(batch: int, repeats: int, zero_shot: bool) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    from PIL import Image

    from hybrid_core.config import Settings
    from hybrid_core.sample_catalogue import write_sample_catalogue

    _, space = Settings.from_env().embedding_spaces()
    if space is None or space.vocabulary() is None:
        raise click.ClickException("the configured image space has no photo vocabulary: no captions to time")
    if zero_shot:
        from dataclasses import replace

        from hybrid_core.spaces import EmbeddingSpace

        space = EmbeddingSpace(replace(space.spec, photo_reader=None))
    vocabulary = space.vocabulary()
    reading = "trained reader" if space.photo_reader() is not None else f"{len(vocabulary.rows):,} phrases, zero-shot"
    vectors = np.random.default_rng(0).normal(size=(batch, space.dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def read() -> None:
        for row in space.read_photos(vectors):
            " ".join(v for v in row if v)

    with tempfile.TemporaryDirectory() as tmp:
        catalogue = write_sample_catalogue(Path(tmp))
        photos = sorted((catalogue.parent / "images").glob("*.png"))
        images = [Image.open(photos[i % len(photos)]).convert("RGB") for i in range(batch)]

    def encode() -> None:
        space.embed_images(images)

    timings = {}
    for name, step, times in (("captions", read, repeats), ("photo encoding", encode, max(3, repeats // 5))):
        step()  # warm-up
        runs = []
        for _ in range(times):
            start = time.perf_counter()
            step()
            runs.append(time.perf_counter() - start)
        timings[name] = statistics.median(runs)
    click.echo(f"`python benchmarks/photo_captions.py --batch {batch} --repeats {repeats}{' --zero-shot' if zero_shot else ''}`, {reading}")
    for name, seconds in timings.items():
        click.echo(f"{name}: {seconds * 1000:.1f} ms per batch of {batch} ({seconds / batch * 1e6:.0f} us per product)")
    click.echo(f"captions / photo encoding: {timings['captions'] / timings['photo encoding']:.3f}")


if __name__ == "__main__":
    main()
