"""Hyper-parameter search with Optuna: the experiment TOML's ``[tune]`` table is the search space.

    [tune]
    metric = "ndcg@12"          # validation metric to maximise (default: eval.main_metric)
    pruner = "median"           # median | hyperband | none
    [tune.space]
    "model.model" = { choices = ["gru", "transformer", "mlp"] }
    "train.lr" = { low = 1e-4, high = 1e-2, log = true }
    "model.layers" = { low = 1, high = 3 }

Every key of ``[tune.space]`` is a dotted config key (the ones ``--set`` takes); its table is
either ``{ choices = [...] }`` or a range ``{ low, high, log?, step?, type? }`` (integer when the
config key holds an integer, else float; ``type = "int" | "float"`` to force it). The space is
checked against the base config before anything runs (`parse_space`).

A trial is the base config with the sampled values applied (`apply_overrides`), trained in this
process by `seqrec.experiment.train_on` on data prepared once per process; its value is the best
validation metric over its epochs (the test split is never used here). After every epoch the
validation value is reported to the pruner, which may stop the trial (state PRUNED).

The study lives in an Optuna storage (default: a journal file in the output folder), so the same
command started again continues it: finished trials are kept, trials left RUNNING by a dead
process on this machine are marked FAIL and their parameters queued again. ``n_trials`` is the
study's total: workers start trials until COMPLETE + PRUNED (+ RUNNING) trials reach it; FAIL
trials do not count (a killed trial is replaced). A trial that raises an error stops its worker.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from seqrec.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    build_section,
    config_to_dict,
    load_config,
    save_config,
)

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # trials that count towards n_trials
SPEC_KEYS = ("choices", "low", "high", "log", "step", "type")
PREPARE_SECTIONS = ("data", "split", "features")  # searching these re-prepares the data


@dataclass
class TuneSettings:
    """The ``[tune]`` table."""

    metric: str | None = None  # validation metric; None: eval.main_metric
    direction: str = "maximize"  # the only one: training keeps the epoch with the highest metric
    sampler: str = "tpe"  # tpe | random
    pruner: str = "median"  # median | hyperband | none
    startup_trials: int = 5  # random trials before TPE models the results
    pruner_startup_trials: int = 3  # finished trials before the median pruner prunes
    warmup_epochs: int = 1  # epochs every trial runs before it may be pruned
    seed: int = 0  # sampler seed (offset per worker and by the trials already run)
    trials: int | None = None  # default study size when --trials is not given
    enqueue: list[dict[str, Any]] = field(default_factory=list)  # parameters of the first trials
    space: dict[str, Any] = field(default_factory=dict)


@dataclass
class Param:
    """One searched config key: a float or int range, or a list of choices."""

    key: str
    kind: str  # float | int | choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list | None = None

    def labels(self) -> list:
        """Choices as Optuna stores them: scalars as they are, lists and tables as JSON text."""
        return [_label(choice) for choice in self.choices]

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "choice":
            return self.decode(trial.suggest_categorical(self.key, self.labels()))
        if self.kind == "int":
            return trial.suggest_int(
                self.key, self.low, self.high, step=self.step or 1, log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def decode(self, stored: Any) -> Any:
        """The config value of a stored Optuna parameter value."""
        if self.kind != "choice":
            return stored
        return self.choices[self.labels().index(stored)]

    def values(self) -> list:
        """Every value of a choice or integer range, the ends of a float range."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(self.low, self.high + 1, self.step or 1))
        return [self.low, self.high]


def _label(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


# --- reading and checking [tune] -----------------------------------------------------------


def tune_settings(config: ExperimentConfig) -> TuneSettings:
    """The checked ``[tune]`` table of ``config`` (unknown keys and bad values are refused)."""
    settings = build_section(TuneSettings, dict(config.tune), "tune")
    settings.metric = settings.metric or config.eval.main_metric
    if settings.direction != "maximize":
        raise ConfigError(
            f"tune.direction = {settings.direction!r}: only 'maximize' is supported "
            "(validation metrics are higher-is-better and training keeps the best epoch)"
        )
    for key, value, allowed in (
        ("sampler", settings.sampler, ("tpe", "random")),
        ("pruner", settings.pruner, ("median", "hyperband", "none")),
    ):
        if value not in allowed:
            raise ConfigError(f"tune.{key} = {value!r}; choose one of {', '.join(allowed)}")
    _, at, k = settings.metric.partition("@")
    if at and (not k.isdigit() or int(k) not in config.eval.ks):
        raise ConfigError(
            f"tune.metric = {settings.metric!r} needs its k in eval.ks = {config.eval.ks}"
        )
    if settings.warmup_epochs < 0 or settings.startup_trials < 0:
        raise ConfigError("tune.warmup_epochs and tune.startup_trials must be >= 0")
    return settings


def parse_space(space: dict[str, Any], base: ExperimentConfig) -> list[Param]:
    """`Param`s of a ``[tune.space]`` table, each value checked against the base config."""
    if not space:
        raise ConfigError(
            "[tune.space] is empty; add the keys to search, e.g. "
            '"train.lr" = { low = 1e-4, high = 1e-2, log = true }'
        )
    params = [_parse_param(key, spec, base) for key, spec in space.items()]
    for param in params:
        for value in param.values():
            try:
                apply_overrides(base, {param.key: value})
            except ConfigError as error:  # names, types and declared constraints
                raise ConfigError(f"[tune.space] {param.key}: {error}") from None
    _check_heads(params, base)
    return params


def _parse_param(key: str, spec: Any, base: ExperimentConfig) -> Param:
    where = f"[tune.space] {key}"
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where} = {spec!r}: expected a table, {{ choices = [...] }} or "
            "{ low = ..., high = ..., log = true }"
        )
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]}; known keys: {', '.join(SPEC_KEYS)}")
    if "choices" in spec:
        if len(spec) > 1:
            raise ConfigError(f"{where}: choices cannot be combined with low/high/log/step/type")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list, got {choices!r}")
        return Param(key, "choice", choices=list(choices))
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: a range needs both low and high (or give choices)")
    low, high, step = spec["low"], spec["high"], spec.get("step")
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
    kind = spec.get("type") or _default_kind(key, low, high, step, base)
    if kind not in ("int", "float"):
        raise ConfigError(f"{where}: type must be 'int' or 'float', got {kind!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if low > high:
        raise ConfigError(f"{where}: low {low} is above high {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low}")
    if log and step is not None:
        raise ConfigError(f"{where}: step cannot be used with log = true")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: step must be positive, got {step}")
    if kind == "int":
        if any(value is not None and value != int(value) for value in (low, high, step)):
            raise ConfigError(f"{where}: an int range needs whole low, high and step")
        low, high, step = int(low), int(high), None if step is None else int(step)
    else:
        low, high, step = float(low), float(high), None if step is None else float(step)
    return Param(key, kind, low=low, high=high, log=log, step=step)


def _default_kind(key: str, low, high, step, base: ExperimentConfig) -> str:
    """int when the bounds are whole numbers and the config key currently holds an int."""
    if not all(isinstance(value, int) for value in (low, high, step or 1)):
        return "float"
    current: Any = config_to_dict(base)
    for part in key.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    return "int" if isinstance(current, int) and not isinstance(current, bool) else "float"


def _check_heads(params: list[Param], base: ExperimentConfig) -> None:
    """A transformer needs model.dim divisible by model.heads in every combination searched."""
    by_key = {param.key: param for param in params}

    def values(key: str, default: Any) -> list:
        return by_key[key].values() if key in by_key else [default]

    if "transformer" not in values("model.model", base.model.model):
        return
    for dim in values("model.dim", base.model.dim):
        for heads in values("model.heads", base.model.heads):
            if heads <= 0 or dim % heads:
                raise ConfigError(
                    f"[tune.space] model.heads = {heads} does not divide model.dim = {dim}; "
                    "a transformer needs dim divisible by heads in every combination: choose "
                    "heads that divide every dim searched (e.g. dims in steps of 16, heads 1-4)"
                )


# --- one trial -----------------------------------------------------------------------------


def trial_overrides(trial: optuna.Trial, params: list[Param]) -> dict[str, Any]:
    return {param.key: param.suggest(trial) for param in params}


def best_config(base: ExperimentConfig, params: list[Param], trial: FrozenTrial, metric: str):
    """The base config with a trial's parameters applied: a runnable experiment."""
    by_key = {param.key: param for param in params}
    overrides = {
        key: by_key[key].decode(value) if key in by_key else value
        for key, value in trial.params.items()
    }
    overrides["eval.main_metric"] = metric
    return apply_overrides(base, overrides)


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

        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if self.on_start is not None:
            self.on_start()
        metric = self.settings.metric
        overrides = trial_overrides(trial, self.params)
        # a trial's value is its validation figure: a refit on train + valid would add nothing
        overrides.update({"eval.main_metric": metric, "eval.bootstrap": 0, "train.refit": False})
        config = apply_overrides(self.base, overrides)
        prepared = self.prepared(config)
        started = time.perf_counter()

        def report(row: dict) -> None:
            epoch, value = row["epoch"], row[f"valid:{metric}"]
            trial.set_user_attr("epochs", epoch + 1)
            trial.report(value, epoch)
            if self.verbose:
                print(f"  trial {trial.number} epoch {epoch + 1}: {metric} {value:.4f}", flush=True)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{metric} {value:.4f} after epoch {epoch + 1}")

        try:
            outcome = train_on(config, prepared, on_epoch=report)
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        trial.set_user_attr("best_epoch", outcome.train.best_epoch + 1)
        return outcome.train.best_metric


# --- storage and study ---------------------------------------------------------------------


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    """An RDB URL (``sqlite:///tune.db``, ``postgresql://...``) or a journal file path."""
    if "://" in spec:  # heartbeats mark the trials of dead workers FAIL and queue them again
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
            return optuna.storages.RDBStorage(
                spec, heartbeat_interval=60, grace_period=180, heartbeat_stale_trial_callback=retry
            )
    path = Path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_journal(path)
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.storages.journal.JournalStorage(backend)


def _torn_tail(data: bytes) -> int:
    """Bytes of a torn last record at the end of a journal: a last line without its newline
    (optuna writes each record and its newline at once) or one that is not JSON; 0 if none."""
    if data.endswith(b"\n"):
        start = data.rfind(b"\n", 0, len(data) - 1) + 1
        try:
            json.loads(data[start:])
            return 0
        except ValueError:
            return len(data) - start
    return len(data) - (data.rfind(b"\n") + 1)


def repair_journal(path: Path) -> None:
    """Cut a torn last record (left by a crash mid-write) off the journal file ``path``, which
    optuna could otherwise never read again, with a warning that says what was removed."""
    if not path.is_file() or not _torn_tail(path.read_bytes()):
        return
    lock = optuna.storages.journal.JournalFileSymlinkLock(str(path))  # optuna's writers' lock
    lock.acquire()
    try:
        data = path.read_bytes()  # again: a live writer may have finished its record meanwhile
        torn = _torn_tail(data)
        if torn:
            os.truncate(path, len(data) - torn)
    finally:
        lock.release()
    if torn:
        kept = data[: len(data) - torn].count(b"\n")
        warnings.warn(
            f"{path}: removed a torn last record ({torn} bytes: {data[-torn:][:80]!r}), left by "
            f"a crash while it was written; the study continues from the {kept} complete "
            "records before it",
            stacklevel=3,
        )


def _sampler(settings: TuneSettings, seed: int) -> optuna.samplers.BaseSampler:
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(
        n_startup_trials=settings.startup_trials, seed=seed, constant_liar=True
    )


def _pruner(settings: TuneSettings, base: ExperimentConfig) -> optuna.pruners.BasePruner:
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=settings.pruner_startup_trials, n_warmup_steps=settings.warmup_epochs
        )
    if settings.pruner == "hyperband":
        searched_epochs = "train.epochs" in settings.space
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, settings.warmup_epochs),
            max_resource="auto" if searched_epochs else base.train.epochs,
        )
    return optuna.pruners.NopPruner()


def _signature(base: ExperimentConfig, settings: TuneSettings) -> str:
    """What a study is tied to: the base config (without [tune]), metric and space."""
    values = config_to_dict(base)
    values.pop("tune", None)
    return json.dumps(
        {"base": values, "metric": settings.metric, "space": settings.space}, sort_keys=True
    )


def open_study(
    base: ExperimentConfig,
    settings: TuneSettings,
    storage: str,
    study_name: str,
    seed_offset: int = 0,
) -> optuna.Study:
    """Create the study or load it, refusing one started from another config or space."""
    storage_object = open_storage(storage)
    pruner = _pruner(settings, base)
    study = optuna.create_study(
        storage=storage_object,
        study_name=study_name,
        direction=settings.direction,
        sampler=_sampler(settings, settings.seed),
        pruner=pruner,
        load_if_exists=True,
    )
    signature = _signature(base, settings)
    stored = study.user_attrs.get("signature")
    if stored is None:
        study.set_user_attr("signature", signature)
        for params in settings.enqueue:
            study.enqueue_trial(_enqueued(params, settings, base))
    elif stored != signature:
        raise ConfigError(
            f"study {study_name!r} in {storage} was started with another base config, metric "
            "or [tune.space]; use the same config to continue it, or another --study name"
        )
    # Reseed by the trials already run so a restarted study does not replay its first samples.
    seed = settings.seed + seed_offset + len(study.get_trials(deepcopy=False))
    study.sampler = _sampler(settings, seed)
    return study


def _enqueued(values: dict[str, Any], settings: TuneSettings, base: ExperimentConfig) -> dict:
    params = {param.key: param for param in parse_space(settings.space, base)}
    unknown = sorted(set(values) - set(params))
    if unknown:
        raise ConfigError(f"tune.enqueue: {unknown[0]} is not a key of [tune.space]")
    for key, value in values.items():
        param = params[key]
        if param.kind == "choice" and _label(value) not in param.labels():
            raise ConfigError(f"tune.enqueue: {key} = {value!r} is not one of its choices")
    return {
        key: _label(value) if params[key].kind == "choice" else value
        for key, value in values.items()
    }


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials of processes on this machine that no longer exist.

    Their parameters are queued again, so the trial a killed run was in is retried. Trials of
    other machines are left to the RDB storage's heartbeat.
    """
    host, failed = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if worker_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        failed.append(trial.number)
    return failed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- workers -------------------------------------------------------------------------------


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


def count_trials(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


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
    objective.on_start = gate.release
    ran = 0
    while job.deadline is None or time.time() < job.deadline:
        gate.acquire()
        try:
            counts = count_trials(study)
            started = sum(counts.get(state.name, 0) for state in (*COUNTED, TrialState.RUNNING))
            if started >= job.n_trials:
                break
            study.optimize(objective, n_trials=1, gc_after_trial=True)
        finally:
            gate.release()
        ran += 1
        if job.verbose:
            print(trial_line(_last_trial(study)), flush=True)
    return ran


class _StartGate:
    """A shared lock held from "count the trials" until the next trial exists in the storage."""

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


def _last_trial(study: optuna.Study) -> FrozenTrial:
    """The latest finished trial of this process."""
    me = f"{socket.gethostname()}:{os.getpid()}"
    mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == me]
    return max(mine, key=lambda t: t.datetime_complete or t.datetime_start)


def _spawned_worker(job: WorkerJob, index: int, lock) -> None:
    run_worker(job, index, lock)


def trial_line(trial: FrozenTrial) -> str:
    value = "" if trial.value is None else f" value {trial.value:.4f}"
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        last = trial.intermediate_values[max(trial.intermediate_values)]
        value = f" at epoch {len(trial.intermediate_values)} ({last:.4f})"
    params = ", ".join(f"{key}={_short(value)}" for key, value in trial.params.items())
    return f"trial {trial.number} {trial.state.name.lower()}{value}: {params}"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, bool):
        return "true" if value else "false"  # as in TOML
    return str(value) if isinstance(value, (bool, int, str)) else json.dumps(value)


# --- the whole study -----------------------------------------------------------------------


@dataclass
class TuneResult:
    study_name: str
    storage: str
    out_dir: Path
    counts: dict[str, int]  # trial state -> number of trials
    metric: str
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)  # dotted key -> config value
    best_config: Path | None = None
    files: list[Path] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)  # best trials, see `trial_rows`
    failed_on_start: list[int] = field(default_factory=list)  # dead trials marked FAIL


def run_study(
    config: ExperimentConfig | str | Path,
    data_path: str | Path,
    n_trials: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    workers: int = 1,
    timeout: float | None = None,
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    best_config_path: str | Path | None = None,
    verbose: bool = False,
) -> TuneResult:
    """Run (or continue) the study of ``config``'s ``[tune]`` table and write its results.

    ``n_trials``: the study's total of COMPLETE + PRUNED trials (default ``tune.trials``).
    ``storage``: RDB URL or journal file (default ``OUT/study.journal``). ``workers`` > 1 runs
    that many spawned processes on this machine. Results go to ``out_dir`` (default
    ``runs/tune/<config name>``) and, when given, the best config also to ``best_config_path``.
    """
    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    settings = tune_settings(config)
    parse_space(settings.space, config)  # refuse a bad space before opening the storage
    for values in settings.enqueue:
        _enqueued(values, settings, config)
    n_trials = n_trials if n_trials is not None else settings.trials
    if n_trials is None:
        raise ConfigError("give the number of trials (--trials N, or tune.trials in the config)")
    if n_trials < 1:
        raise ConfigError(f"the number of trials must be >= 1, got {n_trials}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir) if out_dir is not None else Path("runs/tune") / config.name
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = storage or str(out_dir / "study.journal")
    study_name = study_name or config.name

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(config, settings, storage, study_name)
    failed = fail_dead_trials(study)
    job = WorkerJob(
        config=config,
        data_path=str(data_path),
        storage=storage,
        study_name=study_name,
        n_trials=n_trials,
        deadline=None if timeout is None else time.time() + timeout,
        cache_dir=None if cache_dir is None else str(cache_dir),
        threads=max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None,
        verbose=verbose,
    )
    if workers == 1:
        run_worker(job)
    else:
        from seqrec.experiment import prepare

        # encode the item features once here, so that the workers read them from the cache
        # instead of each encoding the whole catalogue at the same time
        prepare(config, data_path, cache_dir=None if cache_dir is None else Path(cache_dir))
        context = multiprocessing.get_context("spawn")
        lock = context.Lock()
        processes = [
            context.Process(target=_spawned_worker, args=(job, index, lock), daemon=False)
            for index in range(workers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        crashed = [p.exitcode for p in processes if p.exitcode != 0]
        if crashed:
            raise RuntimeError(f"{len(crashed)} tuning worker(s) exited with codes {crashed}")
    study = open_study(config, settings, storage, study_name)
    result = write_results(study, config, settings, out_dir, best_config_path)
    result.storage, result.failed_on_start = storage, failed
    return result


# --- results -------------------------------------------------------------------------------


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials, best first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: -t.value if math.isfinite(t.value) else math.inf)


def trial_rows(study: optuna.Study, params: list[Param], top: int = 10) -> list[dict[str, str]]:
    """The best ``top`` trials as text cells: trial, value, epochs, seconds, then parameters."""
    rows = []
    for trial in ranked_trials(study)[:top]:
        row = {
            "trial": str(trial.number),
            "value": f"{trial.value:.4f}",
            "best epoch": f"{trial.user_attrs.get('best_epoch', '')}/"
            f"{trial.user_attrs.get('epochs', '')}",
            "seconds": f"{trial.user_attrs.get('seconds', float('nan')):.0f}",
        }
        for param in params:
            value = trial.params.get(param.key)
            row[param.key] = "" if value is None else _short(param.decode(value))
        rows.append(row)
    return rows


def best_trials_table(result: TuneResult):
    """A rich table of the best trials of a finished `run_study`, parameters in one column."""
    from rich.table import Table

    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(result.counts.items()))
    table = Table(
        title=f"best trials of {result.study_name} (validation {result.metric}; {counts})"
    )
    fixed = ("trial", "value", "best epoch", "seconds")
    for name in fixed:
        table.add_column(name, justify="right")
    table.add_column("parameters", ratio=1)
    for row in result.rows:
        params = "  ".join(f"{key}={value}" for key, value in row.items() if key not in fixed)
        table.add_row(*(row[name] for name in fixed), params)
    return table


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no completed trial)\n"
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
    lines += ["| " + " | ".join(row.values()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """History, parameter importance and learning curves as PNG (those that can be drawn)."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    plots = {
        "history.png": optuna_plots.plot_optimization_history,
        "importance.png": optuna_plots.plot_param_importances,
        "epochs.png": optuna_plots.plot_intermediate_values,
    }
    written = []
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna's matplotlib plots are "experimental"
                axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue  # e.g. importance needs two completed trials with different parameters
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.savefig(out_dir / name, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(out_dir / name)
    return written


def write_results(
    study: optuna.Study,
    base: ExperimentConfig,
    settings: TuneSettings,
    out_dir: Path,
    best_config_path: str | Path | None = None,
) -> TuneResult:
    """trials.csv, summary.md, plots and best.toml (the base config with the best parameters)."""
    params = parse_space(settings.space, base)
    result = TuneResult(
        study_name=study.study_name,
        storage="",
        out_dir=out_dir,
        counts=count_trials(study),
        metric=settings.metric,
    )
    result.rows = trial_rows(study, params)
    study.trials_dataframe().to_csv(out_dir / "trials.csv", index=False)
    result.files.append(out_dir / "trials.csv")
    ranked = ranked_trials(study)
    summary = [
        f"# Study {study.study_name}\n",
        "Trials: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.counts.items())),
        f"\nValidation {settings.metric}, best first:\n",
        markdown_table(result.rows),
    ]
    (out_dir / "summary.md").write_text("\n".join(summary))
    result.files.append(out_dir / "summary.md")
    result.files += save_plots(study, out_dir)
    if not ranked:
        return result
    best = ranked[0]
    result.best_number, result.best_value = best.number, best.value
    by_key = {param.key: param for param in params}
    result.best_params = {key: by_key[key].decode(value) for key, value in best.params.items()}
    config = best_config(base, params, best, settings.metric)
    paths = [out_dir / "best.toml"]
    if best_config_path is not None:
        paths.append(Path(best_config_path))
    header = (
        f"# Best of {len(ranked)} completed trials of study {study.study_name!r} "
        f"(seqrec tune): trial {best.number}, validation {settings.metric} = {best.value:.4f}.\n"
        "# The base config with the trial's parameters; [tune] is the search that found it.\n"
    )
    for path in paths:  # each named after its file (OUT/best.toml: "<base name>_best")
        name = f"{base.name}_best" if path.stem == "best" else path.stem
        path.parent.mkdir(parents=True, exist_ok=True)
        save_config(replace(config, name=name), path)
        path.write_text(header + path.read_text())
    result.best_config = paths[-1]
    result.files += paths
    return result
