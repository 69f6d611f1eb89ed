"""The pieces every benchmark report shares: the command, machine and date of a run
(`run_facts` / `run_lines`; `machine` / `machine_facts` for the machine line alone),
`markdown_table` for tables, and `write_keeping_notes`, which keeps the notes a person adds below
`NOTES_MARKER` in a report's ``.md`` when it is written again. The bench report itself (its
document, markdown and chart) is `seqrec.bench_report`.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

# Everything above this line in a report's ``.md`` is generated; whatever a person adds below it
# is kept when the report is written again (a rerun, or `seqrec report`).
NOTES_MARKER = "<!-- notes below this line are kept when seqrec writes this report again -->"

# --- the machine line, tables and notes: shared by every report ---------------------------------


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo ({} where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model(detail: bool = False) -> str:
    """The processor's model name as /proc/cpuinfo gives it (else what `platform` knows); with
    ``detail``, also its cpu family and model numbers and whether it is a virtual machine."""
    fields = _cpuinfo()
    model = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    if detail and "cpu family" in fields:
        model += f" (cpu family {fields['cpu family']}, model {fields.get('model', '?')})"
    if detail and "hypervisor" in fields.get("flags", "").split():
        model += ", virtual machine"
    return model


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), not every core of the host."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_facts(detail: bool = False, **versions: str) -> dict:
    """``{"cpu", "cores", "python"}`` and each library version given, e.g. ``torch=...``."""
    return {
        "cpu": cpu_model(detail),
        "cores": usable_cores(),
        "python": platform.python_version(),
        **versions,
    }


def machine_line(facts: dict) -> str:
    """``"CPU, N cores, Python X"`` then ``", name version"`` for every other fact."""
    others = [f"{name} {value}" for name, value in facts.items() if name not in _BASE_FACTS]
    base = f"{facts['cpu']}, {facts['cores']} cores, Python {facts['python']}"
    return ", ".join([base, *others])


_BASE_FACTS = ("cpu", "cores", "python")


def machine(**versions: str) -> str:
    """The machine line of a report: processor, usable cores, Python, the versions given."""
    return machine_line(machine_facts(False, **versions))


@functools.cache
def code_version() -> str:
    """This seqrec: its package version and, when it runs from a git checkout of the project,
    the commit (``+changes`` when tracked files differ from it), read once per process (the
    code it runs). A bundle records it as the code that wrote it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        name = f"seqrec {version('seqrec')}"
    except PackageNotFoundError:
        name = "seqrec (not installed)"
    package = Path(__file__).resolve().parent
    top = _git(package, "rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != package.parent:  # not the project's own checkout
        return name
    commit = _git(package, "rev-parse", "HEAD")
    changed = _git(package, "status", "--porcelain", "--untracked-files=no")
    return f"{name} at {commit[:12]}{'+changes' if changed else ''}" if commit else name


def _git(where: Path, *args: str) -> str:
    """What ``git -C where args`` prints; empty when git is missing or fails."""
    try:
        done = subprocess.run(
            ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def utc_now() -> str:
    """The date and time a report gives: ``2026-12-04 04:14 UTC``."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def run_facts(**versions: str) -> dict[str, str]:
    """How this run's figures were made: the command as typed, the machine line (`machine`,
    with the versions given) and the date; `run_lines` writes them."""
    command = shlex.join(["python", *sys.argv])
    return {"command": command, "machine": machine(**versions), "date": utc_now()}


def run_lines(facts: dict[str, str]) -> list[str]:
    """A report's ``- command:``, ``- machine:`` and ``- date:`` lines (`run_facts`)."""
    return [
        f"- command: `{facts['command']}`",
        f"- machine: {facts['machine']}",
        f"- date: {facts['date']}",
    ]


def markdown_table(header: Sequence[str], rows: Iterable[Iterable[object]]) -> list[str]:
    """A markdown table's lines: the header, its rule, one line per row (each cell as str)."""
    return [_table_line(header), "|" + "---|" * len(header), *map(_table_line, rows)]


def _table_line(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def write_keeping_notes(path: Path, generated: str) -> None:
    """Write ``generated``, then `NOTES_MARKER` and what a person wrote below the marker of the
    file already at ``path``. A file there without the marker is moved to ``<name>.bak``
    first: without it, generated and hand-written text cannot be told apart."""
    notes = NOTES_MARKER + "\n"
    if path.is_file():
        previous = path.read_text()
        if (at := previous.find(NOTES_MARKER)) >= 0:
            notes = previous[at:]
        else:
            backup = path.with_name(f"{path.name}.bak")
            path.replace(backup)
            log.warning("%s had no notes marker; the previous file is kept as %s", path, backup)
    path.write_text(generated + "\n" + notes)
