import math

import torch

from seqrec.models.mlp import MLPEncoder

D = 8


def make_encoder(**kwargs) -> MLPEncoder:
    torch.manual_seed(0)
    return MLPEncoder(D, layers=2, dropout=0.0, max_len=10, **kwargs).eval()


def test_pool_matches_an_explicit_weighted_mean():
    encoder = make_encoder(decay=0.7)
    x = torch.randn(2, 5, D)
    mask = torch.arange(5)[None, :] >= torch.tensor([[0], [2]])
    pooled = encoder.pool(x, mask)
    for row in range(2):
        for t in range(5):
            if not mask[row, t]:
                assert torch.equal(pooled[row, t], torch.zeros(D))
                continue
            weights = [math.exp(-0.7 * (t - s)) for s in range(t + 1) if mask[row, s]]
            items = [x[row, s] for s in range(t + 1) if mask[row, s]]
            expected = sum(w * v for w, v in zip(weights, items, strict=True)) / sum(weights)
            assert torch.allclose(pooled[row, t], expected, atol=1e-6)


def test_strong_decay_is_stable_over_long_sequences():
    encoder = MLPEncoder(D, max_len=200, decay=50.0)  # capped at 700 / 199 per step
    x = torch.randn(2, 200, D)
    pooled = encoder.pool(x, torch.ones(2, 200, dtype=torch.bool))
    assert torch.isfinite(pooled).all()
    assert torch.allclose(pooled[:, 0], x[:, 0], atol=1e-6)  # first state: only the first item


def test_shapes_backward_and_learnable_decay():
    encoder = MLPEncoder(D, layers=1, dropout=0.1, max_len=6).train()
    x = torch.randn(3, 6, D, requires_grad=True)
    mask = torch.arange(6)[None, :] >= torch.tensor([[0], [3], [6]])
    h = encoder(x, mask)
    assert h.shape == (3, 6, D)
    assert torch.equal(h[~mask], torch.zeros_like(h[~mask]))
    h.pow(2).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert encoder.raw_rate.grad is not None and encoder.raw_rate.grad != 0
    fixed = MLPEncoder(D, learn_decay=False)
    assert all(p is not fixed.raw_rate for p in fixed.parameters())


def test_causal_and_padding_invariant():
    encoder = make_encoder()
    x = torch.randn(1, 5, D)
    full = torch.ones(1, 5, dtype=torch.bool)
    h = encoder(x, full)
    x2 = x.clone()
    x2[:, 3] += torch.randn(1, D)
    h2 = encoder(x2, full)
    assert torch.allclose(h[:, :3], h2[:, :3])
    assert not torch.allclose(h[:, 3:], h2[:, 3:])
    padded = torch.cat([torch.randn(1, 4, D), x], dim=1)
    h_padded = encoder(padded, torch.arange(9)[None, :] >= 4)
    assert torch.allclose(h, h_padded[:, 4:], atol=1e-6)
