import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import PurePosixPath

import numpy as np
import pytest
import torch

from seqrec.config import apply_overrides
from seqrec.experiment import prepare, run_train, train_on
from seqrec.scoring import ModelScorer
from seqrec.train import target_pairs


@pytest.fixture(scope="module")
def prepared(demo_shop, tiny_config, tmp_path_factory):
    return prepare(tiny_config, demo_shop, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.mark.parametrize("model", ["gru", "transformer", "mlp"])
@pytest.mark.parametrize("loss", ["bce", "sampled_softmax", "ce", "gbce"])
def test_every_model_trains_with_every_loss(prepared, tiny_config, model, loss):
    config = apply_overrides(
        tiny_config, {"model.model": model, "train.loss": loss, "train.epochs": 1}
    )
    outcome = train_on(config, prepared)
    row = outcome.train.history[0]
    assert np.isfinite(row["loss"]) and row["loss"] > 0
    assert 0.0 <= outcome.valid.metrics["ndcg@10"] <= 1.0
    assert outcome.test.counts["users"] > 0


def test_training_beats_an_untrained_model(prepared, tiny_config):
    config = apply_overrides(tiny_config, {"train.epochs": 6, "train.patience": 0})
    outcome = train_on(config, prepared)
    losses = [row["loss"] for row in outcome.train.history]
    assert losses[-1] < losses[0]
    assert outcome.train.best_metric >= outcome.train.history[0]["valid:ndcg@10"]


def test_same_seed_gives_the_same_weights_on_several_threads(prepared, tiny_config):
    # train.deterministic: threads summing gradients in a varying order cannot move a weight
    config = apply_overrides(tiny_config, {"model.dim": 64, "train.batch_size": 128})
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, second = train_on(config, prepared), train_on(config, prepared)
    finally:
        torch.set_num_threads(threads)
    assert not torch.are_deterministic_algorithms_enabled()  # restored after training
    assert first.test.metrics == second.test.metrics
    assert [r["loss"] for r in first.train.history] == [r["loss"] for r in second.train.history]
    weights, again = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(weights[name], again[name]) for name in weights)


def test_cold_item_score_depends_on_its_content(prepared, tiny_config):
    outcome = train_on(tiny_config, prepared)
    model = outcome.model
    cold = np.flatnonzero(prepared.split.task("test").cold_items())
    assert len(cold), "the demo shop has items that only launch in the test period"
    item = int(cold[0])
    history = [prepared.split.train["item_idx"].to_numpy()[:5]]
    before = ModelScorer(model, tiny_config.model.max_len).score(history)[0, item]
    model.item_net.text[item] = torch.roll(model.item_net.text[item], 3) + 0.5  # new content
    after = ModelScorer(model, tiny_config.model.max_len).score(history)[0, item]
    assert before != pytest.approx(after, abs=1e-6)


RUN = """
import sys
from seqrec.config import load_config
from seqrec.experiment import run_train
config = load_config(sys.argv[1])
run_train(config, sys.argv[2], __import__("pathlib").Path(sys.argv[3]), cache_dir=sys.argv[4])
"""


@pytest.mark.multiprocess
def test_resume_after_sigkill_matches_an_uninterrupted_run(demo_shop, tiny_config, tmp_path):
    from seqrec.config import save_config

    config = apply_overrides(tiny_config, {"train.epochs": 4, "train.patience": 0})
    config_path = tmp_path / "config.toml"
    save_config(config, config_path)
    cache = tmp_path / "cache"
    reference = run_train(config, demo_shop, tmp_path / "reference", cache_dir=cache)

    out = tmp_path / "killed"
    command = [sys.executable, "-c", RUN, str(config_path), str(demo_shop), str(out), str(cache)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    process = subprocess.Popen(command, env=env)
    checkpoint = out / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.exists() and not (out / "bundle.json").exists()
    state = torch.load(checkpoint, weights_only=False)
    assert state["epoch"] < 3  # killed part-way

    subprocess.run(command, env=env, check=True)  # the same command again resumes
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"] == pytest.approx(reference.test.metrics)
    assert len(metrics["history"]) == 4
    assert not checkpoint.exists()


@pytest.mark.parametrize("loss", ["ce", "sampled_softmax"])
def test_repeat_bias_learns_on_a_shop_with_repeat_purchases(prepared, tiny_config, loss):
    config = apply_overrides(
        tiny_config, {"model.repeat_bias": True, "train.loss": loss, "train.epochs": 2}
    )
    outcome = train_on(config, prepared)
    weight = outcome.model.repeat.weight.detach()
    assert np.isfinite(outcome.train.history[-1]["loss"])
    assert weight.abs().sum() > 0  # trained away from its zero start


def test_content_affinity_learns_and_survives_the_bundle(demo_shop, tiny_config, tmp_path):
    from seqrec.bundle import load_bundle

    config = apply_overrides(tiny_config, {"model.content_affinity": True, "train.epochs": 2})
    outcome = run_train(config, demo_shop, tmp_path / "bundle", cache_dir=tmp_path / "cache")
    assert outcome.model.affinity.strength.detach().abs().sum() > 0  # moved from its zero start
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.features.text_terms is not None  # the exact TF-IDF terms travel in the bundle
    histories = [np.array([0, 5, 7]), np.array([3])]
    expected = ModelScorer(outcome.model, config.model.max_len).score(histories)
    assert np.allclose(bundle.scorer().score(histories), expected, atol=1e-5)


def test_target_pairs_next_item_and_next_basket():
    items = torch.tensor([[0, 0, 5, 6, 7, 8, 9]])  # item_idx + 1, left-padded
    baskets = torch.tensor([[0, 0, 1, 1, 2, 3, 3]])  # days: {5, 6}, {7}, {8, 9}
    batch = torch.stack([items, baskets], dim=1)  # [1, 2, 7]
    rows, cols, targets = target_pairs(batch, "next_item")
    assert cols.tolist() == [2, 3, 4, 5] and targets.tolist() == [5, 6, 7, 8]
    rows, cols, targets = target_pairs(batch, "next_basket")
    # the end of day 1 (position 3) predicts day 2; the end of day 2 predicts both items of day 3;
    # nothing is predicted from a basket-mate
    assert cols.tolist() == [3, 4, 4] and targets.tolist() == [6, 7, 8]
    assert rows.tolist() == [0, 0, 0]


def test_next_basket_training_runs_and_learns(prepared, tiny_config):
    config = apply_overrides(
        tiny_config, {"train.target": "next_basket", "train.epochs": 4, "train.patience": 0}
    )
    outcome = train_on(config, prepared)
    losses = [row["loss"] for row in outcome.train.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_negative_pool_keeps_the_items_with_a_training_interaction(prepared):
    from seqrec.losses import negative_distribution
    from seqrec.train import TrainConfig

    split = prepared.split
    assert negative_distribution(split, TrainConfig()) == (None, None)
    pool, probs = negative_distribution(split, TrainConfig(negatives="trained"))
    trained = np.unique(split.train["item_idx"].to_numpy())
    assert pool.tolist() == trained.tolist()
    assert len(pool) < split.n_items  # the demo shop launches items after the training period
    assert torch.nonzero(probs).flatten().tolist() == trained.tolist()  # draws stay in the pool
    config = TrainConfig(negatives="trained", negative_sampling="popularity")
    assert torch.nonzero(negative_distribution(split, config)[1]).flatten().tolist() == (
        trained.tolist()
    )
    with pytest.raises(ValueError, match="negatives"):
        negative_distribution(split, TrainConfig(negatives="popular"))


def test_trained_negatives_train_a_model_with_history_terms(prepared, tiny_config):
    config = apply_overrides(
        tiny_config,
        {
            "model.repeat_bias": True,
            "train.negatives": "trained",
            "train.epochs": 4,
            "train.patience": 0,
        },
    )
    outcome = train_on(config, prepared)
    losses = [row["loss"] for row in outcome.train.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    # the full softmax over the same model and batches is a larger sum: its loss is higher
    catalogue = train_on(apply_overrides(config, {"train.negatives": "catalogue"}), prepared)
    assert catalogue.train.history[0]["loss"] > outcome.train.history[0]["loss"]


def test_refit_trains_the_chosen_epochs_again_on_train_plus_valid(prepared, tiny_config, tmp_path):
    from seqrec.bundle import load_bundle

    base = apply_overrides(tiny_config, {"train.epochs": 4, "train.patience": 0})
    plain = train_on(base, prepared)
    config = apply_overrides(base, {"train.refit": True})
    outcome = train_on(config, prepared, out_dir=tmp_path / "bundle")

    def untimed(rows):
        return [{key: row[key] for key in row if "second" not in key} for row in rows]

    assert untimed(outcome.train.history) == untimed(plain.train.history)  # same choosing run
    assert outcome.valid.metrics == plain.valid.metrics  # validation: the choosing model's
    refit_rows = outcome.refit.history
    assert len(refit_rows) == outcome.train.best_epoch + 1
    assert all(row["refit"] for row in refit_rows)
    assert not any(key.startswith("valid:") for row in refit_rows for key in row)
    # same seed and initialisation, more data: the refit's first epoch sees other sequences
    assert refit_rows[0]["loss"] != outcome.train.history[0]["loss"]
    assert outcome.test.metrics != plain.test.metrics
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.metrics["refit_epochs"] == len(refit_rows)
    histories = [np.array([0, 5, 7]), np.array([3])]
    expected = ModelScorer(outcome.model, config.model.max_len).score(histories)
    assert np.allclose(bundle.scorer().score(histories), expected, atol=1e-5)
    assert not (tmp_path / "bundle" / "refit_checkpoint.pt").exists()


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_learning_rate_warms_up_linearly_then_follows_the_schedule(schedule):
    from seqrec.train import TrainConfig, _lr_factor

    config = TrainConfig(schedule=schedule, warmup_steps=4)
    factors = [_lr_factor(config, step, total_steps=104) for step in range(110)]
    assert factors[:5] == [0.25, 0.5, 0.75, 1.0, 1.0]  # the first step already trains
    if schedule == "constant":
        assert set(factors[4:]) == {1.0}
        return
    assert factors[29] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))  # a quarter through
    assert factors[54] == pytest.approx(0.5)  # halfway through the 100 steps after warm-up
    assert np.all(np.diff(factors[4:105]) < 0)  # falling every step to zero
    assert factors[104:] == [0.0] * 6  # past the end it stays at zero, no restart


def test_fit_for_fixed_epochs_never_validates(prepared, tiny_config):
    from seqrec.models.recommender import build_model
    from seqrec.train import fit

    def validate(scorer, task):
        raise AssertionError("a fixed-epoch run must not validate")

    model = build_model(tiny_config.model, prepared.features, prepared.dataset.n_items)
    split = prepared.split.with_valid_in_train()
    result = fit(model, split, tiny_config.train, 12, validate, "ndcg@10", fixed_epochs=1)
    assert len(result.history) == 1 and np.isnan(result.best_metric)
    # a fixed-epoch run needs no callback at all
    result = fit(model, split, tiny_config.train, 12, None, "ndcg@10", fixed_epochs=1)
    assert len(result.history) == 1 and result.history[0]["refit"]
    for bad in (0, tiny_config.train.epochs + 1):
        with pytest.raises(ValueError, match="fixed_epochs"):
            fit(model, split, tiny_config.train, 12, validate, "ndcg@10", fixed_epochs=bad)
    with pytest.raises(ValueError, match="validate callback"):
        fit(model, split, tiny_config.train, 12, None, "ndcg@10")


class Interrupted(Exception):
    """Raised from `on_epoch` after the first epoch's checkpoint is written: a killed run."""


def interrupted_run(config, prepared, out) -> None:
    def stop(row):
        raise Interrupted

    with pytest.raises(Interrupted):
        train_on(config, prepared, out_dir=out, on_epoch=stop)
    assert (out / "checkpoint.pt").exists()


def test_resume_with_a_changed_setting_is_refused_before_training(prepared, tiny_config, tmp_path):
    from seqrec.checkpoint import CheckpointError

    interrupted_run(tiny_config, prepared, tmp_path)
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    trained = []
    changed = apply_overrides(tiny_config, {"train.lr": 0.05})
    with pytest.raises(CheckpointError) as error:
        train_on(changed, prepared, out_dir=tmp_path, on_epoch=trained.append)
    message = str(error.value)
    assert f"train.lr: {tiny_config.train.lr!r} (checkpoint) -> 0.05 (now)" in message
    assert "--restart" in message and str(tmp_path / "checkpoint.pt") in message
    assert len(message.splitlines()) == 3  # one line per differing key, nothing else differs
    assert trained == []  # stopped before any epoch
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved  # nothing the user had is lost


def test_resume_ignores_settings_that_do_not_change_training(prepared, tiny_config, tmp_path):
    interrupted_run(tiny_config, prepared, tmp_path)
    rows = []
    how = {"train.eval_batch_size": 7, "eval.bootstrap": 20, "name": "other"}
    resumed = train_on(apply_overrides(tiny_config, how), prepared, tmp_path, rows.append)
    clean = train_on(tiny_config, prepared)
    assert [row["epoch"] for row in rows] == [1]  # resumed after the first epoch
    assert [r["loss"] for r in resumed.train.history] == [r["loss"] for r in clean.train.history]
    assert resumed.test.metrics == clean.test.metrics


def first_epoch_checkpoint(prepared, tiny_config, path, split=None):
    """Train one epoch of a fixed-length run with a checkpoint at ``path`` (kept by `fit`)."""
    from seqrec.models.recommender import build_model
    from seqrec.train import fit

    model = build_model(tiny_config.model, prepared.features, prepared.dataset.n_items)
    split = prepared.split if split is None else split
    return fit(
        model, split, tiny_config.train, 12, None, "ndcg@10", checkpoint_path=path, fixed_epochs=1
    )


def test_resume_on_other_data_is_refused(prepared, tiny_config, tmp_path):
    from seqrec.checkpoint import CheckpointError
    from seqrec.data.split import Split

    path = tmp_path / "checkpoint.pt"
    first_epoch_checkpoint(prepared, tiny_config, path)
    first_epoch_checkpoint(prepared, tiny_config, path)  # the same data: resumes, nothing to do
    split = prepared.split
    fewer = Split(split.method, split.train.iloc[20:], split.valid, split.test, split.n_items)
    with pytest.raises(CheckpointError, match="dataset.train_interactions: 1"):
        first_epoch_checkpoint(prepared, tiny_config, path, fewer)
    # the same number of rows, one item changed: only the fingerprint tells
    train = split.train.copy()
    train.loc[train.index[-1], "item_idx"] = (train["item_idx"].iloc[-1] + 1) % split.n_items
    changed = Split(split.method, train, split.valid, split.test, split.n_items)
    with pytest.raises(CheckpointError) as error:
        first_epoch_checkpoint(prepared, tiny_config, path, changed)
    assert "dataset.fingerprint" in str(error.value)
    assert "dataset.train_interactions" not in str(error.value)


def bad_checkpoint(kind: str, path, valid: bytes | None = None) -> str:
    """Write a checkpoint that cannot be resumed at ``path``; what the error must say."""
    if kind == "empty":
        path.write_bytes(b"")
        return "is empty"
    if kind == "truncated":
        path.write_bytes(valid[: len(valid) // 2])
        return "cannot be read (damaged or truncated"
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        return "is not a seqrec checkpoint"
    if kind == "other pickle":  # unpickling it would run code: weights_only refuses it
        path.write_bytes(pickle.dumps(PurePosixPath("not-a-checkpoint")))
        return "is not a seqrec checkpoint"
    if kind == "other state dict":  # weights alone, as `torch.save(model.state_dict())` writes
        torch.save(torch.nn.Linear(3, 2).state_dict(), path)
        return "is not a seqrec training checkpoint (no epoch"
    raise ValueError(kind)


BAD_CHECKPOINTS = ["empty", "truncated", "random bytes", "other pickle", "other state dict"]


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS + ["other model", "no settings"])
def test_a_checkpoint_that_cannot_be_resumed_is_named(prepared, tiny_config, tmp_path, kind):
    from seqrec.checkpoint import CheckpointError

    path = tmp_path / "checkpoint.pt"
    first_epoch_checkpoint(prepared, tiny_config, path)
    if kind == "other model":  # the right settings around another model's weights
        state = torch.load(path, weights_only=True)
        state["model"] = {"backbone.norm.weight": torch.ones(3)}
        torch.save(state, path)
        expected = "does not fit this model"
    elif kind == "no settings":  # what seqrec wrote before checkpoints recorded settings
        state = torch.load(path, weights_only=True)
        del state["identity"]
        torch.save(state, path)
        expected = "no identity; an older seqrec did not record its settings"
    else:
        expected = bad_checkpoint(kind, path, path.read_bytes())
    with pytest.raises(CheckpointError) as error:
        first_epoch_checkpoint(prepared, tiny_config, path)
    assert expected in str(error.value)
    assert str(path) in str(error.value) and "--restart" in str(error.value)


def test_checkpoint_reads_back_with_weights_only_even_with_numpy_metrics(tmp_path):
    from seqrec.checkpoint import save_checkpoint

    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"history": [{"loss": np.float64(0.5), "epoch": np.int64(2)}]}, path)
    state = torch.load(path, weights_only=True)
    assert state["history"] == [{"loss": 0.5, "epoch": 2}]
    assert type(state["history"][0]["loss"]) is float
