"""What `seqrec train` prints at the end (`seqrec.console.train_summary`)."""

from io import StringIO
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from seqrec.console import train_summary


def _outcome(ranker):
    figures = SimpleNamespace(metrics={"ndcg@10": 0.1}, ci={}, counts={})
    return SimpleNamespace(
        valid=figures, test=figures, refit=None, ranker=ranker, bundle=Path("runs/x")
    )


def _printed(outcome) -> str:
    out = Console(file=StringIO(), width=200)
    train_summary(out, outcome)
    return " ".join(out.file.getvalue().split())  # titles wrap at the table's width


def test_train_summary_names_the_ranker_when_its_figures_are_shown():
    printed = _printed(_outcome(ranker=object()))
    assert "test: two-stage ranker" in printed
    assert "validation: two-stage ranker (its early-stopping set)" in printed


def test_train_summary_of_a_sequence_model_keeps_its_titles():
    printed = _printed(_outcome(ranker=None))
    assert "validation (chosen epoch)" in printed and "two-stage" not in printed


def test_a_command_bar_takes_the_stages_of_the_steps_it_runs(monkeypatch):
    import seqrec.progress as progress
    from seqrec.console import progress as command_progress

    monkeypatch.setattr(progress, "interactive", lambda: True)
    with command_progress(Console(file=StringIO())) as bar:
        list(progress.track(range(3), "evaluate valid"))
        assert [task.description for task in bar.tasks] == ["evaluate valid"]
    assert progress._bars == []
