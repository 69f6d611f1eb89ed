"""Item content features: text, image, categories, numeric (see `seqrec.features.build`).

The names below are imported lazily, so ``import seqrec.features.item_features`` stays light.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FeatureConfig": "build",
    "FeatureBuild": "build",
    "EncodeReport": "build",
    "ItemFeaturizer": "build",
    "build_item_features": "build",
    "fit_item_features": "build",
    "encode_new_items": "build",
    "TextConfig": "text",
    "TextEncoder": "text",
    "encode_text": "text",
    "item_texts": "text",
    "ImageConfig": "image",
    "ImageEncoder": "image",
    "ImageReport": "image",
    "ImageTower": "image",
    "encode_images": "image",
    "train_transform": "image",
    "eval_transform": "image",
    "VectorCache": "cache",
    "default_cache_dir": "cache",
    "ItemFeatures": "item_features",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    return getattr(module, name)
