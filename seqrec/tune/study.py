"""Running a study: worker processes that start trials until the study holds ``n_trials``.

The study lives in an Optuna storage (default: a journal file in the output folder), so the same
command started again continues it: finished trials are kept, trials left RUNNING by a dead
process on this machine are marked FAIL and their parameters queued again. ``n_trials`` is the
study's total: workers start trials until COMPLETE + PRUNED (+ RUNNING) trials reach it; FAIL
trials do not count (a killed trial is replaced). A trial that raises an error stops its worker.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from seqrec.config import ConfigError, ExperimentConfig, load_config
from seqrec.tune.objective import Objective
from seqrec.tune.report import TuneResult, trial_line, write_results
from seqrec.tune.space import TuneSettings, parse_space, stored_params, tune_settings
from seqrec.tune.storage import fail_dead_trials, open_study, worker_id

# trials that count towards n_trials: finished ones and those another worker is running
STARTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


@dataclass
class WorkerJob:
    """What a worker process needs: all picklable (spawned workers rebuild the rest)."""

    config: ExperimentConfig
    data_path: str
    storage: str
    study_name: str
    n_trials: int
    deadline: float | None = None  # time.time() after which no trial starts
    cache_dir: str | None = None
    threads: int | None = None  # torch threads per worker
    verbose: bool = False


class _StartGate:
    """A shared lock held from "count the trials" until the next trial exists in the storage.

    Not optuna's MaxTrialsCallback: it counts only after a trial ends, so a continued study that
    already holds n_trials would still run one more trial per worker, and two workers could both
    count n_trials - 1 and both start one; holding this lock makes "count, then start" one step.
    """

    def __init__(self, lock=None):
        self.lock, self.held = lock, False

    def acquire(self) -> None:
        if self.lock is not None:
            self.lock.acquire()
            self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.lock.release()


def run_worker(job: WorkerJob, index: int = 0, lock=None) -> int:
    """Run trials until the study holds ``job.n_trials`` counted trials; the number run here.

    ``lock`` (shared by the local workers) makes "count, then start a trial" one step, so local
    workers never start more trials than needed.
    """
    import torch

    if job.threads:
        torch.set_num_threads(job.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = tune_settings(job.config)
    params = parse_space(settings.space, job.config)
    study = open_study(job.config, settings, job.storage, job.study_name, 1000 * index)
    cache_dir = None if job.cache_dir is None else Path(job.cache_dir)
    objective = Objective(job.config, params, settings, job.data_path, cache_dir, job.verbose)
    gate = _StartGate(lock)
    objective.on_start = gate.release  # the trial exists: other workers may count again
    ran = 0
    while job.deadline is None or time.time() < job.deadline:
        gate.acquire()
        try:
            if len(study.get_trials(deepcopy=False, states=STARTED)) >= job.n_trials:
                break
            study.optimize(objective, n_trials=1, gc_after_trial=True)
        finally:
            gate.release()
        ran += 1
        if job.verbose:
            print(trial_line(_last_trial(study)), flush=True)
    return ran


def _last_trial(study: optuna.Study) -> FrozenTrial:
    """The latest finished trial of this process."""
    me = worker_id()
    mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == me]
    return max(mine, key=_finished_at)


def _finished_at(trial: FrozenTrial) -> datetime:
    """When a trial finished (else when it started)."""
    return trial.datetime_complete or trial.datetime_start or datetime.min


@dataclass
class StudyOptions:
    """How `run_study` runs a study (every field has a default)."""

    n_trials: int | None = None  # the study's total of trials; None: tune.trials
    storage: str | None = None  # RDB URL or journal file; None: OUT/study.journal
    study_name: str | None = None  # None: the config's name
    workers: int = 1  # > 1: that many spawned processes on this machine
    timeout: float | None = None  # seconds after which no new trial starts
    out_dir: str | Path | None = None  # OUT, the results; None: runs/tune/<config name>
    cache_dir: str | Path | None = None  # item feature cache
    best_config_path: str | Path | None = None  # also write the best config TOML here
    verbose: bool = False


def run_study(
    config: ExperimentConfig | str | Path,
    data_path: str | Path,
    options: StudyOptions | None = None,
) -> TuneResult:
    """Run (or continue) the study of ``config``'s ``[tune]`` table and write its results.

    ``options.n_trials`` counts COMPLETE + PRUNED trials of the whole study, so a study started
    again continues up to that total (see `StudyOptions` for the defaults).
    """
    options = options or StudyOptions()
    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    settings = tune_settings(config)
    params = parse_space(settings.space, config)  # refuse a bad space before opening the storage
    for values in settings.enqueue:
        stored_params(values, params)
    workers = options.workers
    n_trials = _study_size(options.n_trials, settings, workers)
    given = options.out_dir
    out_dir = Path(given) if given is not None else Path("runs/tune") / config.name
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = options.storage or str(out_dir / "study.journal")
    study_name = options.study_name or config.name

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    failed = fail_dead_trials(open_study(config, settings, storage, study_name))
    job = WorkerJob(
        config=config,
        data_path=str(data_path),
        storage=storage,
        study_name=study_name,
        n_trials=n_trials,
        deadline=None if options.timeout is None else time.time() + options.timeout,
        cache_dir=None if options.cache_dir is None else str(options.cache_dir),
        threads=max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None,
        verbose=options.verbose,
    )
    if workers == 1:
        run_worker(job)
    else:
        _run_workers(job, workers)
    study = open_study(config, settings, storage, study_name)
    result = write_results(study, config, settings, out_dir, options.best_config_path)
    result.storage, result.failed_on_start = storage, failed
    return result


def _study_size(n_trials: int | None, settings: TuneSettings, workers: int) -> int:
    """The study's total of trials: ``--trials``, else ``tune.trials``; checked with workers."""
    n_trials = n_trials if n_trials is not None else settings.trials
    if n_trials is None:
        raise ConfigError("give the number of trials (--trials N, or tune.trials in the config)")
    if n_trials < 1:
        raise ConfigError(f"the number of trials must be >= 1, got {n_trials}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    return n_trials


def _run_workers(job: WorkerJob, workers: int) -> None:
    """``workers`` spawned processes running `run_worker`, sharing one start lock."""
    from seqrec.experiment import prepare

    # encode the item features once here, so that the workers read them from the cache
    # instead of each encoding the whole catalogue at the same time
    cache_dir = None if job.cache_dir is None else Path(job.cache_dir)
    prepare(job.config, job.data_path, cache_dir=cache_dir)
    context = multiprocessing.get_context("spawn")
    lock = context.Lock()
    processes = [
        context.Process(target=run_worker, args=(job, index, lock), daemon=False)
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    crashed = [p.exitcode for p in processes if p.exitcode != 0]
    if crashed:
        raise RuntimeError(f"{len(crashed)} tuning worker(s) exited with codes {crashed}")
