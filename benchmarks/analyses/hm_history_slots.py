"""Sweep `model.history_slots` of a trained H&M bundle: validation picks, test reports.

    seqrec train --config experiments/hm.toml --data ../shared/data/hm --out runs/hm
    python benchmarks/analyses/hm_history_slots.py --bundle runs/hm --data ../shared/data/hm

`history_first` puts a customer's own purchases at the top of the slate; `history_slots` caps
how many (the best-scored ones), leaving the rest of the 12 to the model's other items. Only the
ranking changes, not the weights, so one trained bundle is re-scored for every value. The
validation basket chooses; the test figures are printed next to it, not used to choose. The
sweep goes to stdout as a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from seqrec.bundle import load_bundle
from seqrec.data.load import load_dataset
from seqrec.data.split import split_dataset
from seqrec.experiment import evaluate_model
from seqrec.report import markdown_table, run_facts, run_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--slots", default="0,3,6,8,10", help="comma-separated values; 0 = all")
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    config = bundle.config
    split = split_dataset(load_dataset(args.data), config.split)
    metric = config.eval.main_metric
    k = metric.split("@")[1]
    tasks = {stage: split.task(stage) for stage in ("valid", "test")}
    print("\n".join(run_lines(run_facts())))
    print(f"- model: {config.model.model}, best epoch as trained\n")
    header = ["history_slots", f"valid {metric}", f"valid cold:recall@{k}", f"test {metric}"]
    header += [f"test recall@{k}", f"test cold:recall@{k}"]
    rows = []
    for slots in [int(value) for value in args.slots.split(",")]:
        bundle.model.config = dataclasses.replace(config.model, history_slots=slots)
        results = {
            stage: evaluate_model(config, bundle.scorer(), task, bootstrap=0).metrics
            for stage, task in tasks.items()
        }
        valid, test = results["valid"], results["test"]
        figures = [valid[metric], valid[f"cold:recall@{k}"], test[metric]]
        figures += [test[f"recall@{k}"], test[f"cold:recall@{k}"]]
        rows.append([slots or "all", *(f"{value:.4f}" for value in figures)])
    print("\n".join(markdown_table(header, rows)))


if __name__ == "__main__":
    main()
