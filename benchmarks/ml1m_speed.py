"""Training speed of seqrec on ML-1M: seconds per epoch, sequences/s, positions/s, NDCG@10.

    python benchmarks/ml1m_speed.py --data ../shared/data/ml-1m --epochs 3

A benchmark, not a timed test. The model and training settings are those of
experiments/ml1m.toml (ID-only transformer, 2 layers, 1 head, 200 items of history, full
cross-entropy; width and batch size as that file says), with text features off
(``use_text = false``: the ID-only model does not read them) and ``train.epochs`` set to
``--epochs``. Training goes through seqrec's own loop (`seqrec.experiment.train_on` ->
`seqrec.train.fit`); an epoch's time is ``train_seconds`` of the history rows, validation
excluded. Validation NDCG@10 ranks all items with seen items removed.

``--profile-batches`` then times the phases of a few training steps on a fresh model (forward,
cross-entropy, backward, optimiser) and the same steps with 1 thread and with the thread count
in use. Writes benchmarks/results/ml1m_speed.json and .md; `benchmarks/recbole_sasrec.py` adds
RecBole's SASRec to both, side by side; `benchmarks/ml1m_speed_report.py` renders the .md
from the JSON for both scripts.

The load average of the machine is recorded next to every timing: on a shared machine the
figures are only comparable between runs made under a similar load.
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

from ml1m_speed_report import load_text, run_summary, write_markdown

from seqrec.report import machine_facts

REPO = Path(__file__).resolve().parents[1]


def profile_steps(config, prepared, batches: int, threads: int) -> dict:
    """Mean seconds per phase of ``batches`` training steps on a fresh model with ``threads``.

    The phases mirror `seqrec.train.TrainStep` and `fit`: forward = item matrix + transformer,
    cross-entropy = log-sum-exp over all items (`catalogue_cross_entropy`), backward, optimiser =
    clipping + AdamW step.
    """
    import torch

    from seqrec.data.sequences import target_pairs, training_examples
    from seqrec.losses import catalogue_cross_entropy
    from seqrec.models.recommender import build_model

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, prepared.features, prepared.dataset.n_items)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)
    examples = training_examples(prepared.split, config.model.max_len)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(0))
    size = config.train.batch_size
    phases = {"forward": 0.0, "cross_entropy": 0.0, "backward": 0.0, "optimizer": 0.0}
    positions = 0
    load_before = os.getloadavg()
    for step in range(batches + 1):  # step 0 warms up and is not counted
        batch = examples[order[step * size : (step + 1) * size]]  # [B, 2, L + 1]
        inputs = batch[:, 0, :-1]  # [B, L]
        rows, cols, targets = target_pairs(batch, config.train.target)  # [M] each
        t0 = time.perf_counter()
        items = model.input_item_matrix()  # [N, D]
        hidden = model(inputs, items)  # [B, L, D]
        t1 = time.perf_counter()
        loss = catalogue_cross_entropy(hidden[rows, cols], items, targets)  # over [M, N] logits
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        t4 = time.perf_counter()
        if step:
            for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[name] += seconds
            positions += len(rows)
    torch.set_num_threads(previous)
    step_seconds = sum(phases.values()) / batches
    return {
        "threads": threads,
        "batches": batches,
        "seconds_per_step": step_seconds,
        "positions_per_step": positions / batches,
        "phase_seconds_per_step": {name: value / batches for name, value in phases.items()},
        "phase_share": {name: value / sum(phases.values()) for name, value in phases.items()},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


def run_seqrec(args: argparse.Namespace) -> dict:
    """Train with seqrec's loop for ``args.epochs`` epochs; return figures per epoch."""
    import torch

    from seqrec.config import load_config
    from seqrec.data.sequences import target_pairs, training_examples
    from seqrec.experiment import prepare, train_on

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    config.features.use_text = False  # the ID-only model does not read item text
    config.train.epochs = args.epochs
    config.train.device = "cpu"

    started = time.perf_counter()
    prepared = prepare(config, args.data)
    prepare_seconds = time.perf_counter() - started
    examples = training_examples(prepared.split, config.model.max_len)  # [U, 2, L + 1]
    positions = len(target_pairs(examples, config.train.target)[0])
    # every prefix of every training sequence: the targets RecBole's SASRec trains on per epoch
    train_sizes = prepared.split.train.groupby("user_id").size().to_numpy()
    all_prefix_targets = int((train_sizes - 1).clip(min=0).sum())

    rows = []

    def on_epoch(row: dict) -> None:
        row = dict(row)
        row["positions_per_second"] = positions / row["train_seconds"]
        row["load_average_after"] = os.getloadavg()
        rows.append(row)
        print(
            f"epoch {row['epoch']}: train {row['train_seconds']:.1f} s, "
            f"{row['sequences_per_second']:.1f} seq/s, {row['positions_per_second']:.0f} pos/s, "
            f"valid NDCG@10 {row['valid:ndcg@10']:.4f}, load {load_text(os.getloadavg())}",
            flush=True,
        )

    load_before = os.getloadavg()
    outcome = train_on(config, prepared, on_epoch=on_epoch)
    steps_per_epoch = -(-len(examples) // config.train.batch_size)
    result = {
        "library": "seqrec",
        "users": prepared.dataset.n_users if hasattr(prepared.dataset, "n_users") else None,
        "items": prepared.dataset.n_items,
        "train_sequences": len(examples),
        "train_positions": positions,
        "targets_per_epoch": positions,
        "all_prefix_targets": all_prefix_targets,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": config.train.batch_size,
        "prepare_seconds": prepare_seconds,
        "threads": torch.get_num_threads(),
        "max_len": config.model.max_len,
        "lr": config.train.lr,
        "warmup_steps": config.train.warmup_steps,
        "schedule": config.train.schedule,
        "load_average_before": load_before,
        "history": rows,
        "best_epoch": outcome.train.best_epoch,
        "valid": outcome.valid.metrics,
        "test": outcome.test.metrics,
    }
    if args.profile_batches:
        thread_counts = sorted({1, torch.get_num_threads()})
        result["profile"] = [
            profile_steps(config, prepared, args.profile_batches, n) for n in thread_counts
        ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-1m")
    parser.add_argument("--config", type=Path, default=REPO / "experiments" / "ml1m.toml")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    parser.add_argument("--profile-batches", type=int, default=5, help="0 = no profile")
    parser.add_argument(
        "--results", type=Path, default=REPO / "benchmarks" / "results" / "ml1m_speed.json"
    )
    args = parser.parse_args()

    import torch

    earlier = []
    if args.results.exists():  # keep a summary of the previous session
        previous = json.loads(args.results.read_text())
        earlier = previous.get("earlier_runs", []) + [run_summary(previous)]
    results = {
        "machine": machine_facts(detail=True),
        "recbole": {},  # benchmarks/recbole_sasrec.py fills it in, after this run
        "earlier_runs": earlier,
    }
    seqrec = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    print(f"load average before: {load_text(os.getloadavg())}", flush=True)
    seqrec.update(run_seqrec(args))
    seqrec["load_average_end"] = os.getloadavg()
    results["seqrec"] = seqrec
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.results.with_suffix(".md"))
    print(f"wrote {args.results} and {args.results.with_suffix('.md')}")


if __name__ == "__main__":
    main()
