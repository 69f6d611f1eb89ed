"""Progress: plain lines with the clock and memory when standard error is not a terminal."""

import re

import numpy as np
import pytest

import seqrec.progress as progress
from seqrec.models.affinity import neighbour_graph, unit_rows

LINE = re.compile(r"^\[ *\d+\.\d s, *\d+\.\d GB\] ")


@pytest.fixture(autouse=True)
def every_stage_speaks(monkeypatch):
    """Stages here are short: let them write as long ones do."""
    monkeypatch.setattr(progress, "QUIET", 0.0)


def test_a_short_stage_writes_nothing(capsys, monkeypatch):
    monkeypatch.setattr(progress, "QUIET", 60.0)
    assert list(progress.track(range(3), "evaluate valid", unit="batches")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_a_stage_writes_a_start_and_an_end_line(capsys):
    with progress.stage("neighbour graph text", total=105_542, unit="items") as advance:
        advance(10)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(LINE.match(text) for text in lines)
    assert lines[0].endswith("neighbour graph text: 105,542 items")
    assert re.search(r"neighbour graph text: done in \d+\.\d s$", lines[1])


def test_a_running_stage_says_how_far_it_is(capsys, monkeypatch):
    monkeypatch.setattr(progress, "EVERY", 0.0)
    assert list(progress.track(range(3), "epoch 1", unit="batches")) == [0, 1, 2]
    lines = capsys.readouterr().err.splitlines()
    assert [LINE.sub("", text) for text in lines[1:-1]] == [
        "epoch 1: 1 / 3 batches",
        "epoch 1: 2 / 3 batches",
        "epoch 1: 3 / 3 batches",
    ]


def test_a_hidden_stage_writes_nothing(capsys):
    assert list(progress.track([1, 2], "epoch 1", show=False)) == [1, 2]
    assert capsys.readouterr().err == ""


def test_in_a_terminal_stages_go_to_the_attached_bar(capsys, monkeypatch):
    class Bar:
        def __init__(self):
            self.tasks, self.done = [], {}

        def add_task(self, description, total=None):
            self.tasks.append((description, total))
            return len(self.tasks) - 1

        def advance(self, task, count):
            self.done[task] = self.done.get(task, 0) + count

        def update(self, task, **changes):
            pass

    monkeypatch.setattr(progress, "interactive", lambda: True)
    bar = Bar()
    with progress.attach(bar):
        list(progress.track(range(4), "evaluate valid"))
    assert bar.tasks == [("evaluate valid", 4)] and bar.done == {0: 4}
    assert capsys.readouterr().err == ""


def test_the_neighbour_graph_reports_its_stage(capsys):
    content = unit_rows(np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32))
    neighbour_graph(content, 5, name="text")
    err = capsys.readouterr().err
    assert "neighbour graph text: 40 items" in err and "neighbour graph text: done in" in err


def test_an_encoder_task_writes_lines_when_not_in_a_terminal(capsys, monkeypatch):
    from rich.progress import Progress

    from seqrec.features.cache import progress_task

    monkeypatch.setattr(progress, "EVERY", 0.0)
    with Progress(disable=True) as bar:  # a command's bar: drawn to a file, shown at its end
        advance = progress_task(bar, "images (efficientnet_lite0)", 5)
        advance(2)
        advance(3)
    assert bar.tasks[0].completed == 5 and bar.tasks[0].finished  # the bar has the task too
    lines = [LINE.sub("", text) for text in capsys.readouterr().err.splitlines()]
    assert lines[:3] == [
        "images (efficientnet_lite0): 5 items",
        "images (efficientnet_lite0): 2 / 5 items",
        "images (efficientnet_lite0): 5 / 5 items",
    ]
    assert re.fullmatch(r"images \(efficientnet_lite0\): done in \d+\.\d s", lines[3])
    assert progress_task(None, "images", 5)(5) is None and capsys.readouterr().err == ""
