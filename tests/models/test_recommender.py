import dataclasses

import pytest
import torch

from seqrec.features.item_features import ItemFeatures
from seqrec.losses import full_cross_entropy
from seqrec.models import BACKBONES, ItemNetConfig, ModelConfig, build_model

N = 20


def make_features() -> ItemFeatures:
    generator = torch.Generator().manual_seed(0)
    image_mask = torch.rand(N, generator=generator) > 0.3
    return ItemFeatures(
        text=torch.randn(N, 12, generator=generator),
        image=torch.randn(N, 6, generator=generator) * image_mask[:, None],
        image_mask=image_mask,
        categories=torch.randint(0, 4, (N, 2), generator=generator),
        category_cardinalities=[4, 4],
        numeric=torch.randn(N, 2, generator=generator),
    )


def make_config(model: str, **kwargs) -> ModelConfig:
    kwargs.setdefault("item_net", ItemNetConfig(dropout=0.0))
    return ModelConfig(model=model, dim=16, layers=1, heads=2, dropout=0.0, max_len=6, **kwargs)


# Right-aligned histories (item_idx + 1, 0 = padding), different lengths, no shared items.
SEQ = torch.tensor(
    [
        [1, 2, 3, 4, 5, 6],
        [0, 0, 7, 8, 9, 10],
        [0, 11, 12, 13, 14, 15],
        [0, 0, 0, 16, 17, 18],
    ]
)


@pytest.mark.parametrize("model", BACKBONES)
@pytest.mark.parametrize("tied", [True, False])
def test_shapes_and_backward(model, tied):
    torch.manual_seed(0)
    net = build_model(make_config(model, tied=tied), make_features(), N)
    hidden = net(SEQ)
    assert hidden.shape == (4, 6, 16)
    items = net.item_matrix()
    assert items.shape == (N, 16)
    last = net.last_hidden(SEQ)
    assert torch.allclose(last, hidden[:, -1])
    scores = net.score(last, items)
    assert scores.shape == (4, N)
    # a matrix product and a lone dot product may sum 16 float32 terms in different orders
    assert torch.allclose(scores[1, 3], last[1] @ items[3], atol=1e-6)
    scores.sum().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    assert (net.output_item_net is None) == tied
    if not tied:
        assert net.output_item_net.id_embedding.weight.grad is not None


def test_padding_is_a_zero_input_and_reusing_the_item_matrix_matches():
    torch.manual_seed(0)
    net = build_model(make_config("transformer"), make_features(), N).eval()
    items = net.input_item_matrix()
    assert torch.allclose(net(SEQ, items), net(SEQ))
    # A history is scored the same with or without extra left padding.
    short = torch.tensor([[7, 8, 9, 10]])
    assert torch.allclose(net.last_hidden(short), net.last_hidden(SEQ[1:2]), atol=1e-5)


def test_no_per_user_parameters_and_one_width():
    with pytest.raises(ValueError, match="differs"):
        build_model(make_config("gru", item_net=ItemNetConfig(dim=99)), make_features(), N)
    config = make_config("gru", item_net=ItemNetConfig(dim=16, dropout=0.0))
    net = build_model(config, make_features(), N)
    assert net.item_matrix().shape == (N, 16)
    n_params = sum(p.numel() for p in net.parameters())
    more_users = build_model(config, make_features(), N)(torch.zeros(50, 6, dtype=torch.long))
    assert more_users.shape == (50, 6, 16)
    assert n_params == sum(p.numel() for p in net.parameters())


def test_id_only_model_without_features():
    config = make_config("mlp", item_net=ItemNetConfig(modalities=[], dropout=0.0))
    net = build_model(config, None, N)
    assert net.score(net.last_hidden(SEQ), net.item_matrix()).shape == (4, N)
    with pytest.raises(ValueError, match="not 21"):
        build_model(make_config("mlp"), make_features(), N + 1)
    with pytest.raises(ValueError, match="model.model = 'lstm' is not one of"):
        build_model(dataclasses.replace(config, model="lstm"), None, N)


@pytest.mark.parametrize("model", BACKBONES)
def test_overfits_one_small_batch(model):
    torch.manual_seed(0)
    net = build_model(make_config(model, mlp_decay=0.3), make_features(), N)
    inputs, targets = SEQ[:, :-1], SEQ[:, 1:]
    mask = (inputs > 0) & (targets > 0)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    steps = 0
    while steps < 300:
        steps += 1
        hidden = net(inputs)  # [B, L, D]
        loss = full_cross_entropy(net.score(hidden[mask], net.item_matrix()), targets[mask] - 1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.02:
            break
    assert loss.item() < 0.05, f"loss {loss.item():.3f} after {steps} steps"


def test_unknown_history_order_is_refused():
    config = dataclasses.replace(make_config("gru"), history_order="frequency")
    with pytest.raises(ValueError, match="model.history_order = 'frequency' is not one of"):
        build_model(config, make_features(), N)


def test_add_history_terms_equals_the_dense_definition():
    """Bonuses scattered where they fall give the scores of the dense [B, N] formulation:
    every history term's `last` added. The history re-rank is not the model's
    (`seqrec.rerank`): ``history_first`` leaves the model's scores alone."""
    torch.manual_seed(0)
    config = dataclasses.replace(
        make_config("gru"), repeat_bias=True, content_affinity=True, history_first=True
    )
    model = build_model(config, make_features(), N)
    with torch.no_grad():
        for term in model.history_terms():
            for parameter in term.parameters():
                parameter.normal_()  # both terms start switched off: turn them on
    seq = torch.tensor(
        [
            [1, 2, 1, 4, 1, 6],  # item 0 three times
            [0, 0, 7, 8, 7, 1],  # padding, a repeat, item 0 last
            [0, 0, 0, 0, 0, 0],  # no history: nothing is added
            [0, 0, 0, 0, 0, 20],  # the last item, alone
        ]
    )
    scores = torch.randn(len(seq), N)
    with torch.no_grad():
        expected = scores + sum(term.last(seq, N) for term in model.history_terms())
        got = model.add_history_terms(scores.clone(), seq)
        raw = model.recommend_scores(seq, model.item_matrix())
        dot = model.score(model.last_hidden(seq), model.item_matrix())
    torch.testing.assert_close(got, expected)
    assert not torch.equal(expected, scores)  # the terms did add something
    torch.testing.assert_close(got[2], scores[2])
    torch.testing.assert_close(raw, model.add_history_terms(dot, seq))  # nothing lifted
