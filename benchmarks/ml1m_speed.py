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
RecBole's SASRec to both, side by side.

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

from seqrec.report import machine_facts, markdown_table

REPO = Path(__file__).resolve().parents[1]


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def profile_steps(config, prepared, batches: int, threads: int) -> dict:
    """Mean seconds per phase of ``batches`` training steps on a fresh model with ``threads``.

    The phases mirror `seqrec.train.TrainStep` and `fit`: forward = item matrix + transformer,
    cross-entropy = log-sum-exp over all items (`catalogue_cross_entropy`), backward, optimiser =
    clipping + AdamW step.
    """
    import torch

    from seqrec.losses import catalogue_cross_entropy
    from seqrec.models.recommender import build_model
    from seqrec.train import target_pairs, training_examples

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
    from seqrec.experiment import prepare, train_on
    from seqrec.train import target_pairs, training_examples

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


def _batch_size(result: dict, samples: int) -> int:
    """The batch size a run recorded, or (older runs) the smallest that gives its steps."""
    return result.get("batch_size") or -(-samples // result["steps_per_epoch"])


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _load(load) -> str:
    """'1-min / 5-min / 15-min' load averages, or '?'."""
    if not load:
        return "?"
    return " / ".join(f"{value:.2f}" for value in load)


def _epoch_seconds(run: dict) -> float:
    return _mean([row["train_seconds"] for row in run.get("history", [])])


def _side_by_side(seq: dict, rec: dict) -> list[str]:
    header = ["", "epochs", "training seconds / epoch", "1-min load after each epoch"]
    header += ["targets / epoch", "targets / s", "steps trained (all epochs)"]
    header += ["valid NDCG@10 after the last epoch", "valid HR@10", "test NDCG@10 (best epoch)"]
    rows = []
    for name, run, hit in (("seqrec", seq, "valid:hr@10"), ("RecBole SASRec", rec, "valid:hit@10")):
        history = run.get("history", [])
        if not history:
            rows.append([name, "-", f"not measured: {run.get('error', 'not run')}"] + [""] * 7)
            continue
        mean = _epoch_seconds(run)
        if any(row.get("extrapolated") for row in history):
            measured = sum(row["measured_seconds"] for row in history)
            timing = f"{mean:,.0f} (extrapolated from {measured:.0f} s of measured steps)"
        else:
            each = ", ".join(f"{row['train_seconds']:.1f}" for row in history)
            timing = f"{mean:.1f} ({each})"
        steps = sum(row.get("steps", run["steps_per_epoch"]) for row in history)
        rows.append(
            [
                name,
                len(history),
                timing,
                ", ".join(f"{row['load_average_after'][0]:.2f}" for row in history),
                f"{run['targets_per_epoch']:,}",
                f"{run['targets_per_epoch'] / mean:,.0f}",
                f"{steps:,} of {run['steps_per_epoch'] * len(history):,}",
                f"{history[-1].get('valid:ndcg@10', float('nan')):.4f}",
                f"{history[-1].get(hit, float('nan')):.4f}",
                f"{run.get('test', {}).get('ndcg@10', float('nan')):.4f}",
            ]
        )
    return markdown_table(header, rows)


def run_summary(results: dict) -> dict:
    """One line of a finished session, kept in ``earlier_runs`` when the benchmark is rerun."""
    summary = {}
    for key in ("seqrec", "recbole"):
        run = results.get(key, {})
        rows = run.get("history", [])
        if not rows:
            continue
        summary[key] = {
            "date": run.get("date"),
            "epochs": len(rows),
            "seconds_per_epoch": _epoch_seconds(run),
            "extrapolated": any(row.get("extrapolated") for row in rows),
            "steps_trained": sum(row.get("steps", run["steps_per_epoch"]) for row in rows),
            "load_after_each_epoch": [row["load_average_after"][0] for row in rows],
            "valid_ndcg@10": rows[-1].get("valid:ndcg@10"),
        }
    return summary


def _earlier(results: dict) -> list[str]:
    runs = [run for run in results.get("earlier_runs", []) if run]
    if not runs:
        return []
    rows = []
    for run in runs:
        for key, item in run.items():
            star = " (extrapolated)" if item["extrapolated"] else ""
            loads = ", ".join(f"{value:.2f}" for value in item["load_after_each_epoch"])
            rows.append(
                [item["date"], key, item["epochs"], f"{item['seconds_per_epoch']:,.1f}{star}"]
                + [loads, item["steps_trained"], f"{item['valid_ndcg@10']:.4f}"]
            )
    header = ["started", "library", "epochs", "seconds / epoch", "1-min load after each epoch"]
    header += ["steps trained", "valid NDCG@10"]
    return ["", "## Earlier sessions (same commands)", "", *markdown_table(header, rows)]


def write_markdown(results: dict, path: Path) -> None:
    """benchmarks/results/ml1m_speed.md from the JSON results of both scripts."""
    seq, rec = results.get("seqrec", {}), results.get("recbole", {})
    lines = [*_header(results), "", "## Side by side", "", *_side_by_side(seq, rec)]
    if seq.get("history") and rec.get("history"):
        lines += ["", _ratio_text(seq, rec)]
    if seq.get("history"):
        lines += _seqrec_epochs(seq)
    for profile in seq.get("profile", []):
        lines += _profile(profile, _batch_size(seq, seq["train_sequences"]))
    if rec.get("history"):
        lines += _recbole_epochs(rec)
    if rec.get("error"):
        lines += ["", "## RecBole did not run", "", "```", rec["error"], "```"]
    lines += _earlier(results)
    if rec.get("setup_notes"):
        lines += ["", "## Installing and running RecBole 1.2.1 here", ""]
        lines += [f"- {note}" for note in rec["setup_notes"]]
    lines += ["", "## What was measured, and what was not", ""]
    notes = MEASURED_NOTES
    if not any(row.get("extrapolated") for row in rec.get("history", [])):
        notes = [note for note in notes if not note.startswith("RecBole's full epoch")]
    lines += [f"- {note}" for note in notes]
    path.write_text("\n".join(lines) + "\n")


def _header(results: dict) -> list[str]:
    """Title, how to read the figures, both commands, the machine and both runs' settings."""
    seq, rec = results.get("seqrec", {}), results.get("recbole", {})
    mach = results.get("machine", {})
    return [
        "# ML-1M training speed: seqrec vs RecBole's SASRec on 2 shared CPU cores",
        "",
        "A benchmark, not a timed test. The machine is shared with other engineers' jobs: the",
        "load average (runnable processes, on 2 cores; one busy 2-thread run alone makes about 2)",
        "is printed next to every timing. Both runs were made one after the other in the same",
        "session so that they ran under a similar load. Written by benchmarks/ml1m_speed.py and",
        "benchmarks/recbole_sasrec.py from ml1m_speed.json.",
        "",
        "## Commands, machine",
        "",
        "```",
        seq.get("command", "(seqrec not run)"),
        rec.get("command", "(RecBole not run)"),
        "```",
        "",
        f"- CPU: {mach.get('cpu', '?')} (/proc/cpuinfo), {mach.get('cores', '?')} cores usable "
        f"(os.sched_getaffinity), Python {mach.get('python', '?')}",
        f"- seqrec: {seq.get('date', '?')}, torch {seq.get('torch', '?')}, "
        f"{seq.get('threads', '?')} torch threads; load average before "
        f"{_load(seq.get('load_average_before'))}, after {_load(seq.get('load_average_end'))}",
        f"- RecBole: {rec.get('date', '?')}, {rec.get('versions', '?')} (its own virtual "
        f"environment), {rec.get('threads', '?')} torch threads; load average before "
        f"{_load(rec.get('load_average_before'))}, after {_load(rec.get('load_average_after'))}",
    ]


def _ratio_text(seq: dict, rec: dict) -> str:
    """How many times less time an epoch takes with seqrec, and on what terms."""
    ratio = _epoch_seconds(rec) / _epoch_seconds(seq)
    per_target = (seq["targets_per_epoch"] / _epoch_seconds(seq)) / (
        rec["targets_per_epoch"] / _epoch_seconds(rec)
    )
    text = (
        f"An epoch takes **{ratio:.0f}x** less time with seqrec than with RecBole; per "
        f"training target, seqrec is {per_target:.0f}x faster."
    )
    later = rec["history"][1:]
    if later and any(row.get("extrapolated") for row in later):
        steady = _mean([row["train_seconds"] for row in later])
        text += (
            f" RecBole's first epoch includes a one-off start-up cost that a full "
            f"{rec['steps_per_epoch']:,}-step epoch would spread thin; from its later "
            f"epochs alone, its epoch is {steady:,.0f} s and the ratio "
            f"**{steady / _epoch_seconds(seq):.0f}x**."
        )
    if rec.get("matched_seqrec_time"):
        text += (
            f" RecBole's epochs were cut at {rec['max_seconds_per_epoch']:.0f} s (seqrec's "
            "mean epoch time) and their full time extrapolated, so the NDCG@10 columns "
            "compare the two at **equal training time**: not at equal epochs, and not at "
            "convergence."
        )
    return text


def _seqrec_epochs(seq: dict) -> list[str]:
    header = ["epoch", "training seconds", "sequences / s", "positions / s", "loss"]
    header += ["valid NDCG@10", "valid HR@10", "load after (1 / 5 / 15 min)"]
    rows = [
        [
            row["epoch"],
            f"{row['train_seconds']:.1f}",
            f"{row['sequences_per_second']:.1f}",
            f"{row['positions_per_second']:,.0f}",
            f"{row['loss']:.3f}",
            f"{row['valid:ndcg@10']:.4f}",
            f"{row['valid:hr@10']:.4f}",
            _load(row.get("load_average_after")),
        ]
        for row in seq["history"]
    ]
    total_steps = len(seq["history"]) * seq["steps_per_epoch"]
    ending = "."
    if total_steps <= seq["warmup_steps"]:
        ending = ", so this short run never leaves the warm-up."
    return [
        "",
        "## seqrec, per epoch",
        "",
        *markdown_table(header, rows),
        "",
        f"{seq['train_sequences']:,} training sequences, {seq['train_positions']:,} "
        f"next-item positions per epoch (each user's last {seq.get('max_len', 200) + 1} "
        f"training items; every prefix of every training sequence would be "
        f"{seq['all_prefix_targets']:,}), {seq['steps_per_epoch']} steps of "
        f"{_batch_size(seq, seq['train_sequences'])} sequences. lr {seq['lr']} (AdamW, weight "
        f"decay 0) after {seq['warmup_steps']} linear warm-up steps, then {seq['schedule']}: "
        f"{total_steps} steps in all{ending}",
    ]


def _profile(profile: dict, batch: int) -> list[str]:
    per, share = profile["phase_seconds_per_step"], profile["phase_share"]
    rows = [[name, f"{per[name]:.3f}", f"{share[name]:.0%}"] for name in per]
    return [
        "",
        f"### Where a seqrec training step goes: {profile['threads']} thread(s)",
        "",
        f"{profile['batches']} steps of {batch} sequences "
        f"({profile['positions_per_step']:,.0f} "
        f"positions each) on a fresh model: **{profile['seconds_per_step']:.2f} s per step**; "
        f"load {_load(profile['load_average_before'])} before, "
        f"{_load(profile['load_average_after'])} after.",
        "",
        *markdown_table(["phase", "seconds / step", "share"], rows),
    ]


def _recbole_epochs(rec: dict) -> list[str]:
    header = ["epoch", "steps trained", "measured seconds", "seconds / step"]
    header += ["full epoch, extrapolated", "validation seconds", "valid NDCG@10"]
    header += ["valid Hit@10", "load after"]
    nan = float("nan")
    rows = [
        [
            row["epoch"],
            f"{row['steps']:,} of {rec['steps_per_epoch']:,}",
            f"{row.get('measured_seconds', row['train_seconds']):.1f}",
            f"{row['seconds_per_step']:.2f}",
            f"{row['train_seconds']:,.0f}",
            f"{row.get('valid_seconds', nan):.1f}",
            f"{row.get('valid:ndcg@10', nan):.4f}",
            f"{row.get('valid:hit@10', nan):.4f}",
            _load(row.get("load_average_after")),
        ]
        for row in rec["history"]
    ]
    return [
        "",
        "## RecBole SASRec, per epoch",
        "",
        *markdown_table(header, rows),
        "",
        f"{rec['users']:,} users, {rec['items']:,} items, {rec['train_samples']:,} training "
        f"samples per epoch (every prefix of every training sequence, one target each), "
        f"{rec['steps_per_epoch']:,} steps of {_batch_size(rec, rec['train_samples'])}; "
        f"lr {rec['lr']} constant (Adam).",
    ]


MEASURED_NOTES = [
    "Measured: training seconds per epoch without validation (`train_seconds` of seqrec's "
    "history rows; RecBole's `_train_epoch`), under the load shown; validation NDCG@10 / HR@10 "
    "ranking all items with the user's seen items removed, on all users, after each epoch; "
    "test NDCG@10 of the best epoch.",
    "RecBole's full epoch was not run: at the measured seconds per step, one epoch of every "
    "prefix takes hours on this machine. Its epoch time is the mean time per step measured "
    "(first, slower step included) times "
    "its steps per epoch; every RecBole sample is padded to 200 items, so each step does the "
    "same work and the extrapolation is linear.",
    "Not measured: the converged comparison. A few epochs (on a machine shared with other "
    "jobs) are far from convergence for both; the goal 'at least 2x RecBole's speed at equal "
    "or better NDCG@10' needs both trained to convergence (tens of epochs; published full-CE "
    "SASRec on this file: test NDCG@10 0.1821). The NDCG@10 here is after equal training time.",
    "Settings that differ: seqrec uses experiments/ml1m.toml's lr with linear warm-up, then "
    "cosine decay (values above), RecBole lr 0.001 constant; seqrec trains on each user's last 201 "
    "training items (all positions of a sequence in one pass), RecBole on every prefix of "
    "every sequence; seqrec's transformer is pre-LayerNorm, RecBole's post-LayerNorm. Both: "
    "dim 64, 2 layers, 1 head, feed-forward 256, GELU, dropout 0.2 (attention and hidden), "
    "200 items of history, full softmax cross-entropy, seqrec's batch size (RecBole reads it "
    "from ml1m_speed.json), gradient clipping at 1.0.",
    "Validation time is excluded from both epoch times (seqrec validates all 6,040 users after "
    "each epoch, RecBole likewise).",
]


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
