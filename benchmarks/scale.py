"""What each step costs on H&M-layout shops at 1%, 10% and 100% of H&M's size, on this machine.

For each size it takes the shop of `scale_load.hm_shop` and measures, each step alone in its own
process (wall seconds, CPU seconds, peak resident memory): loading (``seqrec data stats``), item
encoding (``seqrec encode``: TF-IDF text, no images), training for ``--max-steps`` batches and
evaluating up to ``--eval-users`` test users. The experiment is ``experiments/hm.toml`` without
images, content affinity and refit, trained for one epoch capped at ``--max-steps`` batches
(``train.steps_per_epoch``) with the loss ``train.loss = "auto"`` resolves to at that catalogue
size. From the measured steps, one epoch over every training sequence is extrapolated (rows
marked "extrapolated"), and evaluation is given per 100,000 users. The report (markdown, json,
log-log plot of time and memory against purchases) goes to ``benchmarks/results/scale.*``.

    python benchmarks/scale.py --sizes 0.01,0.1            # a quicker look
    python benchmarks/scale.py                             # 1%, 10% and 100%
    python benchmarks/scale.py --set model.model=transformer --name scale_transformer

The train and eval steps run this file again (``--step train`` / ``--step eval``), which writes
what it timed inside the process to a json beside the shop's feature cache.

Serving at a size: ``--step bundle --shop SHOP --work WORK`` with the train step's ``--set``
flags (the report lists them) writes a bundle of the weights that step left in WORK
(``WORK/bundle``), for ``benchmarks/serve_load.py --bundle WORK/bundle``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import scale_load  # noqa: E402
from scale_load import CACHE, Cost, hm_shop, load_cost, measure  # noqa: E402

EXPERIMENT = ROOT / "experiments" / "hm.toml"
# what the measured runs change in the experiment: no images (the synthetic shops have none),
# no content affinity (its neighbour graphs are measured by benchmarks/neighbours.py), no refit,
# no bootstrap; one epoch, cut short by train.steps_per_epoch
BASE_SETTINGS = [
    "features.use_image=false",
    "model.content_affinity=false",
    "train.refit=false",
    "train.epochs=1",
    "train.loss=auto",
    "eval.bootstrap=0",
]


def _config(settings: list[str]):
    from seqrec.config import apply_overrides, load_config, parse_set

    return apply_overrides(load_config(EXPERIMENT), parse_set(settings))


def train_step(shop: Path, work: Path, settings: list[str]) -> None:
    """In its own process: prepare the data, train the capped epoch, save the weights and what
    was timed inside (``train.json``)."""
    import torch

    from seqrec import distributed
    from seqrec.data.sequences import training_examples
    from seqrec.experiment import prepare
    from seqrec.models.recommender import build_model
    from seqrec.train import fit

    config = _config(settings)
    started = time.perf_counter()
    prepared = prepare(config, shop, cache_dir=work / "features")
    examples = len(training_examples(prepared.split, config.model.max_len, config.train.target))
    prepare_seconds = time.perf_counter() - started
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, prepared.features, prepared.dataset.n_items)
    cpu = time.process_time()
    result = fit(model, prepared.split, config.train, config.model.max_len, None,
                 config.eval.main_metric, fixed_epochs=1)  # fmt: skip
    row = result.history[0]
    if not distributed.is_main():  # under torchrun rank 0 alone writes what was measured
        return
    torch.save(result.state_dict, work / "model.pt")
    record = {
        "processes": distributed.world_size(),
        "torch_threads": torch.get_num_threads(),  # per process
        "sequences_per_second": row["sequences_per_second"],
        "positions_per_second": row["positions_per_second"],
        "prepare_seconds": prepare_seconds,
        "train_seconds": row["train_seconds"],
        "train_cpu_seconds": time.process_time() - cpu,
        "steps": row["steps"],
        "epoch_steps": math.ceil(examples / config.train.batch_size),
        "training_sequences": examples,
        "batch_size": config.train.batch_size,
        "loss_function": row["loss_function"],
        "items": prepared.dataset.n_items,
        "model": f"{config.model.model}, dim {config.model.dim}, {config.model.layers} layers, "
        f"max_len {config.model.max_len}, target {config.train.target}",
    }
    (work / "train.json").write_text(json.dumps(record, indent=2))


def eval_step(shop: Path, work: Path, settings: list[str], users: int) -> None:
    """In its own process: rank the full catalogue for the first ``users`` test users with the
    trained weights; what was timed inside goes to ``eval.json``."""
    import numpy as np
    import torch

    from seqrec.data.split import split_dataset
    from seqrec.evaluate import evaluate
    from seqrec.experiment import load_data
    from seqrec.features.build import fit_item_features
    from seqrec.models.recommender import build_model
    from seqrec.scoring import ModelScorer

    config = _config(settings)
    dataset = load_data(config, shop)
    features = fit_item_features(dataset, config.features, cache_dir=work / "features").features
    model = build_model(config.model, features, dataset.n_items)
    model.load_state_dict(torch.load(work / "model.pt"))
    task = split_dataset(dataset, config.split).task("test")
    total = len(task)
    if total > users:
        task = task.subset(np.arange(users))
    started, cpu = time.perf_counter(), time.process_time()
    result = evaluate(ModelScorer(model, config.model.max_len), task, ks=tuple(config.eval.ks),
                      remove_seen=config.eval.remove_seen, bootstrap=0)  # fmt: skip
    seconds = time.perf_counter() - started
    record = {
        "users": len(task),
        "test_users": total,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "seconds_per_100k_users": seconds * 100_000 / max(1, len(task)),
        "metrics": result.metrics,
    }
    (work / "eval.json").write_text(json.dumps(record, indent=2))


def bundle_step(shop: Path, work: Path, settings: list[str]) -> None:
    """A servable bundle (``WORK/bundle``) of the weights the train step saved in ``work``: its
    metrics are not figures of merit (a few steps of training), it is for load tests."""
    import numpy as np
    import torch

    from seqrec.bundle import save_bundle
    from seqrec.experiment import prepare
    from seqrec.models.recommender import build_model

    config = _config(settings)
    prepared = prepare(config, shop, cache_dir=work / "features")
    model = build_model(config.model, prepared.features, prepared.dataset.n_items)
    model.load_state_dict(torch.load(work / "model.pt"))
    train = prepared.split.train["item_idx"].to_numpy()
    popularity = np.bincount(train, minlength=prepared.dataset.n_items)
    metrics = {"note": "weights of benchmarks/scale.py's capped training step, for load tests"}
    save_bundle(work / "bundle", config, prepared.dataset, prepared.features, model, popularity,
                metrics, prepared.featurizer)  # fmt: skip


def measure_size(fraction: float, args: argparse.Namespace) -> tuple[list[Cost], list[str]]:
    """Every step at one size: the measured costs, the extrapolated ones, and notes."""
    shop, generated = hm_shop(fraction, args.cache)
    work = args.cache / f"scale_{shop.name}"
    shutil.rmtree(work, ignore_errors=True)  # encode from scratch: no cached features
    work.mkdir(parents=True)
    settings = [*BASE_SETTINGS, f"train.steps_per_epoch={args.max_steps}", *args.set]
    flags = [arg for setting in settings for arg in ("--set", setting)]
    encode = scale_load.seqrec_command("encode", "--data", str(shop), "--config", str(EXPERIMENT),
                            "--cache-dir", str(work / "features"), *flags)  # fmt: skip
    here = [sys.executable, "benchmarks/scale.py", "--shop", str(shop), "--work", str(work)]
    costs = [
        generated,
        load_cost(fraction, shop),
        measure("encode (seqrec encode, TF-IDF)", fraction, encode, work / "encode.log"),
        measure(f"train {args.max_steps} steps", fraction, [*here, "--step", "train", *flags],
                work / "train.log"),
        measure(f"evaluate <= {args.eval_users:,} users", fraction,
                [*here, "--step", "eval", "--eval-users", str(args.eval_users), *flags],
                work / "eval.log"),
    ]  # fmt: skip
    trained = json.loads((work / "train.json").read_text())
    evaluated = json.loads((work / "eval.json").read_text())
    costs += extrapolated(costs[3], costs[4], trained, evaluated)
    notes = [
        f"{fraction * 100:g}%: {trained['items']:,} items, model {trained['model']}, loss "
        f"{trained['loss_function']} (train.loss = auto), batch {trained['batch_size']}; "
        f"{trained['steps']} steps of {trained['epoch_steps']:,} per epoch "
        f"({trained['training_sequences']:,} training sequences) took "
        f"{trained['train_seconds']:.1f} s ({trained['train_seconds'] / trained['steps']:.2f} "
        f"s/step) after {trained['prepare_seconds']:.1f} s of loading, splitting and reading "
        f"the features; evaluation ranked {evaluated['users']:,} of {evaluated['test_users']:,} "
        f"test users in {evaluated['seconds']:.1f} s "
        f"({evaluated['seconds_per_100k_users']:.1f} s per 100k users)",
    ]
    return costs, notes


def extrapolated(train: Cost, evaluation: Cost, trained: dict, evaluated: dict) -> list[Cost]:
    """One epoch over every training sequence, from the measured steps (the rest of the train
    process, loading and preparing, kept as measured), and evaluation per 100,000 users."""
    ratio = trained["epoch_steps"] / trained["steps"]
    epoch = replace(
        train,
        step="train one epoch (extrapolated)",
        seconds=round(train.seconds + trained["train_seconds"] * (ratio - 1), 1),
        cpu_seconds=round(train.cpu_seconds + trained["train_cpu_seconds"] * (ratio - 1), 1),
        command=f"{train.command}  # x{ratio:.1f} for the training steps",
    )
    scale = 100_000 / max(1, evaluated["users"])
    per_100k = replace(
        evaluation,
        step="evaluate per 100k users (extrapolated)",  # one name at every size: one line
        seconds=round(evaluated["seconds"] * scale, 1),
        cpu_seconds=round(evaluated["cpu_seconds"] * scale, 1),
        command=f"{evaluation.command}  # ranking time x{scale:.2f}",
    )
    return [epoch, per_100k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0.01,0.1,1", help="fractions of H&M's size")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the shops are kept")
    parser.add_argument("--name", default="scale", help="report name in results/")
    parser.add_argument("--max-steps", type=int, default=50, help="training batches measured")
    parser.add_argument("--eval-users", type=int, default=100_000, help="test users ranked")
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    parser.add_argument("--step", choices=("train", "eval", "bundle"), help=argparse.SUPPRESS)
    parser.add_argument("--shop", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "train":
        return train_step(args.shop, args.work, args.set)
    if args.step == "eval":
        return eval_step(args.shop, args.work, args.set, args.eval_users)
    if args.step == "bundle":
        return bundle_step(args.shop, args.work, args.set)
    costs, notes = [], []
    for fraction in (float(x) for x in args.sizes.split(",")):
        size_costs, size_notes = measure_size(fraction, args)
        costs += size_costs
        notes += size_notes
        print(*size_costs, *size_notes, sep="\n", flush=True)
    notes += [
        "each step ran once, alone in its own process; rows marked extrapolated scale the "
        "measured training steps to one epoch and the ranking time to 100,000 users",
        f"experiment: {EXPERIMENT.relative_to(ROOT)} with "
        + ", ".join(f"`{setting}`" for setting in [*BASE_SETTINGS, *args.set]),
    ]
    print(
        scale_load.write_report(
            costs, args.name, "Training and evaluating on H&M-size shops", notes
        )
    )


if __name__ == "__main__":
    main()
