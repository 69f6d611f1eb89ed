"""Reading a large interactions CSV into integer codes, block by block.

A full-size shop's purchases file holds tens of millions of rows whose ids repeat (H&M: 31.8M
rows, 1.37M customers of 64 characters each). Read as one string per row it needs many GB;
`read_coded_csv` streams the file with pyarrow and turns each block's id columns into int32
codes over the distinct values seen so far, so only the codes and one copy of each distinct id
are kept. The id columns come back as pandas categoricals, the float columns as float64.

Rows with the wrong number of fields are skipped and reported as `seqrec.data.formats.common`'s
reader does (line numbers, the header being line 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from seqrec.data.dataset import DataError
from seqrec.data.formats.common import Malformed, Problems, _no_rows

BLOCK_BYTES = 16 << 20  # bytes of CSV parsed at a time
MERGE_AT = 2_000_000  # distinct values (or 4 times as many rows) of waiting blocks to merge


class _Column:
    """A growing 1-d array, kept in one allocation (small blocks freed one by one would leave
    the process holding their memory)."""

    def __init__(self, dtype: type) -> None:
        self.values: np.ndarray = np.empty(1 << 16, dtype=dtype)
        self.size = 0

    def reserve(self, capacity: int) -> None:
        """Make room for ``capacity`` values in all (an estimate; more still fit)."""
        if capacity > len(self.values):
            grown = np.empty(capacity, dtype=self.values.dtype)
            grown[: self.size] = self.values[: self.size]
            self.values = grown

    def extend(self, block: np.ndarray) -> None:
        end = self.size + len(block)
        if end > len(self.values):
            self.reserve(max(end, len(self.values) * 5 // 4))
        self.values[self.size : end] = block
        self.size = end

    def array(self) -> np.ndarray:
        """The values, their spare capacity given back."""
        out, self.values = self.values, np.empty(0, dtype=self.values.dtype)
        out.resize(self.size, refcheck=False)  # shrinks in place: no second copy
        return out


class _Codebook:
    """Distinct strings of one column in order of first appearance, and every row's code.

    Each block arrives dictionary-encoded (its own distinct values and int32 indices); blocks
    wait until their values add up to `MERGE_AT` (or their rows to four times that), then one
    pyarrow hash pass over the values known so far followed by the waiting ones gives their
    codes (known values come first and are distinct, so their codes do not change).
    """

    def __init__(self) -> None:
        self.known: pa.Array = pa.array([], pa.large_string())
        self.waiting: list[tuple[pa.Array, np.ndarray]] = []  # (block's values, indices)
        self.waiting_values = self.waiting_rows = 0
        self.codes = _Column(np.int32)  # [rows] codes, -1 for missing

    def add(self, column: pa.DictionaryArray) -> None:
        indices = column.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        self.waiting.append((column.dictionary.cast(pa.large_string()), indices))
        self.waiting_values += len(column.dictionary)
        self.waiting_rows += len(column)
        if self.waiting_values >= MERGE_AT or self.waiting_rows >= 4 * MERGE_AT:
            self._merge()

    def _merge(self) -> None:
        values = pa.concat_arrays([self.known, *(block for block, _ in self.waiting)])
        encoded = pc.dictionary_encode(values)
        codes = encoded.indices.to_numpy()  # [known + waiting values] global codes
        start = len(self.known)
        for block, indices in self.waiting:
            lookup = np.append(codes[start : start + len(block)], np.int32(-1))  # -1: missing
            self.codes.extend(lookup[indices])
            start += len(block)
        self.known = encoded.dictionary
        self.waiting, self.waiting_values, self.waiting_rows = [], 0, 0

    def categorical(self) -> pd.Categorical:
        self._merge()
        codes = self.codes.array()
        categories = pd.Index(self.known.to_pandas(), dtype="str")
        return pd.Categorical.from_codes(codes, categories=categories)


def read_coded_csv(
    path: Path, problems: Problems, ids: list[str], floats: list[str]
) -> pd.DataFrame:
    """The ``ids`` columns (categoricals; empty fields missing) and ``floats`` columns (float64)
    of the CSV file at ``path``, in file order; a DataError when it cannot be read or has no
    rows. The file must have every column named (check with ``_require_columns`` first)."""
    bad = Malformed(path.name)
    books = {column: _Codebook() for column in ids}
    numbers = {column: _Column(np.float64) for column in floats}
    stored = [*(book.codes for book in books.values()), *numbers.values()]
    try:
        for batch in _batches(path, bad, ids, floats):
            if not stored[0].size:  # the first block tells how many rows to expect
                blocks = path.stat().st_size / BLOCK_BYTES
                expected = int(batch.num_rows * max(1.0, blocks * 1.05))
                for column in stored:
                    column.reserve(expected)
            for name, book in books.items():
                book.add(batch.column(name))
            pa.default_memory_pool().release_unused()  # the block's memory, back to the system
            for name, values in numbers.items():
                values.extend(batch.column(name).to_numpy(zero_copy_only=False))
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"could not read {path}: {err}") from err
    bad.report(problems)
    table: dict[str, object] = {column: book.categorical() for column, book in books.items()}
    table |= {column: numbers.pop(column).array() for column in floats}
    pa.default_memory_pool().release_unused()  # the blocks' memory, back to the system
    frame = pd.DataFrame(table, copy=False)
    if not len(frame):
        _no_rows(path, problems)
    return frame


def _batches(path: Path, bad: Malformed, ids: list[str], floats: list[str]):
    """pyarrow's streaming CSV reader on one thread (so that malformed rows come with their
    line numbers), ids read as dictionary-encoded strings."""

    def skip(row: pa_csv.InvalidRow) -> str:
        bad.add(row.number, f"{row.actual_columns} fields instead of {row.expected_columns}")
        return "skip"

    coded = pa.dictionary(pa.int32(), pa.string())
    types = {c: coded for c in ids} | {c: pa.float64() for c in floats}
    return pa_csv.open_csv(
        path,
        read_options=pa_csv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=skip),
        convert_options=pa_csv.ConvertOptions(
            column_types=types, strings_can_be_null=True, include_columns=[*ids, *floats]
        ),
    )
