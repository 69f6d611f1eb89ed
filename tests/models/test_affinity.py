import numpy as np
import scipy.sparse as sp
import torch

from seqrec.features.item_features import ItemFeatures
from seqrec.models.affinity import SCALE, ContentAffinity, neighbour_graph, unit_rows


def make_features():
    text = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])  # item 3: no text
    return ItemFeatures(text=text)


def switched_on(affinity: ContentAffinity, recency: list[float]) -> ContentAffinity:
    with torch.no_grad():
        affinity.strength.fill_(1.0 / SCALE)
        affinity.recency.copy_(torch.tensor(recency) / SCALE)
    return affinity


def test_hand_computed_bonus_after_the_whole_history():
    affinity = switched_on(ContentAffinity(make_features(), ["text"], max_len=3), [1.0, 0.5, 0.0])
    seq = torch.tensor([[3, 1, 2]])  # items 2, 0, 1 (0-based); item 2 is 2 steps back: weight 0
    out = affinity.last(seq, n_items=4)
    cos = 0.5**0.5
    # latest item 1 (weight 1): cos to 0, 1, 2 = cos, 1, cos; item 0 (weight 0.5): 1, cos, 0
    expected = torch.tensor([[cos + 0.5, 1 + 0.5 * cos, cos, 0.0]])
    assert torch.allclose(out, expected, atol=1e-6)


def test_starts_switched_off_and_only_sees_the_prefix():
    affinity = ContentAffinity(make_features(), ["text"], max_len=3)
    seq = torch.tensor([[1, 3, 0]])
    assert affinity.last(seq, 4).abs().sum() == 0  # strength starts at 0
    switched_on(affinity, [1.0, 1.0, 1.0])
    out = affinity.full(seq, torch.tensor([0]), torch.tensor([0]), 4)  # query after item 0 only
    assert torch.allclose(out, torch.tensor([[1.0, 0.5**0.5, 0.0, 0.0]]), atol=1e-6)


def test_only_the_kept_neighbours_score():
    affinity = switched_on(
        ContentAffinity(make_features(), ["text"], max_len=2, neighbours=2), [1.0, 0.0]
    )
    out = affinity.last(torch.tensor([[0, 1]]), 4)  # item 0: itself (1.0), then item 1
    assert torch.allclose(out, torch.tensor([[1.0, 0.5**0.5, 0.0, 0.0]]), atol=1e-6)


def test_neighbour_graph_is_brute_force_top_k():
    rng = np.random.default_rng(0)
    content = unit_rows(rng.normal(size=(50, 6)))
    items, sims = neighbour_graph(content, neighbours=7, block=16)
    brute = content @ content.T
    for row in range(50):
        top = np.sort(brute[row])[::-1][:7]
        assert np.allclose(sims[row].numpy(), top, atol=1e-6)
        assert items[row, 0] == row  # an item is its own nearest neighbour
        assert np.allclose(brute[row, items[row].numpy()], sims[row].numpy(), atol=1e-6)


def test_tfidf_terms_are_used_when_present():
    terms = sp.csr_matrix(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]))
    features = ItemFeatures(text=torch.ones(3, 2), text_terms=terms)
    affinity = switched_on(ContentAffinity(features, ["text"], max_len=1), [1.0])
    out = affinity.last(torch.tensor([[1]]), 3)  # the dense text says all equal; terms do not
    assert torch.allclose(out, torch.tensor([[1.0, 0.0, 0.5**0.5]]), atol=1e-6)


def test_at_agrees_with_full_and_gets_gradients():
    torch.manual_seed(0)
    features = ItemFeatures(text=torch.randn(6, 4), image=torch.randn(6, 5))
    affinity = switched_on(ContentAffinity(features, ["text", "image"], max_len=5), [1.0] * 5)
    seq = torch.randint(0, 7, (3, 5))
    rows, cols = torch.tensor([0, 1, 2, 2]), torch.tensor([4, 3, 0, 4])
    full = affinity.full(seq, rows, cols, n_items=6)
    candidates = torch.tensor([[0, 3], [1, 2], [2, 0], [5, 1]])
    assert torch.allclose(affinity.at(seq, rows, cols, candidates), full.gather(1, candidates))
    assert torch.allclose(affinity.at(seq, rows, cols, torch.tensor([4, 1])), full[:, [4, 1]])
    full.sum().backward()
    assert affinity.strength.grad.abs().sum() > 0 and affinity.recency.grad.abs().sum() > 0
