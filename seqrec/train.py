"""Train a sequence recommender: batches of right-aligned histories, next-item targets.

`fit` reads as its steps: `_setup`, `_resume`, then per epoch `_train_epoch`, `_validate`,
`_keep_best` and `_save`. Each epoch shuffles users with a seeded generator, takes every position
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
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import torch

from seqrec import distributed
from seqrec.checkpoint import (
    load_checkpoint,
    restore,
    run_identity,
    save_checkpoint,
    training_settings,
)
from seqrec.constraints import (
    at_least,
    check_config,
    choice,
    device_field,
    in_range,
    positive,
)
from seqrec.data.dataset import DataError
from seqrec.data.sequences import target_pairs, training_examples
from seqrec.data.split import EvalTask, Split
from seqrec.devices import deterministic_algorithms, pick_device
from seqrec.losses import HistoryTerms, compute_loss, negative_distribution, resolve_loss
from seqrec.models.recommender import ItemRows, SequenceRecommender
from seqrec.progress import track
from seqrec.scoring import ModelScorer

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11

LOSSES = ("bce", "sampled_softmax", "ce", "gbce")
Validate = Callable[[ModelScorer, EvalTask], dict[str, float]]  # validation metrics of a model
TARGETS = ("next_item", "next_basket")


@dataclass
class TrainConfig:
    # "auto": "ce" up to full_softmax_max_items catalogue items, "sampled_softmax" above
    loss: str = choice("auto", "auto", *LOSSES)
    full_softmax_max_items: int = at_least(1, 50_000)
    epochs: int = at_least(1, 20)
    steps_per_epoch: int = at_least(0, 0)  # end each epoch after this many batches; 0 = all
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
    # torch's deterministic kernels while training (`deterministic_algorithms`): the same weights
    # on every run of a seed, whatever the CPU threads do (a warning where an op has none)
    deterministic: bool = True


@dataclass
class TrainResult:
    best_epoch: int
    best_metric: float
    history: list[dict] = field(default_factory=list)  # one row per epoch
    state_dict: dict | None = None  # best weights


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
        model: SequenceRecommender,
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
        item_matrix: torch.Tensor | ItemRows
        if self.config.loss == "ce":  # the softmax over the catalogue: every item's vector
            input_items = model.input_item_matrix()  # [N, D]
            hidden = model(inputs, input_items)  # [B, L, D]
            tied = model.output_item_net is None
            item_matrix = (input_items if tied else model.item_matrix()).float()  # [N, D]
        else:  # sampled losses: the batch's items, targets and negatives only
            hidden = model.encode_batch(inputs)  # [B, L, D]
            item_matrix = model.scored_rows()
        return compute_loss(
            self.config,
            hidden[rows, cols].float(),
            targets,
            item_matrix,
            generator,
            self.sampling_probs,
            history=HistoryTerms(model.history_terms(), inputs, rows, cols),
            pool=self.pool,
        )


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Every random draw of an epoch derives from (seed, epoch, rank): resuming is exact."""
    return (seed * 1_000_003 + epoch * 10_007 + rank) % (2**63)


@dataclass
class _Run:
    """What `_setup` prepares once for the epochs of one `fit`."""

    model: SequenceRecommender
    config: TrainConfig
    device: torch.device
    world: int  # processes training together (torchrun ranks); 1 otherwise
    rank: int
    examples: torch.Tensor  # [U, 2, L + 1] training sequences (`training_examples`)
    per_rank: int  # examples each process trains on per epoch
    rank_batch: int  # each process's share of ``config.batch_size``
    valid_task: EvalTask | None  # this process's validation users; None: a fixed-epoch run
    step: torch.nn.Module  # `TrainStep`, wrapped in DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR


@dataclass
class _Progress:
    """Where the epoch loop stands: what a checkpoint saves and `_resume` restores."""

    next_epoch: int = 0
    history: list[dict] = field(default_factory=list)  # one row per trained epoch
    # the epoch with the best validation metric so far and its weights (CPU tensors)
    best: dict = field(default_factory=lambda: {"epoch": -1, "metric": -math.inf, "state": None})

    @property
    def bad_epochs(self) -> int:  # epochs trained since the best one
        return len(self.history) - 1 - self.best["epoch"]


class FitOptions(TypedDict, total=False):
    """What `fit` may be asked besides training with validation (all optional, by keyword)."""

    checkpoint_path: Path | None  # resume from and save to this file
    settings: dict | None  # what the checkpoint records of the run (default: `fit`'s arguments)
    on_epoch: Callable[[dict], None] | None  # called with each epoch's history row (rank 0)
    fixed_epochs: int | None  # train that many epochs without validating (a refit)


def fit(
    model: SequenceRecommender,
    split: Split,
    config: TrainConfig,
    max_len: int,
    validate: Validate | None,
    main_metric: str,
    **options: Unpack[FitOptions],
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
    checkpoint_path, on_epoch = options.get("checkpoint_path"), options.get("on_epoch")
    fixed_epochs = options.get("fixed_epochs")
    config = resolve_loss(config, split.n_items)  # the loss every epoch trains with
    if fixed_epochs is not None and not 1 <= fixed_epochs <= config.epochs:
        raise ValueError(f"fixed_epochs must lie in [1, {config.epochs}], got {fixed_epochs}")
    if fixed_epochs is None and validate is None:
        raise ValueError("fit needs a validate callback to choose the epoch, or fixed_epochs")
    with deterministic_algorithms(config.deterministic):  # train.deterministic
        run = _setup(model, split, config, max_len, fixed_epochs)
        progress, identity = _Progress(), None  # identity: what a checkpoint records of this run
        if checkpoint_path is not None:
            settings = options.get("settings") or training_settings(config, max_len, main_metric)
            identity = run_identity(settings, run.examples, split, run.world, fixed_epochs)
            progress = _resume(run, checkpoint_path, identity)
        last = config.epochs if fixed_epochs is None else fixed_epochs
        for epoch in range(progress.next_epoch, last):
            if fixed_epochs is None and config.patience and progress.bad_epochs >= config.patience:
                break  # early stopping
            row = _train_epoch(run, epoch)
            metric = _validate(run, validate, max_len, main_metric, row)
            _keep_best(run, progress, row, metric)
            if checkpoint_path is not None and identity is not None and distributed.is_main():
                _save(run, progress, identity, checkpoint_path)
            if on_epoch is not None and distributed.is_main():
                on_epoch(row)

    best = progress.best
    return TrainResult(best["epoch"], best["metric"], progress.history, best["state"])


def _setup(
    model: SequenceRecommender,
    split: Split,
    config: TrainConfig,
    max_len: int,
    fixed_epochs: int | None,
) -> _Run:
    """Device and processes, training examples, validation users, the train step (wrapped for
    DistributedDataParallel under torchrun), optimiser and learning-rate schedule."""
    device = _process_device(config)
    world, rank = distributed.world_size(), distributed.rank()
    torch.manual_seed(config.seed)
    model.to(device)
    examples = training_examples(split, max_len, config.target)  # [U, 2, L + 1]
    if len(examples) < max(1, world):  # never an empty epoch
        raise DataError(
            f"{len(examples)} training sequences have a {config.target} target, "
            f"{world} process(es) need at least {world}: nothing to learn from"
        )
    valid_task = _validation_task(split, config, world, rank, fixed_epochs)

    pool, sampling_probs = negative_distribution(split, config)
    pool = None if pool is None else pool.to(device)
    train_step: torch.nn.Module = TrainStep(model, config, sampling_probs, pool)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_step = DistributedDataParallel(
            train_step, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_class(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    per_rank = len(examples) // world  # equal shares keep the ranks in step
    rank_batch = max(1, config.batch_size // world)
    total_steps = max(1, _epoch_steps(config, per_rank, rank_batch)) * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(config, step, total_steps)
    )
    return _Run(
        model, config, device, world, rank, examples, per_rank, rank_batch, valid_task,
        train_step, optimizer, scheduler,
    )  # fmt: skip


def _epoch_steps(config: TrainConfig, per_rank: int, rank_batch: int) -> int:
    """Batches one epoch trains: all of this process's examples, or ``steps_per_epoch``."""
    steps = math.ceil(per_rank / rank_batch)
    return min(steps, config.steps_per_epoch) if config.steps_per_epoch else steps


def _process_device(config: TrainConfig) -> torch.device:
    """This process's device (under torchrun, its own GPU), with the process group set up."""
    device = pick_device(config.device)
    if device.type == "cuda" and distributed.launched_by_torchrun():
        device = torch.device("cuda", distributed.local_device_index())
    distributed.setup(device)
    return device


def _validation_task(
    split: Split, config: TrainConfig, world: int, rank: int, fixed_epochs: int | None
) -> EvalTask | None:
    """The validation users this process scores (None for a fixed-epoch run): a seeded sample
    of ``config.valid_users`` of them if set, and under torchrun this rank's share."""
    if fixed_epochs is not None:
        return None
    task = split.task("valid").sample(config.valid_users, config.seed)
    if len(task) == 0:
        raise DataError(
            "no validation user (history in train, target in valid): cannot pick an epoch"
        )
    if world > 1:
        task = task.subset(np.arange(rank, len(task), world))
    return task


def _resume(run: _Run, path: Path, identity: dict) -> _Progress:
    """A fresh start, or the checkpoint at ``path`` loaded into ``run`` and its loop state (one
    written by another run, by ``identity``, is refused: see `seqrec.checkpoint`)."""
    if not path.exists():
        return _Progress()
    state = load_checkpoint(path, identity)
    restore(path, state, run.model, run.optimizer, run.scheduler)
    return _Progress(state["epoch"] + 1, state["history"], state["best"])


def _train_epoch(run: _Run, epoch: int) -> dict:
    """Train one epoch on this process's share of a seeded shuffle; the epoch's history row."""
    config, world, rank = run.config, run.world, run.rank
    started = time.perf_counter()
    seed = _epoch_seed(config.seed, epoch, rank)
    torch.manual_seed(seed)  # dropout
    shuffle = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch, 0))  # same on all ranks
    generator = torch.Generator(device=run.device).manual_seed(seed)  # negatives
    order = torch.randperm(len(run.examples), generator=shuffle)[: run.per_rank * world]
    mine = order.view(-1, world)[:, rank] if world > 1 else order  # this rank's share
    run.model.train()
    total_loss, total_positions = 0.0, 0
    steps = _epoch_steps(config, len(mine), run.rank_batch)
    batches = range(0, len(mine), run.rank_batch)[:steps]
    for start in track(batches, f"epoch {epoch + 1}", unit="batches", show=rank == 0):
        batch = run.examples[mine[start : start + run.rank_batch]].to(run.device)  # [B, 2, L + 1]
        loss = _train_step(run, batch, generator)
        positions = len(target_pairs(batch, config.target, config.last_targets)[0])
        total_loss += float(loss.detach()) * positions
        total_positions += positions
    seconds = time.perf_counter() - started
    sequences = min(len(run.examples), steps * run.rank_batch * world)  # over every process
    return {
        "epoch": epoch,
        "loss": total_loss / max(1, total_positions),
        "loss_function": config.loss,  # what train.loss = "auto" resolved to
        "steps": steps,
        "train_seconds": seconds,
        "sequences_per_second": sequences / seconds,
        # predicted positions: this process's, times the processes (equal shares)
        "positions_per_second": total_positions * world / seconds,
    }


def _train_step(run: _Run, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One optimiser and schedule step on ``batch`` [B, 2, L + 1]; its loss."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=run.device.type == "cuda"):
        loss = run.step(batch, generator)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.config.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    return loss


def _validate(
    run: _Run, validate: Validate | None, max_len: int, main_metric: str, row: dict
) -> float:
    """The epoch's ``main_metric`` on the validation users, every metric added to ``row``; NaN
    for a fixed-epoch run (a refit), which keeps its last epoch."""
    if run.valid_task is None:
        row["refit"] = True
        return math.nan
    assert validate is not None  # `fit` refuses a run that validates without one
    metrics = validate(ModelScorer(run.model, max_len, run.device), run.valid_task)
    row.update({f"valid:{name}": value for name, value in metrics.items()})
    return metrics[main_metric]


def _keep_best(run: _Run, progress: _Progress, row: dict, metric: float) -> None:
    """Record the epoch's ``row``; keep its weights if ``metric`` is the best so far (always in
    a fixed-epoch run, whose last epoch is the one kept)."""
    progress.history.append(row)
    progress.next_epoch = row["epoch"] + 1
    if run.valid_task is None or metric > progress.best["metric"]:
        state = run.model.state_dict()
        weights = {key: value.detach().cpu().clone() for key, value in state.items()}
        progress.best = {"epoch": row["epoch"], "metric": metric, "state": weights}


def _save(run: _Run, progress: _Progress, identity: dict, path: Path) -> None:
    """Write the checkpoint `_resume` reads (atomically, see `save_checkpoint`)."""
    state = {
        "epoch": progress.next_epoch - 1,  # the epoch just trained
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "history": progress.history,
        "best": progress.best,
        "identity": identity,
    }
    save_checkpoint(state, path)
