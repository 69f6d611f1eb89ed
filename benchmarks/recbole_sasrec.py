"""RecBole's SASRec on ML-1M with seqrec's settings, printed side by side with seqrec's figures.

    python3 -m venv --system-site-packages /tmp/recbole-venv
    /tmp/recbole-venv/bin/pip install recbole "numpy<2" "pandas<2.2"
    python benchmarks/ml1m_speed.py --data ../shared/data/ml-1m --epochs 3
    /tmp/recbole-venv/bin/python benchmarks/recbole_sasrec.py --data ../shared/data/ml-1m \
        --epochs 3 --match-seqrec-time

RecBole is an optional benchmark extra (the ``bench`` extra), never a runtime dependency of
seqrec; install it in its own virtual environment, as above: RecBole 1.2.1 needs numpy < 2
(and so pandas < 2.2), which seqrec's own environment must not be downgraded to (SETUP_NOTES).
Run `benchmarks/ml1m_speed.py` first, in the same session: this script reads seqrec's figures from
``--results`` (ml1m_speed.json), adds RecBole's, prints both epoch times and both NDCG@10 side by
side and rewrites ml1m_speed.md.

One RecBole epoch is every prefix of every training sequence, hours on two CPU cores (its step
count is in benchmarks/results/ml1m_speed.md). ``--max-steps`` / ``--max-seconds`` cut each
epoch short and the full epoch's time is extrapolated from the steps trained (each step does the
same work: samples are padded to 200);
``--match-seqrec-time`` gives each RecBole epoch seqrec's mean epoch time, so the NDCG@10 of both
is at equal training time.

The ``user item`` lines of ml-1m.txt become RecBole atomic files in a temporary folder
(``user_id``, ``item_id``, ``timestamp`` = line number, so each user's order is the file's order).
SASRec is trained with the settings of experiments/ml1m.toml where RecBole has them: hidden size
64, 2 layers, 1 head, feed-forward 256, GELU, dropout 0.2, 200 items of history, full
cross-entropy (no negative sampling), seqrec's batch size (from --results), gradient clipping at
1.0; learning rate 0.001 (Adam, constant). Validation and test are leave-one-out ('LS'), ranked
against all items with the user's seen items removed (RecBole's full-sort protocol), metrics
NDCG@10 and Hit@10.
RecBole trains on every prefix of every training sequence (one target per sample); seqrec on every
position of each user's last 201 training items at once, so an "epoch" differs in work (see the
counts written next to the times).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

# RecBole 1.2.1 reloads its own best checkpoint with a bare torch.load, which torch >= 2.6
# refuses (weights_only now defaults to True); the file is one this run just wrote.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


SETUP_NOTES = [
    "`pip install recbole` (1.2.1) into a venv with --system-site-packages: installs, but "
    "`import recbole.quick_start` fails: `ModuleNotFoundError: No module named 'pkg_resources'` "
    "(ray 2.6.3 imports it; setuptools 84 no longer ships it). This script does not use "
    "quick_start: it calls Config, create_dataset, data_preparation, SASRec and Trainer.",
    "With numpy 2.4.6 (seqrec's environment): `AttributeError: np.float_ was removed in the "
    "NumPy 2.0 release. Use np.float64 instead.` (recbole/config/configurator.py, "
    "compatibility_settings). Fixed inside the venv only: `pip install 'numpy<2' 'pandas<2.2'` "
    "(numpy 1.26.4, pandas 2.1.4; pandas 3.1.1 needs numpy >= 2.0.2).",
    "With torch 2.14 the reload of the best checkpoint before testing fails: `UnpicklingError: "
    "Weights only load failed` (torch >= 2.6 defaults torch.load to weights_only=True). This "
    "script sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for its own process (the checkpoint is "
    "the one it just wrote).",
]


def versions() -> str:
    import numpy
    import pandas
    import recbole

    return (
        f"RecBole {recbole.__version__}, torch {torch.__version__}, numpy {numpy.__version__}, "
        f"pandas {pandas.__version__}"
    )


def write_atomic_files(data_dir: Path, out_dir: Path, name: str, users: int = 0) -> int:
    """Write ``<out_dir>/<name>/<name>.inter`` from ml-1m.txt; return the number of lines.

    ``users`` > 0 keeps only the first that many users (a quick smoke test).
    """
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    lines = 0
    with (data_dir / "ml-1m.txt").open() as source, (folder / f"{name}.inter").open("w") as out:
        out.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for number, line in enumerate(source):
            parts = line.split()
            if len(parts) != 2:
                continue
            if users and int(parts[0]) > users:
                continue
            out.write(f"{parts[0]}\t{parts[1]}\t{number}\n")
            lines += 1
    return lines


def recbole_config(args: argparse.Namespace, data_path: Path, name: str) -> dict:
    """RecBole settings matching experiments/ml1m.toml (see the module docstring)."""
    return {
        "data_path": str(data_path),
        "checkpoint_dir": str(data_path / "saved"),
        "use_gpu": False,
        "seed": args.seed,
        "reproducibility": True,
        "show_progress": False,
        "state": "INFO",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "MAX_ITEM_LIST_LENGTH": 200,
        # model
        "hidden_size": 64,
        "inner_size": 256,
        "n_layers": 2,
        "n_heads": 1,
        "hidden_dropout_prob": 0.2,
        "attn_dropout_prob": 0.2,
        "hidden_act": "gelu",
        "loss_type": "CE",
        # training
        "epochs": args.epochs,
        "train_batch_size": args.batch_size,
        "learner": "adam",
        "learning_rate": args.lr,
        "weight_decay": 0.0,
        "clip_grad_norm": {"max_norm": 1.0},
        "train_neg_sample_args": None,
        "eval_step": 1,
        "stopping_step": args.epochs + 1,
        # evaluation: leave-one-out, full ranking, seen items removed
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user"},
        "metrics": ["NDCG", "Hit"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "eval_batch_size": 512,
    }


class Steps:
    """A RecBole training loader cut short after ``max_steps`` batches or ``max_seconds``.

    Stands in for the loader in `Trainer._train_epoch` (which only iterates over it when run on
    one process); 0 means no limit. Prints a progress line every 50 batches.
    """

    def __init__(self, loader, max_steps: int = 0, max_seconds: float = 0.0):
        self.loader, self.max_steps, self.max_seconds = loader, max_steps, max_seconds
        self.shuffle = loader.shuffle
        self.done = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        start = time.perf_counter()
        for batch in self.loader:
            seconds = time.perf_counter() - start
            if (self.max_steps and self.done >= self.max_steps) or (
                self.max_seconds and seconds >= self.max_seconds
            ):
                break
            yield batch
            self.done += 1
            if self.done % 50 == 0:
                seconds = time.perf_counter() - start
                print(
                    f"  step {self.done}/{len(self.loader)}: {seconds / self.done:.2f} s/step, "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )


def run_recbole(args: argparse.Namespace) -> dict:
    """Train and evaluate RecBole's SASRec; return its per-epoch times and metrics."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    class TimedTrainer(Trainer):
        """RecBole's trainer, timing every training epoch and keeping every validation."""

        def __init__(self, config, model):
            super().__init__(config, model)
            self.rows = []

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            load = os.getloadavg()
            steps = Steps(train_data, args.max_steps, args.max_seconds)
            start = time.perf_counter()
            loss = super()._train_epoch(steps, epoch_idx, loss_func, show_progress)
            seconds = time.perf_counter() - start
            row = {
                "epoch": epoch_idx,
                "loss": float(loss) / steps.done,
                "steps": steps.done,
                "train_seconds": seconds,
                "seconds_per_step": seconds / steps.done,
                "load_average_before": load,
                "load_average_after": os.getloadavg(),
            }
            if steps.done < len(train_data):  # a partial epoch: the full one is extrapolated
                row["measured_seconds"] = seconds
                row["train_seconds"] = seconds / steps.done * len(train_data)
                row["extrapolated"] = True
            self.rows.append(row)
            return loss

        def _valid_epoch(self, valid_data, show_progress=False):
            start = time.perf_counter()
            score, result = super()._valid_epoch(valid_data, show_progress)
            self.rows[-1]["valid_seconds"] = time.perf_counter() - start
            self.rows[-1].update({f"valid:{k}": float(v) for k, v in result.items()})
            return score, result

    name = "ml1m_seqrec"
    with tempfile.TemporaryDirectory(prefix="recbole-ml1m-") as tmp:
        tmp = Path(tmp)
        lines = write_atomic_files(args.data, tmp, name, users=args.users)
        config = Config(model="SASRec", dataset=name, config_dict=recbole_config(args, tmp, name))
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)
        logging.getLogger().setLevel(logging.WARNING if args.quiet else logging.INFO)
        started = time.perf_counter()
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        prepare_seconds = time.perf_counter() - started
        init_seed(config["seed"], config["reproducibility"])
        model = SASRec(config, train_data._dataset).to(config["device"])
        trainer = TimedTrainer(config, model)
        trainer.fit(train_data, valid_data, verbose=not args.quiet, saved=True)
        test = trainer.evaluate(test_data, load_best_model=True)
        samples = len(train_data.dataset)

    rows = trainer.rows
    for row in rows:
        row["samples_per_second"] = samples / row["train_seconds"]
    return {
        "lines": lines,
        "users": int(dataset.user_num) - 1,  # RecBole counts a padding id
        "items": int(dataset.item_num) - 1,
        "train_samples": samples,  # one per training prefix, one target each
        "targets_per_epoch": samples,
        "steps_per_epoch": len(train_data),
        "prepare_seconds": prepare_seconds,
        "threads": torch.get_num_threads(),
        "lr": args.lr,
        "batch_size": args.batch_size,
        "versions": versions(),
        "history": rows,
        "test": {k: float(v) for k, v in test.items()},
    }


def side_by_side(results: dict) -> str:
    """Plain-text table of both libraries' epoch times and NDCG@10 (validation, last epoch)."""
    header = f"{'':<22}{'s/epoch':>10}{'targets/s':>11}{'steps':>8}{'valid NDCG@10':>15}"
    lines = [header + f"{'test NDCG@10':>14}"]
    for key in ("seqrec", "recbole"):
        run = results.get(key)
        if not run or not run.get("history"):
            lines.append(f"{key:<22}{'not run: ' + run.get('error', '') if run else 'not run'}")
            continue
        rows = run["history"]
        mean = sum(row["train_seconds"] for row in rows) / len(rows)
        steps = sum(row.get("steps", run["steps_per_epoch"]) for row in rows)
        valid = rows[-1].get("valid:ndcg@10", float("nan"))
        test = run.get("test", {}).get("ndcg@10", float("nan"))
        label = f"{key} ({len(rows)} epochs)"
        star = "*" if any(row.get("extrapolated") for row in rows) else " "
        rate = run["targets_per_epoch"] / mean
        lines.append(
            f"{label:<22}{mean:>9.0f}{star}{rate:>11.0f}{steps:>8}{valid:>15.4f}{test:>14.4f}"
        )
    if any(row.get("extrapolated") for row in results.get("recbole", {}).get("history", [])):
        lines.append("* extrapolated from the steps trained (the epochs were cut short)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-1m")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--batch-size", type=int, default=0, help="0 = seqrec's, read from --results (else 128)"
    )
    parser.add_argument(
        "--max-steps", type=int, default=0, help="batches per epoch at most; 0 = all"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=0.0, help="training seconds per epoch at most"
    )
    parser.add_argument(
        "--match-seqrec-time",
        action="store_true",
        help="--max-seconds = seqrec's mean training seconds per epoch, read from --results",
    )
    parser.add_argument("--users", type=int, default=0, help="first N users only (smoke test)")
    parser.add_argument("--quiet", action="store_true", help="RecBole logs warnings only")
    parser.add_argument(
        "--results", type=Path, default=REPO / "benchmarks" / "results" / "ml1m_speed.json"
    )
    parser.add_argument("--no-write", action="store_true", help="print only, keep the results")
    args = parser.parse_args()

    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    if not args.batch_size:
        args.batch_size = results.get("seqrec", {}).get("batch_size", 128)
    if args.match_seqrec_time:
        rows = results.get("seqrec", {}).get("history")
        if not rows:
            parser.error(f"--match-seqrec-time: no seqrec run in {args.results}")
        args.max_seconds = sum(row["train_seconds"] for row in rows) / len(rows)
    recbole = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "setup_notes": SETUP_NOTES,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "max_steps_per_epoch": args.max_steps,
        "max_seconds_per_epoch": args.max_seconds,
        "matched_seqrec_time": args.match_seqrec_time,
        "load_average_before": os.getloadavg(),
    }
    try:
        recbole.update(run_recbole(args))
    except Exception as error:  # recorded as it is: the report says why RecBole did not run
        recbole["error"] = f"{type(error).__name__}: {error}"
        print(f"RecBole failed: {recbole['error']}", file=sys.stderr)
    recbole["load_average_after"] = os.getloadavg()
    results["recbole"] = recbole

    print(side_by_side(results))
    if args.no_write:
        return
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ml1m_speed import write_markdown  # the report shared with the seqrec benchmark

    write_markdown(results, args.results.with_suffix(".md"))
    if "error" in recbole:
        sys.exit(1)


if __name__ == "__main__":
    main()
