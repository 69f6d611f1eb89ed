"""The history re-rank: history items first, by score, recency or frequency, with slots."""

import pytest
import torch

from seqrec.models import ModelConfig
from seqrec.models.repeat import seen_later
from seqrec.rerank import HistoryFirst, history_key

N = 20
# items 3, 8, 1, 3 again (0-based): by recency 3, 1, 8; then an empty history
SEQ = torch.tensor([[0, 0, 4, 9, 2, 4], [0, 0, 0, 0, 0, 0]])


def hand_scores() -> torch.Tensor:
    return torch.randn(2, N, generator=torch.Generator().manual_seed(0))


def test_score_order_ranks_every_history_item_above_the_rest_in_their_own_order():
    before = hand_scores()
    after = HistoryFirst("score")(before, SEQ)
    history = [1, 3, 8]
    top = after[0].argsort(descending=True)[:3].tolist()
    assert sorted(top) == history
    assert top == sorted(history, key=lambda item: -before[0, item].item())  # their own order
    rest = [item for item in range(N) if item not in history]
    assert torch.equal(after[0, rest], before[0, rest])  # other items are untouched
    assert torch.equal(after[1], before[1])  # an empty history: nothing lifted


@pytest.mark.parametrize("slots", [1, 2, 5])
def test_score_order_slots_lift_only_the_best_scored_history_items(slots):
    before = hand_scores()
    after = HistoryFirst("score", slots)(before, SEQ)
    by_score = sorted([1, 3, 8], key=lambda item: -before[0, item].item())
    lifted = by_score[:slots]  # a history shorter than the slots lifts all it has
    assert after[0].argsort(descending=True)[: len(lifted)].tolist() == lifted
    rest = [item for item in range(N) if item not in lifted]
    assert torch.equal(after[0, rest], before[0, rest])  # the other history items compete
    assert torch.equal(after[1], before[1])


def test_recency_order_ranks_the_latest_history_item_first_whatever_its_score():
    before = hand_scores()
    flipped = before.clone()  # scores that put the history items in the opposite order
    flipped[0, [3, 1, 8]] = torch.tensor([-5.0, -4.0, -3.0])
    for scores in (before, flipped):
        after = HistoryFirst("recency")(scores, SEQ)
        assert after[0].argsort(descending=True)[:3].tolist() == [3, 1, 8]
        rest = [item for item in range(N) if item not in (1, 3, 8)]
        assert torch.equal(after[0, rest], scores[0, rest])  # other items are untouched
        assert torch.equal(after[1], scores[1])  # an empty history: nothing lifted


@pytest.mark.parametrize("slots", [1, 2, 5])
def test_recency_order_with_slots_lifts_only_the_latest_history_items(slots):
    before = hand_scores()
    after = HistoryFirst("recency", slots)(before, SEQ)
    lifted = [3, 1, 8][:slots]
    assert after[0].argsort(descending=True)[: len(lifted)].tolist() == lifted
    rest = [item for item in range(N) if item not in lifted]
    assert torch.equal(after[0, rest], before[0, rest])  # the other history items compete
    assert torch.equal(after[1], before[1])


def test_history_keys_order_by_recency_or_by_frequency_then_recency():
    seq = torch.tensor([[5, 3, 5, 7, 1], [0, 0, 0, 2, 2]])  # items 4, 2, 4, 6, 0; 1, 1
    recency = history_key(seq, 8, "recency")
    assert recency[0].tolist() == [5, 0, 2, 0, 3, 0, 4, 0]  # 1 + the latest position
    assert recency[1].tolist() == [0, 5, 0, 0, 0, 0, 0, 0]
    frequency = history_key(seq, 8, "frequency")
    assert frequency[0].argsort(descending=True)[:4].tolist() == [4, 0, 6, 2]  # 4 twice
    assert (frequency[0] > 0).tolist() == (recency[0] > 0).tolist()
    with pytest.raises(ValueError, match="unknown history order 'score'"):
        history_key(seq, 8, "score")


def test_the_model_config_names_the_rerank():
    assert HistoryFirst.of(ModelConfig()) is None  # history_first off
    config = ModelConfig(history_first=True, history_slots=3, history_order="recency")
    assert HistoryFirst.of(config) == HistoryFirst("recency", 3)
    with pytest.raises(ValueError, match="unknown history order 'latest'"):
        HistoryFirst("latest")
    with pytest.raises(ValueError, match="at least 0"):
        HistoryFirst("score", -1)


def old_history_first(scores, seq, config):
    """The history-first rule as `SequenceRecommender.finish_scores` applied it inside the
    model before the re-rank moved out (copied as it was): the reference."""
    if config.history_order == "recency":
        length = seq.shape[1]
        latest = (seq > 0) & ~seen_later(seq, seq > 0)
        positions = torch.arange(1, length + 1, device=seq.device, dtype=scores.dtype)
        index = seq.sub(1).clamp_min(0)
        key = torch.zeros_like(scores).scatter_add(1, index, positions * latest)
        first = key > 0
        if config.history_slots:
            slots = min(config.history_slots, scores.shape[1])
            threshold = key.topk(slots, dim=1).values[:, -1:]
            first = first & (key >= threshold)
        top = scores.amax(dim=1, keepdim=True)
        return torch.where(first, top + 1.0 + key, scores)
    spread = scores.amax(dim=1, keepdim=True) - scores.amin(dim=1, keepdim=True)
    latest = seq[:, -1:]
    index = torch.where(seq > 0, seq, latest).sub(1).clamp_min(0)
    lift = (spread + 1.0) * (latest > 0)
    if not config.history_slots:
        return scores.scatter(1, index, scores.gather(1, index) + lift)
    in_history = torch.zeros_like(scores, dtype=torch.bool).scatter(1, index, True)
    ranked = torch.where(in_history, scores, torch.full_like(scores, -torch.inf))
    best = ranked.topk(min(config.history_slots, scores.shape[1]), dim=1)
    first = torch.zeros_like(scores).scatter(1, best.indices, 1.0) * in_history
    return scores + lift * first


@pytest.mark.parametrize("order", ["score", "recency"])
@pytest.mark.parametrize("slots", [0, 1, 3, 40])
def test_equals_the_rule_the_model_applied_before_on_random_inputs(order, slots):
    generator = torch.Generator().manual_seed(slots)
    lengths = torch.randint(0, 11, (64,), generator=generator)  # empty to full
    seq = torch.randint(1, 13, (64, 10), generator=generator)  # few items: many repeats
    seq[torch.arange(10) < 10 - lengths[:, None]] = 0  # right-aligned, padding before
    scores = torch.randn(64, 30, generator=generator) * 3
    config = ModelConfig(history_first=True, history_slots=slots, history_order=order)
    expected = old_history_first(scores, seq, config)
    got = HistoryFirst.of(config)(scores, seq)
    assert torch.equal(got, expected)  # the same values, bit for bit
    assert not torch.equal(got, scores)
