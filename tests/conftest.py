from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real data beside the repository (../shared/data); tests skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_shop(tmp_path_factory) -> Path:
    """A tiny demo shop in the generic layout (150 products, 200 shoppers), written once."""
    from seqrec.data.demo import DemoConfig, write_demo_shop

    return write_demo_shop(
        tmp_path_factory.mktemp("shop"), DemoConfig(seed=0, n_items=150, n_users=200)
    )


@pytest.fixture(scope="session")
def tiny_config():
    """A fast experiment config: small model, TF-IDF text, no images, 2 epochs."""
    from seqrec.config import apply_overrides, load_config

    root = Path(__file__).resolve().parents[1]
    return apply_overrides(
        load_config(root / "experiments" / "demo.toml"),
        {
            "features.use_image": False,
            "features.text.svd_dim": 16,
            "model.dim": 16,
            "model.layers": 1,
            "model.max_len": 12,
            "train.epochs": 2,
            "train.batch_size": 32,
            "train.warmup_steps": 5,
            "train.n_negatives": 16,
            "eval.bootstrap": 50,
        },
    )
