"""What the server scores with: every runtime agrees with the model's own recommend_scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqrec.data.sequences import histories_to_tensor
from seqrec.features.item_features import ItemFeatures
from seqrec.models import ItemNetConfig, ModelConfig, build_model
from seqrec.models.recommender import HISTORY_ORDERS
from seqrec.serve import scoring
from seqrec.serve.scoring import ONNX_TOLERANCE, ServedScores, fast_scores

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
    model = tiny_model(backbone)
    scores, used = fast_scores(served(model), MAX_LEN, N, runtime)
    # a trace is served only when bit-identical (the GRU's is not, on some machines)
    assert used == runtime or (runtime == "torchscript" and used == "eager")
    for batch in (1, 7, 64):  # the probes had 1, 3 and 5 rows
        seq = histories(batch, seed=batch)
        with torch.no_grad():
            expected = model.recommend_scores(seq, model.item_matrix()).numpy()
        got = scores(seq)
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


@pytest.mark.parametrize("order", HISTORY_ORDERS)
def test_history_terms_and_history_first_survive_export(order):
    """The exported graph keeps the score terms and the history order: a history item is
    served first, and the scores are the model's."""
    model = tiny_model("gru")
    model.config.history_order = order
    scores, used = fast_scores(served(model), MAX_LEN, N, "onnx")
    assert used == "onnx"
    seq = histories_to_tensor([np.array([4, 9, 4])], MAX_LEN)
    top = np.argsort(-scores(seq)[0], kind="stable")[:2]
    assert sorted(top.tolist()) == [4, 9]
    if order == "recency":
        assert top.tolist() == [4, 9]  # the latest purchase first
    seq = histories(16, seed=3)  # random histories, with repeats, some cut to max_len
    with torch.no_grad():
        expected = model.recommend_scores(seq, model.item_matrix()).numpy()
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(scores(seq), expected, rtol=0, atol=ONNX_TOLERANCE * scale)
