"""Image-tower architectures built for catalogue thumbnails, registered with timm.

ImageNet models (MobileNetV3, ResNet) reduce a 224-pixel input by 4 before their first stage
and by 32 in all; Myntra's photos are 60x80, so those models only see them upscaled (the
tower shipped before this one ran MobileNetV3-small at 128x96 for that reason) and end on a
4x3 map. The nets here take the photo near its own size and reduce it by 16: a 3x3 stem at stride 2 and residual stages of
plain 3x3 convolutions (dense convolutions, which a CPU runs far better per operation than the
depthwise ones MobileNets are made of). They are built from timm's own bring-your-own-blocks
network (``ByobNet``) and registered under a timm name, so an OpenCLIP model config names them
like any timm model (``"timm_model_name": "catalogue_resnet_small"``) and
``open_clip.create_model_and_transforms`` builds them once this module is imported; loading a
space imports it (``hybrid_core.spaces``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from timm.models import build_model_with_cfg, register_model
from timm.models.byobnet import ByobNet, ByoBlockCfg, ByoModelCfg

_SMALL = ByoModelCfg(
    blocks=(
        ByoBlockCfg(type="basic", d=1, c=32, s=1),
        ByoBlockCfg(type="basic", d=2, c=64, s=2),
        ByoBlockCfg(type="basic", d=2, c=128, s=2),
        ByoBlockCfg(type="basic", d=1, c=256, s=2),
    ),
    stem_chs=24,
    stem_type="3x3",
    stem_pool="",
    num_features=512,
)

ARCHITECTURES: dict[str, ByoModelCfg] = {
    # 1.9 M parameters with the 384-d projection, as many as MobileNetV3-small; a 256-photo
    # training step at 80x64 costs 1.22x what that model's does at 128x96 (benchmarks/tower_step.py)
    "catalogue_resnet_small": _SMALL,
    # the small net with one more block in each of its two low-resolution stages (10x8 and 5x4
    # maps at 80x64): 3.4 M parameters, about 30 % more arithmetic per photo
    "catalogue_resnet_medium": replace(
        _SMALL, blocks=tuple(replace(b, d=d) for b, d in zip(_SMALL.blocks, (1, 2, 3, 2)))
    ),
    # one more block again in each of the last three stages (depths 1-3-4-3): 4.95 M parameters, a
    # bf16 step 1.1-1.2x the medium net's on an AMX Xeon (benchmarks/tower_step.py); configs/tower-deep.json
    "catalogue_resnet_deep": replace(
        _SMALL, blocks=tuple(replace(b, d=d) for b, d in zip(_SMALL.blocks, (1, 3, 4, 3)))
    ),
}


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> ByobNet:
    if pretrained:
        raise ValueError(f"{variant} has no pretrained weights: train it with hybrid-search train-image-tower")
    # timm.create_model passes its own (empty) pretrained config; these nets have one of their own
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    return build_model_with_cfg(
        ByobNet,
        variant,
        pretrained=False,
        model_cfg=ARCHITECTURES[variant],
        pretrained_cfg={"num_classes": 0, "input_size": (3, 80, 64), "pool_size": (5, 4)},
        feature_cfg={"flatten_sequential": True},
        **kwargs,
    )


@register_model
def catalogue_resnet_small(pretrained: bool = False, **kwargs: Any) -> ByobNet:
    """Residual 3x3 stages of 32-64-128-256 channels (depths 1-2-2-1) and a 512-wide 1x1 head,
    for photos of about 80x64."""
    return _create("catalogue_resnet_small", pretrained, **kwargs)


@register_model
def catalogue_resnet_medium(pretrained: bool = False, **kwargs: Any) -> ByobNet:
    """As ``catalogue_resnet_small`` with depths 1-2-3-2: the shipped tower (``catalogue-tower``),
    which bf16 on AMX trains in the hour where float32 fits too few epochs of it."""
    return _create("catalogue_resnet_medium", pretrained, **kwargs)


@register_model
def catalogue_resnet_deep(pretrained: bool = False, **kwargs: Any) -> ByobNet:
    """As ``catalogue_resnet_small`` with depths 1-3-4-3: more capacity for what an AMX Xeon's
    hour of bf16 training affords over the medium net."""
    return _create("catalogue_resnet_deep", pretrained, **kwargs)
