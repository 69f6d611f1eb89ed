"""Seconds per training step of seqrec's own step (`seqrec.train.TrainStep` + AdamW) on real data.

    python benchmarks/train_step.py --data ../shared/data/ml-1m --label "this commit"
    PYTHONPATH=/tmp/old python benchmarks/train_step.py --data ../shared/data/ml-1m --label c5333c9

The second form times an older checkout (a `git worktree` at /tmp/old) with the same script,
on the same batches, so a change to the training step is measured against what it replaced.
Each run times ``--steps`` steps after ``--warmup`` untimed ones, ``--repeats`` times, and keeps
every repeat's median (the machine's speed drifts; the spread is recorded, not hidden). The
model is built from ``--config`` (default experiments/ml1m.toml) with ``--set key=value``
overrides, e.g. ``--set model.dim=64``. Runs are appended to benchmarks/results/train_step.json
and the whole table is rewritten to train_step.md.

A benchmark, not a timed test; the figures are only comparable between runs on the same
machine close in time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def time_steps(args: argparse.Namespace) -> dict:
    import torch

    import seqrec

    try:
        from seqrec.report import machine
    except ImportError:  # an older checkout on PYTHONPATH, from before seqrec.report
        from seqrec.bench import machine
    from seqrec.config import apply_overrides, load_config, parse_set
    from seqrec.data.sequences import target_pairs, training_examples
    from seqrec.experiment import prepare
    from seqrec.models.recommender import build_model
    from seqrec.train import TrainStep

    try:  # training runs under train.deterministic (seqrec.train.fit)
        from seqrec.devices import deterministic_algorithms
    except ImportError:  # an older checkout on PYTHONPATH, from before it
        deterministic_algorithms = None

    config = apply_overrides(load_config(args.config), parse_set(args.set))
    prepared = prepare(config, args.data)
    examples = training_examples(prepared.split, config.model.max_len, config.train.target)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(0))
    size = config.train.batch_size
    medians, positions = [], 0
    deterministic = getattr(config.train, "deterministic", False)
    context = (
        contextlib.nullcontext()
        if deterministic_algorithms is None
        else deterministic_algorithms(deterministic)
    )
    with context:
        for repeat in range(args.repeats):
            torch.manual_seed(config.train.seed)
            model = build_model(config.model, prepared.features, prepared.dataset.n_items).train()
            step = TrainStep(model, config.train, None)
            optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)
            generator = torch.Generator().manual_seed(0)
            seconds = []
            for index in range(args.warmup + args.steps):
                batch = examples[order[index * size : (index + 1) * size]]  # [B, 2, L + 1]
                started = time.perf_counter()
                loss = step(batch, generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
                optimizer.step()
                if index >= args.warmup:
                    seconds.append(time.perf_counter() - started)
                    if repeat == 0:
                        positions += len(target_pairs(batch, config.train.target)[0])
            medians.append(statistics.median(seconds))
    return {
        "label": args.label,
        "command": "python " + " ".join(shlex.quote(arg) for arg in sys.argv),
        "seqrec_from": str(Path(seqrec.__file__).resolve().parent),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": f"{config.model.model} dim {config.model.dim}, {config.model.layers} layers, "
        f"max_len {config.model.max_len}, dropout {config.model.dropout}",
        "batch_size": size,
        "loss": config.train.loss,
        "steps": args.steps,
        "positions_per_step": positions / args.steps,
        "median_seconds_per_repeat": medians,
        "load_average_end": os.getloadavg(),
    }


def write_markdown(runs: list[dict], path: Path) -> None:
    lines = [
        "# Training step time (`benchmarks/train_step.py`)",
        "",
        "Median seconds of one training step (forward, loss, backward, clipping, AdamW) of",
        "seqrec's `TrainStep` on the first batches of a fixed shuffle; one median per repeat.",
        "A run labelled with a commit timed that commit's seqrec from a `git worktree` of it",
        "(PYTHONPATH), with this script, on the same batches.",
        "",
        "| date (UTC) | label | model | batch | loss | positions/step | ms/step (each repeat) "
        "| machine, threads | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        per_repeat = ", ".join(
            f"{seconds * 1000:.0f}" for seconds in run["median_seconds_per_repeat"]
        )
        lines.append(
            f"| {run['date'][:16]} | {run['label']} | {run['model']} | {run['batch_size']} "
            f"| {run['loss']} | {run['positions_per_step']:.0f} | {per_repeat} "
            f"| {run['machine']}, {run['threads']} | {run['load_average_end'][0]:.2f} |"
        )
    lines += ["", "Commands:", ""]
    lines += [
        f"- {run['label']}: `{run['command']}` (seqrec from `{run['seqrec_from']}`)" for run in runs
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-1m")
    parser.add_argument("--config", type=Path, default=REPO / "experiments" / "ml1m.toml")
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    parser.add_argument("--label", default="working tree")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--results", type=Path, default=REPO / "benchmarks" / "results" / "train_step.json"
    )
    args = parser.parse_args()
    runs = json.loads(args.results.read_text())["runs"] if args.results.exists() else []
    run = time_steps(args)
    print(json.dumps(run, indent=2))
    runs.append(run)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    write_markdown(runs, args.results.with_suffix(".md"))
    print(f"wrote {args.results} and {args.results.with_suffix('.md')}")


if __name__ == "__main__":
    main()
