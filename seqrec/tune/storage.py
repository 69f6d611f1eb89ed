"""Where a study lives: the Optuna storage, a journal torn by a crash, dead trials.

The default storage is a journal file; an RDB URL (``sqlite:///tune.db``, ``postgresql://...``)
works too. `open_study` creates the study or continues it, refusing one started from another
base config or space. `fail_dead_trials` marks FAIL the trials left RUNNING by a killed process
on this machine and queues their parameters again.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage
from optuna.study import StudyDirection
from optuna.trial import TrialState

from seqrec.config import ConfigError, ExperimentConfig, config_to_dict
from seqrec.tune.space import TuneSettings, parse_space, stored_params


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
    return JournalStorage(JournalFileBackend(str(path)))


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
    lock = JournalFileSymlinkLock(str(path))  # optuna's writers' lock
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


# --- the study -----------------------------------------------------------------------------


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
    study = optuna.create_study(
        storage=open_storage(storage),
        study_name=study_name,
        direction=StudyDirection[settings.direction.upper()],
        sampler=_sampler(settings, settings.seed),
        pruner=_pruner(settings, base),
        load_if_exists=True,
    )
    signature = _signature(base, settings)
    stored = study.user_attrs.get("signature")
    if stored is None:
        study.set_user_attr("signature", signature)
        params = parse_space(settings.space, base) if settings.enqueue else []
        for values in settings.enqueue:
            study.enqueue_trial(stored_params(values, params))
    elif stored != signature:
        raise ConfigError(
            f"study {study_name!r} in {storage} was started with another base config, metric "
            "or [tune.space]; use the same config to continue it, or another --study name"
        )
    # Reseed by the trials already run so a restarted study does not replay its first samples.
    seed = settings.seed + seed_offset + len(study.get_trials(deepcopy=False))
    study.sampler = _sampler(settings, seed)
    return study


# --- trials of dead processes --------------------------------------------------------------


def worker_id() -> str:
    """This process as trials record it (user attribute ``worker``): ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


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
