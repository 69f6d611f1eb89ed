"""How the command line's flags become config (`cli.py` declares the commands): the shared
option types, flag values checked like config values (either spelling of a choice), ``--set``
overrides, and user errors printed as one message without a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

err_console = Console(stderr=True)

DataOpt = Annotated[
    Path, typer.Option("--data", help="Dataset folder or file (hm, sasrec, generic).")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Experiment TOML (see experiments/).")
]
CacheOpt = Annotated[
    Path | None, typer.Option("--cache-dir", help="Feature cache (default ~/.cache/seqrec).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any config key: --set model.dim=128 (TOML value)."),
]
BundleOpt = Annotated[Path, typer.Option("--bundle", help="Bundle folder from seqrec train.")]
UsersOpt = Annotated[
    int | None,
    typer.Option(
        help="Rank a seeded sample of this many users (0: all; default: the config's eval.users).",
        min=0,
    ),
]
ServeSetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Any seqrec.serve.ServeConfig key: --set event_window_days=30 (TOML value)."
    ),
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


def experiment_config(config: Path | None, values: dict):
    """The experiment TOML at ``config`` (the defaults without one) with ``values`` set."""
    from seqrec.config import apply_overrides, load_config

    return apply_overrides(load_config(config), values)


def overrides(pairs: list[str] | None, **flags) -> dict:
    """Flag values keyed by dotted config path, plus --set KEY=VALUE pairs (values as TOML)."""
    from seqrec.config import parse_set

    values = {key.replace("__", "."): value for key, value in flags.items()}
    values.update(parse_set(pairs or []))
    return values


def serve_config(pairs: list[str] | None, **flags):
    """The service's settings (`seqrec.serve.ServeConfig`): ``--set KEY=VALUE`` pairs and the
    flags given (None: not given), checked like a config table named ``serve``."""
    from seqrec.config import parse_set
    from seqrec.constraints import build_section
    from seqrec.serve.schemas import ServeConfig

    values = parse_set(pairs or [])
    values.update({key: str(value) for key, value in flags.items() if value is not None})
    return build_section(ServeConfig, values, "serve")


def choice(flag: str, value: str | None, allowed: Sequence[str]) -> str | None:
    """A flag's value in its declared spelling (``-`` and ``_`` alike), or a `ConfigError`
    naming the flag: the check config choice values get (`seqrec.constraints`)."""
    from seqrec.constraints import check_value

    return None if value is None else check_value(value, {"choices": tuple(allowed)}, flag)


def names_of(text: str, allowed: Sequence[str]) -> list[str]:
    """A comma-separated flag's names, each in its declared spelling where it is one; unknown
    names are kept as given, for `seqrec.bench.check_runs` to name together."""
    from seqrec.config import ConfigError

    names: list[str] = []
    for name in filter(None, text.split(",")):
        try:
            names.append(choice("", name, allowed) or name)
        except ConfigError:
            names.append(name)
    return names


def tower_folder(weights: str | None) -> Path:
    """Where a config's ``features.image.finetune.weights`` (a folder or its tower file) is."""
    from seqrec.config import ConfigError

    if weights is None:
        raise ConfigError("give --out DIR, or set features.image.finetune.weights in the config")
    path = Path(weights).expanduser()
    return path.parent if path.suffix == ".safetensors" else path


def launch_ranks(nproc: int, script: Path) -> None:
    """With ``--nproc N`` (N > 1) outside torchrun: run this command of ``script`` (the CLI)
    without --nproc in N local ranks (torchrun), then exit with their status."""
    from seqrec import distributed

    if nproc <= 1 or distributed.launched_by_torchrun():
        return
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    raise typer.Exit(distributed.launch(nproc, str(script.resolve()), args))
