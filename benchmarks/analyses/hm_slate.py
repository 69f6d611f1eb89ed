"""How much of a 12-item slate a shopper's own history takes on the H&M split.

    python benchmarks/analyses/hm_slate.py --data ../shared/data/hm

`history_first` ranks every item a customer has already bought above all others, as the
repeat-purchase heuristic does. A customer with 12 or more distinct items in their history then
gets a slate of repeats only, and a cold target (an article nobody bought before) cannot be
recommended to them. This script counts those customers at the validation and test stages and
prints a Markdown table; `benchmarks/results/hm.md` quotes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from hm_analysis import hm_split

from seqrec.report import markdown_table, run_facts, run_lines


def slate_rows(data: Path, k: int) -> list[dict]:
    _, split = hm_split(data)
    rows = []
    for stage in ("valid", "test"):
        task = split.task(stage)
        cold = task.cold_items()
        distinct = np.array([len(np.unique(history)) for history in task.histories()])  # [U]
        full = distinct >= k
        per_customer = np.array([int(cold[targets].sum()) for targets in task.targets()])  # [U]
        has_cold = per_customer > 0
        cold_blocked = int(per_customer[full].sum())
        rows.append(
            {
                "stage": stage,
                "customers": len(task),
                "full": int(full.sum()),
                "with_cold": int(has_cold.sum()),
                "with_cold_full": int((has_cold & full).sum()),
                "cold_targets": int(per_customer.sum()),
                "cold_blocked": cold_blocked,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--k", type=int, default=12)
    args = parser.parse_args()
    rows = slate_rows(args.data, args.k)
    print("\n".join(run_lines(run_facts())) + "\n")
    header = [
        "stage",
        "customers",
        f"history of {args.k}+ distinct items",
        "customers with a cold target",
        f"of them with {args.k}+ history items",
        "cold targets",
        "of them held by such customers",
    ]
    print("\n".join(markdown_table(header, map(table_row, rows))))


def table_row(row: dict) -> list:
    return [
        row["stage"],
        row["customers"],
        share(row["full"], row["customers"]),
        row["with_cold"],
        share(row["with_cold_full"], row["with_cold"]),
        row["cold_targets"],
        share(row["cold_blocked"], row["cold_targets"]),
    ]


def share(part: int, whole: int) -> str:
    return f"{part} ({part / max(1, whole):.0%})"


if __name__ == "__main__":
    main()
