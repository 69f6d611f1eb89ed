"""What the command line prints: rich tables, progress bars and one-line summaries.

`cli.py` maps flags to the package and prints with these; nothing here computes a figure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from seqrec.progress import attach

# the metrics a person reads first: no per-group breakdown except cold recall
HEADLINE = ("ndcg@", "hr@", "recall@", "map@", "mrr", "cold:recall@")


class CommandProgress(Progress):
    """A command's progress bar: while entered, the long steps' stages (`seqrec.progress`) add
    their tasks to it rather than starting a second live display."""

    def __enter__(self) -> CommandProgress:
        super().__enter__()
        self._attached = attach(self)
        self._attached.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._attached.__exit__(*exc)
        super().__exit__(*exc)


def progress(console: Console) -> CommandProgress:
    return CommandProgress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def epoch_printer(console: Console, label: str = "") -> Callable[[dict], None]:
    """An ``on_epoch`` callback printing one line per epoch: loss, speed, validation figures."""

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


def metrics_table(title: str, metrics: dict, ci: dict | None = None) -> Table:
    """The headline metrics with their 95% CIs (the JSON and the report have them all)."""
    metrics = {name: value for name, value in metrics.items() if name.startswith(HEADLINE)}
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    for name, value in metrics.items():
        low, high = (ci or {}).get(name, (None, None))
        interval = "" if low is None else f"[{low:.4f}, {high:.4f}]"
        table.add_row(name, f"{value:.4f}", interval)
    return table


def cold_warning(out: Console, counts: dict) -> None:
    """Warn when the cold test targets give themselves away (`seqrec.evaluate.cold_items_note`)."""
    from seqrec.evaluate import cold_items_note

    if note := cold_items_note(counts):
        out.print(f"[yellow]warning:[/] {escape(note)}")


def written(out: Console, what: str, paths: Iterable[Path]) -> None:
    """``what: path, path, ...`` on one line, never wrapped inside a path."""
    out.print(f"{what}: " + ", ".join(map(str, paths)), markup=False, soft_wrap=True)


def train_summary(out: Console, outcome: Any) -> None:
    """What `seqrec train` ends with: validation and test figures, the bundle's folder."""
    ranker = getattr(outcome, "ranker", None) is not None
    valid_title = "validation (chosen epoch)"
    test_title = "test" if outcome.refit is None else "test (model refit on train + valid)"
    if ranker:  # the figures are the two-stage ranker's; the model's own are in metrics.json
        valid_title = "validation: two-stage ranker (its early-stopping set)"
        test_title = "test: two-stage ranker"
    out.print(metrics_table(valid_title, outcome.valid.metrics))
    out.print(metrics_table(test_title, outcome.test.metrics, outcome.test.ci))
    cold_warning(out, outcome.test.counts)
    out.print(f"bundle written to [bold]{escape(str(outcome.bundle))}[/]")


def eval_summary(out: Console, outcome: Any, stage: str) -> None:
    """What `seqrec eval` ends with (a `seqrec.experiment.EvalOutcome`): the figures with
    their CIs, and what to keep in mind reading them."""
    if outcome.new_items:
        out.print(
            f"{outcome.new_items:,} items unknown to the bundle were encoded from their content"
        )
    if outcome.refit:
        out.print(
            "[yellow]warning:[/] this bundle's model was refit on train + valid, so its "
            "validation figures are not held-out figures"
        )
    result = outcome.result
    out.print(metrics_table(f"{stage} ({outcome.users:,} users)", result.metrics, result.ci))
    cold_warning(out, result.counts)


def stats_table(title: str, stats: dict) -> Table:
    """`seqrec data stats`: one row per count; malformed lines as ``file: line, line, ...``."""
    table = Table(title=title)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in stats.items():
        if isinstance(value, dict):  # malformed_lines: file -> line numbers of malformed rows
            value = "; ".join(
                f"{name}: {', '.join(map(str, lines[:10]))}{', ...' if len(lines) > 10 else ''}"
                for name, lines in value.items()
            )
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    return table


def bench_row_line(row, columns: Sequence[str]) -> str:
    """One ranker's line as `seqrec bench` finishes it (markup: the name in bold)."""
    figures = "  ".join(f"{c} {row.test.metrics[c]:.4f}" for c in columns)
    return f"[bold]{escape(row.name)}[/] ({row.kind}, {row.seconds:.0f}s): {figures}"


def bench_table(rows, columns: Sequence[str], out: Console) -> Table:
    """The closing table of `seqrec bench` and `seqrec demo`: the first metric columns that fit
    ``out``'s width with every figure whole (ranker names wrap); the report has them all."""
    unbounded = out.options.update_width(10_000)  # measure the table's own minimum width
    count = len(columns)
    table = _bench_table_of(rows, columns)
    while count > 1 and Measurement.get(out, unbounded, table).minimum > out.width:
        count -= 1
        table = _bench_table_of(rows, columns[:count])
    if count < len(columns):
        table.caption = f"{', '.join(columns[count:])}: in the report"
    return table


def bench_summary(out: Console, rows: Sequence, columns: Sequence[str]) -> None:
    """What `seqrec bench` and `seqrec demo` end with: the closing table (`bench_table`) and
    the cold-target warning."""
    out.print(bench_table(rows, columns, out))
    if rows:
        cold_warning(out, rows[0].test.counts)


def _bench_table_of(rows, columns: Sequence[str]) -> Table:
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
