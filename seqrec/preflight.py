"""Checks run before an experiment spends time: an output folder it can write in (before any
data is read) and a split that leaves something to train and validate on (before any epoch)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from seqrec.config import ConfigError, ExperimentConfig
from seqrec.data.dataset import DataError
from seqrec.data.split import Split


def check_out_dir(out_dir: str | Path) -> None:
    """DataError unless ``out_dir`` is, or can be made, a folder this process can write in."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"output folder {out_dir} is a file, not a folder")
    above = next((parent for parent in out_dir.parents if parent.is_file()), None)
    if above is not None:
        raise DataError(f"output folder {out_dir} cannot be made: {above} is a file")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):  # a probe, removed on close
            pass
    except OSError as error:
        why = error.strerror or error
        raise DataError(f"cannot write in the output folder {out_dir}: {why}") from None


# what a user needs for (training pairs, a validation target) under each split method
_NEEDS = {
    "leave_last_out": ("4+ interactions", "3+ interactions"),
    "leave_last_basket_out": ("4+ baskets (purchase days)", "3+ baskets (purchase days)"),
    "temporal": ("2+ interactions before split.valid_start", "one before split.valid_start"),
}


def check_trainable(split: Split, config: ExperimentConfig) -> None:
    """DataError before any epoch when the split leaves no training pair or no validation user;
    ConfigError when ``train.n_negatives`` cannot be drawn from this catalogue (gbce)."""
    by_user = split.train.groupby("user_id")
    if config.train.target == "next_basket":
        sizes = by_user["timestamp"].nunique()  # [users] baskets in train
    else:
        sizes = by_user.size()  # [users] interactions in train
    train_need, valid_need = _NEEDS[split.method]
    if not (sizes >= 2).any():
        if not len(split.valid) and not len(split.test) and (sizes <= 1).all():
            raise DataError(
                f"every user ({len(sizes)}) has a single interaction: nothing to learn from; "
                f"need at least one user with {train_need} under split.method = {split.method}"
            )
        raise DataError(
            f"nothing to learn from: after the {split.method} split no user has 2+ training "
            f"{'baskets' if config.train.target == 'next_basket' else 'interactions'} "
            f"(train.target = {config.train.target}); need users with {train_need}"
        )
    if not split.valid["user_id"].isin(sizes.index).any():
        raise DataError(
            f"no validation user after the {split.method} split (a validation target and a "
            f"training history), so no epoch can be chosen; need users with {valid_need}"
        )
    if config.train.loss == "gbce":
        trained = config.train.negatives == "trained"
        n_items = split.train["item_idx"].nunique() if trained else split.n_items
        if config.train.n_negatives > n_items - 1:
            raise ConfigError(
                f"train.n_negatives = {config.train.n_negatives} must be below the {n_items} "
                "items the gbce loss draws negatives from"
            )
