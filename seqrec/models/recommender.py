"""The sequential recommender: item network -> sequence backbone -> dot-product scores.

    seq [B, L] (item_idx + 1, 0 = padding, right-aligned)
      -> rows of the input item matrix       [B, L, D]  (zero vectors at padding)
      -> backbone (gru | transformer | mlp)  [B, L, D]  hidden state after each position
      -> score against the item matrix       [B, N]     dot products with every catalogue item

The hidden state at position t predicts the item at t + 1; the last position (L - 1) holds the
state after the whole history, the one used to recommend. There are no per-user parameters: a
new user is scored from their history alone, and a new item from its content.

With ``tied = True`` one `ItemNet` gives both the input vectors and the vectors that are scored;
otherwise a second `ItemNet`, with its own parameters, gives the scored (output) vectors.

Typical training step::

    hidden = model(seq)                    # [B, L, D]
    items = model.item_matrix()            # [N, D]
    logits = model.score(hidden[mask], items)  # [M, N]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from seqrec.constraints import at_least, check_config, choice, in_range, positive
from seqrec.features.item_features import ItemFeatures
from seqrec.models.affinity import AFFINITY_MODALITIES, ContentAffinity
from seqrec.models.gru import GRUEncoder
from seqrec.models.item_net import ItemNet, ItemNetConfig
from seqrec.models.mlp import MLPEncoder
from seqrec.models.repeat import RepeatBias
from seqrec.models.transformer import TransformerEncoder

BACKBONES = ("gru", "transformer", "mlp")
HISTORY_ORDERS = ("score", "recency")


@dataclass
class ModelConfig:
    model: str = choice("transformer", *BACKBONES)
    # width D of item vectors and hidden states (item_net.dim may stay unset)
    dim: int = at_least(1, 64)
    layers: int = at_least(1, 2)
    heads: int = at_least(1, 2)  # transformer only; must divide dim
    dropout: float = in_range(0.0, 1.0, 0.2, high_open=True)
    # longest history the backbone accepts (transformer positions, mlp decay)
    max_len: int = at_least(1, 50)
    mlp_decay: float = positive(0.5)  # mlp only: initial recency decay per step, weight exp(-decay)
    item_net: ItemNetConfig = field(default_factory=ItemNetConfig)
    tied: bool = True  # score with the input item net; False: a second item net for outputs
    repeat_bias: bool = False  # add a learned bonus for items already in the history
    content_affinity: bool = False  # add a learned bonus for items like the recent history
    # history steps the affinity starts from (it learns the rest)
    affinity_window: int = at_least(1, 5)
    affinity_neighbours: int = at_least(1, 100)  # most similar items kept per item and modality
    # rank the shopper's own history items above every other item (in history_order), as the
    # repeat-purchase heuristic does; applied when recommending, not in the training loss
    history_first: bool = False
    # with history_first: how many history items go first (the first in history_order); the
    # rest compete with every other item. 0 = all of them
    history_slots: int = at_least(0, 0)
    # with history_first: the order of the history items at the top. "score": their own scores;
    # "recency": the latest purchase first, as the repeat-purchase heuristic orders them
    history_order: str = choice("score", *HISTORY_ORDERS)

    def problems(self) -> list[tuple[str, str]]:
        if self.item_net.dim not in (None, self.dim):
            return [("item_net.dim", f"differs from model.dim = {self.dim} (leave it unset)")]
        if self.model == "transformer" and self.dim % self.heads:
            return [("heads", f"does not divide model.dim = {self.dim} (transformer heads)")]
        return []


class SequenceRecommender(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        item_net: ItemNet,
        backbone: nn.Module,
        output_item_net: ItemNet | None = None,
        repeat: RepeatBias | None = None,
        affinity: ContentAffinity | None = None,
    ):
        super().__init__()
        self.config = config
        self.item_net = item_net
        self.backbone = backbone
        self.output_item_net = output_item_net  # None when tied
        self.repeat = repeat  # None unless config.repeat_bias
        self.affinity = affinity  # None unless config.content_affinity (and text or image)

    def history_terms(self) -> list[RepeatBias | ContentAffinity]:
        """Score terms computed from the history items themselves (`RepeatBias`,
        `ContentAffinity`), each with ``full``, ``at``, ``last`` and ``last_entries``."""
        return [term for term in (self.repeat, self.affinity) if term is not None]

    @property
    def n_items(self) -> int:
        return self.item_net.n_items

    def input_item_matrix(self) -> torch.Tensor:
        """[N, D] vectors that represent items inside histories."""
        return self.item_net()

    def item_matrix(self) -> torch.Tensor:
        """[N, D] vectors that hidden states are scored against (the input ones when tied)."""
        if self.output_item_net is None:
            return self.item_net()
        return self.output_item_net()

    def forward(self, seq: torch.Tensor, input_items: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, L, D] of right-aligned sequences ``seq`` [B, L] (item_idx + 1).

        ``input_items`` ([N, D], from `input_item_matrix`) may be passed to reuse an item matrix
        already computed for this batch; by default it is computed here.
        """
        if input_items is None:
            input_items = self.input_item_matrix()  # [N, D]
        return self.encode(seq, self.with_padding_row(input_items))

    @staticmethod
    def with_padding_row(input_items: torch.Tensor) -> torch.Tensor:
        """[N + 1, D] lookup table for ``seq`` values: row 0 (padding) is the zero vector."""
        return torch.cat([input_items.new_zeros(1, input_items.shape[1]), input_items])

    def encode(self, seq: torch.Tensor, padded_items: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, L, D] of ``seq`` [B, L] read through ``padded_items`` [N + 1, D]
        (`with_padding_row`): `forward` with the lookup table built once by the caller."""
        x = padded_items[seq]  # [B, L, D]
        return self.backbone(x, seq > 0)  # [B, L, D]

    def encode_batch(self, seq: torch.Tensor) -> torch.Tensor:
        """`forward` running the item network only on the items ``seq`` [B, L] holds (a batch
        reads a few hundred of a catalogue's items): hidden states [B, L, D]."""
        padded = torch.cat([seq.new_zeros(1), seq.reshape(-1)])  # 0 first: padding stays 0
        values, inverse = torch.unique(padded, return_inverse=True)  # [U + 1], [B * L + 1]
        vectors = self.item_net(values[1:] - 1)  # [U, D]
        table = torch.cat([vectors.new_zeros(1, vectors.shape[1]), vectors])  # [U + 1, D]
        return self.encode(inverse[1:].reshape(seq.shape), table)

    def scored_rows(self) -> ItemRows:
        """The scored item vectors, computed for the rows a sampled loss asks for only."""
        return ItemRows(self.item_net if self.output_item_net is None else self.output_item_net)

    def last_hidden(
        self, seq: torch.Tensor, padded_items: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, D] state after the whole history: the last position of right-aligned ``seq``
        (read through ``padded_items``, `with_padding_row`, when the caller keeps it)."""
        if padded_items is None:
            return self(seq)[:, -1]
        return self.encode(seq, padded_items)[:, -1]

    @staticmethod
    def score(hidden: torch.Tensor, item_matrix: torch.Tensor) -> torch.Tensor:
        """Dot-product scores: hidden [B, D] (or [..., D]) x item_matrix [N, D] -> [B, N]."""
        return hidden @ item_matrix.T

    def recommend_scores(
        self,
        seq: torch.Tensor,
        item_matrix: torch.Tensor,
        padded_items: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B, N] raw scores of every item after the histories ``seq`` [B, L]: dot products
        plus the history terms. The history re-rank (``history_first``) is not the model's:
        `seqrec.scoring.ModelScorer` applies it (`seqrec.rerank`). ``padded_items``: the
        history lookup table when the caller keeps it (else the item network runs here)."""
        scores = self.score(self.last_hidden(seq, padded_items), item_matrix)  # [B, N]
        return self.add_history_terms(scores, seq)

    def add_history_terms(self, scores: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """Dot-product scores [B, N] -> raw scores: each history term's bonus added.

        The history terms touch only the history items and their content neighbours, so their
        bonuses are added where they fall (one scatter) rather than as dense [B, N] matrices.
        """
        entries = [term.last_entries(seq) for term in self.history_terms()]
        if not entries:
            return scores
        items = torch.cat([items for items, _ in entries], dim=1)  # [B, S]
        bonuses = torch.cat([bonuses for _, bonuses in entries], dim=1)  # [B, S]
        return scores.scatter_add(1, items, bonuses)  # [B, N]


class ItemRows:
    """An [N, D] item matrix whose rows are computed when indexed (``rows[idx]`` -> [*idx, D]
    float32) by the item network: what a sampled loss reads of the catalogue."""

    def __init__(self, net: ItemNet):
        self.net = net
        self.shape = (net.n_items, net.config.dim)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.net(idx).float()


def build_model(
    config: ModelConfig, features: ItemFeatures | None, n_items: int
) -> SequenceRecommender:
    """The recommender described by ``config`` over ``n_items`` items with content ``features``.

    ``features`` may be None for an ID-only model (``item_net.use_id_embedding`` must be on).
    ``config.dim`` sets the width everywhere; ``item_net.dim``, if set, must agree with it.
    """
    if features is not None and features.modalities() and features.n_items != n_items:
        raise ValueError(f"features describe {features.n_items} items, not {n_items}")
    check_config(config, "model")
    item_config = dataclasses.replace(config.item_net, dim=config.dim)
    item_net = ItemNet(item_config, features, n_items)
    output_item_net = None if config.tied else ItemNet(item_config, features, n_items)
    backbone = _backbone(config)  # built in this order: the initial weights depend on it
    repeat = RepeatBias(config.max_len) if config.repeat_bias else None
    affinity = None
    content = [name for name in item_net.modalities if name in AFFINITY_MODALITIES]
    # content modalities come from features: none for ID-only ablations, where it is silently off
    if config.content_affinity and content and features is not None:
        affinity = ContentAffinity(
            features,
            content,
            config.max_len,
            window=config.affinity_window,
            neighbours=config.affinity_neighbours,
        )
    return SequenceRecommender(config, item_net, backbone, output_item_net, repeat, affinity)


def _backbone(config: ModelConfig) -> nn.Module:
    """The sequence backbone named by ``config.model``: [B, L, D] inputs -> [B, L, D] states."""
    dim, layers, dropout, max_len = config.dim, config.layers, config.dropout, config.max_len
    if config.model == "gru":
        return GRUEncoder(dim, layers=layers, dropout=dropout)
    if config.model == "transformer":
        return TransformerEncoder(dim, layers, config.heads, dropout=dropout, max_len=max_len)
    return MLPEncoder(dim, layers, dropout=dropout, max_len=max_len, decay=config.mlp_decay)
