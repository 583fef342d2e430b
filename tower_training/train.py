"""Locked-text contrastive training of the catalogue image tower.

The packaged MiniLM stays frozen; a small image encoder (OpenCLIP config
``catalogue-tower``: ``catalogue_resnet_medium`` or ``_small`` from ``hybrid_core.tower_nets`` at 80x64, or any timm
model, its classifier as the projection to 384-d) learns to put
a product photo next to the MiniLM vector of its title, with the symmetric InfoNCE
loss over in-batch negatives and a learnable temperature. Because the OpenCLIP text
tower of ``catalogue-tower`` *is* MiniLM (mean pooling, no projection), the image
space is the text space: text queries reach image vectors directly and averaging a
product's text and image vectors is meaningful.

Only the ``train`` split is read; validation uses a fixed hashed slice of it.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from hybrid_core.errors import ConfigError
from hybrid_core.spaces import MODEL_CONFIG_DIR, EmbeddingSpace, SpaceSpec, catalogue_tower_spec, default_text_spec
from hybrid_core.vocabulary import PhotoVocabulary
from tower_training.augment import augment
from tower_training.batches import neighbour_batch, title_neighbours
from tower_training.captions import caption_index
from tower_training.data import Photos, build, is_validation, read_split

WEIGHTS_NAME = "visual.pt"


CONFIG_NAME = "catalogue-tower.json"
VOCABULARY_NAME = "vocabulary.json"
VOCABULARY_MIN_COUNT = 2


def tower_spec(weights: str | Path | None, *, device: str = "cpu", model_config: str | Path | None = None) -> SpaceSpec:
    """The image space of a tower (``weights``: an exported ``visual.pt``; ``None``: untrained;
    ``model_config``: the architecture a training run wrote, default the packaged one, and with it
    the run's photo vocabulary where the run wrote one)."""
    spec = catalogue_tower_spec(weights, device=device)
    if not model_config:
        return spec
    vocabulary = Path(model_config).parent / VOCABULARY_NAME
    return replace(spec, model_config=str(model_config), vocabulary=str(vocabulary) if weights and vocabulary.is_file() else None)


def tower_model_config(config: TrainConfig) -> dict[str, Any]:
    """The OpenCLIP model config of the architecture ``config`` trains: the packaged text tower
    (MiniLM, ``{packaged_minilm}``) and a timm image tower."""
    packaged = json.loads((MODEL_CONFIG_DIR / CONFIG_NAME).read_text())
    vision: dict[str, Any] = {
        "timm_model_name": config.architecture,
        "timm_model_pretrained": False,
        "timm_pool": "avg",
        "timm_proj": config.projection,
        "image_size": list(config.image_size),
    }
    if config.projection and config.drop:
        vision["timm_drop"] = config.drop
    if config.drop_path:
        vision["timm_drop_path"] = config.drop_path
    return {**packaged, "vision_cfg": vision}


@dataclass
class TrainConfig:
    catalogue: str
    out_dir: str
    epochs: int = 44
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    val_fraction: float = 0.05
    false_negative_threshold: float = 0.97
    augment_strength: float = 1.0
    seed: int = 0
    threads: int = 2
    limit: int | None = None  # train on the first N products only (smoke tests)
    # the image tower: any timm model, at a size near the photos' own (Myntra's are 60x80)
    architecture: str = "catalogue_resnet_small"  # hybrid_core/tower_nets.py
    image_size: tuple[int, int] = (80, 64)  # (height, width)
    projection: str = ""  # "": the timm classifier is the projection; "linear"/"mlp": OpenCLIP's head
    drop: float = 0.0  # dropout before OpenCLIP's projection head
    drop_path: float = 0.05
    # products whose titles are (near) identical are positives of each other, not negatives
    multi_positive: bool = True
    # validate and export an exponential moving average of the weights (0: the raw weights)
    ema_decay: float = 0.0
    # validate on the mean of each photo's and its mirror's vectors (SpaceSpec.flip_average)
    flip_average: bool = False
    # 1: random batches; g > 1: each batch is batch_size/g random anchors, each followed by g-1 of
    # its nearest (not identical) titles drawn from its hard_negative_pool nearest (tower_training.batches)
    hard_negative_group: int = 1
    hard_negative_pool: int = 20
    # wall-clock minutes for the whole run (loading included): after each epoch the schedule is
    # shortened, never lengthened, so the run ends in time on a slower machine (None: no limit)
    time_budget_min: float | None = None
    # catalogue fields joined into a second text target per photo (tower_training.captions), e.g.
    # ("gender", "colour", "article_type"); its InfoNCE term is weighted by caption_weight (empty: off).
    # The command line turns those three on (the shipped recipe); the default here stays off because
    # it is what a checkpoint written before the option existed was trained with.
    caption_fields: tuple[str, ...] = ()
    caption_weight: float = 0.5
    # weight of a third InfoNCE term that scores each photo against every training title at once
    # (the text tower is frozen, so the whole bank of title vectors is fixed and each step can afford
    # all of them as negatives, not just the batch's); 0: off, the behaviour before it existed
    title_bank_weight: float = 0.0
    # arithmetic of the training forward pass: "bf16" runs it under CPU autocast (the weights, the
    # loss and validation stay float32), "auto" picks bf16 where the CPU has AMX tiles, whose bf16
    # matrix units run the dense 3x3 convolutions of catalogue_resnet_* about 1.7x faster per
    # step; depthwise convolutions (MobileNets) get slower under bf16. An execution setting like
    # threads: a run may resume under another precision.
    precision: str = "fp32"


def planned_epochs(requested: int, done: int, elapsed_s: float, epoch_s: float, budget_s: float | None) -> int:
    """How many epochs the schedule should span: ``requested``, or fewer if the epochs still to go,
    at ``epoch_s`` each, would end the run after ``budget_s``; never fewer than ``done`` (or 1)."""
    if budget_s is None or epoch_s <= 0:
        return requested
    affordable = done + int(max(0.0, budget_s - elapsed_s) // epoch_s)
    return max(1, done, min(requested, affordable))


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str) -> str:
    """``fp32`` or ``bf16``; ``auto`` is bf16 only where the CPU has AMX tiles (bf16 autocast on a
    CPU without them emulates the arithmetic and is slower than float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if torch.cpu._is_amx_tile_supported() else "fp32"
    return precision


def embed_for_training(visual: torch.nn.Module, images: torch.Tensor, precision: str) -> torch.Tensor:
    """Unit image vectors of a training step, the forward pass in ``precision`` (resolved) and
    the result in float32 for the loss."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        features = visual(images)
    return F.normalize(features.float(), dim=-1)


def _recall_at(image_vectors: torch.Tensor, text_vectors: torch.Tensor, k: int = 10) -> float:
    """Share of titles whose own photo is among the k nearest images."""
    sims = text_vectors @ image_vectors.T
    own = sims.diagonal().unsqueeze(1)
    rank = (sims > own).sum(dim=1)
    return float((rank < k).float().mean())


def contrastive_loss(logits: torch.Tensor, same_title: torch.Tensor, *, multi_positive: bool) -> torch.Tensor:
    """Symmetric InfoNCE over a batch (``logits[i, j]``: image i against title j).

    Catalogues repeat titles ("Nike Men Black Sports Shoes" dozens of times), so a photo's
    in-batch "negatives" include titles identical to its own. ``multi_positive`` spreads the
    target evenly over every title the same as the photo's (a supervised-contrastive target);
    otherwise such pairs are only masked out of the softmax.
    """
    same = same_title.clone()
    same.fill_diagonal_(True)
    if multi_positive:
        target = same.float() / same.sum(dim=1, keepdim=True)
        image_to_text = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        text_to_image = -(target * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
        return (image_to_text + text_to_image) / 2
    same.fill_diagonal_(False)
    masked = logits.masked_fill(same, float("-inf"))
    labels = torch.arange(len(logits))
    return (F.cross_entropy(masked, labels) + F.cross_entropy(masked.T, labels)) / 2


def caption_loss(embedded: torch.Tensor, own: torch.Tensor, caption_vectors: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """The InfoNCE term against attribute captions (``own``: each photo's caption row, -1 for none):
    photos sharing a caption are positives of each other; photos without one are left out."""
    has = own >= 0
    if int(has.sum()) < 2:
        return embedded.sum() * 0.0
    ids = own[has]
    logits = logit_scale.exp().clamp(max=100) * embedded[has] @ caption_vectors[ids].T
    return contrastive_loss(logits, ids[:, None] == ids[None, :], multi_positive=True)


def title_bank_loss(
    embedded: torch.Tensor, targets: torch.Tensor, bank: torch.Tensor, logit_scale: torch.Tensor, *, same_above: float
) -> torch.Tensor:
    """Image-to-title InfoNCE over the whole bank of training titles (``bank``: unit rows; the
    batch's own titles among them). In-batch negatives are 255 random titles, mostly of other
    article types; the bank holds every near-miss ("Men Navy Polo" against "Men Blue Polo"), which
    is what telling one product's photo from its look-alikes needs. Titles closer than
    ``same_above`` to a photo's own are positives with it, as in ``contrastive_loss``."""
    logits = logit_scale.exp().clamp(max=100) * embedded @ bank.T
    same = (targets @ bank.T > same_above).float()
    target = same / same.sum(dim=1, keepdim=True).clamp(min=1)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _check_forward(visual: torch.nn.Module, config: TrainConfig) -> None:
    """Fail before hours of loading and training when the architecture and projection do not fit
    (OpenCLIP sizes a linear/mlp head from ``num_features``, which is wrong for timm models with a
    ``conv_head`` such as LCNet and MobileNetV3: use ``projection=""`` for those)."""
    visual.eval()
    try:
        with torch.inference_mode():
            visual(torch.zeros(1, 3, *config.image_size))
    except RuntimeError as exc:
        raise ValueError(
            f"image tower {config.architecture!r} with projection {config.projection!r} at {config.image_size} does not run: {exc}"
        ) from None
    finally:
        visual.train()


def encode_images(visual: torch.nn.Module, images: torch.Tensor | Photos, batch: int = 512, *, flip_average: bool = False) -> torch.Tensor:
    """Unit vectors of ``images``; with ``flip_average`` each the mean of the photo and its mirror
    image, as a space with ``SpaceSpec.flip_average`` encodes them, so validation picks the epoch
    that is best as deployed."""
    was_training = visual.training
    visual.eval()
    chunks = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            part = images[i : i + batch].contiguous(memory_format=torch.channels_last)
            vectors = F.normalize(visual(part), dim=-1)
            if flip_average:
                vectors = F.normalize(vectors + F.normalize(visual(part.flip(3)), dim=-1), dim=-1)
            chunks.append(vectors)
    visual.train(was_training)
    return torch.cat(chunks)


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def train(
    config: TrainConfig,
    *,
    on_phase: Callable[[str, int], Callable[[int], None]] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume) and export the best epoch's image tower to ``out_dir/visual.pt``.

    A checkpoint in ``out_dir`` is resumed when the configuration matches (``epochs`` may
    grow, to train longer; the learning-rate schedule then follows the new length).
    """
    started = time.monotonic()
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)
    phase = on_phase or (lambda name, total: (lambda n: None))
    precision = resolve_precision(config.precision)

    catalogue = Path(config.catalogue)
    products = read_split(catalogue, "train")
    if config.limit:
        products = products[: config.limit]
    train_products = [p for p in products if not is_validation(p["id"], config.val_fraction)]
    val_products = [p for p in products if is_validation(p["id"], config.val_fraction)]

    model_config = out / CONFIG_NAME
    model_config.write_text(json.dumps(tower_model_config(config), indent=2) + "\n")
    # the phrases the caption term trains photos toward: what a photo can be read as (the photo_words leg);
    # written beside each exported visual.pt, so a run's folder never pairs weights with another run's phrases
    vocabulary = None
    if config.caption_fields:
        try:
            vocabulary = PhotoVocabulary.from_products(
                products, config.caption_fields, min_count=VOCABULARY_MIN_COUNT,
                source=f"{catalogue.name} train split ({len(products):,} products): {', '.join(config.caption_fields)} rows "
                       f"seen at least {VOCABULARY_MIN_COUNT} times",
            )
        except ConfigError:  # no row repeats (a tiny --limit): a tower without phrases, searched by vectors alone
            vocabulary = None
    space = EmbeddingSpace(tower_spec(None, model_config=model_config)).load()
    model, preprocess = space.open_clip_model()
    # channels-last runs the depthwise and pointwise convolutions of these small CNNs about 1.6x
    # faster on a CPU (benchmarked here: 0.35 vs 0.6 s per 256-photo step for mobilenetv3_small_100)
    visual = model.visual.to(memory_format=torch.channels_last)
    _check_forward(visual, config)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    text = EmbeddingSpace(default_text_spec())
    titles_key = f"titles-{len(products)}-{config.seed}.npy"
    cache = out / titles_key
    if cache.exists():
        title_vectors = np.load(cache)
    else:
        title_vectors = text.embed_texts([p["title"] for p in products])
        np.save(cache, title_vectors)
    by_id = {p["id"]: i for i, p in enumerate(products)}
    caption_vectors, caption_of = None, None
    if config.caption_fields:
        captions, caption_of = caption_index(train_products, config.caption_fields)
        caption_vectors = torch.from_numpy(text.embed_texts(captions)) if captions else None
    load = phase("loading photos", len(products))
    train_data = build(train_products, catalogue.parent, preprocess, title_vectors[[by_id[p["id"]] for p in train_products]], load)
    val_data = build(val_products, catalogue.parent, preprocess, title_vectors[[by_id[p["id"]] for p in val_products]], load)

    # the average follows the weights step by step; BatchNorm statistics are averaged with them
    ema = AveragedModel(visual, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True) if config.ema_decay else None
    params = [p for p in visual.parameters() if p.requires_grad] + [logit_scale]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(train_data.ids) // config.batch_size)
    planned = config.epochs
    warmup_steps = int(config.warmup_epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(config.seed)
    anchors_per_step = max(1, config.batch_size // config.hard_negative_group)
    neighbours = (
        title_neighbours(train_data.text_vectors, config.hard_negative_pool, same_above=config.false_negative_threshold)
        if config.hard_negative_group > 1
        else None
    )
    history: list[dict[str, Any]] = []
    start_epoch, best = 0, -1.0

    checkpoint_path = out / "checkpoint.pt"
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)
        same = {k: v for k, v in asdict(config).items() if k not in ("out_dir", "epochs", "time_budget_min", "precision")}
        # a checkpoint from before an option existed was made with that option's default (which
        # the defaults here keep: a new option's default is the behaviour before it)
        defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
        saved = {**defaults, **state["config"]}
        if {k: saved[k] for k in same} != same:
            raise ValueError(f"{checkpoint_path} was made with another configuration; use a new --out directory")
        visual.load_state_dict(state["visual"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        logit_scale.data.copy_(state["logit_scale"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        if state.get("planned_epochs") and state["config"].get("epochs") == config.epochs:
            planned = state["planned_epochs"]  # a schedule a budget shortened stays short; new --epochs re-plan

    visual.train()
    budget_s = None if config.time_budget_min is None else config.time_budget_min * 60
    epoch_times: list[float] = []
    epoch = start_epoch
    while epoch < planned:
        epoch_started = time.monotonic()
        order = torch.randperm(len(train_data.ids), generator=generator)
        tick = phase(f"epoch {epoch + 1}/{planned}", steps_per_epoch)
        losses = []
        for step in range(steps_per_epoch):
            global_step = epoch * steps_per_epoch + step
            for group in optimizer.param_groups:
                # a schedule shortened after the (default one-epoch) warmup stays continuous: the cosine starts there
                group["lr"] = _lr_at(global_step, steps_per_epoch * planned, warmup_steps, config.lr)
            if neighbours is None:
                index = order[step * config.batch_size : (step + 1) * config.batch_size]
            else:
                anchors = order[step * anchors_per_step : (step + 1) * anchors_per_step]
                index = neighbour_batch(anchors, neighbours, config.hard_negative_group, generator)
            images = augment(train_data.images[index], generator, strength=config.augment_strength)
            images = images.contiguous(memory_format=torch.channels_last)
            targets = train_data.text_vectors[index]
            embedded = embed_for_training(visual, images, precision)
            logits = logit_scale.exp().clamp(max=100) * embedded @ targets.T
            loss = contrastive_loss(logits, targets @ targets.T > config.false_negative_threshold, multi_positive=config.multi_positive)
            if caption_vectors is not None:
                loss = loss + config.caption_weight * caption_loss(embedded, caption_of[index], caption_vectors, logit_scale)
            if config.title_bank_weight:
                loss = loss + config.title_bank_weight * title_bank_loss(
                    embedded, targets, train_data.text_vectors, logit_scale, same_above=config.false_negative_threshold
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update_parameters(visual)
            losses.append(loss.item())
            tick(1)
        deployed = visual if ema is None else ema.module
        val_recall = _recall_at(encode_images(deployed, val_data.images, flip_average=config.flip_average), val_data.text_vectors)
        epoch_times.append(time.monotonic() - epoch_started)
        planned = planned_epochs(planned, epoch + 1, time.monotonic() - started, float(np.mean(epoch_times)), budget_s)
        record = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)),
            "val_recall@10": val_recall,
            "temperature": float(1 / logit_scale.detach().exp()),
            "epoch_s": epoch_times[-1],
            "planned_epochs": planned,
            "precision": precision,
        }
        history.append(record)
        with (out / "log.jsonl").open("a") as log:
            log.write(json.dumps(record) + "\n")
        if val_recall > best:
            best = val_recall
            export(deployed, out / WEIGHTS_NAME)
            if vocabulary is not None:
                vocabulary.save(out / VOCABULARY_NAME)
            else:
                (out / VOCABULARY_NAME).unlink(missing_ok=True)
        torch.save(
            {
                "config": asdict(config),
                "epoch": epoch,
                "planned_epochs": planned,
                "best": best,
                "history": history,
                "visual": visual.state_dict(),
                "ema": None if ema is None else ema.state_dict(),
                "logit_scale": logit_scale.detach(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
            },
            checkpoint_path,
        )
        if on_epoch:
            on_epoch(record)
        epoch += 1
    summary = {
        "config": asdict(config),
        "train_products": len(train_data.ids),
        "val_products": len(val_data.ids),
        "best_val_recall@10": best,
        "planned_epochs": planned,
        "precision": precision,
        "history": history,
        "seconds_this_run": time.monotonic() - started,
        "visual_parameters": sum(p.numel() for p in visual.parameters()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def export(visual: torch.nn.Module, path: Path) -> None:
    """The image tower's weights in float16 (half the size; loaded back into float32)."""
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in visual.state_dict().items()}
    torch.save(state, path)
