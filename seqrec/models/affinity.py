"""Content affinity: a learned score bonus for items whose content resembles the recent history.

Shoppers come back for things like what they just bought: another colour of the same top, the
trousers of the same line. Content KNN over the last few purchases is a strong heuristic on H&M
for that reason, and it ranks items nobody has bought yet. A dot product between a learned
history state and learned item vectors can express it only after much data; with a few thousand
shoppers it does not. This module gives the recommender that similarity directly, with learned
weights:

    sim_m(i, j)   cosine similarity of items i and j in modality m (text TF-IDF terms, image),
                  kept for each item's ``neighbours`` most similar items (itself included)
    bonus(t, i) = sum over m of SCALE * s_m * sum over history positions j <= t of
                  r[t - j] * sim_m(item_j, i)

``r`` (by steps back, 0 = latest) starts at 1 for the last ``window`` steps and 0 before, the
content-KNN heuristic; ``s`` starts at 0, so the bonus starts switched off and the data decide
what it is worth. Both are stored divided by ``SCALE`` for the reason given in
`seqrec.models.repeat`. The neighbour graph is computed from the item features when the model is
built (like `ItemNet`'s buffers it is not saved in ``state_dict()``), so new items get neighbours
from their content alone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from seqrec.baselines import normalise_rows
from seqrec.features.item_features import ItemFeatures
from seqrec.neighbours import top_neighbours
from seqrec.progress import stage

SCALE = 10.0
AFFINITY_MODALITIES = ("text", "image")


def unit_rows(vectors):
    """Float32 L2-normalised rows of a dense array or scipy sparse matrix (zero rows stay
    zero): `seqrec.baselines.normalise_rows` in float32, the precision of the model's buffers."""
    return normalise_rows(vectors, dtype=np.float32)


def modality_content(features: ItemFeatures, name: str):
    """Unit rows [N, F] of one modality: TF-IDF terms for text when present, zero where absent."""
    if name == "text" and features.text_terms is not None:
        return unit_rows(features.text_terms)
    vectors = getattr(features, name).numpy()
    if name == "image" and features.image_mask is not None:
        vectors = vectors * features.image_mask.numpy()[:, None]
    return unit_rows(vectors)


def neighbour_graph(
    content, neighbours: int, block: int = 1024, exact_limit: int | None = None, name: str = ""
):
    """Each item's ``neighbours`` most similar items by cosine: ([N, K] int64, [N, K] float32).

    ``content`` has unit rows (`unit_rows`); an item with no content has similarity 0 to all.
    Within the kept neighbours, equal similarities are ordered by item index. Exact up to
    ``exact_limit`` items, approximate above (`seqrec.neighbours.top_neighbours`). ``name``
    (the modality) labels its progress.
    """
    label = f"neighbour graph {name}".rstrip()
    with stage(label, total=content.shape[0], unit="items") as advance:
        items, sims = top_neighbours(content, neighbours, block, exact_limit, advance=advance)
    return torch.from_numpy(items), torch.from_numpy(sims)


class ContentAffinity(nn.Module):
    def __init__(
        self,
        features: ItemFeatures,
        modalities: list[str],
        max_len: int,
        window: int = 5,
        neighbours: int = 100,
    ):
        super().__init__()
        self.modalities = [name for name in AFFINITY_MODALITIES if name in modalities]
        if not self.modalities:
            raise ValueError("content affinity needs text or image features")
        for name in self.modalities:
            items, sims = neighbour_graph(modality_content(features, name), neighbours, name=name)
            self.register_buffer(f"neighbours_{name}", items, persistent=False)  # [N, K]
            self.register_buffer(f"similarity_{name}", sims, persistent=False)  # [N, K]
        recency = (torch.arange(max_len) < window).float() / SCALE  # [L] by steps back
        self.recency = nn.Parameter(recency)
        self.strength = nn.Parameter(torch.zeros(len(self.modalities)))  # [n_modalities]

    def entries(self, seq: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
        """(items [M, S], bonuses [M, S]) of the queries at (rows[m], cols[m]) of ``seq``: each
        history item's neighbours and what they gain, every modality in turn (0.0 where a
        position is padding or not yet seen). Scattered with ``scatter_add`` they give `full`.

        seq [B, L] (item_idx + 1, 0 = padding); a query at position t sees positions j <= t.
        """
        length = seq.shape[1]
        positions = torch.arange(length, device=seq.device)  # [L]
        history = seq[rows]  # [M, L]
        distance = cols[:, None] - positions[None, :]  # [M, L] steps back from the query
        visible = (distance >= 0) & (history > 0)  # [M, L]
        weights = SCALE * self.recency[distance.clamp(0, length - 1)] * visible  # [M, L]
        items = (history - 1).clamp_min(0)  # [M, L]
        targets, bonuses = [], []
        for index, name in enumerate(self.modalities):
            targets.append(getattr(self, f"neighbours_{name}")[items].flatten(1))  # [M, L * K]
            sims = getattr(self, f"similarity_{name}")[items]  # [M, L, K]
            values = SCALE * self.strength[index] * weights[:, :, None] * sims  # [M, L, K]
            bonuses.append(values.flatten(1))  # [M, L * K]
        return torch.cat(targets, dim=1), torch.cat(bonuses, dim=1)

    def full(self, seq: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n_items: int):
        """[M, N] bonus over the whole catalogue for the queries at (rows[m], cols[m])."""
        targets, bonuses = self.entries(seq, rows, cols)
        return bonuses.new_zeros(rows.shape[0], n_items).scatter_add(1, targets, bonuses)

    def at(self, seq: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, candidates):
        """[M, C] bonus for given candidate items [M, C] (or [C], shared by every row)."""
        full = self.full(seq, rows, cols, self.n_items)  # [M, N]
        if candidates.dim() == 1:
            return full[:, candidates]
        return full.gather(1, candidates)

    @property
    def n_items(self) -> int:
        return getattr(self, f"neighbours_{self.modalities[0]}").shape[0]

    def last_entries(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`entries` after the whole history (the last position of right-aligned ``seq``)."""
        rows = torch.arange(seq.shape[0], device=seq.device)
        return self.entries(seq, rows, torch.full_like(rows, seq.shape[1] - 1))

    def last(self, seq: torch.Tensor, n_items: int) -> torch.Tensor:
        """[B, N] bonus after the whole history (the last position of right-aligned ``seq``)."""
        rows = torch.arange(seq.shape[0], device=seq.device)
        return self.full(seq, rows, torch.full_like(rows, seq.shape[1] - 1), n_items)
