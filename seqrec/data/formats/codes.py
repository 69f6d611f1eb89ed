"""Id columns as integer codes: what `seqrec.data.formats.common` needs to check and sort tens
of millions of interactions without one Python string per row.

An id column arrives either as strings (small files) or as a pandas categorical (read by
`seqrec.data.formats.lean`); each helper looks a categorical up once per distinct value and
then gathers by code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqrec.data.dataset import sorted_order


def item_rows(items: pd.Series, item_ids: pd.Series) -> np.ndarray:
    """[R] int32: the row of ``item_ids`` each value of ``items`` names, -1 where none."""
    index = pd.Index(item_ids)
    if not isinstance(items.dtype, pd.CategoricalDtype):
        return index.get_indexer(items).astype(np.int32)
    rows = np.append(index.get_indexer(items.cat.categories), -1).astype(np.int32)
    return rows[items.cat.codes.to_numpy()]  # code -1 (missing) takes the last entry


def user_codes(users: pd.Series, rows: np.ndarray) -> tuple[np.ndarray, pd.Index]:
    """The users of ``rows`` (none missing) as (int32 codes, categories): the categories are
    the distinct ids among them as str, sorted, so that the codes sort as the ids do."""
    if not isinstance(users.dtype, pd.CategoricalDtype):
        codes, names = pd.factorize(users.iloc[rows].astype("str"), sort=True)
        return codes.astype(np.int32), pd.Index(names, dtype="str")
    codes = users.cat.codes.to_numpy()[rows]
    present = np.flatnonzero(np.bincount(codes, minlength=len(users.cat.categories)))
    names = users.cat.categories[present]
    order = names.argsort()  # [present] positions in sorted order
    new_code = np.full(len(users.cat.categories), -1, dtype=np.int32)
    new_code[present[order]] = np.arange(len(present), dtype=np.int32)
    return new_code[codes], pd.Index(names[order], dtype="str")


def repeat_candidates(frame: pd.DataFrame) -> np.ndarray | None:
    """[R] bool: the rows whose categorical columns (as many as one int64 key holds) repeat
    another row's, a superset of the exact repeats and their first occurrences; None when the
    frame has no categorical column to narrow them down with."""
    key, bits = None, 0
    for column in frame.columns:
        values = frame[column]
        if not isinstance(values.dtype, pd.CategoricalDtype):
            continue
        width = int(len(values.cat.categories) + 1).bit_length()
        if bits + width > 62:
            break
        if key is None:
            key = np.zeros(len(frame), dtype=np.int64)
        key <<= width
        key |= values.cat.codes.to_numpy() + 1  # missing (-1) becomes 0
        bits += width
    if key is None:
        return None
    ordered = np.sort(key)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])  # keys seen twice or more
    del ordered
    return _members(key, repeated)


def _members(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """[R] bool: which ``values`` are in the sorted ``known`` (few); a bitmap of their hashes
    first rules most rows out, binary search settles the rest."""
    found = np.zeros(len(values), dtype=bool)
    if not len(known):
        return found
    bits = 26
    table = np.zeros(1 << bits, dtype=bool)
    table[_hash(known, bits)] = True
    maybe = np.flatnonzero(table[_hash(values, bits)])
    place = np.searchsorted(known, values[maybe]).clip(max=len(known) - 1)
    found[maybe] = known[place] == values[maybe]
    return found


def _hash(values: np.ndarray, bits: int) -> np.ndarray:
    """Multiplicative hash of int64 values into ``bits`` bits."""
    mixed = values.view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    mixed >>= np.uint64(64 - bits)
    return mixed


def sorted_table(
    frame: pd.DataFrame, timestamps: np.ndarray, keep: np.ndarray, item_idx: np.ndarray
) -> pd.DataFrame:
    """The ``keep`` rows as interactions sorted by (user, timestamp), file order kept in ties.

    ``frame``: the user column, then any columns to carry along; ``timestamps`` and
    ``item_idx``: [R] per row. Each column is gathered once, in sorted order.
    """
    kept = np.flatnonzero(keep)
    if len(kept) < 2**31:
        kept = kept.astype(np.int32)  # half the memory of a row number per row
    users, categories = user_codes(frame.iloc[:, 0], kept)
    order = sorted_order(users, timestamps[kept]).astype(kept.dtype)
    rows = kept[order]
    del kept
    users = users[order]
    del order
    columns = {
        "user_id": pd.Categorical.from_codes(users, categories=categories),
        "item_idx": _gather(item_idx, rows, np.int64),
        "timestamp": _gather(timestamps, rows, np.int64),
    }
    for column in frame.columns[1:]:
        columns[column] = frame[column].to_numpy()[rows]
    return pd.DataFrame(columns, copy=False)


def _gather(values: np.ndarray, rows: np.ndarray, dtype: type) -> np.ndarray:
    """``values[rows]`` as ``dtype``, a slice at a time (no temporary of the source type)."""
    out: np.ndarray = np.empty(len(rows), dtype=dtype)
    step = 1 << 20
    for start in range(0, len(rows), step):
        out[start : start + step] = values[rows[start : start + step]]
    return out
