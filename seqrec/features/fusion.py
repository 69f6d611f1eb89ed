"""Fusion of per-modality item vectors into one item vector.

The item network (`seqrec.models.item_net.ItemNet`) projects every modality of an item (text,
image, categories, numeric) to a common width D; a fusion module then combines these modality
"tokens" into a single [N, D] item vector. Three fusions, chosen by name with `build_fusion`:

- ``"concat"``: concatenate the tokens and project back to D with a linear layer;
- ``"product"``: element-wise product of the tokens;
- ``"attention"``: a learned query attends over the modality tokens.

Every fusion takes the same inputs:

- ``tokens``: ``{modality: [N, D]}``, one entry per modality the fusion was built for;
- ``masks``: ``{modality: [N] bool}``, True where the item has that modality (e.g. ``image_mask``).
  A modality without an entry is present for every item.

A missing modality never contributes: concat sees zeros in its slot, product sees ones (the
identity of the product), attention gives it no weight. So the value of a masked token does
not matter at all, and an item without an image does not get a made-up image vector. An item
with no modality at all gets the zero vector (only its ID embedding remains, if the item network
has one).
"""

from __future__ import annotations

import math

import torch
from torch import nn

FUSIONS = ("concat", "product", "attention")


def _stack(
    modalities: list[str], tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens as one tensor [N, M, D] and presence as [N, M] bool, in ``modalities`` order."""
    missing = [name for name in modalities if name not in tokens]
    if missing:
        raise KeyError(f"fusion expects tokens for {modalities}, missing {missing}")
    x = torch.stack([tokens[name] for name in modalities], dim=1)  # [N, M, D]
    present = torch.stack(
        [
            masks[name].bool()
            if masks.get(name) is not None
            else torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            for name in modalities
        ],
        dim=1,
    )  # [N, M]
    return x, present


class ConcatFusion(nn.Module):
    """Concatenate the modality tokens (zeros where missing) and project to D."""

    def __init__(self, modalities: list[str], dim: int):
        super().__init__()
        self.modalities = list(modalities)
        self.proj = nn.Linear(len(self.modalities) * dim, dim)

    def forward(
        self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        x, present = _stack(self.modalities, tokens, masks)  # [N, M, D], [N, M]
        x = torch.where(present.unsqueeze(-1), x, torch.zeros_like(x))  # missing -> zeros
        out = self.proj(x.flatten(1))  # [N, M * D] -> [N, D]
        return out * present.any(dim=1, keepdim=True)  # no content at all -> zero vector


class ProductFusion(nn.Module):
    """Element-wise product of the modality tokens; a missing modality counts as all ones."""

    def __init__(self, modalities: list[str], dim: int):
        super().__init__()
        self.modalities = list(modalities)

    def forward(
        self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        x, present = _stack(self.modalities, tokens, masks)  # [N, M, D], [N, M]
        x = torch.where(present.unsqueeze(-1), x, torch.ones_like(x))  # identity where missing
        out = x.prod(dim=1)  # [N, D]
        return out * present.any(dim=1, keepdim=True)


class AttentionFusion(nn.Module):
    """A learned query attends over the modality tokens of each item.

    Keys are the tokens plus a learned modality embedding (so the query can tell modalities
    apart), values are linear maps of the tokens. Missing modalities are masked out of the
    softmax; the weights of the present ones sum to one.
    """

    def __init__(self, modalities: list[str], dim: int):
        super().__init__()
        self.modalities = list(modalities)
        self.query = nn.Parameter(torch.randn(dim) * dim**-0.5)
        self.modality_emb = nn.Parameter(torch.zeros(len(self.modalities), dim))
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(
        self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        x, present = _stack(self.modalities, tokens, masks)  # [N, M, D], [N, M]
        keys = self.key(x + self.modality_emb)  # [N, M, D]
        scores = (keys @ self.query) * self.scale  # [N, M]
        scores = scores.masked_fill(~present, float("-inf"))
        any_present = present.any(dim=1, keepdim=True)  # [N, 1]
        # An item with no modality would softmax over only -inf (NaN): give it zero weights.
        weights = torch.softmax(scores.masked_fill(~any_present, 0.0), dim=1)  # [N, M]
        weights = weights * any_present
        values = self.value(x)  # [N, M, D]
        # Multiply by zero would still pass NaN/inf from a masked token: select instead.
        values = torch.where(present.unsqueeze(-1), values, torch.zeros_like(values))
        fused = (weights.unsqueeze(-1) * values).sum(dim=1)  # [N, D]
        return self.out(fused) * any_present


def build_fusion(kind: str, modalities: list[str], dim: int) -> nn.Module:
    """The fusion module named ``kind`` (one of `FUSIONS`) over ``modalities`` of width ``dim``."""
    classes = {"concat": ConcatFusion, "product": ProductFusion, "attention": AttentionFusion}
    if kind not in classes:
        raise ValueError(f"unknown fusion {kind!r}; expected one of {FUSIONS}")
    if not modalities:
        raise ValueError("a fusion needs at least one modality")
    return classes[kind](modalities, dim)
