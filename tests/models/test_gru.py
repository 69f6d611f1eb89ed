import torch

from seqrec.models.gru import GRUEncoder

D = 16


def make_encoder() -> GRUEncoder:
    torch.manual_seed(0)
    return GRUEncoder(D, layers=2, dropout=0.0).eval()


def test_shapes_and_backward():
    encoder = GRUEncoder(D, layers=2, dropout=0.1).train()
    x = torch.randn(3, 7, D, requires_grad=True)
    mask = torch.arange(7)[None, :] >= torch.tensor([[0], [4], [7]])  # lengths 7, 3, 0
    h = encoder(x, mask)
    assert h.shape == (3, 7, D)
    assert torch.equal(h[~mask], torch.zeros_like(h[~mask]))
    h.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[~mask].abs().sum() == 0  # padding inputs do not influence anything


def test_causal_later_items_do_not_change_earlier_states():
    encoder = make_encoder()
    x = torch.randn(2, 6, D)
    mask = torch.arange(6)[None, :] >= torch.tensor([[0], [2]])
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
    padded = torch.cat([torch.zeros(1, 3, D), x], dim=1)
    h_padded = encoder(padded, torch.arange(7)[None, :] >= 3)
    assert torch.allclose(h[:, -1], h_padded[:, -1], atol=1e-6)
    assert torch.allclose(h, h_padded[:, 3:], atol=1e-6)


def test_rows_of_different_lengths_match_running_them_alone():
    encoder = make_encoder()
    a, b = torch.randn(1, 5, D), torch.randn(1, 2, D)
    batch = torch.cat([a, torch.cat([torch.zeros(1, 3, D), b], dim=1)])  # [2, 5, D]
    mask = torch.arange(5)[None, :] >= torch.tensor([[0], [3]])
    h = encoder(batch, mask)
    assert torch.allclose(h[0], encoder(a, torch.ones(1, 5, dtype=torch.bool))[0], atol=1e-6)
    h_b = encoder(b, torch.ones(1, 2, dtype=torch.bool))[0]
    assert torch.allclose(h[1, 3:], h_b, atol=1e-6)
