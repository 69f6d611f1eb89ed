import pytest
import torch

from seqrec.features.item_features import ItemFeatures
from seqrec.models.item_net import ItemNet, ItemNetConfig

N = 12


def make_features() -> ItemFeatures:
    torch.manual_seed(0)
    image_mask = torch.ones(N, dtype=torch.bool)
    image_mask[3] = False
    image = torch.randn(N, 6) * image_mask[:, None]
    return ItemFeatures(
        text=torch.randn(N, 10),
        image=image,
        image_mask=image_mask,
        categories=torch.randint(0, 5, (N, 2)),
        category_cardinalities=[5, 5],
        numeric=torch.randn(N, 3),
    )


@pytest.mark.parametrize("fusion", ["concat", "product", "attention"])
def test_shapes_and_indexing(fusion):
    net = ItemNet(ItemNetConfig(dim=8, fusion=fusion, dropout=0.0), make_features(), N)
    all_items = net()
    assert all_items.shape == (N, 8)
    idx = torch.tensor([[0, 5], [11, 3]])
    assert torch.allclose(net(idx), all_items[idx], atol=1e-6)  # [2, 2, 8]


def test_features_are_frozen_buffers_not_saved():
    features = make_features()
    net = ItemNet(ItemNetConfig(dim=8), features, N)
    buffers = dict(net.named_buffers())
    assert torch.equal(buffers["text"], features.text)
    assert not any(p is buffers["text"] for p in net.parameters())
    assert "text" not in net.state_dict()


def test_cold_item_vector_comes_from_its_content():
    features = make_features()
    net = ItemNet(ItemNetConfig(dim=8, dropout=0.0), features, N).eval()
    before = net()
    features.text[7] += 1.0  # item 7 never trained: only its content moves it
    changed = ItemNet(ItemNetConfig(dim=8, dropout=0.0), features, N).eval()
    changed.load_state_dict(net.state_dict())
    after = changed()
    assert not torch.allclose(after[7], before[7])
    others = torch.arange(N) != 7
    assert torch.allclose(after[others], before[others])
    # The small initial ID embedding does not dominate the content part of the vector.
    content_norm = (before - net.id_embedding.weight).norm(dim=1)
    assert (net.id_embedding.weight.norm(dim=1) < 0.2 * content_norm).all()


def test_item_without_image_ignores_its_image_row():
    features = make_features()
    net = ItemNet(ItemNetConfig(dim=8, dropout=0.0, fusion="attention"), features, N).eval()
    before = net()
    net.image[3] = 5.0  # item 3 has image_mask False: whatever sits in its row is ignored
    assert torch.allclose(net()[3], before[3])


def test_id_only_net_trains_its_embedding():
    net = ItemNet(ItemNetConfig(dim=8, modalities=[]), None, N)
    out = net()
    assert out.shape == (N, 8)
    assert not net.modalities and net.fusion is None
    out[2].sum().backward()
    grad = net.id_embedding.weight.grad
    assert grad[2].abs().sum() > 0 and grad[3].abs().sum() == 0


def test_modality_subset_and_errors():
    net = ItemNet(ItemNetConfig(dim=8, modalities=["image", "text"]), make_features(), N)
    assert net.modalities == ["text", "image"]
    assert set(net.encoders) == {"text", "image"}
    with pytest.raises(ValueError, match="lack"):
        ItemNet(ItemNetConfig(dim=8, modalities=["text"]), make_features().select(["image"]), N)
    with pytest.raises(ValueError, match="needs content"):
        ItemNet(ItemNetConfig(dim=8, modalities=[], use_id_embedding=False), make_features(), N)


def test_backward_reaches_every_projection():
    net = ItemNet(ItemNetConfig(dim=8, fusion="concat"), make_features(), N)
    net().pow(2).sum().backward()
    for name, param in net.named_parameters():
        if name.endswith("tables.0.weight") or name.endswith("tables.1.weight"):
            continue  # row 0 (unknown) is fixed at zero, others may be absent from the codes
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_width_must_be_set():
    with pytest.raises(ValueError, match="dim is not set"):
        ItemNet(ItemNetConfig(), make_features(), N)
