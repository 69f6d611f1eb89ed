"""The settings of the image step (``[features.image]``): backbone, weights, input, runtime."""

from __future__ import annotations

from dataclasses import dataclass

from seqrec.constraints import at_least, choice

PREPROCESSING = ("pad", "crop")
PAD_COLORS = ("white", "edge")
RUNTIMES = ("onnx", "torch")


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
