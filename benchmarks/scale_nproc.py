"""`seqrec train --nproc N` on an H&M-size shop: the training throughput of N local processes
against one, and the whole command run end to end (a script, not a test).

1. Throughput: the train step of `benchmarks/scale.py` (the `seqrec.train.fit` that
   ``seqrec train`` runs, one epoch cut to ``--max-steps`` batches of the experiment's batch
   size, which stays the total over the processes) once per process count; N > 1 runs under
   torchrun as ``seqrec train --nproc N`` starts it. Sequences/s and predicted positions/s
   come from the epoch's own timing (loading excluded); peak memory is the largest process's
   (each process holds its own copy of the data).
2. End to end (``--end-to-end``): ``seqrec train --nproc N`` itself on the shop, with the same
   capped epoch, ``train.valid_users`` and ``eval.users`` so that validation and the final
   figures rank a sample of the shoppers, writing a bundle; its wall time and exit status.

    python benchmarks/scale_nproc.py --size 1 --nproc 1,2 --end-to-end 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import BASE_SETTINGS, EXPERIMENT  # noqa: E402
from scale_load import CACHE, RESULTS, hm_shop, machine, measure, seqrec_command  # noqa: E402

from seqrec.report import markdown_table  # noqa: E402

SAMPLE_USERS = 20_000  # validation and final figures of the end-to-end run


def throughput(fraction: float, shop: Path, work: Path, nproc: int, settings: list[str]) -> dict:
    """The capped training epoch in ``nproc`` processes: what it measured, and its cost."""
    flags = [arg for setting in settings for arg in ("--set", setting)]
    step = ["benchmarks/scale.py", "--shop", str(shop), "--work", str(work), "--step", "train"]
    launcher = [sys.executable]
    if nproc > 1:  # what `seqrec train --nproc N` runs (seqrec.distributed.launch)
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    (work / "train.json").unlink(missing_ok=True)
    cost = measure(f"train, {nproc} process(es)", fraction, [*launcher, *step, *flags],
                   work / f"train_nproc{nproc}.log")  # fmt: skip
    trained = json.loads((work / "train.json").read_text())
    return {"nproc": nproc, "cost": cost, "trained": trained}


def end_to_end(shop: Path, work: Path, nproc: int, settings: list[str]) -> dict:
    """``seqrec train --nproc N`` on the shop, writing a bundle; its wall time and status."""
    sample = [f"train.valid_users={SAMPLE_USERS}", f"eval.users={SAMPLE_USERS}"]
    flags = [arg for setting in [*settings, *sample] for arg in ("--set", setting)]
    command = seqrec_command("train", "--config", str(EXPERIMENT), "--data", str(shop),
                             "--out", str(work / "bundle_nproc"), "--cache-dir",
                             str(work / "features"), "--nproc", str(nproc), *flags)  # fmt: skip
    cost = measure(f"seqrec train --nproc {nproc}", 1.0, command, work / "train_e2e.log")
    metrics = json.loads((work / "bundle_nproc" / "metrics.json").read_text())
    return {"nproc": nproc, "cost": cost, "test": metrics.get("test", {})}


def report(fraction: float, runs: list[dict], whole: dict | None, settings: list[str]) -> str:
    one = next((run for run in runs if run["nproc"] == 1), runs[0])
    rows = []
    for run in runs:
        trained, cost = run["trained"], run["cost"]
        speed = trained["sequences_per_second"] / one["trained"]["sequences_per_second"]
        rows.append([
            run["nproc"], trained["torch_threads"], trained["steps"],
            f"{trained['train_seconds']:.1f}",
            f"{trained['sequences_per_second']:.0f}", f"{trained['positions_per_second']:.0f}",
            f"{speed:.2f}x", f"{cost.seconds:.0f}", f"{cost.peak_rss_gb:.2f}",
        ])  # fmt: skip
    header = ["processes", "torch threads each", "steps", "train s", "sequences/s",
              "positions/s", "vs 1 process", "wall s (with loading)",
              "peak RSS GB, largest process"]  # fmt: skip
    trained = one["trained"]
    lines = [
        "# `seqrec train --nproc N` on an H&M-size shop",
        "",
        f"- command: `{shlex.join(['python', *sys.argv])}`",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {machine()}",
        f"- shop: {fraction * 100:g}% of H&M ({trained['items']:,} items, "
        f"{trained['training_sequences']:,} training sequences); model {trained['model']}, "
        f"loss {trained['loss_function']}, total batch {trained['batch_size']}",
        f"- experiment: {EXPERIMENT.relative_to(ROOT)} with "
        + ", ".join(f"`{setting}`" for setting in settings),
        "",
        *markdown_table(header, rows),
        "",
        "Commands:",
        "",
        *(f"- `{run['cost'].command}`" for run in runs),
    ]
    if whole is not None:
        cost, test = whole["cost"], whole["test"]
        lines += [
            "",
            f"## End to end: `seqrec train --nproc {whole['nproc']}`",
            "",
            f"- `{cost.command}`",
            f"- finished in {cost.seconds / 60:.1f} min (loading, the capped epoch, validation "
            f"and the final figures on {SAMPLE_USERS:,} sampled shoppers each, the bundle), "
            f"peak RSS of the largest process {cost.peak_rss_gb:.2f} GB",
            "- test figures of that bundle (a capped epoch on a synthetic shop: not figures of "
            "merit): "
            + ", ".join(f"{key} {test[key]:.4f}" for key in sorted(test) if ":" not in key),
        ]
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, default=1.0, help="fraction of H&M's size")
    parser.add_argument("--nproc", default="1,2", help="process counts to compare")
    parser.add_argument("--max-steps", type=int, default=100, help="training batches measured")
    parser.add_argument("--end-to-end", type=int, default=0, help="also run seqrec train --nproc N")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the shops are kept")
    parser.add_argument("--name", default="scale_nproc", help="report name in results/")
    args = parser.parse_args()
    shop, _ = hm_shop(args.size, args.cache)
    work = args.cache / f"scale_{shop.name}"
    work.mkdir(parents=True, exist_ok=True)
    settings = [*BASE_SETTINGS, f"train.steps_per_epoch={args.max_steps}"]
    runs = [throughput(args.size, shop, work, int(n), settings) for n in args.nproc.split(",")]
    for run in runs:
        print(run["nproc"], run["trained"]["sequences_per_second"], run["cost"], flush=True)
    whole = end_to_end(shop, work, args.end_to_end, settings) if args.end_to_end else None
    text = report(args.size, runs, whole, settings)
    (RESULTS / f"{args.name}.md").write_text(text)
    summary = {"runs": [{**run, "cost": vars(run["cost"])} for run in runs]}
    if whole is not None:
        summary["end_to_end"] = {**whole, "cost": vars(whole["cost"])}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
