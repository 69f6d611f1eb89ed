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


def test_history_first_ranks_every_history_item_above_the_rest_in_score_order():
    torch.manual_seed(0)
    plain = build_model(make_config("gru"), make_features(), N)
    config = dataclasses.replace(make_config("gru"), history_first=True)
    first = build_model(config, make_features(), N)
    first.load_state_dict(plain.state_dict())
    seq = torch.tensor([[0, 0, 4, 9, 2, 4]])  # items 3, 8, 1 (0-based), 3 again
    with torch.no_grad():
        before = plain.recommend_scores(seq, plain.item_matrix())[0]
        after = first.recommend_scores(seq, first.item_matrix())[0]
    history = [1, 3, 8]
    top = after.argsort(descending=True)[:3].tolist()
    assert sorted(top) == history
    assert top == sorted(history, key=lambda item: -before[item].item())  # their own order kept
    rest = [item for item in range(N) if item not in history]
    assert torch.equal(after[rest], before[rest])  # other items are untouched


@pytest.mark.parametrize("slots", [1, 2, 5])
def test_history_slots_lift_only_the_best_scored_history_items(slots):
    torch.manual_seed(0)
    plain = build_model(make_config("gru"), make_features(), N)
    config = dataclasses.replace(make_config("gru"), history_first=True, history_slots=slots)
    first = build_model(config, make_features(), N)
    first.load_state_dict(plain.state_dict())
    seq = torch.tensor([[0, 0, 4, 9, 2, 4], [0, 0, 0, 0, 0, 0]])  # items 3, 8, 1, 3; none
    with torch.no_grad():
        before = plain.recommend_scores(seq, plain.item_matrix())
        after = first.recommend_scores(seq, first.item_matrix())
    by_score = sorted([1, 3, 8], key=lambda item: -before[0, item].item())
    lifted = by_score[:slots]  # a history shorter than the slots lifts all it has
    top = after[0].argsort(descending=True)[: len(lifted)].tolist()
    assert top == lifted
    rest = [item for item in range(N) if item not in lifted]
    assert torch.equal(after[0, rest], before[0, rest])  # the other history items compete
    assert torch.equal(after[1], before[1])  # an empty history: nothing lifted


def recency_pair(**kwargs):
    """A plain model and one with the same weights that lifts the history by recency."""
    torch.manual_seed(0)
    plain = build_model(make_config("gru"), make_features(), N)
    config = dataclasses.replace(
        make_config("gru"), history_first=True, history_order="recency", **kwargs
    )
    first = build_model(config, make_features(), N)
    first.load_state_dict(plain.state_dict())
    return plain, first


# items 3, 8, 1, 3 again (0-based): latest first is 3, 1, 8; then an empty history
RECENCY_SEQ = torch.tensor([[0, 0, 4, 9, 2, 4], [0, 0, 0, 0, 0, 0]])


def test_recency_order_ranks_the_latest_history_item_first_whatever_its_score():
    plain, first = recency_pair()
    with torch.no_grad():
        before = plain.recommend_scores(RECENCY_SEQ, plain.item_matrix())
        after = first.recommend_scores(RECENCY_SEQ, first.item_matrix())
        # the same ranking holds when the scores put the history items in the opposite order
        flipped = before.clone()
        flipped[0, [3, 1, 8]] = torch.tensor([-5.0, -4.0, -3.0])
        flipped_after = first.finish_scores(flipped, RECENCY_SEQ)
    assert after[0].argsort(descending=True)[:3].tolist() == [3, 1, 8]
    assert flipped_after[0].argsort(descending=True)[:3].tolist() == [3, 1, 8]
    rest = [item for item in range(N) if item not in (1, 3, 8)]
    assert torch.equal(after[0, rest], before[0, rest])  # other items are untouched
    assert torch.equal(after[1], before[1])  # an empty history: nothing lifted


@pytest.mark.parametrize("slots", [1, 2, 5])
def test_recency_order_with_slots_lifts_only_the_latest_history_items(slots):
    plain, first = recency_pair(history_slots=slots)
    with torch.no_grad():
        before = plain.recommend_scores(RECENCY_SEQ, plain.item_matrix())
        after = first.recommend_scores(RECENCY_SEQ, first.item_matrix())
    lifted = [3, 1, 8][:slots]
    assert after[0].argsort(descending=True)[: len(lifted)].tolist() == lifted
    rest = [item for item in range(N) if item not in lifted]
    assert torch.equal(after[0, rest], before[0, rest])  # the other history items compete
    assert torch.equal(after[1], before[1])


def test_unknown_history_order_is_refused():
    config = dataclasses.replace(make_config("gru"), history_order="frequency")
    with pytest.raises(ValueError, match="model.history_order = 'frequency' is not one of"):
        build_model(config, make_features(), N)


def test_finish_scores_equals_the_dense_definition():
    """Bonuses scattered where they fall give the scores of the dense [B, N] formulation:
    every history term's `last` added, then each history item lifted above all others."""
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
            [0, 0, 0, 0, 0, 0],  # no history: nothing is added or lifted
            [0, 0, 0, 0, 0, 20],  # the last item, alone
        ]
    )
    scores = torch.randn(len(seq), N)
    with torch.no_grad():
        dense = scores + sum(term.last(seq, N) for term in model.history_terms())
        in_history = torch.zeros(len(seq), N, dtype=torch.bool)
        for row, history in enumerate(seq.tolist()):
            in_history[row, [item - 1 for item in history if item > 0]] = True
        spread = dense.amax(dim=1, keepdim=True) - dense.amin(dim=1, keepdim=True)
        expected = dense + in_history * (spread + 1.0)
        got = model.finish_scores(scores.clone(), seq)
    torch.testing.assert_close(got, expected)
    assert not torch.equal(dense, scores)  # the terms did add something
    torch.testing.assert_close(got[2], scores[2])
