"""Experiment configuration: one TOML file per experiment, read into nested dataclasses.

Every section is the config dataclass of the step that uses it, so a newcomer can follow a key
from the TOML to the code: ``[data]`` -> `DataConfig` (here), ``[split]`` ->
`seqrec.data.split.SplitConfig`, ``[features]`` -> `seqrec.features.build.FeatureConfig`,
``[model]`` -> `seqrec.models.recommender.ModelConfig`, ``[train]`` -> `seqrec.train.TrainConfig`,
``[eval]`` -> `EvalConfig` (here), ``[tune]`` -> the Optuna search space (a plain table).
Unknown keys and wrong types are refused with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

from seqrec.data.dataset import DataError
from seqrec.data.load import FORMATS, ON_ERROR
from seqrec.data.split import METHODS, SplitConfig
from seqrec.features.build import FeatureConfig
from seqrec.features.fusion import FUSIONS
from seqrec.models.recommender import BACKBONES, HISTORY_ORDERS, ModelConfig
from seqrec.train import LOSSES, TARGETS, TrainConfig

# Keys whose value is one of a few names: refused when the config is read, not mid-run.
CHOICES: dict[str, tuple] = {
    "data.format": (None, *FORMATS),
    "data.on_error": ON_ERROR,
    "split.method": METHODS,
    "features.text.encoder": ("tfidf", "sentence"),
    "model.model": BACKBONES,
    "model.history_order": HISTORY_ORDERS,
    "model.item_net.fusion": FUSIONS,
    "train.loss": LOSSES,
    "train.target": TARGETS,
    "train.optimizer": ("adam", "adamw"),
    "train.schedule": ("cosine", "constant"),
    "train.negative_sampling": ("uniform", "popularity"),
    "train.negatives": ("catalogue", "trained"),
}


class ConfigError(DataError):
    """A configuration file or override that cannot be used as it is."""


@dataclass
class DataConfig:
    format: str | None = None  # hm | sasrec | generic; None = detect from the path
    on_error: str = "skip"  # skip | fail
    text_columns: list[str] | None = None  # override the dataset's text columns


@dataclass
class EvalConfig:
    ks: list[int] = field(default_factory=lambda: [10, 12])
    main_metric: str = "ndcg@10"  # early stopping and tuning objective (validation only)
    remove_seen: bool = False  # drop items in the history from the ranking (ML-1M protocol)
    bootstrap: int = 1000


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tune: dict[str, Any] = field(default_factory=dict)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """A `cls` instance from a TOML table, checking keys and types recursively."""
    if not isinstance(values, dict):
        raise ConfigError(f"[{where}] must be a table, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"unknown key {where + '.' if where else ''}{unknown[0]}; "
            f"known keys: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key)
        else:
            kwargs[name] = _check_type(value, hint, key)
    return cls(**kwargs)


def _check_type(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check_type(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} = {value!r} does not fit the expected type {hint}")
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key} must be empty")
    if hint is Any:
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        args = typing.get_args(hint)
        item_hint = args[0] if args else Any
        checked = [_check_type(item, item_hint, key) for item in value]
        return tuple(checked) if origin is tuple else checked
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{key} must be {hint.__name__}, got {value!r}")
    return value


def config_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    config = _build(ExperimentConfig, values, "")
    for dotted, allowed in CHOICES.items():
        value = config
        for part in dotted.split("."):
            value = getattr(value, part)
        if value not in allowed:
            names = ", ".join(str(name) for name in allowed if name is not None)
            raise ConfigError(f"{dotted} = {value!r} is not one of: {names}")
    return config


def load_config(path: str | Path | None) -> ExperimentConfig:
    if path is None:
        return ExperimentConfig()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    config = config_from_dict(values)
    if "name" not in values:
        config.name = path.stem
    return config


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """Plain dict without None values (TOML has no null), for saving next to results."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items() if item is not None}
        if isinstance(value, (list, tuple)):
            return [strip(item) for item in value]
        return value

    return strip(dataclasses.asdict(config))


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(tomli_w.dumps(config_to_dict(config)))


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs -> {dotted key: value}; values are read as TOML, and a bare
    word that is not TOML (``--set train.negatives=trained``) as a string."""
    overrides = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. model.dim=128")
        try:
            overrides[key.strip()] = tomllib.loads(f"value = {raw}")["value"]
        except tomllib.TOMLDecodeError:
            overrides[key.strip()] = raw
    return overrides


def apply_overrides(config: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """Set dotted keys (``model.dim``) on a copy of the config, type-checked like the TOML."""
    values = config_to_dict(config)
    for dotted, value in overrides.items():
        if value is None:
            continue
        table = values
        *parents, last = dotted.split(".")
        for part in parents:
            table = table.setdefault(part, {})
        table[last] = value
    return config_from_dict(values)
