"""Training speed of seqrec on ML-1M: seconds per epoch, sequences/s, positions/s, NDCG@10.

    python benchmarks/ml1m_speed.py --data ../shared/data/ml-1m --epochs 3

A benchmark, not a timed test. The model and training settings are those of
experiments/ml1m.toml (ID-only transformer, dim 64, 2 layers, 1 head, 200 items of history, full
cross-entropy, batch 128), with text features off (``use_text = false``: the ID-only model does
not read them) and ``train.epochs`` set to ``--epochs``. Training goes through seqrec's own loop
(`seqrec.experiment.train_on` -> `seqrec.train.fit`); an epoch's time is ``train_seconds`` of the
history rows, validation excluded. Validation NDCG@10 ranks all items with seen items removed.

``--profile-batches`` then times the phases of a few training steps on a fresh model (forward,
cross-entropy, backward, optimiser) and the same steps with 1 thread and with the thread count
in use. Writes benchmarks/results/ml1m_speed.json and .md; `benchmarks/recbole_sasrec.py` adds
RecBole's SASRec to both, side by side.

The load average of the machine is recorded next to every timing: on a shared machine the
figures are only comparable between runs made under a similar load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def machine() -> dict:
    model = "unknown"
    with open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "logical_cpus_in_cpuinfo": os.cpu_count(),
        "python": platform.python_version(),
    }


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def profile_steps(config, prepared, batches: int, threads: int) -> dict:
    """Mean seconds per phase of ``batches`` training steps on a fresh model with ``threads``.

    The phases mirror `seqrec.train.TrainStep` and `fit`: forward = item matrix + transformer,
    cross-entropy = logits over all items + loss, backward, optimiser = clipping + AdamW step.
    """
    import torch

    from seqrec.losses import full_cross_entropy
    from seqrec.models.recommender import build_model
    from seqrec.train import training_examples

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
        batch = examples[order[step * size : (step + 1) * size]]
        inputs, targets = batch[:, :-1], batch[:, 1:]
        rows, cols = ((inputs > 0) & (targets > 0)).nonzero(as_tuple=True)
        t0 = time.perf_counter()
        items = model.input_item_matrix()  # [N, D]
        hidden = model(inputs, items)  # [B, L, D]
        t1 = time.perf_counter()
        logits = hidden[rows, cols] @ items.T  # [M, N]
        loss = full_cross_entropy(logits, targets[rows, cols] - 1)
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
    from seqrec.experiment import prepare, train_on
    from seqrec.train import training_examples

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    config.features.use_text = False  # the ID-only model does not read item text
    config.train.epochs = args.epochs
    config.train.device = "cpu"

    started = time.perf_counter()
    prepared = prepare(config, args.data)
    prepare_seconds = time.perf_counter() - started
    examples = training_examples(prepared.split, config.model.max_len)  # [U, L + 1]
    positions = int(((examples[:, :-1] > 0) & (examples[:, 1:] > 0)).sum())
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
            f"valid NDCG@10 {row['valid:ndcg@10']:.4f}, load {load_text()}",
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
        "prepare_seconds": prepare_seconds,
        "threads": torch.get_num_threads(),
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


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _loads(rows: list[dict], key: str = "load_average_after") -> str:
    return ", ".join(f"{row[key][0]:.2f}" for row in rows if key in row)


def write_markdown(results: dict, path: Path) -> None:
    """benchmarks/results/ml1m_speed.md from the JSON results of both scripts."""
    seq, rec = results.get("seqrec", {}), results.get("recbole", {})
    mach = results.get("machine", {})
    lines = [
        "# ML-1M training speed: seqrec vs RecBole SASRec (2 shared CPU cores)",
        "",
        "A benchmark, not a timed test. Figures were measured on a machine shared with other",
        "jobs: the load average (1-minute, over the 2 cores) is printed next to every timing.",
        "",
        "## Commands",
        "",
        "```",
        seq.get("command", "(seqrec not run)"),
        rec.get("command", "(RecBole not run)"),
        "```",
        "",
        f"- machine: {mach.get('cpu', '?')}, {mach.get('cores', '?')} cores usable by the run "
        f"(os.sched_getaffinity), Python {mach.get('python', '?')}",
        f"- seqrec run: {seq.get('date', '?')}, torch {seq.get('torch', '?')}, "
        f"{seq.get('threads', '?')} torch threads, load average before "
        f"{_fmt_load(seq.get('load_average_before'))}",
        f"- RecBole run: {rec.get('date', '?')}, {rec.get('versions', '?')}, "
        f"{rec.get('threads', '?')} torch threads, load average before "
        f"{_fmt_load(rec.get('load_average_before'))}",
        "",
        "## Side by side",
        "",
        "| | epochs | seconds / epoch (train only) | 1-min load after each epoch | targets / epoch "
        "| targets / s | steps / epoch | valid NDCG@10 (last epoch) | valid Hit@10 | "
        "test NDCG@10 (best epoch) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, run, ndcg, hit in (
        ("seqrec", seq, "valid:ndcg@10", "valid:hit@10"),
        ("RecBole SASRec", rec, "valid:ndcg@10", "valid:hit@10"),
    ):
        rows = run.get("history", [])
        if not rows:
            reason = run.get("error", "not run")
            lines.append(f"| {name} | - | not measured: {reason} | | | | | | | |")
            continue
        seconds = [row["train_seconds"] for row in rows]
        each = ", ".join(f"{s:.1f}" for s in seconds)
        last = rows[-1]
        test = run.get("test", {}).get("ndcg@10", float("nan"))
        lines.append(
            f"| {name} | {len(rows)} | {_mean(seconds):.1f} ({each}) | {_loads(rows)} "
            f"| {run['targets_per_epoch']:,} | {run['targets_per_epoch'] / _mean(seconds):,.0f} "
            f"| {run['steps_per_epoch']:,} | {last.get(ndcg, float('nan')):.4f} "
            f"| {last.get(hit, float('nan')):.4f} | {test:.4f} |"
        )
    if seq.get("history") and rec.get("history"):
        ratio = _mean([r["train_seconds"] for r in rec["history"]]) / _mean(
            [r["train_seconds"] for r in seq["history"]]
        )
        lines += ["", f"seqrec's epoch is **{ratio:.1f}x** faster than RecBole's."]
    if seq.get("history"):
        rows = seq["history"]
        lines += [
            "",
            "## seqrec per epoch",
            "",
            "| epoch | train seconds | sequences / s | positions / s | loss | valid NDCG@10 "
            "| valid Hit@10 | 1-min load after |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in rows:
            lines.append(
                f"| {row['epoch']} | {row['train_seconds']:.1f} "
                f"| {row['sequences_per_second']:.1f} | {row['positions_per_second']:,.0f} "
                f"| {row['loss']:.3f} | {row['valid:ndcg@10']:.4f} | {row['valid:hit@10']:.4f} "
                f"| {_fmt_load(row.get('load_average_after'))} |"
            )
        lines += [
            "",
            f"{seq['train_sequences']:,} training sequences (users with 2+ training items), "
            f"{seq['train_positions']:,} next-item positions per epoch (the last 201 training "
            f"items of each user), {seq['steps_per_epoch']} steps of 128 sequences; lr "
            f"{seq['lr']} with {seq['warmup_steps']} warm-up steps then {seq['schedule']} decay.",
        ]
    for profile in seq.get("profile", []):
        share = profile["phase_share"]
        per = profile["phase_seconds_per_step"]
        lines += [
            "",
            f"### Where a training step goes ({profile['threads']} thread(s), "
            f"{profile['batches']} steps, load {_fmt_load(profile['load_average_before'])} -> "
            f"{_fmt_load(profile['load_average_after'])})",
            "",
            f"{profile['seconds_per_step']:.3f} s per step of 128 sequences "
            f"({profile['positions_per_step']:,.0f} positions).",
            "",
            "| phase | seconds / step | share |",
            "| --- | --- | --- |",
        ]
        for name in per:
            lines.append(f"| {name} | {per[name]:.3f} | {share[name]:.0%} |")
    if rec.get("history"):
        lines += [
            "",
            "## RecBole per epoch",
            "",
            "| epoch | train seconds | samples / s | valid seconds | valid NDCG@10 "
            "| valid Hit@10 | 1-min load after |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in rec["history"]:
            lines.append(
                f"| {row['epoch']} | {row['train_seconds']:.1f} "
                f"| {row['samples_per_second']:,.0f} | {row.get('valid_seconds', 0):.1f} "
                f"| {row.get('valid:ndcg@10', float('nan')):.4f} "
                f"| {row.get('valid:hit@10', float('nan')):.4f} "
                f"| {_fmt_load(row.get('load_average_after'))} |"
            )
        lines += [
            "",
            f"{rec['train_samples']:,} training samples per epoch (every prefix of every "
            f"training sequence, one target each), {rec['steps_per_epoch']:,} steps of 128; "
            f"lr {rec['lr']} constant (Adam).",
        ]
    if rec.get("error"):
        lines += ["", "## RecBole did not run", "", "```", rec["error"], "```"]
    for note in results.get("notes", []):
        lines += ["", note]
    path.write_text("\n".join(lines) + "\n")


def _fmt_load(load) -> str:
    if not load:
        return "?"
    return " / ".join(f"{value:.2f}" for value in load)


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

    results = {
        "machine": machine(),
        "recbole": {},  # benchmarks/recbole_sasrec.py fills it in, after this run
    }
    seqrec = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    print(f"load average before: {load_text()}", flush=True)
    seqrec.update(run_seqrec(args))
    seqrec["load_average_end"] = os.getloadavg()
    results["seqrec"] = seqrec
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.results.with_suffix(".md"))
    print(f"wrote {args.results} and {args.results.with_suffix('.md')}")


if __name__ == "__main__":
    main()
