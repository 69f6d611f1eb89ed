"""What the H&M analyses share: their flags and the split they read.

Each analysis (`hm_baselines.py`, `hm_ceiling.py`, `hm_cold_items.py`, `hm_slate.py`) is run as a
script, so this folder is on its import path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seqrec.data.dataset import Dataset
from seqrec.data.load import load_dataset
from seqrec.data.split import Split, SplitConfig, split_dataset

REPO = Path(__file__).resolve().parents[2]


def arguments(doc: str) -> argparse.ArgumentParser:
    """The flags every H&M analysis takes (``--data``, ``--out``, ``--bootstrap``), described
    by the first line of the script's docstring ``doc``; a script adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--bootstrap", type=int, default=1000)
    return parser


def hm_split(path: Path) -> tuple[Dataset, Split]:
    """The H&M data at ``path`` and its leave-last-basket-out split (the bench's protocol)."""
    dataset = load_dataset(path)
    return dataset, split_dataset(dataset, SplitConfig("leave_last_basket_out"))
