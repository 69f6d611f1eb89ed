"""Reading and preprocessing product images: file -> RGB -> square -> normalised floats.

"pad" resizes the longer side to ``size`` and pads to a square (white, or the image's own edge
colour) so the whole garment stays in view; "crop" resizes the shorter side and centre-crops
(cuts off the top and bottom of a tall product photo). `load_image` + `normalise` is what
`seqrec.features.image_encode.encode_images` feeds the backbone; `eval_transform` and
`train_transform` are the same steps (plus augmentation) as torchvision transforms.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageOps

from seqrec.features.image_config import ImageConfig
from seqrec.features.image_models import Backbone, normalisation


def open_image(path: str | os.PathLike, draft_size: int | None = None) -> Image.Image:
    """An RGB image; transparency is composited on white (product PNGs). Raises on bad files."""
    image: Image.Image = Image.open(path)
    if draft_size and image.format == "JPEG":
        image.draft("RGB", (draft_size, draft_size))  # let libjpeg downscale big photos
    image.load()
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, image)
    return image.convert("RGB")


def to_square(image: Image.Image, size: int, preprocessing: str = "pad", pad_color: str = "white"):
    """``size`` x ``size`` PIL image: "pad" keeps the whole picture, "crop" fills the square."""
    if preprocessing == "crop":
        return ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)
    color = (255, 255, 255) if pad_color == "white" else _edge_color(image)
    return ImageOps.pad(image, (size, size), method=Image.Resampling.BILINEAR, color=color)


def _edge_color(image: Image.Image) -> tuple[int, int, int]:
    pixels = np.asarray(image)  # [H, W, 3]
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])  # [P, 3]
    red, green, blue = (int(v) for v in np.median(border, axis=0))
    return red, green, blue


def load_image(path: str | os.PathLike, config: ImageConfig) -> np.ndarray:
    """Read, decode and square one image: uint8 [S, S, 3]. Raises on a bad file."""
    image = open_image(path, draft_size=config.size)
    image = to_square(image, config.size, config.preprocessing, config.pad_color)
    return np.asarray(image, dtype=np.uint8)


def normalise(pixels: np.ndarray, mean, std) -> np.ndarray:
    """uint8 [S, S, 3] -> float32 [3, S, S]: (pixels / 255 - mean) / std."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    scale = (1.0 / (255.0 * std)).reshape(3, 1, 1)
    shift = (mean / std).reshape(3, 1, 1)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1) * scale - shift, dtype=np.float32)


def eval_transform(config: ImageConfig, backbone: Backbone | None = None):
    """PIL image -> normalised float tensor [3, S, S], as `encode_images` sees it."""
    from torchvision.transforms import v2 as T

    mean, std = normalisation(config, backbone)
    return T.Compose(
        [
            T.Lambda(
                lambda image: to_square(image, config.size, config.preprocessing, config.pad_color)
            ),
            T.PILToTensor(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean, std),
        ]
    )


def train_transform(config: ImageConfig, backbone: Backbone | None = None, scale=(0.6, 1.0)):
    """Augmentation for fine-tuning: PIL image -> normalised float tensor [3, S, S].

    Pad/crop to a square first (like encoding), then a random resized crop, a horizontal flip
    and brightness/contrast/saturation jitter. Hue is left alone: colour is what a shopper
    looks for, so the model should not learn to ignore it.
    """
    from torchvision.transforms import v2 as T

    mean, std = normalisation(config, backbone)
    return T.Compose(
        [
            T.Lambda(
                lambda image: to_square(image, config.size, config.preprocessing, config.pad_color)
            ),
            T.RandomResizedCrop(config.size, scale=scale, ratio=(0.8, 1.25), antialias=True),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.0),
            T.PILToTensor(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean, std),
        ]
    )
