import pytest
import torch

from seqrec.features.fusion import FUSIONS, build_fusion

MODALITIES = ["text", "image", "categories"]


def make_tokens(n: int = 5, dim: int = 8) -> dict[str, torch.Tensor]:
    return {name: torch.randn(n, dim) for name in MODALITIES}


@pytest.mark.parametrize("kind", FUSIONS)
def test_masked_image_does_not_change_the_output(kind):
    torch.manual_seed(0)
    fusion = build_fusion(kind, MODALITIES, 8)
    tokens = make_tokens()
    image_mask = torch.tensor([True, False, True, False, True])
    masks = {"image": image_mask}
    out = fusion(tokens, masks)  # [5, 8]
    assert out.shape == (5, 8)

    changed = dict(tokens, image=tokens["image"] + 10 * torch.randn(5, 8))
    changed_out = fusion(changed, masks)
    # Items without an image are untouched, items with one see the new image vector.
    assert torch.allclose(out[~image_mask], changed_out[~image_mask])
    assert not torch.allclose(out[image_mask], changed_out[image_mask])


@pytest.mark.parametrize("kind", FUSIONS)
def test_masked_modality_equals_fusion_without_it(kind):
    """With the image masked everywhere, the image slot must not matter at all, even NaN."""
    torch.manual_seed(0)
    fusion = build_fusion(kind, MODALITIES, 8)
    tokens = make_tokens()
    masks = {"image": torch.zeros(5, dtype=torch.bool)}
    out = fusion(tokens, masks)
    nan_out = fusion(dict(tokens, image=torch.full((5, 8), float("nan"))), masks)
    assert torch.isfinite(nan_out).all()
    assert torch.allclose(out, nan_out)


def test_product_drops_a_missing_modality_as_the_identity():
    fusion = build_fusion("product", MODALITIES, 4)
    tokens = make_tokens(3, 4)
    masks = {"image": torch.tensor([False, True, False])}
    out = fusion(tokens, masks)
    expected_missing = tokens["text"] * tokens["categories"]
    expected_present = expected_missing * tokens["image"]
    assert torch.allclose(out[0], expected_missing[0])
    assert torch.allclose(out[1], expected_present[1])


def test_attention_weights_only_present_modalities():
    torch.manual_seed(0)
    fusion = build_fusion("attention", ["text", "image"], 4)
    text = torch.randn(2, 4)
    masks = {"image": torch.tensor([False, False])}
    out = fusion({"text": text, "image": torch.randn(2, 4)}, masks)
    # All weight on the one present modality: output = out(value(text)).
    assert torch.allclose(out, fusion.out(fusion.value(text)), atol=1e-6)


@pytest.mark.parametrize("kind", FUSIONS)
def test_item_without_any_modality_gets_zero_and_gradients_flow(kind):
    torch.manual_seed(0)
    fusion = build_fusion(kind, MODALITIES, 8)
    tokens = {name: t.requires_grad_() for name, t in make_tokens(3).items()}
    none = torch.tensor([True, True, False])
    masks = {name: none for name in MODALITIES}
    out = fusion(tokens, masks)
    assert torch.equal(out[2], torch.zeros(8))
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in tokens.values())
    assert tokens["text"].grad[:2].abs().sum() > 0


def test_unknown_fusion_is_refused():
    with pytest.raises(ValueError, match="unknown fusion"):
        build_fusion("sum", MODALITIES, 8)
