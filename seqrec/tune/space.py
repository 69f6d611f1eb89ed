"""The ``[tune]`` table: its settings (`TuneSettings`) and its search space (`Param`).

Every key of ``[tune.space]`` is a dotted config key (the ones ``--set`` takes); its table is
either ``{ choices = [...] }`` or a range ``{ low, high, log?, step?, type? }`` (integer when the
config key holds an integer, else float; ``type = "int" | "float"`` to force it). The space is
checked against the base config before anything runs (`parse_space`): every value it can take
is applied to the base config, so the config's own declarations decide what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import optuna

from seqrec.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    build_section,
    config_to_dict,
)
from seqrec.constraints import at_least, checked, choice, positive


def _maximize_only(direction: Any) -> str | None:
    if direction == "maximize":
        return None
    return (
        "is not supported: only 'maximize' (validation metrics are higher-is-better and "
        "training keeps the best epoch)"
    )


def _not_empty(values: Any) -> str | None:
    return None if values else "must not be empty"


@dataclass
class TuneSettings:
    """The ``[tune]`` table."""

    metric: str = ""  # validation metric; empty: eval.main_metric
    direction: str = checked("maximize", _maximize_only)  # training keeps the highest epoch
    sampler: str = choice("tpe", "tpe", "random")
    pruner: str = choice("median", "median", "hyperband", "none")
    startup_trials: int = at_least(0, 5)  # random trials before TPE models the results
    pruner_startup_trials: int = at_least(0, 3)  # finished trials before the median pruner prunes
    warmup_epochs: int = at_least(0, 1)  # epochs every trial runs before it may be pruned
    seed: int = 0  # sampler seed (offset per worker and by the trials already run)
    trials: int | None = at_least(1, None)  # default study size when --trials is not given
    enqueue: list[dict[str, Any]] = field(default_factory=list)  # parameters of the first trials
    space: dict[str, Any] = field(default_factory=dict)  # dotted key -> `SpaceEntry` table


@dataclass
class SpaceEntry:
    """One ``[tune.space]`` table as written: ``{ choices = [...] }`` or a range."""

    choices: list[Any] | None = checked(None, _not_empty)
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = positive(None)
    type: str | None = choice(None, "int", "float")  # None: int when the config key holds one


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
        return [_label(choice) for choice in self._choices()]

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "choice":
            return self.decode(trial.suggest_categorical(self.key, self.labels()))
        if self.kind == "int":
            low, high, step = self._int_range()
            return trial.suggest_int(self.key, low, high, step=step, log=self.log)
        return trial.suggest_float(self.key, *self._bounds(), step=self.step, log=self.log)

    def decode(self, stored: Any) -> Any:
        """The config value of a stored Optuna parameter value."""
        if self.kind != "choice":
            return stored
        return self._choices()[self.labels().index(stored)]

    def values(self) -> list:
        """Every value of a choice or integer range, the ends of a float range."""
        if self.kind == "choice":
            return list(self._choices())
        if self.kind == "int":
            low, high, step = self._int_range()
            return list(range(low, high + 1, step))
        return list(self._bounds())

    def _choices(self) -> list:
        if self.choices is None:
            raise ValueError(f"{self.key} is a {self.kind} range, not a choice")
        return self.choices

    def _bounds(self) -> tuple[float | int, float | int]:
        if self.low is None or self.high is None:
            raise ValueError(f"{self.key} is a choice, not a range")
        return self.low, self.high

    def _int_range(self) -> tuple[int, int, int]:
        """low, high and step (default 1) of an int range."""
        low, high = self._bounds()
        step = self.step or 1
        if isinstance(low, int) and isinstance(high, int) and isinstance(step, int):
            return low, high, step
        raise ValueError(f"{self.key}: an int range needs int low, high and step")


def _label(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


# --- the settings --------------------------------------------------------------------------


def tune_settings(config: ExperimentConfig) -> TuneSettings:
    """The checked ``[tune]`` table of ``config`` (unknown keys and bad values are refused)."""
    settings = build_section(TuneSettings, dict(config.tune), "tune")
    settings.metric = settings.metric or config.eval.main_metric
    # a trial is scored as eval.main_metric: that field's own rule decides which metrics work
    scored = dataclasses.replace(config.eval, main_metric=settings.metric)
    for _, why in scored.problems():
        raise ConfigError(
            f"tune.metric = {settings.metric!r} needs its k in eval.ks and a metric seqrec "
            f"computes (it is scored as eval.main_metric, which {why})"
        )
    return settings


# --- the space -----------------------------------------------------------------------------


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
    try:  # keys, types and the declared constraints of `SpaceEntry`
        entry = build_section(SpaceEntry, spec, "")
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    if entry.choices is not None:
        if len(spec) > 1:
            raise ConfigError(f"{where}: choices cannot be combined with low/high/log/step/type")
        return Param(key, "choice", choices=list(entry.choices))
    low, high, step = entry.low, entry.high, entry.step
    if low is None or high is None:
        raise ConfigError(f"{where}: a range needs both low and high (or give choices)")
    if low > high:
        raise ConfigError(f"{where}: low {low} is above high {high}")
    if entry.log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low}")
    if entry.log and step is not None:
        raise ConfigError(f"{where}: step cannot be used with log = true")
    kind = entry.type or _default_kind(key, entry, base)
    if kind == "int":
        if any(value is not None and value != int(value) for value in (low, high, step)):
            raise ConfigError(f"{where}: an int range needs whole low, high and step")
        low, high, step = int(low), int(high), None if step is None else int(step)
    else:
        low, high, step = float(low), float(high), None if step is None else float(step)
    return Param(key, kind, low=low, high=high, log=entry.log, step=step)


def _default_kind(key: str, entry: SpaceEntry, base: ExperimentConfig) -> str:
    """int when the bounds are whole numbers and the config key currently holds an int."""
    if not all(isinstance(value, int) for value in (entry.low, entry.high, entry.step or 1)):
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


def stored_params(values: dict[str, Any], params: list[Param]) -> dict[str, Any]:
    """A ``tune.enqueue`` entry as Optuna stores it, checked against the space."""
    by_key = {param.key: param for param in params}
    unknown = sorted(set(values) - set(by_key))
    if unknown:
        raise ConfigError(f"tune.enqueue: {unknown[0]} is not a key of [tune.space]")
    for key, value in values.items():
        param = by_key[key]
        if param.kind == "choice" and _label(value) not in param.labels():
            raise ConfigError(f"tune.enqueue: {key} = {value!r} is not one of its choices")
    return {
        key: _label(value) if by_key[key].kind == "choice" else value
        for key, value in values.items()
    }
