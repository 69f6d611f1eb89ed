"""SASRec-style sequence backbone: a causal pre-layer-norm transformer over the item vectors.

Positions are counted from the first real item of each (right-aligned, left-padded) history:
the oldest kept item is position 0, the next 1, and so on. So the state at any position is
exactly the state an inference call on that prefix would compute, and left padding changes nothing.
Attention is causal and never looks at padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.models.dropout import Dropout
from seqrec.models.dropout import dropout as apply_dropout


class TransformerEncoder(nn.Module):
    def __init__(
        self, dim: int, layers: int = 2, heads: int = 2, dropout: float = 0.1, max_len: int = 50
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.max_len = max_len
        self.position = nn.Embedding(max_len, dim)
        nn.init.normal_(self.position.weight, std=0.02)
        self.dropout = Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D] item vectors, mask: [B, L] bool (True at real items) -> [B, L, D]."""
        length = x.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len {self.max_len}")
        positions = (mask.long().cumsum(dim=1) - 1).clamp_min(0)  # [B, L], 0 at the oldest item
        h = self.dropout(x + self.position(positions)) * mask.unsqueeze(-1)  # [B, L, D]

        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()  # [L, L]
        # Query i may see key j <= i that is a real item; every position also sees itself, so a
        # padding query has one key and no row of the softmax is empty (no NaN).
        eye = torch.eye(length, device=x.device) > 0  # [L, L] (a float eye exports to ONNX)
        attn_mask = causal & (mask[:, None, :] | eye)  # [B, L, L]
        attn_mask = attn_mask.unsqueeze(1)  # [B, 1, L, L], shared by the heads

        for block in self.blocks:
            h = block(h, attn_mask)
        return self.norm(h) * mask.unsqueeze(-1)


class Block(nn.Module):
    """Pre-LN block: h + attention(LN(h)), then h + feed-forward(LN(h))."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout_p = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), Dropout(dropout), nn.Linear(4 * dim, dim)
        )
        self.dropout = Dropout(dropout)

    def forward(self, h: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = h.shape
        q, k, v = self.qkv(self.norm1(h)).split(dim, dim=-1)  # 3 x [B, L, D]
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        # q, k, v: [B, H, L, D / H]
        if self.training and self.dropout_p > 0:
            # SDPA's own attention dropout draws the slow Bernoulli mask (seqrec.models.dropout)
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [B, H, L, L]
            scores = scores.masked_fill(~attn_mask, float("-inf"))
            weights = apply_dropout(scores.softmax(dim=-1), self.dropout_p)  # [B, H, L, L]
            attended = weights @ v  # [B, H, L, D / H]
        else:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        attended = attended.transpose(1, 2).reshape(batch, length, dim)  # [B, L, D]
        h = h + self.dropout(self.proj(attended))
        return h + self.dropout(self.ffn(self.norm2(h)))
