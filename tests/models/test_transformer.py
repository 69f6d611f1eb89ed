import pytest
import torch

from seqrec.models.transformer import TransformerEncoder

D = 16


def make_encoder(max_len: int = 12) -> TransformerEncoder:
    torch.manual_seed(0)
    return TransformerEncoder(D, layers=2, heads=2, dropout=0.0, max_len=max_len).eval()


def test_shapes_and_backward():
    encoder = TransformerEncoder(D, layers=2, heads=4, dropout=0.1, max_len=8).train()
    x = torch.randn(3, 8, D, requires_grad=True)
    mask = torch.arange(8)[None, :] >= torch.tensor([[0], [5], [8]])  # lengths 8, 3, 0
    h = encoder(x, mask)
    assert h.shape == (3, 8, D)
    assert torch.isfinite(h).all()
    assert torch.equal(h[~mask], torch.zeros_like(h[~mask]))  # padding stays zero
    h.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in encoder.parameters())


def test_causal_later_items_do_not_change_earlier_states():
    encoder = make_encoder()
    x = torch.randn(2, 6, D)
    mask = torch.ones(2, 6, dtype=torch.bool)
    h = encoder(x, mask)
    x2 = x.clone()
    x2[:, 4] += 3.0 * torch.randn(2, D)  # not a constant: LayerNorm removes those
    h2 = encoder(x2, mask)
    assert torch.allclose(h[:, :4], h2[:, :4], atol=1e-6)
    assert not torch.allclose(h[:, 4:], h2[:, 4:])


def test_left_padding_does_not_change_the_states():
    encoder = make_encoder()
    x = torch.randn(1, 4, D)
    h = encoder(x, torch.ones(1, 4, dtype=torch.bool))
    padded = torch.cat([torch.randn(1, 5, D), x], dim=1)  # padding content is ignored too
    mask = torch.arange(9)[None, :] >= 5
    h_padded = encoder(padded, mask)
    assert torch.allclose(h[:, -1], h_padded[:, -1], atol=1e-5)
    assert torch.allclose(h, h_padded[:, 5:], atol=1e-5)


def test_prefix_state_equals_state_of_shorter_history():
    """Every training position is an honest inference state of its prefix."""
    encoder = make_encoder()
    x = torch.randn(1, 6, D)
    h = encoder(x, torch.ones(1, 6, dtype=torch.bool))
    h_prefix = encoder(x[:, :3], torch.ones(1, 3, dtype=torch.bool))
    assert torch.allclose(h[:, 2], h_prefix[:, -1], atol=1e-5)


def test_too_long_sequence_is_refused():
    with pytest.raises(ValueError, match="max_len"):
        make_encoder(max_len=4)(torch.randn(1, 5, D), torch.ones(1, 5, dtype=torch.bool))


def test_training_attention_path_matches_sdpa_when_nothing_is_dropped():
    # In training the attention weights are dropped by hand (not by SDPA); with a drop rate
    # below the mask's resolution nothing is dropped, so both paths must give the same states.
    torch.manual_seed(0)
    encoder = TransformerEncoder(D, layers=2, heads=2, dropout=1e-9, max_len=8)
    x = torch.randn(3, 8, D)
    mask = torch.arange(8)[None, :] >= torch.tensor([[0], [5], [8]])  # lengths 8, 3, 0
    trained_path = encoder.train()(x, mask)
    sdpa_path = encoder.eval()(x, mask)
    assert torch.allclose(trained_path, sdpa_path, atol=1e-5)
