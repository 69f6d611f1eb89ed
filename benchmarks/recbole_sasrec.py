"""RecBole's SASRec on ML-1M with seqrec's settings, printed side by side with seqrec's figures.

    /tmp/recbole-venv/bin/python benchmarks/recbole_sasrec.py --data ../shared/data/ml-1m \
        --epochs 3

RecBole is an optional benchmark extra (``pip install .[bench]``, best in its own virtual
environment), never a runtime dependency of seqrec. Run `benchmarks/ml1m_speed.py` first, in the
same session: this script reads its seqrec figures from ``--results`` (ml1m_speed.json), adds
RecBole's, prints both epoch times and both NDCG@10 side by side and rewrites ml1m_speed.md.

The ``user item`` lines of ml-1m.txt become RecBole atomic files in a temporary folder
(``user_id``, ``item_id``, ``timestamp`` = line number, so each user's order is the file's order).
SASRec is trained with the settings of experiments/ml1m.toml where RecBole has them: hidden size
64, 2 layers, 1 head, feed-forward 256, GELU, dropout 0.2, 200 items of history, full
cross-entropy (no negative sampling), batch 128, gradient clipping at 1.0; learning rate 0.001
(Adam, constant). Validation and test are leave-one-out ('LS'), ranked against all items with the
user's seen items removed (RecBole's full-sort protocol), metrics NDCG@10 and Hit@10.
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

import torch

REPO = Path(__file__).resolve().parents[1]


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
        "train_batch_size": 128,
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
    """The first ``limit`` batches of a RecBole data loader (all when ``limit`` is 0).

    Stands in for the loader in `Trainer._train_epoch`, which only iterates over it on one
    process; prints a progress line every 100 batches.
    """

    def __init__(self, loader, limit: int = 0):
        self.loader, self.limit, self.done = loader, limit, 0
        self.shuffle = loader.shuffle

    def __len__(self) -> int:
        return min(self.limit, len(self.loader)) if self.limit else len(self.loader)

    def __iter__(self):
        start = time.perf_counter()
        for batch in self.loader:
            if self.limit and self.done >= self.limit:
                break
            yield batch
            self.done += 1
            if self.done % 100 == 0:
                seconds = time.perf_counter() - start
                print(
                    f"  step {self.done}/{len(self.loader)}: {seconds / self.done:.3f} s/step, "
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
            steps = Steps(train_data, args.max_steps)
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
        "library": "RecBole 1.2.1 SASRec",
        "lines": lines,
        "users": int(dataset.user_num) - 1,  # RecBole counts a padding id
        "items": int(dataset.item_num) - 1,
        "train_samples": samples,  # one per training prefix, one target each
        "targets_per_epoch": samples,
        "steps_per_epoch": len(train_data),
        "prepare_seconds": prepare_seconds,
        "threads": torch.get_num_threads(),
        "lr": args.lr,
        "history": rows,
        "test": {k: float(v) for k, v in test.items()},
    }


def side_by_side(results: dict) -> str:
    """Plain-text table of both libraries' epoch times and NDCG@10 (validation)."""
    lines = [
        f"{'':<26}{'seconds/epoch':>16}{'targets/s':>12}{'valid NDCG@10':>15}{'test NDCG@10':>14}"
    ]
    for key in ("seqrec", "recbole"):
        run = results.get(key)
        if not run or not run.get("history"):
            lines.append(f"{key:<26}{'not run':>16}")
            continue
        seconds = [row["train_seconds"] for row in run["history"]]
        mean = sum(seconds) / len(seconds)
        last = run["history"][-1]
        valid = last.get("valid:ndcg@10", float("nan"))
        test = run.get("test", {}).get("ndcg@10", float("nan"))
        label = f"{key} ({len(seconds)} epochs)"
        rate = run["targets_per_epoch"] / mean
        lines.append(f"{label:<26}{mean:>16.1f}{rate:>12.0f}{valid:>15.4f}{test:>14.4f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-1m")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-steps",
        type=int,
        default=0,
        help="train only this many batches per epoch and extrapolate the epoch time; 0 = all",
    )
    parser.add_argument("--users", type=int, default=0, help="first N users only (smoke test)")
    parser.add_argument("--quiet", action="store_true", help="RecBole logs warnings only")
    parser.add_argument(
        "--results", type=Path, default=REPO / "benchmarks" / "results" / "ml1m_speed.json"
    )
    parser.add_argument("--no-write", action="store_true", help="print only, keep the results")
    args = parser.parse_args()

    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    recbole = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "python": sys.executable,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
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
