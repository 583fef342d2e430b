"""The image-tower space: OpenCLIP configs and checkpoints load through the registry; training resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hybrid_core.errors import ConfigError
from hybrid_core.spaces import EmbeddingSpace, SpaceSpec, random_clip_spec


def test_a_local_openclip_checkpoint_loads_through_the_registry(tmp_path, image_space, sample_catalogue):
    """Save a (random, mechanics-only) OpenCLIP model, load it as ``pretrained=<file>``: same vectors."""
    model, _ = image_space.open_clip_model()
    checkpoint = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    spec = SpaceSpec(name="image", kind="open_clip", model="tiny-clip-test", model_config="tiny-clip-test", dims=64, pretrained=str(checkpoint))
    loaded = EmbeddingSpace(spec).load()
    texts = ["red kurta", "black watch"]
    np.testing.assert_allclose(loaded.embed_texts(texts), image_space.embed_texts(texts), atol=1e-6)
    from PIL import Image

    photo = Image.open(sample_catalogue.parent / "images" / "S001.png")
    np.testing.assert_allclose(loaded.embed_images([photo]), image_space.embed_images([photo]), atol=1e-6)
    assert spec.model_id.startswith("open_clip/tiny-clip-test/tiny.pt#")  # the file's digest, not its path


def test_flip_average_encodes_a_photo_and_its_mirror_alike(sample_catalogue):
    """The averaged vector is the same for a photo and its mirror image; without it they differ,
    and the option is part of the identity stores compare (vectors made either way do not mix)."""
    from dataclasses import replace

    from PIL import Image, ImageOps

    photo = Image.open(sample_catalogue.parent / "images" / "S001.png").convert("RGB")
    photo.paste((200, 30, 30), (0, 0, photo.width // 3, photo.height))  # make it asymmetric
    plain_spec = random_clip_spec()
    flipped_spec = replace(plain_spec, flip_average=True)
    plain, averaged = EmbeddingSpace(plain_spec), EmbeddingSpace(flipped_spec)
    a, b = plain.embed_images([photo, ImageOps.mirror(photo)])
    assert not np.allclose(a, b, atol=1e-4)
    c, d = averaged.embed_images([photo, ImageOps.mirror(photo)])
    np.testing.assert_allclose(c, d, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(c), 1.0, atol=1e-5)
    assert flipped_spec.model_id != plain_spec.model_id and "+flip" in flipped_spec.model_id


def test_an_ensemble_averages_towers_of_one_joint_space_and_refuses_others(tmp_path, image_space, sample_catalogue):
    """Two towers sharing one text tower: a photo's vector is the normalized mean of both towers'
    vectors, the identity names both weights; a tower with another text encoder is refused."""
    from dataclasses import replace

    from PIL import Image

    model, _ = image_space.open_clip_model()
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    torch.save(model.state_dict(), first)
    state = {k: (v + 0.05 * torch.randn_like(v) if k.startswith("visual.") and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save(state, second)  # same text tower, another image tower
    base = SpaceSpec(name="image", kind="open_clip", model="tiny-clip-test", model_config="tiny-clip-test", dims=64, pretrained=str(first))
    other = replace(base, pretrained=str(second))
    both = replace(base, ensemble=[{"model": "tiny-clip-test", "model_config": "tiny-clip-test", "pretrained": str(second)}])
    photos = [Image.open(sample_catalogue.parent / "images" / name) for name in ("S001.png", "S011.png")]
    a, b = EmbeddingSpace(base).embed_images(photos), EmbeddingSpace(other).embed_images(photos)
    assert not np.allclose(a, b, atol=1e-3)
    mean = (a + b) / np.linalg.norm(a + b, axis=1, keepdims=True)
    ensemble = EmbeddingSpace(both)
    np.testing.assert_allclose(ensemble.embed_images(photos), mean, atol=1e-5)
    np.testing.assert_allclose(ensemble.embed_texts(["red kurta"]), EmbeddingSpace(base).embed_texts(["red kurta"]), atol=1e-6)
    assert both.model_id.startswith(base.model_id + "+tiny-clip-test/second.pt#") and SpaceSpec.from_dict(both.to_dict()) == both

    stranger = replace(base, ensemble=[{"model": "tiny-clip-test", "model_config": "tiny-clip-test"}])  # random text tower
    refused = EmbeddingSpace(replace(stranger, pretrained=str(first)))
    for _ in range(2):  # and again: a failed load leaves no half-loaded ensemble behind
        with pytest.raises(ConfigError, match="encodes text differently"):
            refused.embed_images(photos)
    with pytest.raises(ConfigError, match="unknown keys \\['weights'\\]"):
        replace(base, ensemble=[{"model": "tiny-clip-test", "weights": "x.pt"}])
    with pytest.raises(ConfigError, match="only an open_clip space"):
        SpaceSpec(name="text", kind="sentence-transformers", model="m", dims=8, ensemble=[{"model": "tiny-clip-test"}])


def test_train_image_tower_defaults_are_the_shipped_towers_recipe():
    """The README promises that the command's defaults reproduce the shipped tower: its
    architecture and input size must be the ones the packaged OpenCLIP config names."""
    from hybrid_cli.main import train_image_tower
    from tests.queue_helpers import REPO

    shipped = json.loads((REPO / "hybrid_core" / "model_configs" / "catalogue-tower.json").read_text())["vision_cfg"]
    defaults = {param.name: param.default for param in train_image_tower.params}
    assert defaults["architecture"] == shipped["timm_model_name"]
    assert list(defaults["image_size"]) == shipped["image_size"]
    assert defaults["time_budget_min"] < 60  # issue 4: training takes under an hour


@pytest.mark.parametrize(("config", "architecture"), [("tower-small.json", "catalogue_resnet_small"), ("tower-deep.json", "catalogue_resnet_deep")])
def test_the_opt_in_tower_configs_load_their_packaged_towers(config, architecture):
    """``configs/tower-*.json`` name a packaged model config and weights by file name; each loads
    strictly (the weights fit the architecture its config names) and gives unit vectors."""
    from PIL import Image

    from hybrid_core.config import Settings
    from tests.queue_helpers import REPO

    spec = json.loads((REPO / "configs" / config).read_text())["image_space"]
    packaged = json.loads((REPO / "hybrid_core" / "model_configs" / f"{spec['model_config']}.json").read_text())
    assert packaged["vision_cfg"]["timm_model_name"] == architecture
    _, image = Settings.from_env({"HYBRID_SEARCH_CONFIG": str(REPO / "configs" / config)}).embedding_spaces()
    assert f"{spec['pretrained_image']}#" in image.model_id
    vector = image.embed_images([Image.new("RGB", (60, 80), (200, 30, 30))])
    assert vector.shape == (1, 384) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_the_packaged_ensemble_config_loads_both_shipped_towers():
    from PIL import Image

    from hybrid_core.config import Settings
    from tests.queue_helpers import REPO

    _, image = Settings.from_env({"HYBRID_SEARCH_CONFIG": str(REPO / "configs" / "tower-ensemble.json")}).embedding_spaces()
    assert "catalogue-tower-visual.pt#" in image.model_id and "catalogue-tower-large-visual.pt#" in image.model_id
    vector = image.embed_images([Image.new("RGB", (60, 80), (200, 30, 30))])
    assert vector.shape == (1, 384) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_wrong_weights_or_names_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"nope": torch.zeros(1)}, bad)
    spec = SpaceSpec(name="image", kind="open_clip", model="tiny-clip-test", model_config="tiny-clip-test", dims=64, pretrained_image=str(bad))
    with pytest.raises(ConfigError, match="image tower weights .* do not fit"):
        EmbeddingSpace(spec).load()
    with pytest.raises(ConfigError, match="unknown OpenCLIP model 'ViT-Nope'"):
        EmbeddingSpace(SpaceSpec(name="image", kind="open_clip", model="ViT-Nope", dims=512)).load()
    with pytest.raises(ConfigError, match="config says 65"):
        EmbeddingSpace(SpaceSpec(**{**random_clip_spec().to_dict(), "dims": 65})).load()


def test_the_tower_text_encoder_is_minilm(text_space):
    from tower_training.train import tower_spec

    tower = EmbeddingSpace(tower_spec(None)).load()
    # mixed lengths: the tower sorts by length and trims padding columns, then restores the order
    texts = ["Puma Men Black T-shirt with a very long marketing description " * 3, "red", "women red kurta", "x y"]
    np.testing.assert_allclose(tower.embed_texts(texts), text_space.embed_texts(texts), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "ema_decay, flip_average, group, captions, bank, precision",
    [(0.0, False, 1, (), 0.0, "fp32"), (0.99, True, 4, ("gender", "colour", "article_type"), 0.5, "bf16")],
)
def test_training_runs_checkpoints_and_resumes(myntra, tmp_path, ema_decay, flip_average, group, captions, bank, precision):
    from tower_training.train import TrainConfig, tower_spec, train

    config = TrainConfig(
        str(myntra / "catalogue.jsonl"),
        str(tmp_path),
        epochs=1,
        batch_size=64,
        limit=400,
        val_fraction=0.2,
        ema_decay=ema_decay,
        flip_average=flip_average,
        hard_negative_group=group,
        caption_fields=captions,
        title_bank_weight=bank,
        precision=precision,
    )
    first = train(config)
    assert first["precision"] == precision and first["history"][0]["precision"] == precision
    assert np.isfinite(first["history"][0]["loss"])
    assert len(first["history"]) == 1 and (tmp_path / "visual.pt").exists() and (tmp_path / "checkpoint.pt").exists()
    # precision is how the steps run, not what is trained: a run resumes under the other one
    other = "fp32" if precision == "bf16" else "bf16"
    second = train(TrainConfig(**{**config.__dict__, "epochs": 2, "precision": other}))
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    assert [h["precision"] for h in second["history"]] == [precision, other]
    assert [json.loads(line)["epoch"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1, 2]
    assert first["train_products"] + first["val_products"] == 400
    with pytest.raises(ValueError, match="another configuration"):
        train(TrainConfig(**{**config.__dict__, "lr": 0.1}))
    with pytest.raises(ValueError, match="another configuration"):
        train(TrainConfig(**{**config.__dict__, "caption_fields": () if captions else ("colour",)}))
    if not ema_decay and not flip_average:
        # a checkpoint written before these options existed resumes as if made with their defaults
        state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
        for option in ("ema_decay", "flip_average", "hard_negative_group", "hard_negative_pool", "caption_fields", "caption_weight",
                       "title_bank_weight", "precision"):
            del state["config"][option]
        torch.save(state, tmp_path / "checkpoint.pt")
        assert [h["epoch"] for h in train(TrainConfig(**{**config.__dict__, "epochs": 3}))["history"]] == [1, 2, 3]
    # the exported tower (the moving average where one is kept) loads strictly through the registry,
    # with the run's photo vocabulary (the caption fields' rows) where it trained on captions
    space = EmbeddingSpace(tower_spec(tmp_path / "visual.pt", model_config=tmp_path / "catalogue-tower.json")).load()
    if captions:
        vocabulary, phrases = space.photo_vocabulary()
        assert vocabulary.fields == tuple(captions) and phrases.shape == (len(vocabulary.rows), 384)
    else:
        assert space.photo_vocabulary() is None and not (tmp_path / "vocabulary.json").exists()


def test_the_packaged_tower_is_the_default_and_puts_photos_next_to_their_titles(myntra):
    """The shipped weights on real test-split photos (never seen in training): titles find their photos."""
    import json as _json

    from PIL import Image

    from hybrid_core.spaces import PACKAGED_TOWER, default_image_spec

    spec = default_image_spec()
    assert spec.pretrained_image == str(PACKAGED_TOWER) and spec.dims == 384
    tower = EmbeddingSpace(spec).load()
    with (myntra / "catalogue.jsonl").open() as lines:
        test = [p for p in map(_json.loads, lines) if p["split"] == "test"][:400]
    images = tower.embed_images([Image.open(myntra / p["image"]) for p in test])
    titles = tower.embed_texts([p["title"] for p in test])
    sims = titles @ images.T
    own = np.diag(sims)
    assert ((sims > own[:, None]).sum(axis=1) < 10).mean() > 0.6  # own photo in the top 10 of 400
    watches = [test[i]["article_type"] for i in np.argsort(-(images @ tower.embed_query("black watch")))[:10]]
    assert watches.count("Watches") >= 7, watches


def test_query_embeddings_are_cached_and_copied(text_space):
    first = text_space.embed_query("red kurta")
    first[:] = 0  # a caller scribbling on its vector does not reach the cache
    again = text_space.embed_query("red kurta")
    np.testing.assert_allclose(again, text_space.embed_texts(["red kurta"])[0], atol=1e-6)
    assert np.linalg.norm(again) == pytest.approx(1.0, abs=1e-5)


def test_the_contrastive_loss_treats_same_title_products_as_positives():
    import torch.nn.functional as F

    from tower_training.train import contrastive_loss

    torch.manual_seed(0)
    logits = torch.randn(4, 4)
    none_same = torch.zeros(4, 4, dtype=torch.bool)
    labels = torch.arange(4)
    plain = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    # without duplicate titles both forms are the plain symmetric InfoNCE
    assert torch.allclose(contrastive_loss(logits, none_same, multi_positive=True), plain)
    assert torch.allclose(contrastive_loss(logits, none_same, multi_positive=False), plain)
    # products 0 and 1 share a title: a photo matching the other's title is no longer punished
    same = none_same.clone()
    same[0, 1] = same[1, 0] = True
    swapped = logits.clone()
    swapped[0, 1], swapped[0, 0] = logits[0, 0] + 5, logits[0, 1]
    assert contrastive_loss(swapped, same, multi_positive=True) < contrastive_loss(swapped, none_same, multi_positive=True)
    target = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    by_hand = (-(target * F.log_softmax(logits, 1)).sum(1).mean() - (target * F.log_softmax(logits.T, 1)).sum(1).mean()) / 2
    assert torch.allclose(contrastive_loss(logits, same, multi_positive=True), by_hand)


def test_the_title_bank_loss_scores_each_photo_against_every_training_title():
    import torch.nn.functional as F

    from tower_training.train import title_bank_loss

    torch.manual_seed(0)
    bank = F.normalize(torch.randn(50, 8), dim=1)
    photos = F.normalize(torch.randn(4, 8), dim=1)
    scale = torch.tensor(2.0)  # log of the logit scale, as training keeps it
    own = torch.tensor([3, 10, 20, 40])
    loss = title_bank_loss(photos, bank[own], bank, scale, same_above=0.97)
    # distinct titles: cross-entropy of each photo over the whole bank, its own title the label
    assert torch.allclose(loss, F.cross_entropy(scale.exp() * photos @ bank.T, own))
    # a bank holding photo 0's title twice: both copies are its positives, so matching the copy costs nothing extra
    doubled = torch.cat([bank, bank[3:4]])
    target = torch.zeros(4, 51)
    target[torch.arange(4), own] = 1
    target[0, 3] = target[0, 50] = 0.5
    by_hand = -(target * F.log_softmax(scale.exp() * photos @ doubled.T, dim=1)).sum(1).mean()
    assert torch.allclose(title_bank_loss(photos, bank[own], doubled, scale, same_above=0.97), by_hand)
    # a photo pulled onto its own title lowers the loss; onto a look-alike in the bank it raises it
    assert title_bank_loss(bank[own], bank[own], bank, scale, same_above=0.97) < loss
    assert title_bank_loss(bank[own + 1], bank[own], bank, scale, same_above=0.97) > loss


def test_a_training_run_writes_the_openclip_config_of_its_architecture(tmp_path):
    from tower_training.train import TrainConfig, tower_model_config, tower_spec

    from tower_training.train import _check_forward

    written = tmp_path / "catalogue-tower.json"
    config = TrainConfig("unused.jsonl", str(tmp_path), architecture="resnet10t", image_size=(48, 40), projection="linear", drop=0.1)
    written.write_text(json.dumps(tower_model_config(config)))
    model, _ = EmbeddingSpace(tower_spec(None, model_config=written)).load().open_clip_model()
    assert model.visual.image_size == (48, 40) and model.visual.head.drop.p == 0.1
    assert model.visual(torch.zeros(2, 3, 48, 40)).shape == (2, 384)
    # MobileNetV3 has a conv_head after pooling: OpenCLIP's linear head would be sized wrong
    config = TrainConfig("unused.jsonl", str(tmp_path), architecture="mobilenetv3_small_100", image_size=(48, 40), projection="linear")
    written.write_text(json.dumps(tower_model_config(config)))
    model, _ = EmbeddingSpace(tower_spec(None, model_config=written)).load().open_clip_model()
    with pytest.raises(ValueError, match="'mobilenetv3_small_100' with projection 'linear'.*does not run"):
        _check_forward(model.visual, config)
    config = TrainConfig("unused.jsonl", str(tmp_path), architecture="mobilenetv3_small_100", image_size=(48, 40))
    written.write_text(json.dumps(tower_model_config(config)))
    model, _ = EmbeddingSpace(tower_spec(None, model_config=written)).load().open_clip_model()
    _check_forward(model.visual, config)
    assert model.visual.training


def test_a_tower_that_shares_the_text_model_encodes_each_text_once(tmp_path, text_space, sample_catalogue, monkeypatch):
    """The catalogue tower's text tower is MiniLM: indexing and search reuse the text vectors."""
    from hybrid_core.images import ImageLimits
    from hybrid_core.layout import build_layout
    from hybrid_core.spaces import shares_text_tower
    from hybrid_core.stores.embedded import EmbeddedStore
    from hybrid_core.vectors import unit
    from indexer.pipeline import IndexingRuntime, process_batch
    from query_builder.query import HybridQuery
    from query_builder.searcher import HybridSearcher
    from tower_training.train import tower_spec

    tower = EmbeddingSpace(tower_spec(None)).load()
    assert shares_text_tower(tower, text_space) and not shares_text_tower(EmbeddingSpace(random_clip_spec()), text_space)

    def no_text_pass(texts):
        raise AssertionError("the tower's text encoder ran")

    monkeypatch.setattr(tower, "embed_texts", no_text_pass)
    layout = build_layout(text_space.spec, tower.spec)
    store = EmbeddedStore(tmp_path / "s.sqlite", layout)
    items = [{"ref": "s", "version": 1, "data": json.loads(line)} for line in sample_catalogue.read_text().splitlines()[:6]]
    report = process_batch(items, IndexingRuntime(store, layout, text_space, tower, ImageLimits()), images_root=str(sample_catalogue.parent))
    assert report.written == 6
    doc = store.existing([items[0]["data"]["id"]])[items[0]["data"]["id"]]
    np.testing.assert_allclose(doc.vectors["product_vector"], unit(doc.vectors["text_vector"] + doc.vectors["image_vector"]), atol=1e-6)
    result = HybridSearcher(store, layout, text_space, tower).search(HybridQuery(text="green kurta"))
    assert set(result.legs) == {"bm25", "text", "cross", "product"}


def test_a_time_budget_shortens_the_schedule_never_lengthens_it():
    from tower_training.train import planned_epochs

    assert planned_epochs(22, 1, 300, 100, None) == 22  # no budget
    assert planned_epochs(22, 1, 300, 100, 3600) == 22  # 21 more epochs of 100 s end at 2,400 s
    assert planned_epochs(22, 1, 600, 200, 3600) == 16  # 15 more of 200 s fit in the 3,000 s left
    assert planned_epochs(22, 5, 3700, 200, 3600) == 5  # over budget already: stop after the epochs done
    assert planned_epochs(22, 0, 10, 5000, 3600) == 1  # at least one epoch
    assert planned_epochs(10, 3, 0, 1, 3600) == 10  # never more than asked


def test_precision_auto_is_bf16_only_where_the_cpu_has_amx_tiles():
    from tower_training.train import resolve_precision

    assert resolve_precision("auto") == ("bf16" if torch.cpu._is_amx_tile_supported() else "fp32")
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="precision 'fp16'"):
        resolve_precision("fp16")


@pytest.mark.slow
def test_training_within_a_time_budget_ends_early_and_resumes_on_the_short_schedule(myntra, tmp_path):
    from tower_training.train import TrainConfig, train

    config = TrainConfig(str(myntra / "catalogue.jsonl"), str(tmp_path), epochs=6, batch_size=64, limit=300, val_fraction=0.2,
                         time_budget_min=1e-6)
    summary = train(config)
    assert summary["planned_epochs"] == 1 and [h["planned_epochs"] for h in summary["history"]] == [1]
    # the same command again (the budget spent): nothing more to do; asking for more epochs re-plans
    assert len(train(config)["history"]) == 1
    longer = train(TrainConfig(**{**config.__dict__, "epochs": 2, "time_budget_min": None}))
    assert [h["epoch"] for h in longer["history"]] == [1, 2] and longer["planned_epochs"] == 2


@pytest.mark.parametrize("architecture", ["catalogue_resnet_small", "catalogue_resnet_medium", "catalogue_resnet_deep"])
def test_the_catalogues_own_architecture_loads_through_openclip_and_round_trips_its_weights(tmp_path, architecture):
    """``catalogue_resnet_*`` are registered with timm, so an OpenCLIP config naming one loads like
    any timm tower, and exported weights load back strictly with the same vectors."""
    import timm

    from tower_training.train import TrainConfig, _check_forward, export, tower_model_config, tower_spec

    config = TrainConfig("unused.jsonl", str(tmp_path), architecture=architecture, image_size=(80, 64))
    written = tmp_path / "catalogue-tower.json"
    written.write_text(json.dumps(tower_model_config(config)))
    model, _ = EmbeddingSpace(tower_spec(None, model_config=written)).load().open_clip_model()
    _check_forward(model.visual, config)
    trunk = model.visual.trunk
    assert trunk.forward_features(torch.zeros(1, 3, 80, 64)).shape[-2:] == (5, 4)  # reduced by 16, not 32
    export(model.visual, tmp_path / "visual.pt")
    loaded, _ = EmbeddingSpace(tower_spec(tmp_path / "visual.pt", model_config=written)).load().open_clip_model()
    photos = torch.randn(3, 3, 80, 64)
    model.visual.eval()  # _check_forward left it training
    with torch.inference_mode():
        # float16 export: the loaded tower is the trained one to half precision
        cosine = torch.nn.functional.cosine_similarity(loaded.visual(photos), model.visual(photos))
    assert float(cosine.min()) > 0.999
    assert architecture in timm.list_models("catalogue_*")
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model(architecture, pretrained=True)
