import pytest
import torch

from seqrec.models.dropout import Dropout, dropout, keep_mask


def test_drop_rate_and_scale_keep_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(400_000)
    out = dropout(x, 0.2)
    dropped = (out == 0).float().mean().item()
    assert dropped == pytest.approx(0.2, abs=0.003)  # 400k draws: standard error 0.0006
    assert out[out != 0].unique().tolist() == pytest.approx([1 / 0.8], rel=1e-4)
    assert out.mean().item() == pytest.approx(1.0, abs=0.005)


def test_every_lane_of_the_random_words_is_uniform():
    # one int64 word gives four 16-bit lanes; the top one has a constant sign bit
    torch.manual_seed(1)
    mask = keep_mask(torch.Size([4 * 100_000]), 0.5, torch.device("cpu")).view(-1, 4)
    assert mask.float().mean(dim=0).tolist() == pytest.approx([0.5] * 4, abs=0.006)


def test_eval_mode_and_zero_rate_are_the_identity():
    x = torch.randn(5, 7)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0) is x
    module = Dropout(0.3).eval()
    assert module(x) is x


def test_reproducible_under_manual_seed_and_gradient_is_the_mask():
    x = torch.randn(3, 50, requires_grad=True)
    torch.manual_seed(7)
    first = dropout(x, 0.4)
    torch.manual_seed(7)
    second = dropout(x, 0.4)
    assert torch.equal(first, second)
    first.sum().backward()
    expected = (first != 0).float() / (1 - round(0.4 * 2**15) / 2**15)
    assert torch.allclose(x.grad, expected)


def test_rate_out_of_range_is_refused():
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(torch.ones(3), 1.0)
