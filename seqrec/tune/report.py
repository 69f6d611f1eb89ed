"""A study's results: the best trials table, trials.csv, summary.md, plots and best.toml.

``best.toml`` is the base config with the best trial's parameters applied: a plain experiment
that ``seqrec train`` runs as it is.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from seqrec.config import ExperimentConfig, apply_overrides, save_config
from seqrec.report import markdown_table
from seqrec.tune.space import Param, TuneSettings, parse_space

FIXED_COLUMNS = ("trial", "value", "best epoch", "seconds")  # then one column per parameter


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


def count_trials(study: optuna.Study) -> dict[str, int]:
    """Trial state name -> number of trials of the study."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials, best first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=_rank_key)


def _rank_key(trial: FrozenTrial) -> float:
    """Higher values first, non-finite ones last."""
    value = trial.value
    return -value if value is not None and math.isfinite(value) else math.inf


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


def trial_line(trial: FrozenTrial) -> str:
    """One finished trial in a line: number, state, value (or where it was pruned), params."""
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


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items()))


def best_trials_table(result: TuneResult):
    """A rich table of the best trials of a finished `run_study`, parameters in one column."""
    from rich.table import Table

    table = Table(
        title=f"best trials of {result.study_name} "
        f"(validation {result.metric}; {_counts_text(result.counts)})"
    )
    for name in FIXED_COLUMNS:
        table.add_column(name, justify="right")
    table.add_column("parameters", ratio=1)
    for row in result.rows:
        params = "  ".join(
            f"{key}={value}" for key, value in row.items() if key not in FIXED_COLUMNS
        )
        table.add_row(*(row[name] for name in FIXED_COLUMNS), params)
    return table


def save_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """History, parameter importance and learning curves as PNG (those that can be drawn)."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    plots: dict[str, Callable[[optuna.Study], Any]] = {
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


def best_config(base: ExperimentConfig, params: list[Param], trial: FrozenTrial, metric: str):
    """The base config with a trial's parameters applied: a runnable experiment."""
    by_key = {param.key: param for param in params}
    overrides = {
        key: by_key[key].decode(value) if key in by_key else value
        for key, value in trial.params.items()
    }
    overrides["eval.main_metric"] = metric
    return apply_overrides(base, overrides)


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
    result.files.append(_write_summary(result, out_dir / "summary.md"))
    result.files += save_plots(study, out_dir)
    ranked = ranked_trials(study)
    if not ranked:
        return result
    best = ranked[0]
    result.best_number, result.best_value = best.number, best.value
    by_key = {param.key: param for param in params}
    result.best_params = {key: by_key[key].decode(value) for key, value in best.params.items()}
    paths = [out_dir / "best.toml"]
    if best_config_path is not None:
        paths.append(Path(best_config_path))
    header = (
        f"# Best of {len(ranked)} completed trials of study {study.study_name!r} "
        f"(seqrec tune): trial {best.number}, validation {settings.metric} = {best.value:.4f}.\n"
        "# The base config with the trial's parameters; [tune] is the search that found it.\n"
    )
    config = best_config(base, params, best, settings.metric)
    for path in paths:  # each named after its file (OUT/best.toml: "<base name>_best")
        name = f"{base.name}_best" if path.stem == "best" else path.stem
        path.parent.mkdir(parents=True, exist_ok=True)
        save_config(replace(config, name=name), path)
        path.write_text(header + path.read_text())
    result.best_config = paths[-1]
    result.files += paths
    return result


def _write_summary(result: TuneResult, path: Path) -> Path:
    """summary.md: the trial counts and the best trials as a markdown table."""
    rows = result.rows
    table = markdown_table(list(rows[0]), [row.values() for row in rows]) if rows else []
    summary = [
        f"# Study {result.study_name}\n",
        "Trials: " + _counts_text(result.counts),
        f"\nValidation {result.metric}, best first:\n",
        "\n".join(table or ["(no completed trial)"]) + "\n",
    ]
    path.write_text("\n".join(summary))
    return path
