"""Train a sequence recommender: batches of right-aligned histories, next-item targets.

`fit` is the whole loop. Each epoch shuffles users with a seeded generator, takes every position
of every training sequence as a next-item example, computes one of four losses (`seqrec.losses`),
steps AdamW with gradient clipping and a learning-rate schedule, then ranks the full catalogue
for the validation users and keeps the weights with the best validation metric (early stopping).

A checkpoint with the model, optimiser, schedule and every random state is written atomically
after each epoch; started again with the same output folder, `fit` resumes from it and ends with
the same weights and metrics as an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from seqrec import distributed, losses
from seqrec.checkpoint import (
    load_checkpoint,
    restore,
    run_identity,
    save_checkpoint,
    training_settings,
)
from seqrec.constraints import (
    ConfigError,
    at_least,
    check_config,
    choice,
    device_field,
    in_range,
    positive,
)
from seqrec.data.dataset import DataError
from seqrec.data.sequences import build_sequences, histories_to_tensor
from seqrec.data.split import EvalTask, Split

LOSSES = ("bce", "sampled_softmax", "ce", "gbce")
TARGETS = ("next_item", "next_basket")


@dataclass
class TrainConfig:
    loss: str = choice("ce", *LOSSES)
    epochs: int = at_least(1, 20)
    batch_size: int = at_least(1, 128)
    lr: float = positive(1e-3)
    weight_decay: float = at_least(0, 0.0)
    optimizer: str = choice("adamw", "adam", "adamw")
    schedule: str = choice("cosine", "cosine", "constant")  # both after a linear warm-up
    warmup_steps: int = at_least(0, 100)
    grad_clip: float = at_least(0, 1.0)  # max gradient norm; 0 = no clipping
    n_negatives: int = at_least(1, 256)  # bce, sampled_softmax, gbce
    negative_sampling: str = choice("uniform", "uniform", "popularity")
    # which items the loss may score against the target: "catalogue" (every item) or "trained"
    # (items with at least one training interaction; see `negative_distribution`)
    negatives: str = choice("catalogue", "catalogue", "trained")
    gbce_t: float = in_range(0.0, 1.0, 0.75)
    target: str = choice("next_item", *TARGETS)  # see `target_pairs`
    last_targets: int = at_least(0, 0)  # train only on each sequence's last N targets; 0 = all
    patience: int = at_least(0, 5)  # epochs without validation improvement; 0 = never stop
    # after the epoch is chosen on validation, train a fresh model on train + valid for that many
    # epochs of the same schedule and use it for test and the bundle (see `experiment.train_on`)
    refit: bool = False
    seed: int = at_least(0, 0)
    device: str = device_field("auto")  # auto | cpu | cuda | cuda:N | mps
    valid_users: int = at_least(0, 0)  # validate on a seeded sample of this many users; 0 = all
    eval_batch_size: int = at_least(1, 512)


@dataclass
class TrainResult:
    best_epoch: int
    best_metric: float
    history: list[dict] = field(default_factory=list)  # one row per epoch
    state_dict: dict | None = None  # best weights


def device_unavailable(name: str) -> str | None:
    """Why this machine cannot train on device ``name`` (None when it can)."""
    kind, _, index = name.partition(":")
    if kind == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine; use cpu or auto"
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        return f"this machine has {torch.cuda.device_count()} CUDA device(s)"
    mps = getattr(torch.backends, "mps", None)
    if kind == "mps" and not (mps and mps.is_available()):
        return "MPS (Apple GPU) is not available on this machine; use cpu or auto"
    return None


def pick_device(name: str) -> torch.device:
    """The torch device of a ``train.device`` value; ConfigError if this machine lacks it."""
    if name != "auto":
        why = device_unavailable(name)
        if why:
            raise ConfigError(f"train.device = {name!r}: {why}")
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class ModelScorer:
    """Full-catalogue scores for histories: the `seqrec.evaluate.Scorer` of a trained model."""

    def __init__(self, model: torch.nn.Module, max_len: int, device: torch.device | str = "cpu"):
        self.model, self.max_len, self.device = model, max_len, torch.device(device)
        self._item_matrix: torch.Tensor | None = None

    @torch.no_grad()
    def item_matrix(self) -> torch.Tensor:
        if self._item_matrix is None:
            self.model.eval()
            self._item_matrix = self.model.item_matrix()  # [N, D]
        return self._item_matrix

    @torch.no_grad()
    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        self.model.eval()
        seq = histories_to_tensor(histories, self.max_len).to(self.device)  # [B, L]
        scores = self.model.recommend_scores(seq, self.item_matrix())  # [B, N]
        return scores.float().cpu().numpy()


def training_examples(split: Split, max_len: int, target: str = "next_item") -> torch.Tensor:
    """[U, 2, max_len + 1] right-aligned training sequences: item_idx + 1 ([:, 0]) and basket
    numbers ([:, 1]), for the users with at least one training target (`target_pairs`)."""
    sequences = build_sequences(split.train, max_len + 1)
    examples = torch.stack([sequences.items, sequences.basket_ids], dim=1)  # [U, 2, L + 1]
    rows, _, _ = target_pairs(examples, target)  # every user with a target has one at the end
    keep = torch.zeros(len(examples), dtype=torch.bool)
    keep[rows] = True
    return examples[keep]


def target_pairs(batch: torch.Tensor, target: str, last: int = 0):
    """Training pairs of a batch [B, 2, L + 1]: (rows [P], query positions [P], targets [P]).

    The state after input position ``cols[p]`` of row ``rows[p]`` must rank item ``targets[p]``
    (0-based). ``next_item``: every position predicts the item right after it. ``next_basket``:
    the last position of each basket predicts every item of the next basket, and nothing is
    predicted from the items of its own basket (the next-basket protocol of H&M, where a day's
    purchases come in arbitrary order). Positions are those of the inputs ``batch[:, 0, :-1]``.
    ``last`` > 0 keeps only the targets in each row's last ``last`` items (next_item) or baskets
    (next_basket): the end of a history is what is evaluated, and shoppers with long histories
    behave differently (more repeats) from the same shoppers at their start.
    """
    items, baskets = batch[:, 0], batch[:, 1]  # [B, L + 1]
    if target == "next_item":
        mask = (items[:, :-1] > 0) & (items[:, 1:] > 0)  # [B, L]
        if last:
            mask[:, : max(0, mask.shape[1] - last)] = False
        rows, cols = mask.nonzero(as_tuple=True)  # [P], [P]
        return rows, cols, items[:, 1:][rows, cols] - 1
    length = items.shape[1]
    positions = torch.arange(length, device=items.device).expand_as(items)  # [B, L + 1]
    starts = torch.ones_like(items, dtype=torch.bool)
    starts[:, 1:] = baskets[:, 1:] != baskets[:, :-1]  # first position of each basket
    first = torch.where(starts, positions, torch.zeros_like(positions)).cummax(dim=1).values
    query = first - 1  # [B, L + 1] last position of the previous basket (-1: none)
    previous = items.gather(1, query.clamp_min(0))  # item at the query position
    mask = (items > 0) & (query >= 0) & (previous > 0)  # [B, L + 1] target positions
    if last:
        mask &= baskets > baskets[:, -1:] - last  # basket numbers grow to the row's last
    rows, target_cols = mask.nonzero(as_tuple=True)
    return rows, query[rows, target_cols], items[rows, target_cols] - 1


@dataclass
class Prefixes:
    """Where each training row comes from: row m is position cols[m] of sequence rows[m]."""

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


def compute_loss(
    config: TrainConfig,
    hidden: torch.Tensor,  # [M, D] states at positions with a target
    targets: torch.Tensor,  # [M] item indices (0-based)
    item_matrix: torch.Tensor,  # [N, D]
    generator: torch.Generator,
    sampling_probs: torch.Tensor | None,
    history_terms: list | None = None,  # the model's `history_terms()`: repeat bias, affinity
    prefixes: Prefixes | None = None,  # needed with ``history_terms``
    pool: torch.Tensor | None = None,  # [P] items that may be negatives, on hidden's device
) -> torch.Tensor:
    """The training loss of one batch. With a ``pool`` (`negative_distribution`), only its
    items compete with the target: the softmax runs over the pool (``ce``), and the sampled
    losses draw negatives from ``sampling_probs``, which must then be zero outside it. Every
    target must be in the pool."""
    history_terms = history_terms or []
    n_items = item_matrix.shape[0]
    if config.loss == "ce":
        if pool is not None:
            targets = torch.searchsorted(pool, targets)  # position of each target in the pool
        if not history_terms:
            if pool is not None:
                item_matrix = item_matrix[pool]  # [P, D]
            return losses.catalogue_cross_entropy(hidden, item_matrix, targets)
        logits = hidden @ item_matrix.T  # [M, N]
        for term in history_terms:
            logits = logits + term.full(prefixes.seq, prefixes.rows, prefixes.cols, n_items)
        if pool is not None:
            logits = logits[:, pool]  # [M, P]
        return losses.full_cross_entropy(logits, targets)
    if pool is not None and sampling_probs is None:
        raise ValueError("a negative pool needs sampling_probs over it (negative_distribution)")
    n_candidates = n_items if pool is None else len(pool)
    negatives, log_q_neg = losses.sample_negatives(
        n_items, (config.n_negatives,), generator, probs=sampling_probs
    )  # [K], [K]; shared by every position in the batch
    negatives = negatives.to(hidden.device)
    pos_logits = (hidden * item_matrix[targets]).sum(dim=-1)  # [M]
    neg_logits = hidden @ item_matrix[negatives].T  # [M, K]
    for term in history_terms:
        where = (prefixes.seq, prefixes.rows, prefixes.cols)
        pos_logits = pos_logits + term.at(*where, targets[:, None])[:, 0]
        neg_logits = neg_logits + term.at(*where, negatives)
    if config.loss == "bce":
        return losses.bce_sampled(pos_logits, neg_logits)
    if config.loss == "gbce":
        return losses.gbce(pos_logits, neg_logits, n_candidates, config.n_negatives, config.gbce_t)
    # sampled_softmax (TrainConfig.loss allows no other)
    if sampling_probs is None:
        log_q = torch.full((n_items,), -math.log(n_items), device=hidden.device)
    else:
        log_q = sampling_probs.clamp_min(1e-12).log().to(hidden.device)
    return losses.sampled_softmax(
        pos_logits,
        neg_logits,
        log_q[targets],
        log_q[negatives].expand_as(neg_logits),
    )


def _lr_factor(config: TrainConfig, step: int, total_steps: int) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class TrainStep(torch.nn.Module):
    """One batch -> loss, as a module so DistributedDataParallel sees the whole computation."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        sampling_probs: torch.Tensor | None,
        pool: torch.Tensor | None = None,
    ):
        super().__init__()
        self.model, self.config, self.sampling_probs = model, config, sampling_probs
        self.pool = pool  # [P] items that may be negatives; None = all

    def forward(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        inputs = batch[:, 0, :-1]  # [B, L]
        rows, cols, targets = target_pairs(batch, self.config.target, self.config.last_targets)
        model = self.model
        input_items = model.input_item_matrix()  # [N, D]
        hidden = model(inputs, input_items)  # [B, L, D]
        tied = model.output_item_net is None
        item_matrix = input_items if tied else model.item_matrix()  # [N, D]
        return compute_loss(
            self.config,
            hidden[rows, cols].float(),
            targets,
            item_matrix.float(),
            generator,
            self.sampling_probs,
            history_terms=model.history_terms(),
            prefixes=Prefixes(inputs, rows, cols),
            pool=self.pool,
        )


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Every random draw of an epoch derives from (seed, epoch, rank): resuming is exact."""
    return (seed * 1_000_003 + epoch * 10_007 + rank) % (2**63)


def fit(
    model: torch.nn.Module,
    split: Split,
    config: TrainConfig,
    max_len: int,
    validate: Callable[[ModelScorer, EvalTask], dict[str, float]] | None,
    main_metric: str,
    checkpoint_path: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    fixed_epochs: int | None = None,
    settings: dict | None = None,
) -> TrainResult:
    """Train ``model`` on ``split.train``; pick the epoch by ``main_metric`` on ``split.valid``.

    ``validate(scorer, task)`` returns validation metrics and counts (see `seqrec.evaluate`).
    With ``fixed_epochs``, nothing is validated (``validate`` may be None): the first
    ``fixed_epochs`` epochs of the ``config.epochs`` schedule are trained and the last weights
    kept (a refit on train + valid).
    With a ``checkpoint_path``, a run found there is resumed if it was written under the same
    ``settings`` (the experiment config as `seqrec.config.config_to_dict` gives it; by default
    the ``config`` and arguments of this call) and data, see `seqrec.checkpoint`. Under
    torchrun, each rank trains on its share of every batch (``batch_size`` is the total over
    ranks) and validates a share of the users; only rank 0 writes the checkpoint.
    """
    check_config(config, "train")
    if fixed_epochs is not None and not 1 <= fixed_epochs <= config.epochs:
        raise ValueError(f"fixed_epochs must lie in [1, {config.epochs}], got {fixed_epochs}")
    if fixed_epochs is None and validate is None:
        raise ValueError("fit needs a validate callback to choose the epoch, or fixed_epochs")
    device = pick_device(config.device)
    if device.type == "cuda" and distributed.launched_by_torchrun():
        device = torch.device("cuda", distributed.local_device_index())
    distributed.setup(device)
    world, rank = distributed.world_size(), distributed.rank()
    torch.manual_seed(config.seed)
    model.to(device)
    examples = training_examples(split, max_len, config.target)  # [U, 2, L + 1]
    valid_task = split.task("valid") if fixed_epochs is None else None
    if valid_task is not None and config.valid_users and len(valid_task) > config.valid_users:
        rows = np.random.default_rng(config.seed).choice(
            len(valid_task), config.valid_users, replace=False
        )
        valid_task = valid_task.subset(np.sort(rows))
    if len(examples) < max(1, world):  # never an empty epoch
        raise DataError(
            f"{len(examples)} training sequences have a {config.target} target, "
            f"{world} process(es) need at least {world}: nothing to learn from"
        )
    if valid_task is not None and len(valid_task) == 0:
        raise DataError(
            "no validation user (history in train, target in valid): cannot pick an epoch"
        )
    if valid_task is not None and world > 1:
        valid_task = valid_task.subset(np.arange(rank, len(valid_task), world))

    pool, sampling_probs = negative_distribution(split, config)
    if pool is not None:
        pool = pool.to(device)

    step_module = TrainStep(model, config, sampling_probs, pool)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_module = DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_class(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    per_rank = len(examples) // world  # equal shares keep the ranks in step
    rank_batch = max(1, config.batch_size // world)
    steps_per_epoch = max(1, math.ceil(per_rank / rank_batch))
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(config, step, total_steps)
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    start_epoch, history = 0, []
    best = {"epoch": -1, "metric": -math.inf, "state": None}
    identity = None  # what a checkpoint records of this run, to resume only the same run
    if checkpoint_path is not None:
        settings = settings or training_settings(config, max_len, main_metric)
        identity = run_identity(settings, examples, split, world, fixed_epochs)
    if checkpoint_path is not None and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, identity)
        restore(checkpoint_path, state, model, optimizer, scheduler)
        start_epoch, history, best = state["epoch"] + 1, state["history"], state["best"]

    bad_epochs = len(history) - 1 - best["epoch"]  # epochs since the best one
    for epoch in range(start_epoch, config.epochs if fixed_epochs is None else fixed_epochs):
        if fixed_epochs is None and config.patience and bad_epochs >= config.patience:
            break
        started = time.perf_counter()
        torch.manual_seed(_epoch_seed(config.seed, epoch, rank))  # dropout
        shuffle = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch, 0))
        generator = torch.Generator(device=device).manual_seed(
            _epoch_seed(config.seed, epoch, rank)
        )
        order = torch.randperm(len(examples), generator=shuffle)[: per_rank * world]
        mine = order.view(-1, world)[:, rank] if world > 1 else order  # this rank's share
        model.train()
        total_loss, total_positions = 0.0, 0
        for batch_start in range(0, len(mine), rank_batch):
            batch = examples[mine[batch_start : batch_start + rank_batch]].to(device)
            with autocast:
                loss = step_module(batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            positions = len(target_pairs(batch, config.target, config.last_targets)[0])
            total_loss += float(loss.detach()) * positions
            total_positions += positions
        train_seconds = time.perf_counter() - started

        row = {
            "epoch": epoch,
            "loss": total_loss / max(1, total_positions),
            "train_seconds": train_seconds,
            "sequences_per_second": len(examples) / train_seconds,
        }
        if valid_task is None:  # a refit keeps its last epoch
            metrics = {main_metric: math.nan}
            row["refit"] = True
        else:
            metrics = validate(ModelScorer(model, max_len, device), valid_task)
            row.update({f"valid:{name}": value for name, value in metrics.items()})
        history.append(row)
        if valid_task is None or metrics[main_metric] > best["metric"]:
            weights = {
                key: value.detach().cpu().clone() for key, value in model.state_dict().items()
            }
            best = {"epoch": epoch, "metric": metrics[main_metric], "state": weights}
            bad_epochs = 0
        else:
            bad_epochs += 1
        if checkpoint_path is not None and distributed.is_main():
            save_checkpoint(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "history": history,
                    "best": best,
                    "identity": identity,
                },
                checkpoint_path,
            )
        if on_epoch is not None and distributed.is_main():
            on_epoch(row)

    return TrainResult(
        best_epoch=best["epoch"],
        best_metric=best["metric"],
        history=history,
        state_dict=best["state"],
    )
