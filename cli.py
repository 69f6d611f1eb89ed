"""The `seqrec` command line: maps flags to config and calls the package. Nothing else lives here.

Raw data to a served recommendation, in order: `seqrec data stats` (load and validate),
`seqrec encode` (item features), `seqrec train` (sequence model -> bundle), `seqrec eval`,
`seqrec bench` (baselines and ablations), `seqrec tune` (Optuna), `seqrec serve` (HTTP). Each
command calls one function of `seqrec` (most of `seqrec.experiment`) and prints with
`seqrec.console`. Choice values given to flags may be spelled with ``-`` or ``_``, as in config;
how flag values become config is `seqrec.cli_flags`.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from seqrec import console as show
from seqrec.cli_flags import (
    BundleOpt,
    CacheOpt,
    ConfigOpt,
    DataOpt,
    ServeSetOpt,
    SetOpt,
    UsersOpt,
    choice,
    experiment_config,
    launch_ranks,
    names_of,
    overrides,
    serve_config,
    tower_folder,
    user_errors,
)

app = typer.Typer(
    help="seqrec: multimodal sequential recommender for fashion shops.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Load, check and generate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
_bench_table = show.bench_table  # the name tests/test_bench.py imports


# --- commands --------------------------------------------------------------------------------


@data_app.command("stats")
@user_errors
def data_stats(
    path: Annotated[Path, typer.Argument(help="Dataset folder or file.")],
    format: Annotated[
        str | None, typer.Option(help="hm | sasrec | generic (default: detect).")
    ] = None,
    on_error: Annotated[
        str, typer.Option(help="skip (count and drop) | fail (stop) on bad rows.")
    ] = "skip",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the stats here.")] = None,
):
    """Users, items, interactions, images, date range and every kind of rejected row."""
    from seqrec.data.load import FORMATS, ON_ERROR, load_dataset

    format = choice("--format", format, FORMATS)
    dataset = load_dataset(path, format=format, on_error=choice("--on-error", on_error, ON_ERROR))
    stats = dataset.stats()
    console.print(show.stats_table(f"{path} ({stats['format']})", stats))
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
    purchases: Annotated[
        int | None,
        typer.Option(
            help="Write an H&M-layout shop with this many purchases instead (sizes of the full "
            "download: --users 1371980 --items 105542 --purchases 31788324)."
        ),
    ] = None,
    no_images: Annotated[
        bool, typer.Option("--no-images", help="H&M layout: write no product pictures.")
    ] = False,
):
    """Write the synthetic demo shop (generic layout: CSVs, images, seqrec.toml), or with
    --purchases a shop of any size in the H&M layout (for measuring costs)."""
    from seqrec.constraints import ConfigError  # not seqrec.config, which imports torch
    from seqrec.data.demo import DemoConfig, write_demo_shop
    from seqrec.data.demo_scale import ScaleConfig, write_hm_shop

    for flag, value in (("--items", items), ("--users", users), ("--purchases", purchases)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if purchases is None and no_images:
        raise ConfigError("--no-images applies to the H&M-layout shop: add --purchases N")
    if purchases is None:
        path = write_demo_shop(out, DemoConfig(seed=seed, n_items=items, n_users=users))
    else:
        config = ScaleConfig(users, items, purchases, seed=seed, images=not no_images)
        path = write_hm_shop(out, config)
    console.print(f"demo shop written to [bold]{escape(str(path))}[/]")


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
    from seqrec.experiment import run_encode

    launch_ranks(nproc, Path(__file__))
    experiment = experiment_config(config, overrides(set_))

    def shard_done(rank: int, report) -> None:
        console.print(f"rank {rank}: {report.summary()}", markup=False)

    built = run_encode(experiment, data, cache_dir, show.progress(console), on_shard=shard_done)
    if built is not None:  # None: a rank other than 0
        for line in built.report.lines():
            console.print(line, markup=False)


@app.command("finetune-images")
@user_errors
def finetune_images(
    data: DataOpt,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for the tuned image tower (default: features.image.finetune.weights).",
        ),
    ] = None,
    config: ConfigOpt = None,
    cache_dir: CacheOpt = None,
    set_: SetOpt = None,
):
    """Fine-tune the image backbone on the catalogue ([features.image.finetune]) and re-encode it.

    A config whose features.image.finetune.weights names OUT then trains, benches and encodes
    with the tuned tower (or --set features.image.finetune.weights=OUT).
    """
    from seqrec.experiment import load_data
    from seqrec.features.finetune import finetune_images as run_finetune

    experiment = experiment_config(config, overrides(set_))
    if out is None:
        out = tower_folder(experiment.features.image.finetune.weights)
    dataset = load_data(experiment, data)
    with show.progress(console) as bar:
        report = run_finetune(
            dataset, experiment.features.image, experiment.split, out, cache_dir, progress=bar
        )
    for line in report.lines():
        console.print(line, markup=False)
    show.written(console, "tuned image tower", [Path(report.weights)])


@app.command()
@user_errors
def train(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write.")],
    config: ConfigOpt = None,
    model: Annotated[str | None, typer.Option(help="gru | transformer | mlp")] = None,
    loss: Annotated[
        str | None, typer.Option(help="auto | bce | sampled_softmax | ce | gbce")
    ] = None,
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
    from seqrec.experiment import run_train

    launch_ranks(nproc, Path(__file__))
    flags = dict(model__model=model, train__loss=loss, train__epochs=epochs, train__seed=seed)
    flags.update(train__device=device, model__item_net__fusion=fusion)
    experiment = experiment_config(config, overrides(set_, **flags))
    _restart_or_resume(out, restart)
    with show.progress(console) as bar:
        outcome = run_train(
            experiment, data, out, cache_dir, progress=bar, on_epoch=show.epoch_printer(console)
        )
    if outcome.test is not None:  # None: a rank other than 0 (rank 0 reports)
        show.train_summary(console, outcome)


def _restart_or_resume(out: Path, restart: bool) -> None:
    """--restart: remove OUT's checkpoints (every rank, before any trains); say what happens."""
    from seqrec import distributed
    from seqrec.checkpoint import remove_checkpoints

    removed = remove_checkpoints(out) if restart else []
    if removed and distributed.is_main():
        names = ", ".join(str(path) for path in removed)
        console.print(f"--restart: removed {names}; training from scratch", markup=False)
    elif (out / "checkpoint.pt").exists() and distributed.is_main():
        console.print(f"resuming from {out / 'checkpoint.pt'}", markup=False)


@app.command("eval")
@user_errors
def eval_(
    bundle: BundleOpt,
    data: DataOpt,
    split: Annotated[
        str | None,
        typer.Option(
            help="leave_last_out | leave_last_basket_out | temporal (default: the bundle's)."
        ),
    ] = None,
    stage: Annotated[str, typer.Option(help="test | valid: the held-out part to rank.")] = "test",
    remove_seen: Annotated[
        bool | None, typer.Option(help="Remove history items (default: the bundle's protocol).")
    ] = None,
    users: UsersOpt = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write metrics here.")] = None,
    cache_dir: CacheOpt = None,
):
    """Evaluate a bundle on a dataset sharing its item ids; new items are encoded from content."""
    from seqrec.data.split import METHODS
    from seqrec.experiment import STAGES, run_eval

    stage = choice("--stage", stage, STAGES)
    split = choice("--split", split, METHODS)
    outcome = run_eval(bundle, data, stage, split, remove_seen, cache_dir, users)
    show.eval_summary(console, outcome, stage)
    if json_path is not None:
        json_path.write_text(json.dumps(outcome.result.metrics, indent=2))


def _run_bench(experiment, data, out_dir, name, models, ablations, cache_dir, baselines=True):
    """`seqrec bench` and `seqrec demo`: check the runs, encode, run, print, write the report."""
    from seqrec.bench import check_runs, run_bench
    from seqrec.bench_report import table_columns, write_report
    from seqrec.experiment import prepare

    check_runs(models, ablations)  # before the features are encoded
    with show.progress(console) as bar:
        prepared = prepare(experiment, data, cache_dir=cache_dir, progress=bar)
    columns = table_columns(experiment.eval.ks)
    report = run_bench(
        experiment,
        prepared,
        models=models,
        ablations=ablations,
        include_baselines=baselines,
        on_row=lambda row: console.print(show.bench_row_line(row, columns[:4])),
        on_epoch=lambda label, row: show.epoch_printer(console, f"  {label}: ")(row),
        cache_dir=cache_dir,
    )
    report.command = shlex.join(["seqrec", *sys.argv[1:]])
    show.bench_summary(console, report.rows, columns[:6])
    show.written(console, "report", write_report(report, out_dir, name))
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
    from seqrec.bench import ABLATIONS
    from seqrec.models.recommender import BACKBONES

    experiment = experiment_config(config, overrides(set_))
    runs = names_of(models, BACKBONES), names_of(ablations, ABLATIONS)
    _run_bench(experiment, data, out, name or experiment.name, *runs, cache_dir, baselines)


@app.command()
@user_errors
def report(
    json_path: Annotated[
        Path, typer.Argument(help="A bench report's JSON file.", metavar="REPORT.json")
    ],
):
    """Render a bench report's markdown and chart again from its JSON; notes are kept."""
    from seqrec.bench_report import rewrite_report

    show.written(console, "report", rewrite_report(json_path))


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Working folder.")] = Path("runs/demo"),
    cache_dir: CacheOpt = None,
):
    """Generate the demo shop, encode items, train GRU/transformer/MLP, compare to baselines."""
    from seqrec.data.demo import DemoConfig, write_demo_shop
    from seqrec.experiment import demo_config

    shop = write_demo_shop(out / "shop", DemoConfig())
    console.print(f"demo shop written to {shop}", markup=False)
    cache_dir = cache_dir if cache_dir is not None else out / "cache"
    _run_bench(demo_config(), shop, out, "demo", ["gru", "transformer", "mlp"], [], cache_dir)


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
    from seqrec.tune import StudyOptions, best_trials_table, run_study

    experiment = experiment_config(config, overrides(set_))
    options = StudyOptions(
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
    result = run_study(experiment, data, options)
    if result.failed_on_start:
        console.print(f"trials of dead processes marked failed: {result.failed_on_start}")
    console.print(best_trials_table(result))
    show.written(console, "written", result.files)


@app.command()
@user_errors
def serve(
    bundle: BundleOpt,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(help="Server processes (each loads the bundle).", min=1)
    ] = 1,
    threads: Annotated[int, typer.Option(help="Torch threads per process.", min=1)] = 1,
    runtime: Annotated[
        str,
        typer.Option(
            help="auto | onnx | torchscript | eager: what computes the scores; auto tries ONNX "
            "Runtime, then a TorchScript trace, each kept only if it agrees with the eager "
            "model (/health says which runs)."
        ),
    ] = "auto",
    db: Annotated[
        str | None,
        typer.Option(
            help="The shop's event database: an SQLite file path or any SQLAlchemy URL "
            "(postgresql://...); default: <bundle name>.events.db next to the bundle."
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the bearer token of the write endpoints (POST /events, ...); "
            "default: $SEQREC_SERVE_TOKEN. Without either, writes are refused."
        ),
    ] = None,
    set_: ServeSetOpt = None,
):
    """Serve recommendations over HTTP (FastAPI + uvicorn) with a demo shop page at /."""
    from seqrec.serve import run_server
    from seqrec.serve.scoring import RUNTIMES

    runtime = choice("--runtime", runtime, RUNTIMES)
    config = serve_config(set_, runtime=runtime, db=db, token_file=token_file)
    run_server(bundle, host=host, port=port, workers=workers, threads=threads, config=config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
