"""The settings of the image step (``[features.image]``): backbone, weights, input, runtime."""

from __future__ import annotations

from dataclasses import dataclass, field

from seqrec.constraints import at_least, choice, in_range, positive

PREPROCESSING = ("pad", "crop")
PAD_COLORS = ("white", "edge")
RUNTIMES = ("onnx", "torch")
OBJECTIVES = ("attributes", "co_purchase")
TOWER_OUTPUTS = ("projection", "pooled")


@dataclass
class FinetuneConfig:
    """``[features.image.finetune]``: `seqrec finetune-images` (seqrec.features.finetune)."""

    # a tuned tower (the --out folder of finetune-images, or its image_tower.safetensors): when
    # set, every image is encoded with it instead of the frozen backbone
    weights: str | None = None
    objectives: list[str] = field(default_factory=lambda: list(OBJECTIVES))
    attribute_weight: float = in_range(0.0, 100.0, 1.0)
    co_purchase_weight: float = in_range(0.0, 100.0, 1.0)
    attribute_columns: list[str] | None = None  # None: the catalogue's category columns
    min_class_items: int = at_least(1, 20)  # rarer classes (training items) merge into "other"
    trainable_blocks: int = at_least(1, 1)  # last backbone stages tuned; the rest runs once
    dim: int = at_least(8, 256)  # projection width: the tuned image vector
    # what a tuned tower encodes an image as: "projection", the dim-wide head the objectives
    # train; "pooled", the tuned backbone's pooled features under it (the backbone's width)
    output: str = choice("projection", *TOWER_OUTPUTS)
    views: int = at_least(0, 1)  # augmented views per image cached, besides the plain one
    epochs: int = at_least(1, 2)
    batch_size: int = at_least(2, 256)
    lr: float = positive(1e-3)
    weight_decay: float = in_range(0.0, 1.0, 1e-4)
    temperature: float = positive(0.1)  # co-purchase InfoNCE
    holdout: float = in_range(0.0, 0.5, 0.1, high_open=True)  # share of product groups held out
    seed: int = 0

    def problems(self) -> list[tuple[str, str]]:
        unknown = [name for name in self.objectives if name not in OBJECTIVES]
        if unknown or not self.objectives:
            return [("objectives", f"must name one or more of {', '.join(OBJECTIVES)}")]
        return []


@dataclass
class ImageConfig:
    backbone: str = "efficientnet_lite0"  # | tiny_cnn (tests) | a torchvision model name
    # None: the packaged weights (efficientnet_lite0) or torchvision's default weights (others);
    # "torchvision": torchvision's default weights (download cache); "random"; or a .pth path
    weights: str | None = None
    size: int = at_least(16, 224)  # square input side in pixels
    preprocessing: str = choice("pad", *PREPROCESSING)  # pad: the whole garment; crop: centre
    pad_color: str = choice("white", *PAD_COLORS)  # edge: median colour of the image border
    batch_size: int = at_least(1, 32)
    num_workers: int = at_least(0, 2)  # threads decoding JPEGs while the backbone runs; 0 = inline
    runtime: str = choice("onnx", *RUNTIMES)  # onnx: export once, run with ONNX Runtime
    channels_last: bool = True  # torch runtime memory format
    threads: int = at_least(0, 0)  # backbone compute threads; 0 = all available cores
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
