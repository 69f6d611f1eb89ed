"""Hyper-parameter search with Optuna: the experiment TOML's ``[tune]`` table is the search space.

    [tune]
    metric = "ndcg@12"          # validation metric to maximise (default: eval.main_metric)
    pruner = "median"           # median | hyperband | none
    [tune.space]
    "model.model" = { choices = ["gru", "transformer", "mlp"] }
    "train.lr" = { low = 1e-4, high = 1e-2, log = true }
    "model.layers" = { low = 1, high = 3 }

One job per module:

- `seqrec.tune.space`: the ``[tune]`` settings and the search space, checked before anything
  runs (`tune_settings`, `parse_space`).
- `seqrec.tune.storage`: the Optuna storage (a journal file or an RDB URL), a journal torn by a
  crash, the study itself (`open_study`) and the trials of dead processes.
- `seqrec.tune.objective`: one trial, trained in this process on data prepared once.
- `seqrec.tune.study`: workers that start trials until the study holds ``n_trials``, and
  `run_study`, the whole command (its options in `StudyOptions`).
- `seqrec.tune.report`: the best trials table, trials.csv, summary.md, plots and best.toml.
"""

from seqrec.tune.objective import Objective
from seqrec.tune.report import TuneResult, best_config, best_trials_table, write_results
from seqrec.tune.space import Param, TuneSettings, parse_space, tune_settings
from seqrec.tune.storage import fail_dead_trials, open_storage, open_study, repair_journal
from seqrec.tune.study import StudyOptions, WorkerJob, run_study, run_worker

__all__ = [
    "Objective",
    "Param",
    "StudyOptions",
    "TuneResult",
    "TuneSettings",
    "WorkerJob",
    "best_config",
    "best_trials_table",
    "fail_dead_trials",
    "open_storage",
    "open_study",
    "parse_space",
    "repair_journal",
    "run_study",
    "run_worker",
    "tune_settings",
    "write_results",
]
