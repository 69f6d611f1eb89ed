"""Training and evaluation at a shop's size: ``train.loss = "auto"``, ``train.steps_per_epoch``,
histories cut per evaluation batch."""

import math

import numpy as np
import pytest
import torch

from seqrec.config import ConfigError, apply_overrides
from seqrec.data.sequences import training_examples
from seqrec.experiment import prepare
from seqrec.losses import compute_loss, resolve_loss
from seqrec.models.recommender import build_model
from seqrec.train import TrainConfig, fit


@pytest.fixture(scope="module")
def prepared(demo_shop, tiny_config, tmp_path_factory):
    return prepare(tiny_config, demo_shop, cache_dir=tmp_path_factory.mktemp("cache"))


def one_epoch(prepared, config, **train):
    """The history row of one fixed epoch trained under ``config`` with ``train.*`` set."""
    config = apply_overrides(config, {f"train.{key}": value for key, value in train.items()})
    torch.manual_seed(0)
    model = build_model(config.model, prepared.features, prepared.dataset.n_items)
    result = fit(model, prepared.split, config.train, config.model.max_len, None, "ndcg@10",
                 fixed_epochs=1)  # fmt: skip
    return result.history[0]


def test_auto_is_the_full_softmax_up_to_the_threshold(prepared, tiny_config):
    n_items = prepared.dataset.n_items
    auto = one_epoch(prepared, tiny_config, loss="auto", full_softmax_max_items=n_items)
    ce = one_epoch(prepared, tiny_config, loss="ce")
    assert auto["loss_function"] == "ce"
    assert auto["loss"] == ce["loss"]  # the same training as asking for ce


def test_auto_samples_above_the_threshold(prepared, tiny_config):
    n_items = prepared.dataset.n_items
    auto = one_epoch(prepared, tiny_config, loss="auto", full_softmax_max_items=n_items - 1)
    sampled = one_epoch(prepared, tiny_config, loss="sampled_softmax")
    assert auto["loss_function"] == "sampled_softmax"
    assert auto["loss"] == sampled["loss"]


def test_a_loss_that_is_named_is_kept_at_any_size():
    config = TrainConfig(loss="ce", full_softmax_max_items=10)
    assert resolve_loss(config, 1_000_000).loss == "ce"
    assert resolve_loss(TrainConfig(), 1_000_000).loss == "sampled_softmax"
    assert resolve_loss(TrainConfig(), 1_000).loss == "ce"
    assert TrainConfig().loss == "auto"


def test_an_unresolved_auto_loss_is_refused_by_the_loss():
    hidden, items = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="resolve"):
        compute_loss(TrainConfig(), hidden, torch.tensor([0, 1, 2]), items, torch.Generator(), None)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train.loss", "automatic", "train.loss = 'automatic' is not one of"),
        ("train.full_softmax_max_items", 0, "train.full_softmax_max_items = 0 must be >= 1"),
        ("train.steps_per_epoch", -1, "train.steps_per_epoch = -1 must be >= 0"),
    ],
)
def test_bad_values_are_refused_with_the_key(tiny_config, key, value, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(tiny_config, {key: value})


def test_steps_per_epoch_ends_the_epoch_early(prepared, tiny_config, monkeypatch):
    from seqrec import train

    steps = []
    real_step = train._train_step
    monkeypatch.setattr(train, "_train_step", lambda *args: steps.append(1) or real_step(*args))
    examples = training_examples(
        prepared.split, tiny_config.model.max_len, tiny_config.train.target
    )
    every = math.ceil(len(examples) / tiny_config.train.batch_size)
    assert every > 2, "the demo shop must have more than two batches for this test"
    row = one_epoch(prepared, tiny_config, steps_per_epoch=2)
    assert len(steps) == 2 and row["steps"] == 2
    batch = tiny_config.train.batch_size  # two full batches: their sequences, >= 1 position each
    assert row["sequences_per_second"] * row["train_seconds"] == pytest.approx(2 * batch)
    assert row["positions_per_second"] >= row["sequences_per_second"]
    steps.clear()
    row = one_epoch(prepared, tiny_config, steps_per_epoch=0)
    assert len(steps) == every and row["steps"] == every


def test_evaluation_cuts_histories_per_batch(prepared, monkeypatch):
    from seqrec.data.split import EvalTask
    from seqrec.evaluate import evaluate

    task = prepared.split.task("test")
    expected = [history.tolist() for history in task.histories()]
    seen = []

    class Recorder:
        def score(self, histories):
            seen.extend(history.tolist() for history in histories)
            return np.zeros((len(histories), task.n_items), dtype=np.float32)

    def every_user(self):
        raise AssertionError("one array per user of the whole task")

    monkeypatch.setattr(EvalTask, "histories", every_user)
    result = evaluate(Recorder(), task, batch_size=7, bootstrap=0)
    assert seen == expected
    assert result.counts["users"] == len(task)


@pytest.mark.parametrize("loss", ["sampled_softmax", "bce", "gbce"])
def test_sampled_losses_encode_only_the_batch_items(prepared, tiny_config, loss):
    from seqrec.losses import HistoryTerms, negative_distribution
    from seqrec.train import TrainStep

    config = apply_overrides(tiny_config, {"model.dropout": 0.0, "model.item_net.dropout": 0.0})
    train = apply_overrides(config, {"train.loss": loss}).train
    model = build_model(config.model, prepared.features, prepared.dataset.n_items)
    examples = training_examples(prepared.split, config.model.max_len, train.target)[:8]
    _, probs = negative_distribution(prepared.split, train)
    encoded = []
    model.item_net.register_forward_hook(lambda _, args, out: encoded.append(out.shape[0]))
    sampled = TrainStep(model, train, probs)(examples, torch.Generator().manual_seed(1))
    assert max(encoded) < prepared.dataset.n_items  # never the whole catalogue
    assert len(encoded) == 3  # the inputs, the targets, the negatives

    inputs = examples[:, 0, :-1]  # the same loss from the whole item matrix
    from seqrec.data.sequences import target_pairs

    rows, cols, targets = target_pairs(examples, train.target, train.last_targets)
    items = model.item_matrix()
    torch.testing.assert_close(model.encode_batch(inputs), model(inputs, items))
    whole = compute_loss(
        train, model(inputs, items)[rows, cols], targets, items,
        torch.Generator().manual_seed(1), probs,
        history=HistoryTerms(model.history_terms(), inputs, rows, cols),
    )  # fmt: skip
    torch.testing.assert_close(sampled, whole)
    sampled.backward()  # gradients reach the item network through the rows it computed
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.item_net.parameters())
