import torch

from seqrec.models.repeat import SCALE, RepeatBias


def make_bias():
    bias = RepeatBias(max_len=4)
    with torch.no_grad():
        bias.weight.copy_(torch.tensor([1.0, 0.5, 0.25, 0.125]) / SCALE)
    return bias


def test_hand_computed_bias_after_the_whole_history():
    bias = make_bias()
    seq = torch.tensor([[0, 3, 1, 3]])  # items 2, 0, 2 (0-based), most recent last
    out = bias.last(seq, n_items=4)
    # item 2: last seen at distance 0 (1.0; the older occurrence does not add); item 0: 1 (0.5)
    assert torch.allclose(out, torch.tensor([[0.5, 0.0, 1.0, 0.0]]))
    earlier = bias.full(seq, torch.tensor([0]), torch.tensor([2]), n_items=4)
    assert torch.allclose(earlier, torch.tensor([[1.0, 0.0, 0.5, 0.0]]))  # its latest: 1 back


def test_a_query_only_sees_its_prefix():
    bias = make_bias()
    seq = torch.tensor([[2, 3, 4, 0]])
    rows, cols = torch.tensor([0, 0]), torch.tensor([0, 1])
    out = bias.full(seq, rows, cols, n_items=5)
    assert torch.allclose(out[0], torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(out[1], torch.tensor([0.0, 0.5, 1.0, 0.0, 0.0]))


def test_at_agrees_with_full_and_gets_gradients():
    torch.manual_seed(0)
    bias = RepeatBias(max_len=6)
    with torch.no_grad():
        bias.weight.normal_()
    seq = torch.randint(0, 5, (3, 6))
    rows, cols = torch.tensor([0, 1, 2, 2]), torch.tensor([5, 3, 0, 4])
    full = bias.full(seq, rows, cols, n_items=4)
    candidates = torch.tensor([[0, 3], [1, 2], [2, 0], [3, 1]])
    assert torch.allclose(bias.at(seq, rows, cols, candidates), full.gather(1, candidates))
    shared = torch.tensor([1, 2])
    assert torch.allclose(bias.at(seq, rows, cols, shared), full[:, shared])
    full.sum().backward()
    assert bias.weight.grad is not None and bias.weight.grad.abs().sum() > 0
