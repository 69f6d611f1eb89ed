"""The item network: item content (and optionally a learned ID embedding) -> item vectors.

`ItemNet` keeps the precomputed content of every catalogue item (`ItemFeatures`) as frozen
buffers, projects each modality to the common width D, fuses the modality vectors
(`seqrec.features.fusion`) and adds a learned item-ID embedding when configured:

    text       [N, Dt] -> Linear -> LayerNorm  -> [N, D] ┐
    image      [N, Di] -> Linear -> LayerNorm  -> [N, D] │ fusion -> [N, D] (+ ID embedding)
    categories [N, C]  -> sum of per-column embeddings -> LayerNorm -> [N, D] │
    numeric    [N, F]  -> Linear -> LayerNorm  -> [N, D] ┘

Cold start: an item nobody interacted with still gets its vector from its content. Its ID
embedding never receives a gradient and stays at its initial value, so with content the ID
embeddings start near zero (std 0.01) and cannot drown the content of cold items.

Missing content is masked in the fusion, never filled in: an item without an image (``image_mask``
False), whose category codes are all 0 (unknown), or whose text vector is all zeros (empty text)
has that modality left out. Numeric features are always present (they are 0 where unknown).

The feature buffers are not saved in ``state_dict()`` (they are rebuilt from the data, and may be
large); build the net from the same features to load a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqrec.constraints import at_least, check_config, choice, in_range, positive
from seqrec.features.fusion import FUSIONS, build_fusion
from seqrec.features.item_features import ItemFeatures

MODALITIES = ("text", "image", "categories", "numeric")


@dataclass
class ItemNetConfig:
    dim: int | None = at_least(1)  # width D of the item vectors; None: ModelConfig.dim
    fusion: str = choice("concat", *FUSIONS)
    use_id_embedding: bool = True  # add a learned embedding per item index
    # None: all present in the features; []: ID only
    modalities: list[str] | None = choice(None, *MODALITIES)
    dropout: float = in_range(0.0, 1.0, 0.1, high_open=True)  # on each modality vector, pre-fusion
    id_init_std: float | None = positive(None)  # None: 0.01 with content, 1/sqrt(dim) for ID only


class ItemNet(nn.Module):
    def __init__(self, config: ItemNetConfig, features: ItemFeatures | None, n_items: int):
        super().__init__()
        self.config = config
        self.n_items = n_items
        if config.dim is None:
            raise ValueError("ItemNetConfig.dim is not set (build_model sets it from ModelConfig)")
        dim = config.dim

        check_config(config, "model.item_net")
        available = features.modalities() if features is not None else []
        wanted = available if config.modalities is None else list(config.modalities)
        absent = [name for name in wanted if name not in available]
        if absent:
            raise ValueError(f"modalities {absent} requested but the item features lack them")
        # Keep the canonical order so configs listing the same modalities build the same net.
        self.modalities = [name for name in MODALITIES if name in wanted]
        if not self.modalities and not config.use_id_embedding:
            raise ValueError("ItemNet needs content modalities or an ID embedding (or both)")

        self.encoders = nn.ModuleDict()
        if features is not None:  # without features there are no modalities
            self._add_content(features, dim)

        self.fusion = build_fusion(config.fusion, self.modalities, dim) if self.modalities else None
        self.dropout = nn.Dropout(config.dropout)

        self.id_embedding = None
        if config.use_id_embedding:
            std = config.id_init_std
            if std is None:
                std = 0.01 if self.modalities else dim**-0.5
            self.id_embedding = nn.Embedding(n_items, dim)
            nn.init.normal_(self.id_embedding.weight, std=std)

    def _add_content(self, features: ItemFeatures, dim: int) -> None:
        """Frozen content as buffers (move with .to(device), no gradient, not saved) and an
        encoder per modality."""
        for name in self.modalities:
            tensor = getattr(features, name)
            if tensor.shape[0] != self.n_items:
                raise ValueError(f"{name} features have {tensor.shape[0]} rows, not {self.n_items}")
            if name == "categories":
                self.register_buffer(name, tensor.long(), persistent=False)  # [N, C]
                self.encoders[name] = CategoryEncoder(features.category_cardinalities, dim)
            else:
                self.register_buffer(name, tensor.float(), persistent=False)  # [N, F_m]
                self.encoders[name] = nn.Sequential(
                    nn.Linear(tensor.shape[1], dim), nn.LayerNorm(dim)
                )
            self.register_buffer(
                f"{name}_mask", _presence(name, features), persistent=False
            )  # [N] bool

    def forward(self, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Item vectors: all N items ([N, D]) or those indexed by ``item_idx`` ([*idx.shape, D]).

        ``item_idx`` holds catalogue indices 0..N-1 (not the +1 shifted sequence values).
        """
        if item_idx is None:
            idx = torch.arange(self.n_items, device=self._device())  # [N]
            out_shape: tuple[int, ...] = (self.n_items,)
        else:
            idx = item_idx.reshape(-1)  # [M]
            out_shape = tuple(item_idx.shape)

        out = None
        if self.fusion is not None:  # content modalities
            tokens, masks = {}, {}
            for name in self.modalities:
                raw = getattr(self, name)[idx]  # [M, F_m] (or [M, C] codes)
                tokens[name] = self.dropout(self.encoders[name](raw))  # [M, D]
                masks[name] = getattr(self, f"{name}_mask")[idx]  # [M]
            out = self.fusion(tokens, masks)  # [M, D]
        if self.id_embedding is not None:
            ids = self.id_embedding(idx)  # [M, D]
            out = ids if out is None else out + ids
        assert out is not None  # __init__ refuses a net with neither content nor IDs
        return out.reshape(*out_shape, self.config.dim)

    def _device(self) -> torch.device:
        return next(self.parameters()).device


class CategoryEncoder(nn.Module):
    """One embedding table per categorical column, summed; code 0 (unknown) embeds to zero."""

    def __init__(self, cardinalities: list[int], dim: int):
        super().__init__()
        tables = [nn.Embedding(cardinality, dim, padding_idx=0) for cardinality in cardinalities]
        for table in tables:
            nn.init.normal_(table.weight, std=dim**-0.5)
            with torch.no_grad():
                table.weight[0].zero_()
        self.tables = nn.ModuleList(tables)
        self.norm = nn.LayerNorm(dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        # codes: [M, C] int64 -> [M, D]
        summed = sum(table(codes[:, col]) for col, table in enumerate(self.tables))
        return self.norm(summed)


def _presence(name: str, features: ItemFeatures) -> torch.Tensor:
    """[N] bool: True where the item has modality ``name``."""
    tensor = getattr(features, name)
    if name == "image" and features.image_mask is not None:
        return features.image_mask.bool().clone()
    if name == "numeric":
        return torch.ones(tensor.shape[0], dtype=torch.bool)  # 0 is a valid (mean) value
    return (tensor != 0).any(dim=1)  # all-zero text/image vector, all-unknown categories
