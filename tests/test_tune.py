"""`seqrec tune`: the [tune] search space, pruning, resuming a killed study, parallel workers."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from cli import app
from seqrec.config import ConfigError, load_config, save_config
from seqrec.tune import (
    Param,
    StudyOptions,
    open_storage,
    parse_space,
    run_study,
    tune_settings,
)

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

SPACE = {
    "model.model": {"choices": ["gru", "transformer"]},
    "train.lr": {"low": 1e-3, "high": 1e-2, "log": True},
    "model.dropout": {"low": 0.0, "high": 0.3},
}


def with_tune(config, space=None, **settings):
    """The tiny config with a [tune] table (no pruning unless asked)."""
    tune = {"pruner": "none", "startup_trials": 2, **settings, "space": space or SPACE}
    return dataclasses.replace(config, tune=tune)


def trials_in(storage: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=open_storage(str(storage)))
    return study.get_trials(deepcopy=False)


def running_study_trials(storage: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    """`trials_in` while another process creates the study: none before the study exists (its
    journal file can appear before the study's record is written)."""
    if not storage.exists():
        return []
    try:
        return trials_in(storage, name)
    except KeyError:  # optuna: "Record does not exist." (not created yet)
        return []


def states(trials) -> list[str]:
    return [trial.state.name for trial in trials]


# --- the search space as data ---------------------------------------------------------------


def test_space_ranges_choices_and_types(tiny_config):
    space = {
        "model.layers": {"low": 1, "high": 3},  # int: the config holds an int
        "model.dropout": {"low": 0, "high": 0.5},  # float: the config holds a float
        "train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "model.dim": {"low": 16, "high": 64, "step": 16},
        "model.item_net.modalities": {"choices": [["text"], ["text", "categories"]]},
    }
    params = {param.key: param for param in parse_space(space, tiny_config)}
    assert params["model.layers"] == Param("model.layers", "int", low=1, high=3)
    assert params["model.dropout"].kind == "float"
    assert params["train.lr"].log and params["train.lr"].low == 1e-4
    assert params["model.dim"].values() == [16, 32, 48, 64]
    modalities = params["model.item_net.modalities"]
    assert modalities.labels() == ['["text"]', '["text", "categories"]']
    assert modalities.decode('["text", "categories"]') == ["text", "categories"]


@pytest.mark.parametrize(
    "space, message",
    [
        ({"model.widht": {"low": 1, "high": 2}}, "widht"),
        ({"model.layers": {"low": 1.5, "high": 3.5}}, "model.layers must be int"),
        ({"model.model": {"choices": ["gru", "lstm"]}}, "model.model = 'lstm' is not one of: gru"),
        ({"train.lr": {"low": 0, "high": 1e-2, "log": True}}, "log range needs low > 0"),
        ({"train.lr": {"low": 1e-2, "high": 1e-4}}, "low 0.01 is above high"),
        ({"train.lr": {"min": 1e-4, "high": 1e-2}}, "unknown key min"),
        ({"train.lr": 0.001}, "expected a table"),
        ({"model.heads": {"choices": [1, 3]}}, "model.heads = 3 does not divide model.dim = 16"),
        ({"model.dim": {"choices": [16, 24]}, "model.heads": {"choices": [2, 16]}}, "divide"),
        ({}, "is empty"),
    ],
)
def test_bad_space_is_refused_naming_the_key(tiny_config, space, message):
    with pytest.raises(ConfigError, match=message):
        parse_space(space, tiny_config)


def test_heads_are_free_when_no_transformer_is_searched(tiny_config):
    config = dataclasses.replace(
        tiny_config, model=dataclasses.replace(tiny_config.model, model="gru")
    )
    parse_space({"model.heads": {"choices": [3]}}, config)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"pruner": "asha"}, "tune.pruner = 'asha'"),
        ({"metric": "ndcg@20"}, "needs its k in eval.ks"),
        ({"direction": "minimize"}, "only 'maximize'"),
        ({"n_trials": 3}, "unknown key tune.n_trials"),
    ],
)
def test_bad_tune_settings_are_refused(tiny_config, settings, message):
    with pytest.raises(ConfigError, match=message):
        tune_settings(with_tune(tiny_config, **settings))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"metric": "hitrate@10"}, "tune.metric = 'hitrate@10' needs .* a metric seqrec computes"),
        ({"pruner_startup_trials": -1}, r"tune.pruner_startup_trials = -1 must be >= 0"),
        ({"trials": 0}, r"tune.trials = 0 must be >= 1"),
    ],
)
def test_tune_settings_are_checked_by_their_declaration(tiny_config, settings, message):
    with pytest.raises(ConfigError, match=message):
        tune_settings(with_tune(tiny_config, **settings))


def test_an_unknown_metric_is_refused_before_the_study_is_stored(demo_shop, tmp_path, tiny_config):
    out = tmp_path / "study"
    with pytest.raises(ConfigError, match="tune.metric = 'hitrate@10'"):
        run_study(
            with_tune(tiny_config, metric="hitrate@10"),
            demo_shop,
            StudyOptions(n_trials=1, out_dir=out),
        )
    assert not (out / "study.journal").exists()


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"low": "a", "high": 1.0}, r"train.lr: low = 'a' does not fit"),
        ({"low": 1e-3, "high": 1e-2, "step": -1}, r"train.lr: step = -1 must be > 0"),
        ({"low": 1e-3, "high": 1e-2, "log": "yes"}, r"train.lr: log must be bool"),
        ({"low": 1e-3, "high": 1e-2, "type": "str"}, r"type = 'str' is not one of: int, float"),
        ({"choices": []}, r"train.lr: choices = \[\] must not be empty"),
        ({"choices": [1e-3], "low": 1e-3}, "choices cannot be combined"),
        ({"low": 1e-3}, "needs both low and high"),
    ],
)
def test_a_bad_space_entry_is_refused_naming_the_key(tiny_config, spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_space({"train.lr": spec}, tiny_config)


def test_cli_reports_a_bad_space_as_one_message(demo_shop, tmp_path, tiny_config):
    path = tmp_path / "bad.toml"
    save_config(with_tune(tiny_config, {"model.lyers": {"low": 1, "high": 2}}), path)
    result = runner.invoke(
        app, ["tune", "--config", str(path), "--data", str(demo_shop), "--trials", "2"]
    )
    assert result.exit_code == 2
    # the message's "[tune.space]" is printed as written, not read as rich markup
    assert "[tune.space] model.lyers" in result.output and "Traceback" not in result.output


def test_cli_refuses_a_number_of_trials_below_one(demo_shop, tmp_path, tiny_config):
    path = tmp_path / "space.toml"
    save_config(with_tune(tiny_config, {"train.lr": {"low": 1e-3, "high": 1e-2}}), path)
    result = runner.invoke(
        app, ["tune", "--config", str(path), "--data", str(demo_shop), "--trials", "0"]
    )
    assert result.exit_code == 2
    assert "trials must be >= 1, got 0" in result.output and "Traceback" not in result.output


# --- studies on the tiny demo shop ----------------------------------------------------------


def test_three_trials_then_the_best_config_trains(demo_shop, tmp_path, tiny_config):
    config_path, out = tmp_path / "tune.toml", tmp_path / "study"
    save_config(with_tune(tiny_config), config_path)
    args = ["tune", "--config", str(config_path), "--data", str(demo_shop), "--trials", "3"]
    result = runner.invoke(app, [*args, "--out", str(out), "--save-best", str(tmp_path / "b.toml")])
    assert result.exit_code == 0, result.output
    assert "best trials of" in result.output

    trials = trials_in(out / "study.journal", tiny_config.name)
    assert states(trials) == ["COMPLETE"] * 3
    assert all(0 < trial.value < 1 for trial in trials)
    assert {"worker", "epochs", "best_epoch", "seconds"} <= set(trials[0].user_attrs)
    for name in ("trials.csv", "summary.md", "history.png", "epochs.png", "best.toml"):
        assert (out / name).is_file(), name
    best = max(trials, key=lambda trial: trial.value)
    assert f"validation ndcg@10 = {best.value:.4f}" in (tmp_path / "b.toml").read_text()

    # The best config is a plain experiment: `seqrec train` reproduces the trial's validation.
    tuned = load_config(tmp_path / "b.toml")
    assert tuned.name == "b" and load_config(out / "best.toml").name == f"{tiny_config.name}_best"
    assert tuned.model.model == best.params["model.model"]
    assert tuned.train.lr == best.params["train.lr"]
    bundle = tmp_path / "bundle"
    args = ["train", "--config", str(tmp_path / "b.toml"), "--data", str(demo_shop)]
    result = runner.invoke(app, [*args, "--out", str(bundle)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert metrics["valid"]["ndcg@10"] == pytest.approx(best.value, abs=1e-6)

    # Asked again for the same total, the study has nothing left to run.
    again = run_study(config_path, demo_shop, StudyOptions(n_trials=3, out_dir=out))
    assert again.counts == {"COMPLETE": 3} and again.best_number == best.number


def test_rdb_storage_and_a_study_from_another_space_is_refused(demo_shop, tmp_path, tiny_config):
    out, url = tmp_path / "study", f"sqlite:///{tmp_path / 'tune.db'}"
    result = run_study(
        with_tune(tiny_config), demo_shop, StudyOptions(n_trials=1, storage=url, out_dir=out)
    )
    assert result.counts == {"COMPLETE": 1} and result.storage == url
    assert (tmp_path / "tune.db").is_file() and not (out / "study.journal").exists()
    changed = with_tune(tiny_config, {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}})
    with pytest.raises(ConfigError, match="another base config, metric or"):
        run_study(changed, demo_shop, StudyOptions(n_trials=2, storage=url, out_dir=out))


def test_a_clearly_worse_trial_is_pruned_before_its_last_epoch(demo_shop, tmp_path, tiny_config):
    config = dataclasses.replace(
        tiny_config, train=dataclasses.replace(tiny_config.train, epochs=3, warmup_steps=1)
    )
    config = with_tune(
        config,
        {"train.lr": {"low": 1e-8, "high": 1e-2, "log": True}},
        pruner="median",
        pruner_startup_trials=2,
        warmup_epochs=0,
        # two good trials, then one whose learning rate is far too small to learn anything
        enqueue=[{"train.lr": 1e-2}, {"train.lr": 5e-3}, {"train.lr": 1e-8}],
    )
    result = run_study(config, demo_shop, StudyOptions(n_trials=3, out_dir=tmp_path / "study"))
    trials = trials_in(tmp_path / "study" / "study.journal", config.name)
    assert states(trials) == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert trials[2].params["train.lr"] == 1e-8
    assert len(trials[2].intermediate_values) < 3  # stopped before its last epoch
    assert result.counts == {"COMPLETE": 2, "PRUNED": 1}


RUN = """
from seqrec.tune import StudyOptions, run_study
run_study({config!r}, {data!r}, StudyOptions(n_trials=3, out_dir={out!r}))
"""


@pytest.mark.multiprocess
def test_a_killed_study_resumes_without_repeating_finished_trials(demo_shop, tmp_path, tiny_config):
    # 30 epochs, no early stop: a trial after the first lasts about a second, so the poll
    # below sees it running (with 3 epochs it could start and end between two polls); it is
    # killed once that trial has reported an epoch (its parameters are in the journal then)
    train = dataclasses.replace(tiny_config.train, epochs=30, patience=30)
    config = dataclasses.replace(tiny_config, train=train)
    config_path, out = tmp_path / "tune.toml", tmp_path / "study"
    save_config(with_tune(config), config_path)
    journal = out / "study.journal"
    code = RUN.format(config=str(config_path), data=str(demo_shop), out=str(out))
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            time.sleep(0.05)
            trials = running_study_trials(journal, config.name)
            running = trials[-1] if states(trials)[-1:] == ["RUNNING"] else None
            if "COMPLETE" in states(trials) and running and running.intermediate_values:
                break
        assert process.poll() is None, "the study ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    before = trials_in(journal, config.name)
    finished = {t.number: (t.value, t.datetime_complete) for t in before if t.state.is_finished()}
    killed = [t.number for t in before if t.state == TrialState.RUNNING]
    assert finished and len(killed) == 1

    result = run_study(config_path, demo_shop, StudyOptions(n_trials=3, out_dir=out))
    after = trials_in(journal, config.name)
    assert result.failed_on_start == killed
    assert after[killed[0]].state == TrialState.FAIL
    assert sum(t.state == TrialState.COMPLETE for t in after) == 3
    for number, (value, completed) in finished.items():  # kept, not run again
        assert (after[number].value, after[number].datetime_complete) == (value, completed)
    retried = [t for t in after if t.user_attrs.get("retry_of") == killed[0]]
    assert len(retried) == 1 and retried[0].params == after[killed[0]].params
    assert len(after) == 4  # three counted trials and the killed one


@pytest.mark.multiprocess
def test_two_workers_share_one_storage(demo_shop, tmp_path, tiny_config):
    out = tmp_path / "study"
    result = run_study(
        with_tune(tiny_config), demo_shop, StudyOptions(n_trials=4, workers=2, out_dir=out)
    )
    trials = trials_in(out / "study.journal", tiny_config.name)
    assert states(trials) == ["COMPLETE"] * 4  # none lost, none failed, none extra
    assert result.counts == {"COMPLETE": 4}
    workers = {trial.user_attrs["worker"] for trial in trials}
    assert len(workers) == 2 and all(str(os.getpid()) not in w for w in workers)


# --- a journal torn by a crash mid-write -------------------------------------------------------


def journal_with_trials(path: Path, n: int = 3) -> list[float]:
    """A journal study "torn" with ``n`` finished trials of a quick objective; their values."""
    study = optuna.create_study(study_name="torn", storage=open_storage(str(path)))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=n)
    return [trial.value for trial in study.trials]


@pytest.mark.parametrize(
    "tail",
    [b'{"op_code":4,"worker_id":"w","trial_id":3,"par', b'{"op_code":4,"worker_id"\n'],
    ids=["no newline", "newline"],
)
def test_a_torn_last_journal_record_is_cut_off_with_a_warning(tmp_path, tail):
    path = tmp_path / "study.journal"
    values = journal_with_trials(path)
    intact = path.read_bytes()
    with open(path, "ab") as f:
        f.write(tail)

    with pytest.warns(UserWarning, match=rf"removed a torn last record \({len(tail)} bytes"):
        storage = open_storage(str(path))
    assert path.read_bytes() == intact
    study = optuna.load_study(study_name="torn", storage=storage)
    assert [trial.value for trial in study.trials] == values
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)  # writes again
    reopened = optuna.load_study(study_name="torn", storage=open_storage(str(path)))
    assert len(reopened.trials) == len(values) + 1


def test_an_intact_journal_is_left_alone(tmp_path, recwarn):
    path = tmp_path / "study.journal"
    journal_with_trials(path, n=1)
    intact = path.read_bytes()
    open_storage(str(path))
    assert path.read_bytes() == intact
    assert not [w for w in recwarn if "torn" in str(w.message)]
