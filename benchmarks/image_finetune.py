r"""Fine-tune the image tower on H&M and compare tuned with frozen image features.

    python benchmarks/image_finetune.py --data ../shared/data/hm

Runs `seqrec.features.finetune.finetune_images` (trunk cache, training, held-out attribute
accuracy against a linear probe, catalogue re-encoding), then image-embedding content KNN (the
`seqrec bench` baseline row, `seqrec.baselines.ContentKNN` over the last 5 purchases) with the
frozen and the tuned vectors on validation and test, and the paired bootstrap difference
(`seqrec.evaluate.paired_difference`). Writes ``benchmarks/results/image_finetune.md/.json``.

    python benchmarks/image_finetune.py --data ../shared/data/hm --tower runs/image_finetune \
        --models

``--tower DIR`` takes a tower tuned before (its figures from ``DIR/finetune.json``) instead of
tuning one; ``--models`` also trains the config's model (the fused one of ``experiments/hm.toml``)
with the frozen and with the tuned image features and reports their paired difference; with a
config whose ``[ranker]`` is enabled, that is the two-stage ranker over its model:

    python benchmarks/image_finetune.py --config experiments/hm_ranker.toml \
        --tower runs/image_finetune --set 'ranker.without=[]' --models \
        --name image_finetune_ranker

``--name`` names the report (``benchmarks/results/NAME.md/.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from seqrec import baselines
from seqrec.config import apply_overrides, load_config
from seqrec.data.split import split_dataset
from seqrec.evaluate import paired_difference
from seqrec.experiment import evaluate_model, load_data, prepare, train_on
from seqrec.features.finetune import finetune_images
from seqrec.features.image_config import ImageConfig
from seqrec.features.image_encode import encode_images

ROOT = Path(__file__).resolve().parents[1]
HM_ATTRIBUTES = [
    "product_type_name",
    "colour_group_name",
    "graphical_appearance_name",
    "perceived_colour_master_name",
    "index_group_name",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "hm"))
    parser.add_argument("--config", default=str(ROOT / "experiments" / "hm.toml"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "image_finetune"))
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE overrides")
    parser.add_argument("--tower", default=None, help="a tuned tower to reuse (no tuning)")
    parser.add_argument("--models", action="store_true", help="train the model frozen vs tuned")
    parser.add_argument("--name", default="image_finetune", help="the report's file name")
    args = parser.parse_args()

    from seqrec.config import parse_set

    overrides = {"features.image.finetune.attribute_columns": HM_ATTRIBUTES}
    overrides |= parse_set(args.set)
    config = apply_overrides(load_config(args.config), overrides)
    load_before = os.getloadavg()
    dataset = load_data(config, args.data)
    image = config.features.image
    results = Path(args.results)
    if args.tower is None:
        start = time.perf_counter()
        report = finetune_images(dataset, image, config.split, args.out, cache_dir=args.cache_dir)
        tuning, total = report.to_dict(), time.perf_counter() - start
    else:  # the tower's own figures, written beside it by the run that tuned it
        tuning = json.loads((Path(args.tower) / "finetune.json").read_text())
        total = sum(tuning["seconds"].values())  # its steps' times (the wall time is not kept)
    tower = args.tower or args.out
    tuned = dataclasses.replace(image, finetune=dataclasses.replace(image.finetune, weights=tower))
    paths = dataset.items[dataset.schema.image_column].tolist()
    frozen_vectors, _ = encode_images(paths, image, cache_dir=args.cache_dir or _default())
    tuned_vectors, _ = encode_images(paths, tuned, cache_dir=args.cache_dir or _default())
    split = split_dataset(dataset, config.split)
    knn = {}
    for stage in ("valid", "test"):
        task = split.task(stage)
        for name, vectors in (("frozen", frozen_vectors), ("tuned", tuned_vectors)):
            ranker = baselines.ContentKNN(vectors, last_n=5).fit(task.fit, dataset.n_items)
            knn[(stage, name)] = evaluate_model(config, ranker, task)
    metric = config.eval.main_metric
    figures = {
        "command": "python " + shlex.join(sys.argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "finetune_config": dataclasses.asdict(image.finetune),
        "finetune": tuning,
        "tower_reused": args.tower,
        "finetune_seconds_total": total,
        "knn": {
            f"{stage}:{name}": {"metrics": r.metrics, "ci": r.ci}
            for (stage, name), r in knn.items()
        },
        "paired": {
            stage: paired_difference(knn[(stage, "tuned")], knn[(stage, "frozen")], metric)
            for stage in ("valid", "test")
        },
        "metric": metric,
    }
    if args.models:
        figures["models"] = compare_models(config, args.data, image, tuned, args.cache_dir)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{args.name}.json").write_text(json.dumps(figures, indent=2, default=str))
    (results / f"{args.name}.md").write_text(render(figures))
    print(render(figures))


def compare_models(config, data: str, frozen: ImageConfig, tuned: ImageConfig, cache_dir) -> dict:
    """The config's model trained with the frozen and with the tuned image features: main
    metric on valid and test, and tuned minus frozen (paired bootstrap)."""
    outcomes, seconds = {}, {}
    for name, image in (("frozen", frozen), ("tuned", tuned)):
        run = dataclasses.replace(
            config, features=dataclasses.replace(config.features, image=image)
        )
        start = time.perf_counter()
        prepared = prepare(run, data, cache_dir=Path(cache_dir) if cache_dir else None)
        outcomes[name] = train_on(run, prepared)
        seconds[name] = time.perf_counter() - start
    metric = config.eval.main_metric
    model = config.model.model
    if config.ranker.enabled:  # its figures are the two-stage ranker's
        model = f"two-stage ranker over {model}, ranker.without = {config.ranker.without}"
    figures: dict = {"seconds": seconds, "model": model}
    for stage in ("valid", "test"):
        results = {name: getattr(outcome, stage) for name, outcome in outcomes.items()}
        figures[stage] = {name: result.metrics[metric] for name, result in results.items()}
        figures[f"{stage}_paired"] = paired_difference(results["tuned"], results["frozen"], metric)
    return figures


def _default() -> Path:
    from seqrec.features.cache import default_cache_dir

    return default_cache_dir()


def render(figures: dict) -> str:
    report, metric = figures["finetune"], figures["metric"]
    lines = [
        "# Image fine-tuning on H&M",
        "",
        f"- command: `{figures['command']}`",
        f"- date: {figures['date']}",
        f"- machine: {figures['machine']}; load average before/after: "
        + " / ".join(f"{x:.2f}" for x in figures["load_average_before_after"])
        + " (other processes share these cores)",
        f"- settings: {figures['finetune_config']}",
        f"- items {report['items']} ({report['images']} images), trained on "
        f"{report['train_items']}, held out {report['heldout_items']} (by product group); "
        f"co-purchase pairs {report['pairs']}; trunk cache {report['trunk_cache_mb']:.0f} MB",
        *(
            [
                f"- tower reused from `{figures['tower_reused']}`: the tuning figures below are "
                "those of the run that tuned it (its finetune.json; time: the sum of its steps)"
            ]
            if figures.get("tower_reused")
            else []
        ),  # fmt: skip
        f"- time: {figures['finetune_seconds_total'] / 60:.1f} min in all ("
        + ", ".join(f"{k} {v:.0f}s" for k, v in report["seconds"].items())
        + ")",
        "",
        "## Held-out attribute accuracy",
        "",
        "Logistic-regression probes fitted on the training items, scored on the held-out ones; "
        "the tuned heads exist only with the attributes objective.",
        "",
        "| attribute | classes | probe on frozen | probe on tuned | tuned heads |",
        "| --- | --- | --- | --- | --- |",
    ]
    for column, scores in report["accuracy"].items():
        classes = report["attributes"][column]
        heads = f"{scores['tuned']:.3f}" if "tuned" in scores else "-"
        lines.append(
            f"| {column} | {classes} | {scores['probe']:.3f} | "
            f"{scores.get('tuned_probe', float('nan')):.3f} | {heads} |"
        )
    lines += [
        "",
        f"## Image-embedding content KNN, {metric}",
        "",
        "| stage | frozen | tuned | tuned - frozen (paired 95% CI) |",
        "| --- | --- | --- | --- |",
    ]
    for stage in ("valid", "test"):
        frozen, tuned = figures["knn"][f"{stage}:frozen"], figures["knn"][f"{stage}:tuned"]
        mean, low, high = figures["paired"][stage]
        lines.append(
            f"| {stage} | {_cell(frozen, metric)} | {_cell(tuned, metric)} | "
            f"{mean:+.4f} [{low:+.4f}, {high:+.4f}] |"
        )
    if "models" in figures:
        lines += _model_lines(figures["models"], metric)
    lines += ["", "Losses per epoch: " + json.dumps(report["losses"]), ""]
    return "\n".join(lines)


def _model_lines(models: dict, metric: str) -> list[str]:
    lines = [
        "",
        f"## The config's model ({models['model']}, fused features), {metric}",
        "",
        "| stage | frozen image features | tuned image features | tuned - frozen (paired 95% CI) |",
        "| --- | --- | --- | --- |",
    ]
    for stage in ("valid", "test"):
        mean, low, high = models[f"{stage}_paired"]
        lines.append(
            f"| {stage} | {models[stage]['frozen']:.4f} | {models[stage]['tuned']:.4f} | "
            f"{mean:+.4f} [{low:+.4f}, {high:+.4f}] |"
        )
    seconds = models["seconds"]
    lines.append(
        f"\nTraining (encoding included): frozen {seconds['frozen']:.0f} s, "
        f"tuned {seconds['tuned']:.0f} s."
    )
    return lines


def _cell(result: dict, metric: str) -> str:
    low, high = result["ci"].get(metric, (float("nan"), float("nan")))
    return f"{result['metrics'][metric]:.4f} [{low:.4f}, {high:.4f}]"


if __name__ == "__main__":
    main()
