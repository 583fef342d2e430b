"""The trained photo reader: linear heads per vocabulary facet over one space's photo vectors, which the
captions and the photo_words leg read through in place of the zero-shot reading."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hybrid_core.errors import ConfigError
from hybrid_core.photo_reader import PhotoReader
from hybrid_core.spaces import (
    MODEL_WEIGHTS_DIR,
    PACKAGED_TOWER,
    TOWER_READER,
    EmbeddingSpace,
    SpaceSpec,
    catalogue_tower_spec,
)

FACETS = ("gender", "colour", "article_type")


def _clusters(n: int = 600, dims: int = 16, seed: int = 0) -> tuple[np.ndarray, list[tuple[str | None, ...]]]:
    """Unit vectors whose facet values each pull them along a direction of their own: linearly readable."""
    rng = np.random.default_rng(seed)
    values = {"gender": ["Men", "Women"], "colour": ["Red", "Navy Blue", "Black"], "article_type": ["Tshirts", "Kurtas", "Jeans", "Watches"]}
    directions = {(f, v): rng.normal(size=dims) for f, vs in values.items() for v in vs}
    labels, vectors = [], []
    for _ in range(n):
        row = tuple(str(rng.choice(values[f])) for f in FACETS)
        labels.append(row)
        vectors.append(sum(directions[(f, v)] for f, v in zip(FACETS, row)) + rng.normal(scale=0.5, size=dims))
    out = np.asarray(vectors, dtype=np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True), labels


def test_a_fitted_reader_reads_new_photos_facet_by_facet_and_round_trips(tmp_path):
    vectors, labels = _clusters()
    train, test = slice(0, 500), slice(500, None)
    labels_train = [(None, c, a) if i % 10 == 0 else (g, c, a) for i, (g, c, a) in enumerate(labels[train])]  # some unknown: skipped
    labels_train[1] = (labels_train[1][0], "Mauve", labels_train[1][2])  # seen once: a slip, not a class
    reader = PhotoReader.fit(vectors[train], labels_train, FACETS, model_id="open_clip/x/w.pt#1", source="clusters")
    assert reader.values[0] == ("Men", "Women") and "Mauve" not in reader.values[1]
    assert reader.weights[0].shape == (2, 16)  # two classes: a row each, not scikit-learn's one
    read = reader.read(vectors[test])
    for i, facet in enumerate(FACETS):
        accuracy = np.mean([r[i] == truth[i] for r, truth in zip(read, labels[test])])
        assert accuracy > 0.9, facet

    reader.save(tmp_path / "reader.npz")
    again = PhotoReader.load(tmp_path / "reader.npz")
    assert again.read(vectors[test]) == read and again.model_id == reader.model_id and again.facets == FACETS
    with pytest.raises(ValueError, match="reads 16-dimensional vectors"):
        reader.read(np.zeros((2, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="facet 'gender': 1 value"):
        PhotoReader.fit(vectors[:10], [("Men", "Red", "Jeans")] * 10, FACETS, model_id="m")


def test_a_bad_reader_file_is_a_clear_error_naming_it(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"photo reader .*junk.npz cannot be read"):
        PhotoReader.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", header=np.array(json.dumps({"format": "something else"})))
    with pytest.raises(ConfigError, match="other.npz is not a photo reader"):
        PhotoReader.load(tmp_path / "other.npz")
    with pytest.raises(ConfigError, match="facet 'colour' has 3 values, weights"):
        PhotoReader(("colour",), (("Red", "Blue", "Black"),), (np.zeros((2, 4)),), (np.zeros(2),), "m")
    with pytest.raises(ConfigError, match="a photo_reader reads a vocabulary's facets"):
        SpaceSpec(name="image", kind="open_clip", model="m", dims=4, photo_reader="reader.npz")


@pytest.mark.skipif(not (MODEL_WEIGHTS_DIR / TOWER_READER).is_file(), reason="the packaged photo reader is not built")
def test_the_packaged_tower_reads_through_its_reader_and_others_are_refused_it(tmp_path, tower_space):
    reader = tower_space.photo_reader()
    assert reader is not None and reader.model_id == tower_space.model_id and reader.facets == tower_space.vocabulary().fields
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(6, tower_space.dims)).astype(np.float32)
    assert tower_space.read_photos(vectors) == reader.read(vectors)
    # without the reader, the vocabulary reads zero-shot, as before
    zero_shot = EmbeddingSpace(replace(tower_space.spec, photo_reader=None))
    vocabulary, phrases = zero_shot.photo_vocabulary()
    assert zero_shot.read_photos(vectors) == [vocabulary.read(s) for s in vectors @ phrases.T]
    # another checkpoint of the tower reads zero-shot: the reader belongs to the packaged weights
    other = tmp_path / "other-visual.pt"
    other.write_bytes(PACKAGED_TOWER.read_bytes())
    assert catalogue_tower_spec(other).photo_reader is None and catalogue_tower_spec().photo_reader == TOWER_READER
    # and a reader named beside weights it was not fitted on is refused, naming both
    stranger = replace(tower_space.spec, pretrained_image=str(other), photo_reader=str(MODEL_WEIGHTS_DIR / TOWER_READER))
    with pytest.raises(ConfigError, match=r"was fitted on open_clip/catalogue-tower/catalogue-tower-visual.pt#.*other-visual.pt"):
        EmbeddingSpace(stranger).read_photos(vectors)
    narrower = PhotoReader(reader.facets[:1], reader.values[:1], reader.weights[:1], reader.biases[:1], reader.model_id)
    narrower.save(tmp_path / "narrow.npz")
    with pytest.raises(ConfigError, match=r"reads \['gender'\], the vocabulary's facets are"):
        EmbeddingSpace(replace(tower_space.spec, photo_reader=str(tmp_path / "narrow.npz"))).photo_reader()


def test_the_command_fits_a_reader_on_a_catalogue_s_photos_and_leaves_out_unreadable_ones(tmp_path, tower_space, sample_catalogue):
    """`hybrid-search photo-reader`: the sample catalogue's drawn photos, each a colour and an article type."""
    from hybrid_cli.main import cli

    lines = [json.loads(line) for line in sample_catalogue.read_text().splitlines()]
    broken = tmp_path / "catalogue.jsonl"
    extra = {**lines[0], "id": "BROKEN", "image": "images/not-there.png"}
    broken.write_text("".join(json.dumps(p) + "\n" for p in [*lines, extra]))
    out = tmp_path / "reader.npz"
    result = CliRunner().invoke(cli, ["photo-reader", str(broken), "--images-root", str(sample_catalogue.parent), "--out", str(out)],
                                env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.output
    assert "left out BROKEN" in result.output and f"fitted on {len(lines)} photos" in result.output
    reader = PhotoReader.load(out)
    assert reader.model_id == tower_space.model_id and reader.source == "catalogue.jsonl"
    photos = tower_space.embed_images([Image.open(sample_catalogue.parent / p["image"]).convert("RGB") for p in lines])
    read = reader.read(photos)
    colour = reader.facets.index("colour")
    assert np.mean([r[colour] == p["colour"] for r, p in zip(read, lines)]) > 0.8  # pure drawn colours: readable
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"id": "X", "title": "no photo"}) + "\n")
    result = CliRunner().invoke(cli, ["photo-reader", str(empty), "--out", str(tmp_path / "none.npz")], env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 2 and "no readable photo among 1 products" in result.output
