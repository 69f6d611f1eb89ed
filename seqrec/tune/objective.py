"""One trial: the base config with the sampled values applied, trained on prepared data.

A trial is trained in this process by `seqrec.experiment.train_on` on data prepared once per
process; its value is the best validation metric over its epochs (the test split is never used
here). After every epoch the validation value is reported to the pruner, which may stop the
trial (state PRUNED).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from seqrec.config import ExperimentConfig, apply_overrides
from seqrec.tune.space import Param, TuneSettings
from seqrec.tune.storage import worker_id

PREPARE_SECTIONS = ("data", "split", "features")  # searching these re-prepares the data


def trial_overrides(trial: optuna.Trial, params: list[Param]) -> dict[str, Any]:
    return {param.key: param.suggest(trial) for param in params}


class Objective:
    """Train one trial's config on data prepared once per process; return its validation value."""

    def __init__(
        self,
        base: ExperimentConfig,
        params: list[Param],
        settings: TuneSettings,
        data_path: str | Path,
        cache_dir: Path | None = None,
        verbose: bool = False,
    ):
        self.base, self.params, self.settings = base, params, settings
        self.data_path, self.cache_dir, self.verbose = data_path, cache_dir, verbose
        self._prepared: dict[str, Any] = {}  # data/split/features sections -> Prepared
        self.on_start: Callable[[], None] | None = None  # called once the trial exists

    def prepared(self, config: ExperimentConfig):
        from seqrec.experiment import prepare

        key = repr([getattr(config, name) for name in PREPARE_SECTIONS])
        if key not in self._prepared:
            if len(self._prepared) >= 2:  # feature options are searched: keep the last two
                self._prepared.pop(next(iter(self._prepared)))
            self._prepared[key] = prepare(config, self.data_path, cache_dir=self.cache_dir)
        return self._prepared[key]

    def __call__(self, trial: optuna.Trial) -> float:
        from seqrec.experiment import train_on

        trial.set_user_attr("worker", worker_id())
        if self.on_start is not None:
            self.on_start()
        metric = self.settings.metric
        overrides = trial_overrides(trial, self.params)
        # a trial's value is its validation figure: a refit on train + valid would add nothing
        overrides.update({"eval.main_metric": metric, "eval.bootstrap": 0, "train.refit": False})
        config = apply_overrides(self.base, overrides)
        prepared = self.prepared(config)
        started = time.perf_counter()
        try:
            outcome = train_on(config, prepared, on_epoch=self._reporter(trial))
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        trial.set_user_attr("best_epoch", outcome.train.best_epoch + 1)
        return outcome.train.best_metric

    def _reporter(self, trial: optuna.Trial) -> Callable[[dict], None]:
        """The per-epoch hook: report the validation value, stop the trial when pruned."""
        metric = self.settings.metric

        def report(row: dict) -> None:
            epoch, value = row["epoch"], row[f"valid:{metric}"]
            trial.set_user_attr("epochs", epoch + 1)
            trial.report(value, epoch)
            if self.verbose:
                print(f"  trial {trial.number} epoch {epoch + 1}: {metric} {value:.4f}", flush=True)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{metric} {value:.4f} after epoch {epoch + 1}")

        return report
