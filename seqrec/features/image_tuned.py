"""A fine-tuned image tower: a frozen trunk, a tuned tail and a projection head.

`seqrec.features.finetune` tunes the last ``trainable_blocks`` stages of a backbone plus a
linear projection, and saves them as one safetensors file (``image_tower.safetensors``, with
its settings in the file's metadata). Setting ``features.image.finetune.weights`` to that file
(or the folder holding it) makes `seqrec.features.image_models.build_backbone` return the tuned
tower, so every encoder (`encode_images`, the featurizer of a bundle encoding new items) uses
it, and `seqrec.features.image_models.weights_id` adds the file's hash to the cache key.

A backbone is cut into *stages*, modules run one after the other: images [B, 3, S, S] ->
... -> pooled features [B, D]. ``trunk`` is the frozen first part, ``tail`` the tuned rest.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from seqrec.constraints import ConfigError
from seqrec.data.dataset import DataError
from seqrec.features.cache import hash_file
from seqrec.features.image_config import ImageConfig

TOWER_FILE = "image_tower.safetensors"
TOWER_FORMAT = "1"
TUNABLE = ("efficientnet_lite0", "tiny_cnn")


class _LiteBlock(nn.Module):
    """One EfficientNet-Lite MBConv block with its stochastic depth rate (as the net runs it)."""

    def __init__(self, block: nn.Module, drop_rate: float):
        super().__init__()
        self.block = block
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, drop_connect_rate=self.drop_rate or None)


class _MeanPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))  # [B, C, H, W] -> [B, C]


def backbone_stages(name: str, module: nn.Module) -> list[nn.Module]:
    """The stages of a built backbone module (`build_backbone(...).module`), input to output;
    run in order they give the same [B, D] features as ``module``."""
    if name == "efficientnet_lite0":
        net: Any = module.net  # an efficientnet_lite_pytorch EfficientNet (untyped)
        rate = net._global_params.drop_connect_rate or 0.0
        count = len(net._blocks)
        stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        blocks: list[nn.Module] = [
            _LiteBlock(block, rate * i / count) for i, block in enumerate(net._blocks)
        ]
        head = nn.Sequential(net._conv_head, net._bn1, net._swish, _MeanPool())
        return [stem, *blocks, head]
    if name == "tiny_cnn":
        *blocks, pool, flatten = list(module.children())  # type: ignore[arg-type]
        return [*blocks[:-1], nn.Sequential(blocks[-1], pool, flatten)]
    raise ConfigError(
        f"features.image.finetune: backbone {name!r} cannot be fine-tuned; use one of {TUNABLE}"
    )


def split_stages(stages: list[nn.Module], trainable: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(trunk, tail): the first stages and the last ``trainable`` ones (at least one)."""
    cut = len(stages) - min(max(trainable, 1), len(stages))
    return nn.Sequential(*stages[:cut]), nn.Sequential(*stages[cut:])


class TunedTower(nn.Module):
    """Normalised images [B, 3, S, S] -> tuned embeddings: the projection's [B, dim], or with
    ``pooled`` the tuned backbone's pooled features under it [B, C]."""

    def __init__(
        self, trunk: nn.Module, tail: nn.Module, projection: nn.Linear, pooled: bool = False
    ):
        super().__init__()
        self.trunk, self.tail, self.projection = trunk, tail, projection
        self.pooled = pooled

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.tail(self.trunk(images))  # [B, C]
        return features if self.pooled else self.projection(features)


def base_config(config: ImageConfig) -> ImageConfig:
    """``config`` without the tuned tower: the pretrained backbone it starts from."""
    finetune = dataclasses.replace(config.finetune, weights=None)
    return dataclasses.replace(config, finetune=finetune)


def tower_path(weights: str) -> Path:
    """The tower file named by ``finetune.weights`` (the file, or the folder holding it)."""
    path = Path(weights).expanduser()
    if path.is_dir():
        path = path / TOWER_FILE
    if not path.is_file():
        raise DataError(
            f"features.image.finetune.weights: no tuned image tower at {path} "
            "(run `seqrec finetune-images --out DIR` and give DIR)"
        )
    return path


def tower_id(config: ImageConfig) -> str:
    """The tuned tower's content hash and what it outputs, for cache keys."""
    assert config.finetune.weights is not None
    output = "" if config.finetune.output == "projection" else f":{config.finetune.output}"
    return f"tuned:{hash_file(tower_path(config.finetune.weights))}{output}"


def tower_metadata(path: Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as file:
            meta = file.metadata() or {}
    except Exception as error:
        raise DataError(f"cannot read the tuned image tower {path}: {error}") from None
    if meta.get("format") != TOWER_FORMAT:
        raise DataError(f"{path} is not a seqrec image tower (format {meta.get('format')!r})")
    return {key: json.loads(value) for key, value in meta.items() if key != "format"}


def save_tower(path: Path, config: ImageConfig, tail: nn.Sequential, projection: nn.Linear) -> None:
    """Write the tuned stages and the projection, with what they fit, as safetensors."""
    from seqrec.features.image_models import weights_id

    base = base_config(config)
    meta = {
        "backbone": base.backbone,
        "base_weights": weights_id(base),
        "size": base.size,
        "trainable_blocks": len(tail),
        "in_dim": projection.in_features,
        "dim": projection.out_features,
    }
    tensors = {f"tail.{k}": v for k, v in tail.state_dict().items()}
    tensors |= {f"projection.{k}": v for k, v in projection.state_dict().items()}
    tensors = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = {key: json.dumps(value) for key, value in meta.items()}
    save_file(tensors, str(path), metadata={"format": TOWER_FORMAT, **encoded})


def load_tower(config: ImageConfig) -> tuple[TunedTower, int]:
    """The tuned tower named by ``config.finetune.weights`` on its pretrained base, and its
    output width. Refuses a tower tuned from another backbone, base weights or input size."""
    from safetensors.torch import load_file

    from seqrec.features.image_models import build_backbone, weights_id

    assert config.finetune.weights is not None
    path = tower_path(config.finetune.weights)
    meta = tower_metadata(path)
    base = base_config(config)
    expected = {"backbone": base.backbone, "base_weights": weights_id(base), "size": base.size}
    for key, value in expected.items():
        if meta.get(key) != value:
            raise DataError(
                f"the tuned image tower {path} was tuned with {key} = {meta.get(key)!r}, "
                f"but features.image gives {value!r}"
            )
    backbone = build_backbone(base)
    stages = backbone_stages(base.backbone, backbone.module)
    trunk, tail = split_stages(stages, int(meta["trainable_blocks"]))
    projection = nn.Linear(int(meta["in_dim"]), int(meta["dim"]))
    tensors = load_file(str(path))
    try:
        tail.load_state_dict(_part(tensors, "tail."))
        projection.load_state_dict(_part(tensors, "projection."))
    except RuntimeError as error:
        raise DataError(f"the tuned image tower {path} does not fit: {str(error)[:300]}") from None
    if config.finetune.output == "pooled":
        return TunedTower(trunk, tail, projection, pooled=True).eval(), int(meta["in_dim"])
    return TunedTower(trunk, tail, projection).eval(), int(meta["dim"])


def _part(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
