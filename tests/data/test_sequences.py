import numpy as np
import pandas as pd

from seqrec.data.sequences import build_sequences, histories_to_tensor, pad_from_csr


def test_sequences_are_right_aligned_truncated_and_shifted():
    inter = pd.DataFrame(
        {
            "user_id": ["a"] * 5 + ["b"] * 2,
            "item_idx": [0, 1, 2, 3, 4, 7, 8],
            "timestamp": [1, 2, 2, 3, 4, 1, 1],
        }
    )
    seq = build_sequences(inter, max_len=3)
    assert list(seq.users) == ["a", "b"]
    assert seq.items.tolist() == [[3, 4, 5], [0, 8, 9]]  # item_idx + 1, 0 = padding
    assert seq.basket_ids.tolist() == [[2, 3, 4], [0, 1, 1]]  # same timestamp = one basket


def test_pad_from_csr_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 9, 50)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    values = rng.integers(1, 100, indptr[-1])
    out = pad_from_csr(indptr, values, 5)
    for row in range(50):
        history = values[indptr[row] : indptr[row + 1]][-5:]
        expected = [0] * (5 - len(history)) + list(history)
        assert out[row].tolist() == expected


def test_histories_to_tensor_for_unseen_users():
    out = histories_to_tensor([np.array([4, 5]), np.array([], dtype=np.int64)], 3)
    assert out.tolist() == [[0, 5, 6], [0, 0, 0]]
