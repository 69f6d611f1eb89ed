import math

import pytest
import torch

from seqrec import losses

LOG2, LOG3, LOG4 = math.log(2), math.log(3), math.log(4)


def test_bce_sampled_hand_computed():
    pos = torch.tensor([0.0, LOG3])
    neg = torch.tensor([[0.0, LOG3], [0.0, 0.0]])
    # Row 0: -log s(0) - log(1 - s(0)) - log(1 - s(log 3)) = log 2 + log 2 + log 4
    # Row 1: -log s(log 3) - 2 log(1 - s(0)) = log(4/3) + 2 log 2
    expected = ((LOG2 + LOG2 + LOG4) + (math.log(4 / 3) + 2 * LOG2)) / 2
    assert losses.bce_sampled(pos, neg).item() == pytest.approx(expected, rel=1e-6)


def test_gbce_hand_computed_and_limits():
    pos = torch.tensor([0.0, LOG3])
    neg = torch.tensor([[0.0, LOG3], [0.0, 0.0]])
    # N = 11, K = 5: alpha = 0.5; t = 0.5: beta = 0.5 * (0.5 * (1 - 2) + 2) = 0.75
    expected = ((0.75 * LOG2 + LOG2 + LOG4) + (0.75 * math.log(4 / 3) + 2 * LOG2)) / 2
    value = losses.gbce(pos, neg, n_items=11, n_negatives=5, t=0.5)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    # t = 0 is plain BCE; t = 1 scales the positive term by alpha.
    bce = losses.bce_sampled(pos, neg)
    assert losses.gbce(pos, neg, 11, 5, t=0.0).item() == pytest.approx(bce.item(), rel=1e-6)
    expected_t1 = ((0.5 * LOG2 + LOG2 + LOG4) + (0.5 * math.log(4 / 3) + 2 * LOG2)) / 2
    assert losses.gbce(pos, neg, 11, 5, t=1.0).item() == pytest.approx(expected_t1, rel=1e-6)
    with pytest.raises(ValueError):
        losses.gbce(pos, neg, n_items=5, n_negatives=5)


def test_full_cross_entropy_hand_computed():
    logits = torch.tensor([[0.0, LOG3], [0.0, LOG3]])
    targets = torch.tensor([1, 0])
    expected = (-math.log(3 / 4) + LOG4) / 2
    assert losses.full_cross_entropy(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_sampled_softmax_with_and_without_log_q():
    pos, neg = torch.tensor([1.0]), torch.tensor([[0.0, 0.0]])
    # Uniform q: the correction is a constant shift and changes nothing.
    uniform = torch.full((1,), math.log(0.1)), torch.full((1, 2), math.log(0.1))
    plain = -math.log(math.e / (math.e + 2))
    assert losses.sampled_softmax(pos, neg, *uniform).item() == pytest.approx(plain, rel=1e-6)
    # q(pos) = 0.5, q(neg) = 0.25: logits become 1 + log 2 and log 4, so the popular target
    # gets a smaller boost than the rarely sampled negatives: log((2e + 8) / 2e).
    log_q_pos, log_q_neg = torch.tensor([math.log(0.5)]), torch.full((1, 2), math.log(0.25))
    corrected = losses.sampled_softmax(pos, neg, log_q_pos, log_q_neg)
    assert corrected.item() == pytest.approx(math.log((2 * math.e + 8) / (2 * math.e)), rel=1e-6)
    assert corrected.item() > plain  # negatives that are rarely sampled weigh more


def test_masks_drop_rows_and_negatives():
    pos = torch.tensor([0.0, 5.0])
    neg = torch.tensor([[0.0, 7.0], [1.0, 2.0]])
    keep_row0 = torch.tensor([True, False])
    assert losses.bce_sampled(pos, neg, mask=keep_row0).item() == pytest.approx(
        losses.bce_sampled(pos[:1], neg[:1]).item()
    )
    neg_mask = torch.tensor([[True, False], [True, True]])  # e.g. an accidental hit
    masked = losses.bce_sampled(pos, neg, neg_mask=neg_mask)
    very_negative = torch.where(neg_mask, neg, torch.tensor(-1e4))  # contributes log(1) = 0
    assert masked.item() == pytest.approx(losses.bce_sampled(pos, very_negative).item())
    log_q = torch.zeros(2), torch.zeros(2, 2)
    softmax = losses.sampled_softmax(pos, neg, *log_q, neg_mask=neg_mask)
    expected_row0 = -math.log(1 / 2)  # only one negative left, equal to the positive
    expected_row1 = -torch.log_softmax(torch.tensor([5.0, 1.0, 2.0]), 0)[0].item()
    assert softmax.item() == pytest.approx((expected_row0 + expected_row1) / 2, rel=1e-6)
    logits = torch.tensor([[0.0, LOG3], [9.0, 0.0]])
    full = losses.full_cross_entropy(logits, torch.tensor([1, 1]), mask=keep_row0)
    assert full.item() == pytest.approx(-math.log(3 / 4), rel=1e-6)


@pytest.mark.parametrize("name", ["bce", "gbce", "sampled_softmax", "full"])
def test_gradients_are_finite_for_extreme_logits(name):
    pos = torch.tensor([1000.0, -1000.0, 0.0], requires_grad=True)
    neg = torch.tensor([[-1000.0, 1000.0], [500.0, 0.0], [0.0, -500.0]], requires_grad=True)
    if name == "bce":
        loss = losses.bce_sampled(pos, neg)
    elif name == "gbce":
        loss = losses.gbce(pos, neg, n_items=100, n_negatives=2, t=0.75)
    elif name == "sampled_softmax":
        loss = losses.sampled_softmax(pos, neg, torch.full((3,), -2.0), torch.full((3, 2), -3.0))
    else:
        loss = losses.full_cross_entropy(torch.cat([pos[:, None], neg], 1), torch.zeros(3).long())
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(pos.grad).all() and torch.isfinite(neg.grad).all()
    assert pos.grad[2] < 0  # raising the positive logit lowers the loss


def test_sample_negatives_uniform():
    generator = torch.Generator().manual_seed(0)
    indices, log_q = losses.sample_negatives(7, (4, 3), generator)
    assert indices.shape == log_q.shape == (4, 3)
    assert indices.dtype == torch.int64
    assert 0 <= indices.min() and indices.max() < 7
    assert torch.allclose(log_q, torch.full((4, 3), -math.log(7)))
    again, _ = losses.sample_negatives(7, (4, 3), torch.Generator().manual_seed(0))
    assert torch.equal(indices, again)  # reproducible from the generator


def test_sample_negatives_popularity():
    generator = torch.Generator().manual_seed(0)
    counts = torch.tensor([1.0, 0.0, 3.0, 6.0])
    indices, log_q = losses.sample_negatives(4, (20000,), generator, probs=counts)
    probs = counts / counts.sum()
    assert torch.allclose(log_q, probs[indices].log())
    assert (indices != 1).all()  # zero weight is never sampled
    frequency = torch.bincount(indices, minlength=4).float() / 20000
    assert torch.allclose(frequency, probs, atol=0.02)


@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_catalogue_cross_entropy_equals_the_full_logits_path(chunk):
    torch.manual_seed(0)
    hidden = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    items = torch.randn(13, 6, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 13, (9,))
    lean = losses.catalogue_cross_entropy(hidden, items, targets, chunk=chunk)
    lean_grads = torch.autograd.grad(lean, (hidden, items))
    plain = losses.full_cross_entropy(hidden @ items.T, targets)
    plain_grads = torch.autograd.grad(plain, (hidden, items))
    assert lean.item() == pytest.approx(plain.item(), rel=1e-12)
    for ours, reference in zip(lean_grads, plain_grads, strict=True):
        assert torch.allclose(ours, reference, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda h, w: losses.catalogue_cross_entropy(h, w, targets, chunk=chunk), (hidden, items)
    )


def test_catalogue_cross_entropy_is_stable_for_large_logits():
    hidden = torch.tensor([[100.0], [-100.0]])
    items = torch.tensor([[1.0], [0.0], [-1.0]])
    loss = losses.catalogue_cross_entropy(hidden, items, torch.tensor([0, 2]))
    plain = losses.full_cross_entropy(hidden @ items.T, torch.tensor([0, 2]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(plain.item(), abs=1e-6)
    with pytest.raises(ValueError, match="chunk"):
        losses.catalogue_cross_entropy(hidden, items, torch.tensor([0, 2]), chunk=0)


@pytest.mark.parametrize("loss", ["ce", "sampled_softmax", "gbce", "bce"])
def test_a_negative_pool_leaves_items_outside_it_out_of_the_loss(loss):
    from seqrec.train import TrainConfig

    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(6, 4, generator=generator)  # [M, D]
    items = torch.randn(10, 4, generator=generator, requires_grad=True)  # [N, D]
    targets = torch.tensor([1, 3, 3, 8, 1, 5])
    pool = torch.tensor([1, 2, 3, 5, 8])
    config = TrainConfig(loss=loss, n_negatives=4)  # gBCE allows at most P - 1
    probs = torch.zeros(10)
    probs[pool] = 1.0 / len(pool)  # uniform over the pool, as `negative_distribution` gives
    loss_value = losses.compute_loss(config, hidden, targets, items, generator, probs, pool=pool)
    loss_value.backward()
    outside = torch.tensor([0, 4, 6, 7, 9])
    assert torch.all(items.grad[outside] == 0)  # never scored: no gradient
    assert torch.all(items.grad[targets].abs().sum(-1) > 0)
    if loss == "ce":  # the softmax over the pool's items only
        assert torch.all(items.grad[pool].abs().sum(-1) > 0)
        logits = hidden @ items.detach()[pool].T  # [M, P]
        expected = losses.full_cross_entropy(logits, torch.searchsorted(pool, targets))
        assert float(loss_value.detach()) == pytest.approx(float(expected), abs=1e-6)


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_history_terms_add_to_the_logits_they_score(loss):
    from seqrec.models.repeat import RepeatBias
    from seqrec.train import TrainConfig

    generator = torch.Generator().manual_seed(0)
    seq = torch.tensor([[0, 3, 5, 3], [2, 4, 6, 1]])  # [B, L] item_idx + 1
    rows, cols = torch.tensor([0, 0, 1, 1]), torch.tensor([1, 3, 2, 3])  # [M]
    targets = torch.tensor([4, 0, 5, 3])  # [M]
    hidden = torch.randn(4, 3, generator=generator)  # [M, D]
    items = torch.randn(7, 3, generator=generator)  # [N, D]
    term = RepeatBias(4)
    term.weight.requires_grad_(False).copy_(torch.tensor([0.3, -0.2, 0.1, 0.4]))
    history = losses.HistoryTerms([term], seq, rows, cols)
    config = TrainConfig(loss=loss, n_negatives=3)

    def value(history, seed=1):
        negatives = torch.Generator().manual_seed(seed)
        return float(losses.compute_loss(config, hidden, targets, items, negatives, None, history))

    if loss == "ce":
        logits = hidden @ items.T + term.full(seq, rows, cols, 7)  # [M, N]
        expected = float(losses.full_cross_entropy(logits, targets))
    else:
        negatives, _ = losses.sample_negatives(7, (3,), torch.Generator().manual_seed(1))
        pos = (hidden * items[targets]).sum(-1) + term.at(seq, rows, cols, targets[:, None])[:, 0]
        neg = hidden @ items[negatives].T + term.at(seq, rows, cols, negatives)  # [M, K]
        expected = float(losses.bce_sampled(pos, neg))
    assert value(history) == pytest.approx(expected, abs=1e-5)
    assert value(history) != pytest.approx(value(None), abs=1e-3)  # the terms count
    assert value(losses.HistoryTerms([], seq, rows, cols)) == value(None)  # no term: no change
