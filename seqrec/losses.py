"""Next-item losses, as pure functions of logits (no model code here).

Logits are dot products between hidden states and item vectors, e.g.::

    pos_logits = (hidden * item_matrix[targets]).sum(-1)  # [M]
    neg_logits = hidden @ item_matrix[negatives].T        # [M, K] (negatives shared) or
    neg_logits = (hidden[:, None] * item_matrix[negatives]).sum(-1)  # [M, K] per row
    logits = hidden @ item_matrix.T                       # [M, N] (full softmax)

Every loss works on flattened positions: row m is one (history prefix, next item) example.
Positions whose target is padding must not be passed in: select them first
(``hidden[mask]``, ``targets[mask] - 1``), or pass ``mask`` ([M] bool, True = keep) to average
over the kept rows only. Targets are catalogue indices 0..N-1 (sequence values minus one).
Each loss is a mean over the kept rows.

Sampled losses take ``neg_mask`` ([M, K] bool, True = keep) to drop sampled negatives that must
not count, e.g. accidental hits where a negative equals the target.

`compute_loss` is the one place a training config's loss becomes a number: it picks the loss of
``TrainConfig.loss`` for a batch of hidden states, adds the model's history terms and keeps the
negatives in the pool of `negative_distribution`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from seqrec.constraints import check_config

if TYPE_CHECKING:
    from seqrec.data.split import Split
    from seqrec.models.recommender import ItemRows
    from seqrec.train import TrainConfig

log = logging.getLogger(__name__)


def _mean(loss: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-row losses [M] over the rows where ``mask`` is True (all rows without one)."""
    if mask is None:
        return loss.mean()
    mask = mask.to(loss.dtype)
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def _negative_term(neg_logits: torch.Tensor, neg_mask: torch.Tensor | None) -> torch.Tensor:
    """[M]: -sum_k log(1 - sigmoid(s_k)) = -sum_k logsigmoid(-s_k) over the kept negatives."""
    terms = -F.logsigmoid(-neg_logits)  # [M, K]
    if neg_mask is not None:
        terms = torch.where(neg_mask, terms, torch.zeros_like(terms))
    return terms.sum(dim=-1)


def bce_sampled(
    pos_logits: torch.Tensor,
    neg_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    neg_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary cross-entropy with sampled negatives (SASRec's loss).

    Per row: -log sigmoid(s+) - sum_k log(1 - sigmoid(s_k)), summed over the K negatives (as in
    SASRec and gSASRec), then averaged over rows.
    pos_logits: [M], neg_logits: [M, K] -> scalar.
    """
    loss = -F.logsigmoid(pos_logits) + _negative_term(neg_logits, neg_mask)  # [M]
    return _mean(loss, mask)


def gbce(
    pos_logits: torch.Tensor,
    neg_logits: torch.Tensor,
    n_items: int,
    n_negatives: int,
    t: float = 0.75,
    mask: torch.Tensor | None = None,
    neg_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generalised BCE of gSASRec (Petrov & Macdonald, RecSys 2023).

    Per row: -log(sigmoid(s+)^beta) - sum_k log(1 - sigmoid(s_k)), with the sampling rate
    alpha = K / (N - 1) and beta = alpha * (t * (1 - 1/alpha) + 1/alpha). t = 0 gives beta = 1
    (plain BCE); t = 1 gives beta = alpha. log(sigmoid(s)^beta) = beta * logsigmoid(s), which is
    stable for any s. pos_logits: [M], neg_logits: [M, K] -> scalar.
    """
    if not 0 < n_negatives <= n_items - 1:
        raise ValueError(f"n_negatives must be in 1..{n_items - 1}, got {n_negatives}")
    alpha = n_negatives / (n_items - 1)
    beta = alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)
    loss = -beta * F.logsigmoid(pos_logits) + _negative_term(neg_logits, neg_mask)  # [M]
    return _mean(loss, mask)


def sampled_softmax(
    pos_logits: torch.Tensor,
    neg_logits: torch.Tensor,
    log_q_pos: torch.Tensor,
    log_q_neg: torch.Tensor,
    mask: torch.Tensor | None = None,
    neg_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy over the target and K sampled negatives, with logQ correction.

    Each logit is corrected by subtracting the log-probability that its item is sampled
    (``log_q``), so popular items, sampled more often, are not over-penalised and the loss
    estimates the full softmax without bias. With uniform sampling the correction is a constant
    and changes nothing. pos_logits, log_q_pos: [M]; neg_logits, log_q_neg: [M, K] -> scalar.
    """
    pos = (pos_logits - log_q_pos).unsqueeze(-1)  # [M, 1]
    neg = neg_logits - log_q_neg  # [M, K]
    if neg_mask is not None:
        neg = neg.masked_fill(~neg_mask, float("-inf"))
    logits = torch.cat([pos, neg], dim=-1)  # [M, 1 + K], the target is column 0
    loss = -torch.log_softmax(logits, dim=-1)[:, 0]  # [M]
    return _mean(loss, mask)


def full_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax cross-entropy over the whole catalogue.

    logits: [M, N] scores of every item, targets: [M] item indices 0..N-1 -> scalar.
    """
    loss = F.cross_entropy(logits, targets, reduction="none")  # [M]
    return _mean(loss, mask)


class _CatalogueCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy of ``hidden @ item_matrix.T`` computed ``chunk`` rows at a time.

    Neither pass keeps the [M, N] logits: the forward pass stores one log-sum-exp per row and
    the backward pass recomputes each chunk's logits into one reused [chunk, N] buffer, turns
    them into softmax - one-hot in place and multiplies them out. On a CPU the [M, N] tensors of
    the plain path (logits, log-softmax, the zero-filled gradient, its log-softmax backward),
    fresh memory every step, cost more than the matrix products themselves. It runs in the
    inputs' dtype (float32 in training), with autocast off: under CUDA autocast its products
    are not done in bfloat16.
    """

    @staticmethod
    def forward(ctx, hidden, item_matrix, targets, chunk):
        rows_total = hidden.shape[0]
        with torch.autocast(hidden.device.type, enabled=False):
            buffer = hidden.new_empty(min(chunk, rows_total), item_matrix.shape[0])
            log_norm = hidden.new_empty(rows_total)  # [M] log-sum-exp of each row's logits
            for start in range(0, rows_total, chunk):
                rows = slice(start, start + chunk)
                logits = buffer[: min(chunk, rows_total - start)]  # [C, N]
                torch.mm(hidden[rows], item_matrix.T, out=logits)
                peak = logits.amax(dim=-1, keepdim=True)  # [C, 1]
                sums = logits.sub_(peak).exp_().sum(dim=-1)  # [C]
                log_norm[rows] = sums.log_() + peak[:, 0]
            target_logits = (hidden * item_matrix[targets]).sum(dim=-1)  # [M]
        ctx.save_for_backward(hidden, item_matrix, targets, log_norm)
        ctx.chunk = chunk
        return (log_norm - target_logits).mean()

    @staticmethod
    def backward(ctx, grad_output):
        hidden, item_matrix, targets, log_norm = ctx.saved_tensors
        rows_total = hidden.shape[0]
        scale = grad_output / rows_total
        grad_hidden = torch.empty_like(hidden)
        grad_items = torch.zeros_like(item_matrix)
        with torch.autocast(hidden.device.type, enabled=False):
            buffer = hidden.new_empty(min(ctx.chunk, rows_total), item_matrix.shape[0])
            for start in range(0, rows_total, ctx.chunk):
                rows = slice(start, start + ctx.chunk)
                probs = buffer[: min(ctx.chunk, rows_total - start)]  # [C, N]
                torch.mm(hidden[rows], item_matrix.T, out=probs)  # logits
                probs.sub_(log_norm[rows, None]).exp_()  # softmax
                probs[torch.arange(len(probs), device=probs.device), targets[rows]] -= 1.0
                probs.mul_(scale)  # d loss / d logits
                torch.mm(probs, item_matrix, out=grad_hidden[rows])  # [C, D]
                grad_items.addmm_(probs.T, hidden[rows])  # [N, D]
        return grad_hidden, grad_items, None, None


def catalogue_cross_entropy(
    hidden: torch.Tensor, item_matrix: torch.Tensor, targets: torch.Tensor, chunk: int = 1024
) -> torch.Tensor:
    """`full_cross_entropy` of the logits ``hidden @ item_matrix.T``, without building them.

    hidden: [M, D], item_matrix: [N, D], targets: [M] item indices 0..N-1 -> scalar mean. Equal
    to ``full_cross_entropy(hidden @ item_matrix.T, targets)`` in value and gradients, in
    memory of ``chunk`` x N instead of M x N.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    return _CatalogueCrossEntropy.apply(hidden, item_matrix, targets, chunk)


def sample_negatives(
    n_items: int,
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    probs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample item indices 0..N-1 with replacement, uniformly or with ``probs``.

    ``probs``: [N] non-negative weights (e.g. popularity counts + 1), normalised here.
    Returns ``(indices, log_q)``, both of ``shape``: int64 indices and the float32
    log-probability of drawing each index, for the logQ correction of `sampled_softmax`.
    Samples on the generator's device (CPU without one); move them to the model's device.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    count = math.prod(shape)
    if probs is None:
        indices = torch.randint(n_items, shape, generator=generator, device=device)
        log_q = torch.full(shape, -math.log(n_items), device=device)
        return indices, log_q
    if probs.shape != (n_items,):
        raise ValueError(f"probs must have shape ({n_items},), got {tuple(probs.shape)}")
    probs = probs.to(device=device, dtype=torch.float64)
    probs = probs / probs.sum()
    indices = torch.multinomial(probs, count, replacement=True, generator=generator)
    indices = indices.reshape(shape)
    log_q = probs[indices].log().float()
    return indices, log_q


@dataclass
class HistoryTerms:
    """A model's history terms (its `history_terms()`: repeat bias, content affinity) and the
    histories they read: row m of the loss is the state after position cols[m] of seq[rows[m]]."""

    terms: list  # each with ``full`` and ``at``; empty: nothing to add
    seq: torch.Tensor  # [B, L] inputs (item_idx + 1)
    rows: torch.Tensor  # [M]
    cols: torch.Tensor  # [M]


def negative_distribution(
    split: Split, config: TrainConfig
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(pool, sampling_probs) of the items a loss may use as negatives, from one count.

    pool: [P] sorted item indices, or None for all N items. ``negatives = "trained"`` keeps the
    items with at least one interaction in ``split.train``. An item nobody has interacted with
    yet (a new arrival) says nothing about shoppers' taste; as a negative of every training
    example it teaches the model that items like it are never bought, which is what a catalogue
    full of new arrivals must not learn. Every training target is in the pool by construction.
    sampling_probs: [N] probabilities the sampled losses draw negatives with (zero outside the
    pool), or None for uniform over all N items.
    """
    check_config(config, "train")
    counts = np.bincount(split.train["item_idx"].to_numpy(), minlength=split.n_items)
    pool = None
    if config.negatives == "trained":
        pool = torch.from_numpy(np.flatnonzero(counts)).long()
    if config.negative_sampling == "popularity":
        weights = counts + 1.0
    elif pool is not None:
        weights = np.ones(split.n_items)
    else:
        return None, None
    if pool is not None:
        weights = np.where(counts > 0, weights, 0.0)
    return pool, torch.tensor(weights / weights.sum(), dtype=torch.float32)


def resolve_loss(config: TrainConfig, n_items: int) -> TrainConfig:
    """``config`` with ``loss = "auto"`` replaced by the loss it stands for over ``n_items``
    catalogue items (any other loss is kept): the full softmax ("ce") up to
    ``full_softmax_max_items``, sampled softmax with logQ correction above it, where scoring
    every item at every position makes a step cost in proportion to the catalogue."""
    if config.loss != "auto":
        return config
    loss = "ce" if n_items <= config.full_softmax_max_items else "sampled_softmax"
    log.info(
        "train.loss = auto: %s for %d items (train.full_softmax_max_items = %d)",
        loss,
        n_items,
        config.full_softmax_max_items,
    )
    return replace(config, loss=loss)


def compute_loss(
    config: TrainConfig,
    hidden: torch.Tensor,  # [M, D] states at positions with a target
    targets: torch.Tensor,  # [M] item indices (0-based)
    item_matrix: torch.Tensor | ItemRows,  # [N, D] (rows computed when indexed: sampled only)
    generator: torch.Generator,
    sampling_probs: torch.Tensor | None,
    history: HistoryTerms | None = None,  # added to every logit; None: none
    pool: torch.Tensor | None = None,  # [P] items that may be negatives, on hidden's device
) -> torch.Tensor:
    """The training loss of one batch. With a ``pool`` (`negative_distribution`), only its
    items compete with the target: the softmax runs over the pool (``ce``), and the sampled
    losses draw negatives from ``sampling_probs``, which must then be zero outside it. Every
    target must be in the pool."""
    if config.loss == "auto":
        raise ValueError('train.loss = "auto" must be resolved first (resolve_loss)')
    if history is not None and not history.terms:
        history = None
    if config.loss == "ce":
        if not isinstance(item_matrix, torch.Tensor):
            raise ValueError("the full softmax needs the whole [N, D] item matrix")
        return _pool_cross_entropy(hidden, targets, item_matrix, history, pool)
    if pool is not None and sampling_probs is None:
        raise ValueError("a negative pool needs sampling_probs over it (negative_distribution)")
    n_items = item_matrix.shape[0]
    n_candidates = n_items if pool is None else len(pool)
    negatives, _ = sample_negatives(
        n_items, (config.n_negatives,), generator, probs=sampling_probs
    )  # [K]; shared by every position in the batch
    negatives = negatives.to(hidden.device)
    pos_logits = (hidden * item_matrix[targets]).sum(dim=-1)  # [M]
    neg_logits = hidden @ item_matrix[negatives].T  # [M, K]
    if history is not None:
        where = (history.seq, history.rows, history.cols)
        for term in history.terms:
            pos_logits = pos_logits + term.at(*where, targets[:, None])[:, 0]
            neg_logits = neg_logits + term.at(*where, negatives)
    if config.loss == "bce":
        return bce_sampled(pos_logits, neg_logits)
    if config.loss == "gbce":
        return gbce(pos_logits, neg_logits, n_candidates, config.n_negatives, config.gbce_t)
    # sampled_softmax (TrainConfig.loss allows no other)
    if sampling_probs is None:
        log_q = torch.full((n_items,), -math.log(n_items), device=hidden.device)
    else:
        log_q = sampling_probs.clamp_min(1e-12).log().to(hidden.device)
    return sampled_softmax(
        pos_logits, neg_logits, log_q[targets], log_q[negatives].expand_as(neg_logits)
    )


def _pool_cross_entropy(
    hidden: torch.Tensor,  # [M, D]
    targets: torch.Tensor,  # [M] item indices (0-based)
    item_matrix: torch.Tensor,  # [N, D]
    history: HistoryTerms | None,  # with at least one term
    pool: torch.Tensor | None,  # [P] or None for all N items
) -> torch.Tensor:
    """The ``ce`` loss: softmax cross-entropy over the pool's items (the catalogue without one),
    without building the [M, N] logits when no history term adds to them."""
    if pool is not None:
        targets = torch.searchsorted(pool, targets)  # position of each target in the pool
    if history is None:
        if pool is not None:
            item_matrix = item_matrix[pool]  # [P, D]
        return catalogue_cross_entropy(hidden, item_matrix, targets)
    logits = hidden @ item_matrix.T  # [M, N]
    for term in history.terms:
        logits = logits + term.full(history.seq, history.rows, history.cols, item_matrix.shape[0])
    if pool is not None:
        logits = logits[:, pool]  # [M, P]
    return full_cross_entropy(logits, targets)
