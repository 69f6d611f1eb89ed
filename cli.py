"""The `seqrec` command line: maps flags to config and calls the package. Nothing else lives here.

Raw data to a served recommendation, in order: `seqrec data stats` (load and validate),
`seqrec encode` (item features), `seqrec train` (sequence model -> bundle), `seqrec eval`,
`seqrec bench` (baselines and ablations), `seqrec tune` (Optuna), `seqrec serve` (HTTP).
"""

from __future__ import annotations

import functools
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    help="seqrec: multimodal sequential recommender for fashion shops.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Load, check and generate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

DataOpt = Annotated[
    Path, typer.Option("--data", help="Dataset folder or file (hm, sasrec, generic).")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Experiment TOML (see experiments/).")
]
FormatOpt = Annotated[
    str | None, typer.Option("--format", help="hm | sasrec | generic (default: detect).")
]
OnErrorOpt = Annotated[
    str | None,
    typer.Option("--on-error", help="skip (count and drop) | fail (stop) on bad rows."),
]
CacheOpt = Annotated[
    Path | None, typer.Option("--cache-dir", help="Feature cache (default ~/.cache/seqrec).")
]


def user_errors(command):
    """Print user errors (bad files, columns, configs) as one clear message, no traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from seqrec.data.dataset import DataError

        try:
            return command(*args, **kwargs)
        except (DataError, FileNotFoundError) as error:
            err_console.print(f"[bold red]error:[/] {escape(str(error))}")
            raise typer.Exit(2) from None

    return wrapper


def _experiment(config: Path | None, overrides: dict):
    from seqrec.config import apply_overrides, load_config

    return apply_overrides(load_config(config), overrides)


@data_app.command("stats")
@user_errors
def data_stats(
    path: Annotated[Path, typer.Argument(help="Dataset folder or file.")],
    format: FormatOpt = None,
    on_error: OnErrorOpt = "skip",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the stats here.")] = None,
):
    """Users, items, interactions, images, date range and every kind of rejected row."""
    from rich.table import Table

    from seqrec.data.load import load_dataset

    dataset = load_dataset(path, format=format, on_error=on_error or "skip")
    stats = dataset.stats()
    table = Table(title=f"{path} ({stats['format']})")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in stats.items():
        if isinstance(value, dict):  # malformed_lines: file -> line numbers of malformed rows
            value = "; ".join(
                f"{name}: {', '.join(map(str, lines[:10]))}{', ...' if len(lines) > 10 else ''}"
                for name, lines in value.items()
            )
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    for note in dataset.report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if json_path is not None:
        json_path.write_text(json.dumps(stats, indent=2))


@data_app.command("demo")
@user_errors
def data_demo(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the demo shop into.")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    items: Annotated[int, typer.Option(help="Number of products.")] = 2000,
    users: Annotated[int, typer.Option(help="Number of shoppers.")] = 3000,
):
    """Write the synthetic demo shop (generic layout: CSVs, images, seqrec.toml)."""
    from seqrec.data.demo import DemoConfig, write_demo_shop

    path = write_demo_shop(out, DemoConfig(seed=seed, n_items=items, n_users=users))
    console.print(f"demo shop written to [bold]{escape(str(path))}[/]")


SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any config key: --set model.dim=128 (TOML value)."),
]


def _overrides(pairs: list[str] | None, **flags) -> dict:
    """Flag values keyed by dotted config path, plus --set KEY=VALUE pairs (values as TOML)."""
    from seqrec.config import parse_set

    overrides = {key.replace("__", "."): value for key, value in flags.items()}
    overrides.update(parse_set(pairs or []))
    return overrides


def _without_nproc(argv: list[str]) -> list[str]:
    """The command's arguments without --nproc (the ranks run single-process commands)."""
    args, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    return args


def _epoch_printer(label: str = ""):
    def show(row: dict) -> None:
        metrics = "  ".join(
            f"{name.removeprefix('valid:')} {value:.4f}"
            for name, value in row.items()
            if name.startswith("valid:") and name.split("@")[0] in ("valid:ndcg", "valid:hr")
        )
        stage = "refit " if row.get("refit") else ""
        console.print(
            f"{label}{stage}epoch {row['epoch'] + 1:>3}  loss {row['loss']:.4f}  "
            f"{row['train_seconds']:.1f}s ({row['sequences_per_second']:.0f} seq/s)  {metrics}"
        )

    return show


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _headline(metrics: dict, show_all: bool = False) -> dict:
    """The metrics a person reads first: no per-group breakdown except cold recall."""
    if show_all:
        return metrics
    keep = ("ndcg@", "hr@", "recall@", "map@", "mrr", "cold:recall@")
    return {name: value for name, value in metrics.items() if name.startswith(keep)}


def _metrics_table(title: str, metrics: dict, ci: dict | None = None):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    for name, value in metrics.items():
        low, high = (ci or {}).get(name, (None, None))
        interval = "" if low is None else f"[{low:.4f}, {high:.4f}]"
        table.add_row(name, f"{value:.4f}", interval)
    return table


def _cold_warning(counts: dict) -> None:
    from seqrec.evaluate import cold_items_note

    if note := cold_items_note(counts):
        console.print(f"[yellow]warning:[/] {escape(note)}")


@app.command()
@user_errors
def encode(
    data: DataOpt,
    config: ConfigOpt = None,
    nproc: Annotated[int, typer.Option(help="Local processes sharing the image encoding.")] = 1,
    cache_dir: CacheOpt = None,
    set_: SetOpt = None,
):
    """Encode every item's text and image into the on-disk feature cache."""
    import torch

    from seqrec import distributed
    from seqrec.data.load import load_dataset
    from seqrec.features.build import fit_item_features
    from seqrec.features.cache import default_cache_dir
    from seqrec.features.shard import encode_image_shard

    if nproc > 1 and not distributed.launched_by_torchrun():
        code = distributed.launch(nproc, str(Path(__file__).resolve()), _without_nproc(sys.argv))
        raise typer.Exit(code)
    experiment = _experiment(config, _overrides(set_))
    dataset = load_dataset(
        data, experiment.data.format, experiment.data.on_error, experiment.data.text_columns
    )
    if distributed.launched_by_torchrun():  # sharded: each rank encodes a slice of the images
        distributed.setup(torch.device("cpu"))
        image_column = dataset.schema.image_column
        if experiment.features.use_image and image_column:
            cache = cache_dir if cache_dir is not None else default_cache_dir()
            paths = dataset.items[image_column].tolist()
            rank, world = distributed.rank(), distributed.world_size()
            report = encode_image_shard(paths, experiment.features.image, cache, rank, world)
            console.print(f"rank {rank}: {report.summary()}", markup=False)
        distributed.barrier()
        if not distributed.is_main():
            return
    with _progress() as progress:
        built = fit_item_features(dataset, experiment.features, cache_dir, progress=progress)
    for line in built.report.lines():
        console.print(line, markup=False)


@app.command()
@user_errors
def train(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write.")],
    config: ConfigOpt = None,
    model: Annotated[str | None, typer.Option(help="gru | transformer | mlp")] = None,
    loss: Annotated[str | None, typer.Option(help="bce | sampled_softmax | ce | gbce")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum number of epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
    fusion: Annotated[str | None, typer.Option(help="concat | product | attention")] = None,
    nproc: Annotated[
        int, typer.Option(help="Local training processes (torchrun + DDP; gloo/NCCL).")
    ] = 1,
    cache_dir: CacheOpt = None,
    set_: SetOpt = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Delete OUT's checkpoints and train from scratch instead of resuming; needed "
            "when the settings differ from the interrupted run's or a checkpoint is damaged.",
        ),
    ] = False,
):
    """Train a sequence model and write a bundle.

    An interrupted run resumes from OUT/checkpoint.pt when run again with the same settings and
    data; with other settings it stops and lists them (rerun with the old ones, or --restart).
    """
    from seqrec import distributed
    from seqrec.checkpoint import remove_checkpoints
    from seqrec.experiment import run_train

    if nproc > 1 and not distributed.launched_by_torchrun():
        code = distributed.launch(nproc, str(Path(__file__).resolve()), _without_nproc(sys.argv))
        raise typer.Exit(code)

    experiment = _experiment(
        config,
        _overrides(
            set_,
            model__model=model,
            train__loss=loss,
            train__epochs=epochs,
            train__seed=seed,
            train__device=device,
            model__item_net__fusion=fusion,
        ),
    )
    removed = remove_checkpoints(out) if restart else []  # every rank, before any trains
    if removed and distributed.is_main():
        names = ", ".join(str(path) for path in removed)
        console.print(f"--restart: removed {names}; training from scratch", markup=False)
    elif (out / "checkpoint.pt").exists() and distributed.is_main():
        console.print(f"resuming from {out / 'checkpoint.pt'}", markup=False)
    with _progress() as progress:
        outcome = run_train(
            experiment, data, out, cache_dir, progress=progress, on_epoch=_epoch_printer()
        )
    if outcome.test is None:  # a rank other than 0: rank 0 reports
        return
    console.print(_metrics_table("validation (chosen epoch)", _headline(outcome.valid.metrics)))
    test_title = "test" if outcome.refit is None else "test (model refit on train + valid)"
    console.print(_metrics_table(test_title, _headline(outcome.test.metrics), outcome.test.ci))
    _cold_warning(outcome.test.counts)
    console.print(f"bundle written to [bold]{escape(str(outcome.bundle))}[/]")


class Stage(str, Enum):  # seqrec.data.split: the held-out part to evaluate
    test = "test"
    valid = "valid"


@app.command("eval")
@user_errors
def eval_(
    bundle: Annotated[Path, typer.Option("--bundle", help="Bundle folder from seqrec train.")],
    data: DataOpt,
    split: Annotated[str | None, typer.Option(help="Split method (default: the bundle's).")] = None,
    stage: Annotated[Stage, typer.Option(help="Which held-out part to rank.")] = Stage.test,
    remove_seen: Annotated[
        bool | None, typer.Option(help="Remove history items (default: the bundle's protocol).")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write metrics here.")] = None,
    cache_dir: CacheOpt = None,
):
    """Evaluate a bundle on a dataset sharing its item ids; new items are encoded from content."""
    from seqrec.bundle import load_bundle, model_for_catalogue
    from seqrec.data.load import load_dataset
    from seqrec.data.split import split_dataset
    from seqrec.evaluate import evaluate
    from seqrec.train import ModelScorer

    loaded = load_bundle(bundle)
    config = loaded.config
    dataset = load_dataset(data, config.data.format, config.data.on_error, config.data.text_columns)
    split_config = config.split if split is None else type(config.split)(method=split)
    model, n_new = model_for_catalogue(loaded, dataset.items, cache_dir)
    if n_new:
        console.print(f"{n_new:,} items unknown to the bundle were encoded from their content")
    task = split_dataset(dataset, split_config).task(stage.value)
    if stage is Stage.valid and config.train.refit:
        console.print(
            "[yellow]warning:[/] this bundle's model was refit on train + valid, so its "
            "validation figures are not held-out figures"
        )
    result = evaluate(
        ModelScorer(model, config.model.max_len),
        task,
        ks=tuple(config.eval.ks),
        remove_seen=config.eval.remove_seen if remove_seen is None else remove_seen,
        bootstrap=config.eval.bootstrap,
    )
    title = f"{stage.value} ({len(task):,} users)"
    console.print(_metrics_table(title, _headline(result.metrics), result.ci))
    _cold_warning(result.counts)
    if json_path is not None:
        json_path.write_text(json.dumps(result.metrics, indent=2))


def _bench_table(rows, columns, out: Console):
    """The closing table of `seqrec bench` and `seqrec demo`: the first metric columns that fit
    ``out``'s width with every figure whole (ranker names wrap); the report has them all."""
    from rich.measure import Measurement

    unbounded = out.options.update_width(10_000)  # measure the table's own minimum width
    count = len(columns)
    table = _bench_table_of(rows, columns)
    while count > 1 and Measurement.get(out, unbounded, table).minimum > out.width:
        count -= 1
        table = _bench_table_of(rows, columns[:count])
    if count < len(columns):
        table.caption = f"{', '.join(columns[count:])}: in the report"
    return table


def _bench_table_of(rows, columns):
    from rich.table import Table

    table = Table(title="test metrics (full-catalogue ranking; models in bold)")
    table.add_column("ranker", overflow="fold")
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            row.name,
            *[f"{row.test.metrics.get(c, float('nan')):.4f}" for c in columns],
            style="bold" if row.kind != "baseline" else None,
        )
    return table


def _run_bench(experiment, data, out_dir, name, models, ablations, cache_dir, baselines=True):
    from seqrec.bench import check_runs, run_bench
    from seqrec.experiment import prepare
    from seqrec.report import table_columns, write_report

    check_runs(models, ablations)  # before the features are encoded
    with _progress() as progress:
        prepared = prepare(experiment, data, cache_dir=cache_dir, progress=progress)
    columns = table_columns(experiment.eval.ks)
    report = run_bench(
        experiment,
        prepared,
        models=models,
        ablations=ablations,
        include_baselines=baselines,
        on_row=lambda row: console.print(
            f"[bold]{escape(row.name)}[/] ({row.kind}, {row.seconds:.0f}s): "
            + "  ".join(f"{c} {row.test.metrics[c]:.4f}" for c in columns[:4])
        ),
        on_epoch=lambda label, row: _epoch_printer(f"  {label}: ")(row),
        cache_dir=cache_dir,
    )
    report.command = "seqrec " + " ".join(sys.argv[1:])
    console.print(_bench_table(report.rows, columns[:6], console))
    if report.rows:
        _cold_warning(report.rows[0].test.counts)
    paths = write_report(report, out_dir, name)
    console.print("report: " + ", ".join(map(str, paths)), markup=False, soft_wrap=True)
    return report


@app.command()
@user_errors
def bench(
    data: DataOpt,
    config: ConfigOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("benchmarks/results"),
    name: Annotated[str | None, typer.Option(help="Report name (default: config name).")] = None,
    models: Annotated[
        str, typer.Option(help="Comma-separated models to train.")
    ] = "gru,transformer,mlp",
    ablations: Annotated[
        str,
        typer.Option(
            help="Comma-separated ablations (id_only,text_only,image_only,concat,product,"
            "attention); '' for none."
        ),
    ] = "id_only,text_only,image_only,concat,product,attention",
    baselines: Annotated[bool, typer.Option(help="Run the baselines.")] = True,
    cache_dir: CacheOpt = None,
    set_: SetOpt = None,
):
    """Baselines, models and modality ablations on one split -> markdown, JSON and PNG report."""
    experiment = _experiment(config, _overrides(set_))
    _run_bench(
        experiment,
        data,
        out,
        name or experiment.name,
        [model for model in models.split(",") if model],
        [ablation for ablation in ablations.split(",") if ablation],
        cache_dir,
        baselines,
    )


@app.command()
@user_errors
def report(
    json_path: Annotated[
        Path, typer.Argument(help="A bench report's JSON file.", metavar="REPORT.json")
    ],
):
    """Render a bench report's markdown and chart again from its JSON; notes are kept."""
    from seqrec.report import rewrite_report

    paths = rewrite_report(json_path)
    console.print("report: " + ", ".join(map(str, paths)), markup=False, soft_wrap=True)


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Working folder.")] = Path("runs/demo"),
    cache_dir: CacheOpt = None,
):
    """Generate the demo shop, encode items, train GRU/transformer/MLP, compare to baselines."""
    from seqrec.config import load_config
    from seqrec.data.demo import DemoConfig, write_demo_shop

    shop = write_demo_shop(out / "shop", DemoConfig())
    console.print(f"demo shop written to {shop}", markup=False)
    config_path = Path(__file__).resolve().parent / "experiments" / "demo.toml"
    experiment = load_config(config_path) if config_path.exists() else _experiment(None, {})
    _run_bench(
        experiment,
        shop,
        out,
        "demo",
        ["gru", "transformer", "mlp"],
        [],
        cache_dir if cache_dir is not None else out / "cache",
    )


@app.command()
@user_errors
def tune(
    data: DataOpt,
    config: Annotated[
        Path, typer.Option("--config", help="Experiment TOML with a \\[tune] table.")
    ],
    trials: Annotated[
        int | None,
        typer.Option(help="Study total of complete + pruned trials, stored ones included."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna RDB URL or journal file (default OUT/study.journal)."),
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: config name).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes sharing the storage.")] = 1,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds after which no new trial starts.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Results folder (default runs/tune/NAME).")
    ] = None,
    save_best: Annotated[
        Path | None, typer.Option("--save-best", help="Also write the best config TOML here.")
    ] = None,
    cache_dir: CacheOpt = None,
    set_: SetOpt = None,
):
    """Optuna search over \\[tune.space]; started again, it continues the stored study."""
    from seqrec.tune import best_trials_table, run_study

    experiment = _experiment(config, _overrides(set_))
    result = run_study(
        experiment,
        data,
        n_trials=trials,
        storage=storage,
        study_name=study,
        workers=workers,
        timeout=timeout,
        out_dir=out,
        cache_dir=cache_dir,
        best_config_path=save_best,
        verbose=True,
    )
    if result.failed_on_start:
        console.print(f"trials of dead processes marked failed: {result.failed_on_start}")
    console.print(best_trials_table(result))
    console.print("written: " + ", ".join(str(path) for path in result.files), markup=False)


class Runtime(str, Enum):  # seqrec.serve.scoring.RUNTIMES
    auto = "auto"
    onnx = "onnx"
    torchscript = "torchscript"
    eager = "eager"


@app.command()
@user_errors
def serve(
    bundle: Annotated[Path, typer.Option("--bundle", help="Bundle folder from seqrec train.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(help="Server processes (each loads the bundle).", min=1)
    ] = 1,
    threads: Annotated[int, typer.Option(help="Torch threads per process.", min=1)] = 1,
    runtime: Annotated[
        Runtime,
        typer.Option(
            help="What computes the scores: auto tries ONNX Runtime, then a TorchScript trace; "
            "each is kept only if it agrees with the eager model (/health says which runs)."
        ),
    ] = Runtime.auto,
):
    """Serve recommendations over HTTP (FastAPI + uvicorn) with a demo shop page at /."""
    from seqrec.serve import ServeConfig, run_server

    config = ServeConfig(runtime=runtime.value)
    run_server(bundle, host=host, port=port, workers=workers, threads=threads, config=config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
