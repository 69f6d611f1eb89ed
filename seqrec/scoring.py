"""Score histories with a trained model: the one scoring path of training, evaluation and serving.

    histories (item indices, time order)
      -> seq [B, max_len]           the last max_len items + 1, right-aligned (0 = padding)
      -> raw scores [B, N]          the model: dot products with every item + history terms
      -> final scores [B, N]        the history re-rank (`seqrec.rerank`), when configured

`ModelScorer` is the `seqrec.evaluate.Scorer` of a model: training validation, ``seqrec eval``,
bench, the experiment's test figures and `Bundle.scorer` use it as is (the eager model); the
server gives it a faster function for the raw scores (`seqrec.serve.scoring.served_scorer`),
and the same re-rank runs after it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from seqrec.data.sequences import histories_to_tensor
from seqrec.models.recommender import SequenceRecommender
from seqrec.rerank import HistoryFirst

RawScores = Callable[[torch.Tensor], "torch.Tensor | np.ndarray"]  # seq [B, L] -> [B, N]


class ModelScorer:
    """Full-catalogue scores for histories: the model's raw scores, then the history re-rank
    its config asks for (``model.history_first``, read when the scorer is built).

    item_matrix: the [N, D] scored item vectors when already computed (a bundle's); by default
    the model computes them on first use. raw_scores: a function that computes the model's raw
    scores of ``seq`` faster (the server's runtimes); by default the eager model.
    """

    def __init__(
        self,
        model: SequenceRecommender,
        max_len: int,
        device: torch.device | str = "cpu",
        item_matrix: torch.Tensor | None = None,
        raw_scores: RawScores | None = None,
    ):
        self.model, self.max_len, self.device = model, max_len, torch.device(device)
        self.rerank = HistoryFirst.of(model.config)
        self._item_matrix = item_matrix
        self._padded_items: torch.Tensor | None = None  # [N + 1, D] history lookup, on first use
        self._raw_scores = raw_scores

    @torch.no_grad()
    def item_matrix(self) -> torch.Tensor:
        if self._item_matrix is None:
            self.model.eval()
            self._item_matrix = self.model.item_matrix()  # [N, D]
        return self._item_matrix

    def with_raw_scores(self, raw_scores: RawScores) -> ModelScorer:
        """This scorer with its raw scores computed by ``raw_scores`` (the re-rank unchanged)."""
        scorer = ModelScorer(self.model, self.max_len, self.device, self._item_matrix, raw_scores)
        scorer.rerank = self.rerank
        return scorer

    @torch.no_grad()
    def padded_items(self) -> torch.Tensor:
        """[N + 1, D] the vectors items have inside histories (row 0: padding), computed once
        rather than by the item network on every call."""
        if self._padded_items is None:
            self.model.eval()
            self._padded_items = self.model.with_padding_row(self.model.input_item_matrix())
        return self._padded_items

    @torch.no_grad()
    def raw(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, N] raw scores of ``seq`` [B, L]: the model's, before the re-rank."""
        if self._raw_scores is not None:
            return torch.as_tensor(self._raw_scores(seq))
        self.model.eval()
        return self.model.recommend_scores(seq, self.item_matrix(), self.padded_items())

    @torch.no_grad()
    def final(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, N] final scores of ``seq`` [B, L]: the raw scores re-ranked."""
        scores = self.raw(seq)  # [B, N]
        return scores if self.rerank is None else self.rerank(scores, seq)

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        """[B, N] float32 final scores of the histories (item indices, time order)."""
        seq = histories_to_tensor(histories, self.max_len).to(self.device)  # [B, L]
        return self.final(seq).float().cpu().numpy()
