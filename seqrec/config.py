"""Experiment configuration: one TOML file per experiment, read into nested dataclasses.

Every section is the config dataclass of the step that uses it, so a newcomer can follow a key
from the TOML to the code: ``[data]`` -> `DataConfig` (here), ``[split]`` ->
`seqrec.data.split.SplitConfig`, ``[features]`` -> `seqrec.features.build.FeatureConfig`,
``[model]`` -> `seqrec.models.recommender.ModelConfig`, ``[train]`` -> `seqrec.train.TrainConfig`,
``[eval]`` -> `EvalConfig` (here), ``[ranker]`` -> `seqrec.ranker.config.RankerConfig` (the
two-stage recommender, off by default), ``[tune]`` -> the Optuna search space (a plain table).

Each field declares its allowed values beside it (`seqrec.constraints`: ``choice``,
``at_least``, ...). `config_from_dict` (TOML files, ``--set`` overrides) refuses unknown keys,
wrong types and values outside those constraints, with the full key path in the message
(``train.batch_size = 0 must be >= 1``), before any data is read. Keys and choice values may be
spelled with ``-`` or ``_``. What only this machine decides (the device) is checked by
`check_runnable` before training.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

from seqrec.constraints import ConfigError, at_least, build_section, choice, read_document
from seqrec.data.load import FORMATS, ON_ERROR
from seqrec.data.split import SplitConfig
from seqrec.devices import device_unavailable
from seqrec.features.build import FeatureConfig
from seqrec.metrics import METRICS
from seqrec.models.recommender import ModelConfig
from seqrec.ranker.config import RankerConfig
from seqrec.train import TrainConfig


@dataclass
class DataConfig:
    format: str | None = choice(None, *FORMATS)  # None = detect from the path
    on_error: str = choice("skip", *ON_ERROR)
    text_columns: list[str] | None = None  # override the dataset's text columns


@dataclass
class EvalConfig:
    ks: list[int] = at_least(1, factory=lambda: [10, 12])
    # early stopping and tuning objective (validation only): <metric>@<k> with k in ks, or mrr
    main_metric: str = "ndcg@10"
    remove_seen: bool = False  # drop items in the history from the ranking (ML-1M protocol)
    bootstrap: int = at_least(0, 1000)
    # the final figures (train, eval, bench) of a seeded sample of this many users per
    # held-out stage, the same users for every row; 0: every user (a full-size shop has 1M+)
    users: int = at_least(0, 0)

    def problems(self) -> list[tuple[str, str]]:
        name, at, k = self.main_metric.partition("@")
        if self.main_metric == "mrr" or (at and name in METRICS and k in map(str, self.ks)):
            return []
        return [
            (
                "main_metric",
                f"must be <metric>@<k> with a metric of {', '.join(METRICS)} and k in "
                f"eval.ks = {self.ks}, or mrr",
            )
        ]


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    tune: dict[str, Any] = field(default_factory=dict)


def config_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    """The checked config of a TOML document (`build_section`); ConfigError names the key."""
    return build_section(ExperimentConfig, values, "")


def check_runnable(config: ExperimentConfig) -> None:
    """ConfigError when this machine cannot run ``config``: a device it lacks. Checked before
    training (`seqrec.experiment.prepare`), not when a config is read, so a bundle trained on
    a GPU can be read anywhere."""
    devices = [("train.device", config.train.device)]
    if config.features.use_text and config.features.text.encoder == "sentence":
        devices.append(("features.text.device", config.features.text.device))
    for key, name in devices:
        why = device_unavailable(name)
        if why:
            raise ConfigError(f"{key} = {name!r}: {why}")


def load_config(path: str | Path | None) -> ExperimentConfig:
    if path is None:
        return ExperimentConfig()
    path = Path(path)
    values = read_document(path, "config file")
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
    word that is not TOML (``--set train.negatives=trained``) as a string, like a date."""
    overrides = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. model.dim=128")
        try:
            value = tomllib.loads(f"value = {raw}")["value"]
        except tomllib.TOMLDecodeError:
            value = raw
        if isinstance(value, (datetime.date, datetime.time)):
            value = raw.strip()
        overrides[key.strip()] = value
    return overrides


def apply_overrides(config: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """Set dotted keys (``model.dim``) on a copy of the config, checked like the TOML."""
    values = config_to_dict(config)
    for dotted, value in overrides.items():
        if value is None:
            continue
        table = values
        parts = dotted.split(".")
        if parts[0] != "tune":  # section keys may be spelled with - (tune holds free names)
            parts = [part.replace("-", "_") for part in parts]
        *parents, last = parts
        for depth, part in enumerate(parents):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(f"unknown key {dotted}: {where} is a value, not a table")
        table[last] = value
    return config_from_dict(values)
