"""What each design choice of experiments/hm.toml is worth on the real H&M split.

    python benchmarks/hm_variants.py --data ../shared/data/hm [--variants a,b,...]

Each variant is experiments/hm.toml with a few keys changed back (one change at a time, from
the shipped config), trained once with the same seed; the table gives validation NDCG@12 (what
the choices were made on), test NDCG@12 and test cold recall@12. Writes
benchmarks/results/hm_variants.md and .json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path

from seqrec.bench import machine
from seqrec.config import apply_overrides, load_config
from seqrec.experiment import prepare, train_on

REPO = Path(__file__).resolve().parents[1]

VARIANTS: dict[str, dict] = {
    "shipped (experiments/hm.toml)": {},
    "history items not forced first": {"model.history_first": False},
    "next-item targets instead of next-basket": {"train.target": "next_item"},
    "no content affinity": {"model.content_affinity": False},
    "no repeat bias": {"model.repeat_bias": False},
    "with an item-ID embedding": {"model.item_net.use_id_embedding": True},
    "transformer backbone": {"model.model": "transformer"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/hm")
    parser.add_argument("--config", default=str(REPO / "experiments" / "hm.toml"))
    parser.add_argument("--variants", default="", help="comma-separated names (default: all)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()

    wanted = [name for name in args.variants.split(",") if name] or list(VARIANTS)
    base = apply_overrides(load_config(args.config), {"eval.bootstrap": 200})
    started = time.time()
    prepared = prepare(base, args.data)
    rows = []
    for name in wanted:
        config = apply_overrides(base, VARIANTS[name])
        clock = time.time()
        outcome = train_on(config, prepared)
        row = {
            "variant": name,
            "overrides": VARIANTS[name],
            "best_epoch": outcome.train.best_epoch + 1,
            "valid:ndcg@12": outcome.train.best_metric,
            "test:ndcg@12": outcome.test.metrics["ndcg@12"],
            "test:ndcg@12 ci": list(outcome.test.ci.get("ndcg@12", (None, None))),
            "test:cold:recall@12": outcome.test.metrics.get("cold:recall@12"),
            "seconds": round(time.time() - clock, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(part) for part in sys.argv)
    meta = {
        "command": command,
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "load_average": os.getloadavg(),
    }
    (out / "hm_variants.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    lines = [
        "# H&M: what each choice of experiments/hm.toml is worth",
        "",
        f"Command: `{command}`  ",
        f"Machine: {meta['machine']}; date {meta['date']}; {meta['seconds']:.0f} s in all.",
        "",
        "One change at a time from the shipped config, same seed. Choices were made on",
        "validation NDCG@12; test figures are reported, not used.",
        "",
        "| variant | best epoch | valid NDCG@12 | test NDCG@12 [95% CI] | test cold recall@12 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        low, high = row["test:ndcg@12 ci"]
        ci = f" [{low:.4f}, {high:.4f}]" if low is not None else ""
        cold = row["test:cold:recall@12"]
        lines.append(
            f"| {row['variant']} | {row['best_epoch']} | {row['valid:ndcg@12']:.4f} | "
            f"{row['test:ndcg@12']:.4f}{ci} | {cold:.4f} |"
        )
    (out / "hm_variants.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
