"""What the server scores with: every runtime agrees with the model's own recommend_scores, and
the served scorer (runtime + history re-rank) ranks as the evaluation's scorer does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqrec.data.sequences import histories_to_tensor
from seqrec.evaluate import top_k
from seqrec.features.item_features import ItemFeatures
from seqrec.models import ItemNetConfig, ModelConfig, build_model
from seqrec.models.recommender import HISTORY_ORDERS
from seqrec.scoring import ModelScorer
from seqrec.serve import scoring
from seqrec.serve.scoring import ONNX_TOLERANCE, ServedScores, fast_scores, served_scorer

N, MAX_LEN = 30, 8


def tiny_model(backbone: str):
    generator = torch.Generator().manual_seed(0)
    features = ItemFeatures(
        text=torch.randn(N, 12, generator=generator),
        image=torch.randn(N, 6, generator=generator),
        image_mask=torch.ones(N, dtype=torch.bool),
    )
    config = ModelConfig(
        model=backbone,
        dim=16,
        layers=2,
        heads=2,
        dropout=0.0,
        max_len=MAX_LEN,
        item_net=ItemNetConfig(dropout=0.0),
        repeat_bias=True,
        content_affinity=True,
        history_first=True,
    )
    torch.manual_seed(0)
    model = build_model(config, features, N).eval()
    with torch.no_grad():
        for term in model.history_terms():
            for parameter in term.parameters():
                parameter.normal_()
    return model


def served(model) -> ServedScores:
    with torch.no_grad():
        return ServedScores(model, model.input_item_matrix(), model.item_matrix())


def histories(count: int, seed: int = 1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, MAX_LEN + 4, count)  # some longer than max_len: cut
    return histories_to_tensor([rng.integers(0, N, n) for n in lengths], MAX_LEN)


@pytest.mark.parametrize("backbone", ["gru", "transformer", "mlp"])
@pytest.mark.parametrize("runtime", ["onnx", "torchscript", "eager"])
def test_each_runtime_gives_the_models_scores_at_any_batch_size(backbone, runtime):
    """Final scores (raw scores by the runtime, then the history re-rank) at any batch size."""
    model = tiny_model(backbone)
    eager = ModelScorer(model, MAX_LEN)
    scorer, used = served_scorer(eager, runtime)
    # a trace is served only when bit-identical (the GRU's is not, on some machines)
    assert used == runtime or (runtime == "torchscript" and used == "eager")
    for batch in (1, 7, 64):  # the probes had 1, 3 and 5 rows
        seq = histories(batch, seed=batch)
        expected = eager.final(seq).numpy()
        got = scorer.final(seq).numpy()
        assert got.shape == (batch, N) and got.dtype == np.float32
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(got, expected, rtol=0, atol=ONNX_TOLERANCE * scale)
        if runtime == "eager":  # the same operations, only the item matrix stored [D, N]
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_auto_takes_onnx_and_falls_back_to_eager_when_a_runtime_fails(monkeypatch):
    model = tiny_model("gru")
    _, used = fast_scores(served(model), MAX_LEN, N, "auto")
    assert used == "onnx"

    def broken(*args, **kwargs):
        raise RuntimeError("no exporter today")

    monkeypatch.setattr(scoring, "OnnxScores", broken)
    monkeypatch.setattr(torch.jit, "trace", broken)
    scores, used = fast_scores(served(model), MAX_LEN, N, "auto")
    assert used == "eager"
    seq = histories(3)
    with torch.no_grad():
        expected = model.recommend_scores(seq, model.item_matrix()).numpy()
    np.testing.assert_allclose(scores(seq), expected, rtol=1e-6, atol=1e-6)


def test_a_runtime_that_disagrees_is_not_served(monkeypatch):
    model = tiny_model("gru")
    real = scoring.OnnxScores.__call__
    monkeypatch.setattr(scoring.OnnxScores, "__call__", lambda self, seq: real(self, seq) + 1e-3)
    _, used = fast_scores(served(model), MAX_LEN, N, "onnx")
    assert used == "eager"


def test_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        fast_scores(served(tiny_model("mlp")), MAX_LEN, N, "tensorrt")


@pytest.mark.parametrize("slots", [0, 2])
@pytest.mark.parametrize("order", HISTORY_ORDERS)
def test_history_terms_and_history_first_survive_export(order, slots):
    """The exported graph keeps the score terms and the re-rank runs after it: a history item
    is served first, in the history order, and the final scores are the eager scorer's."""
    model = tiny_model("gru")
    model.config.history_order, model.config.history_slots = order, slots
    eager = ModelScorer(model, MAX_LEN)
    served, used = served_scorer(eager, "onnx")
    assert used == "onnx"
    top = top_k(served.score([np.array([3, 8, 3])]), 2)[0]  # items 3 and 8, 3 the latest
    assert sorted(top.tolist()) == [3, 8]
    if order == "recency":
        assert top.tolist() == [3, 8]  # the latest purchase first
    histories = [np.random.default_rng(3).integers(0, N, n) for n in range(1, 17)]  # repeats
    expected = eager.score(histories)
    scale = max(1.0, float(np.abs(expected).max()))
    got = served.score(histories)
    np.testing.assert_allclose(got, expected, rtol=0, atol=ONNX_TOLERANCE * scale)


@pytest.mark.parametrize("runtime", ["onnx", "torchscript", "eager"])
def test_the_served_scorer_ranks_as_the_evaluation_scorer(runtime):
    """`seqrec eval` ranks with `ModelScorer`, the server with `served_scorer` of the same
    scorer: the same history gets the same ranking (history first by recency, in slots)."""
    model = tiny_model("transformer")
    model.config.history_order, model.config.history_slots = "recency", 2
    evaluation = ModelScorer(model, MAX_LEN)
    server, used = served_scorer(evaluation, runtime)
    assert used == runtime
    rng = np.random.default_rng(4)
    histories = [rng.integers(0, N, n) for n in (1, 3, 5, MAX_LEN, MAX_LEN + 3)]
    for history in histories:
        ranked = top_k(evaluation.score([history]), N)
        np.testing.assert_array_equal(top_k(server.score([history]), N), ranked)
        latest = list(dict.fromkeys(history[::-1].tolist()))[:2]  # the 2 latest purchases
        assert ranked[0, : len(latest)].tolist() == latest
