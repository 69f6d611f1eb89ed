"""Training checkpoints: what `seqrec.train.fit` writes after every epoch and resumes from.

Next to the weights, optimiser, schedule, history and best epoch, a checkpoint records the run's
identity (`run_identity`): the experiment settings that shape training and a fingerprint of the
training data. A run resumes only when its identity equals the recorded one; otherwise it stops
before training with every differing key, its old and its new value, so that a changed
``--set train.lr=0.05`` is never silently trained with the old value. A file that cannot be
resumed (empty, truncated, other bytes, another program's pickle, another model's weights) stops
with a `CheckpointError` naming it. Either way the way out is to rerun with the old settings, or
to start fresh with ``seqrec train --restart`` (or by deleting the file).

The file is read with ``torch.load(weights_only=True)``: a checkpoint holds only dicts, lists,
strings, numbers and tensors (`_plain` turns numpy scalars into Python numbers before saving),
so nothing in it is executed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqrec.data.dataset import DataError

# Experiment settings that change how a run is computed, not what it trains: a resume may change
# them. Every other key of the experiment config (data, split, features, model, train, eval) is
# recorded in the checkpoint and must be unchanged to resume.
NOT_RECORDED = (
    "name",  # a label
    "tune",  # the search space of `seqrec tune`, not part of one run
    "eval.bootstrap",  # confidence intervals of the final evaluation; validation has none
    "train.device",  # a checkpoint moves between devices
    "train.eval_batch_size",  # how many users are scored at once
    "train.refit",  # whether a refit follows; the run that chooses the epoch is the same
    "features.text.batch_size",  # the rest: how item features are computed (as for their cache)
    "features.text.device",
    "features.image.batch_size",
    "features.image.num_workers",
    "features.image.runtime",
    "features.image.channels_last",
    "features.image.threads",
)
# the checkpoints `seqrec.experiment.train_on` keeps in the output folder while it trains
FILES = ("checkpoint.pt", "refit_checkpoint.pt")
KEYS = ("epoch", "model", "optimizer", "scheduler", "history", "best", "identity")
WHAT_TO_DO = "rerun `seqrec train` with --restart (or delete the file) to train from scratch"


class CheckpointError(DataError):
    """A checkpoint that cannot be resumed: unreadable, or written by a run with other settings."""


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables -> {dotted key: value}; lists stay values."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def training_settings(config, max_len: int, main_metric: str) -> dict[str, Any]:
    """The settings `seqrec.train.fit` knows itself (its `TrainConfig` and arguments), recorded
    when its caller passes no experiment config."""
    return {
        "train": dataclasses.asdict(config),
        "model": {"max_len": max_len},
        "eval": {"main_metric": main_metric},
    }


def run_identity(
    settings: dict[str, Any], examples: torch.Tensor, split, world_size: int, fixed_epochs
) -> dict[str, Any]:
    """What a resumed run must share with the checkpoint: {dotted key: value}.

    ``settings``: nested tables as `seqrec.config.config_to_dict` gives them (`NOT_RECORDED`
    keys are dropped). ``examples``: the [U, 2, L + 1] training sequences; with ``split`` they
    identify the data. A run on another number of processes batches differently, and a refit
    (``fixed_epochs``) of another length trains a different model.
    """
    identity = {
        key: value
        for key, value in flatten(settings).items()
        if not any(key == name or key.startswith(name + ".") for name in NOT_RECORDED)
    }
    rows = np.ascontiguousarray(examples.numpy())  # [U, 2, L + 1]
    identity |= {
        "dataset.items": split.n_items,
        "dataset.train_interactions": len(split.train),
        "dataset.valid_interactions": len(split.valid),
        "dataset.training_sequences": len(rows),
        "dataset.fingerprint": hashlib.blake2b(rows.data, digest_size=16).hexdigest(),
        "processes": world_size,
    }
    if fixed_epochs is not None:
        identity["refit_epochs"] = fixed_epochs
    return _plain(identity)


def _plain(value: Any) -> Any:
    """Numpy scalars -> Python numbers, in nested dicts, lists and tuples (weights_only reads
    no numpy scalar, and a metric may be one)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_plain(item) for item in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` atomically: a kill mid-write leaves the previous checkpoint whole."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(_plain(state), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at ``path`` (tensors on the CPU) if this run, ``identity``, may resume it;
    otherwise a `CheckpointError` that says what is wrong and what to do."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (its save was cut short); {WHAT_TO_DO}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol notes on other files
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"checkpoint {path} is not a seqrec checkpoint: it is damaged or holds objects other "
            f"than tensors, numbers, strings, lists and dicts; {WHAT_TO_DO}"
        ) from None
    except Exception as error:  # torch raises EOFError, RuntimeError, ... on a damaged file
        reason = str(error).split(". ")[0] or type(error).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be read (damaged or truncated: {reason}); {WHAT_TO_DO}"
        ) from None
    missing = [key for key in KEYS if key not in state] if isinstance(state, dict) else KEYS
    if missing:
        raise CheckpointError(
            f"{path} is not a seqrec training checkpoint (no {', '.join(missing)}; an older "
            f"seqrec did not record its settings); {WHAT_TO_DO}"
        )
    changes = differences(state["identity"], identity)
    if changes:
        raise CheckpointError(
            f"checkpoint {path} was written with other settings or data than this run's; "
            "resuming would go on with the checkpoint's, not the new ones:\n  "
            + "\n  ".join(changes)
            + "\nRerun with the checkpoint's settings to resume, or add --restart to delete the "
            "checkpoint and train from scratch."
        )
    return state


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """One line per key whose value differs: ``key: old (checkpoint) -> new (now)``."""
    lines = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key, "(not set)"), current.get(key, "(not set)")
        if old != new:
            lines.append(f"{key}: {old!r} (checkpoint) -> {new!r} (now)")
    return lines


def restore(path: Path, state: dict[str, Any], model, optimizer, scheduler) -> None:
    """Load the checkpoint's weights, optimiser and schedule; weights of another model (other
    keys or shapes) are a `CheckpointError`."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        reason = " ".join(str(error).split())[:300]
        raise CheckpointError(
            f"checkpoint {path} does not fit this model ({reason}); {WHAT_TO_DO}"
        ) from None


def remove_checkpoints(out_dir: Path) -> list[Path]:
    """Delete the checkpoints in ``out_dir`` (``seqrec train --restart``); the removed paths."""
    removed = [Path(out_dir) / name for name in FILES if (Path(out_dir) / name).exists()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
