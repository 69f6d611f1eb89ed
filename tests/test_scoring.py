"""The one model scorer: raw scores of the model, then the re-rank its config names."""

import dataclasses

import numpy as np
import torch

from seqrec.data.sequences import histories_to_tensor
from seqrec.models import ItemNetConfig, ModelConfig, build_model
from seqrec.rerank import HistoryFirst
from seqrec.scoring import ModelScorer

N, MAX_LEN = 15, 6
HISTORIES = [np.array([3, 7, 3]), np.array([], dtype=np.int64), np.arange(10)]


def id_model(**config):
    torch.manual_seed(0)
    item_net = ItemNetConfig(modalities=[], use_id_embedding=True, dropout=0.0)
    base = ModelConfig(model="gru", dim=8, layers=1, max_len=MAX_LEN, item_net=item_net)
    return build_model(dataclasses.replace(base, **config), None, N).eval()


def test_scores_are_the_models_raw_scores_then_its_configured_rerank():
    model = id_model(history_first=True, history_order="recency", history_slots=2)
    scorer = ModelScorer(model, MAX_LEN)
    assert scorer.rerank == HistoryFirst("recency", 2)
    seq = histories_to_tensor(HISTORIES, MAX_LEN)
    with torch.no_grad():
        raw = model.recommend_scores(seq, model.item_matrix())
    np.testing.assert_array_equal(scorer.score(HISTORIES), scorer.rerank(raw, seq).numpy())
    assert scorer.score(HISTORIES)[0].argsort()[::-1][:2].tolist() == [3, 7]
    plain = ModelScorer(id_model(), MAX_LEN)  # history_first off: the raw scores
    assert plain.rerank is None
    np.testing.assert_array_equal(plain.score(HISTORIES), raw.numpy())


def test_a_given_item_matrix_and_raw_scores_are_used_the_rerank_kept():
    model = id_model(history_first=True)
    zeros = ModelScorer(model, MAX_LEN, item_matrix=torch.zeros(N, 8))
    scores = zeros.score(HISTORIES)
    assert (scores[1] == 0).all()  # no history: nothing but the dot products with zeros
    assert set(np.flatnonzero(scores[0]).tolist()) == {3, 7}  # the history items, lifted
    constant = zeros.with_raw_scores(lambda seq: np.ones((len(seq), N), dtype=np.float32))
    assert constant.rerank == zeros.rerank
    assert set(np.flatnonzero(constant.score(HISTORIES)[0] > 1).tolist()) == {3, 7}


def test_the_item_network_runs_once_for_many_calls():
    model = id_model(repeat_bias=True)
    scorer = ModelScorer(model, MAX_LEN)
    calls = []
    model.item_net.register_forward_hook(lambda *_: calls.append(1))
    first = scorer.score(HISTORIES)
    for _ in range(3):
        np.testing.assert_array_equal(scorer.score(HISTORIES), first)
    assert len(calls) == 2  # the history lookup table and the scored item matrix, once each
    seq = histories_to_tensor(HISTORIES, MAX_LEN)
    with torch.no_grad():  # the same scores as the model computing everything per call
        np.testing.assert_allclose(first, model.recommend_scores(seq, model.item_matrix()))
