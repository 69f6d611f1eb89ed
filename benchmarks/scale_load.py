"""Cost of generating and loading H&M-layout shops at 1%, 10% and 100% of H&M's size.

For each size it writes (once, cached outside the repository) a synthetic shop with
``seqrec data demo --purchases P --no-images`` and measures, each in its own process: the
generation (wall seconds, CPU seconds, peak resident memory) and ``seqrec data stats`` on it,
which reads and validates the whole shop. The report (markdown + json + a log-log plot of time
and peak memory against purchases) goes to ``benchmarks/results/scale_load.*``.

    python benchmarks/scale_load.py                     # 1%, 10% and 100%
    python benchmarks/scale_load.py --sizes 0.01,0.1    # a quicker look

The pieces are reusable: ``benchmarks/scale.py`` can call `hm_shop` for the shops, `measure`
for any other step's command (encode, train, eval, serve) and `write_report` with more steps.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seqrec.data.demo_scale import HM_SIZE  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "seqrec_scale_shops"
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Cost:
    """One step run once in its own process."""

    step: str
    fraction: float
    purchases: int
    seconds: float  # wall clock
    cpu_seconds: float  # user + system of the process and its children
    peak_rss_gb: float  # the process's peak resident memory (GB, 10^9 bytes)
    command: str


def seqrec_command(*args: str) -> list[str]:
    """The ``seqrec`` command line run from this checkout."""
    return [sys.executable, "cli.py", *args]


def measure(step: str, fraction: float, command: list[str], log: Path | None = None) -> Cost:
    """Run ``command`` alone in a child process; its wall time, CPU time and peak memory."""
    start = time.perf_counter()
    with open(log or os.devnull, "w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{step} failed ({shlex.join(command)}); see {log}")
    return Cost(
        step=step,
        fraction=fraction,
        purchases=sizes(fraction)["purchases"],
        seconds=round(seconds, 2),
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 2),
        peak_rss_gb=round(usage.ru_maxrss * 1024 / 1e9, 3),  # ru_maxrss is in KiB on Linux
        command=shlex.join(["python", *command[1:]]),
    )


def sizes(fraction: float) -> dict[str, int]:
    """Users, items and purchases at ``fraction`` of H&M's size."""
    return {key: max(1, round(value * fraction)) for key, value in HM_SIZE.items()}


def hm_shop(fraction: float, cache: Path = CACHE) -> tuple[Path, Cost]:
    """The shop at ``fraction`` of H&M's size, written once under ``cache``; with the cost of
    writing it (measured then, and kept beside it)."""
    n = sizes(fraction)
    folder = cache / f"hm_{n['users']}u_{n['items']}i_{n['purchases']}p"
    record = folder / "generate_cost.json"
    if record.is_file():
        return folder, Cost(**json.loads(record.read_text()))
    args = ["data", "demo", "--out", str(folder), "--users", str(n["users"])]
    args += ["--items", str(n["items"]), "--purchases", str(n["purchases"]), "--no-images"]
    folder.mkdir(parents=True, exist_ok=True)
    cost = measure("generate", fraction, seqrec_command(*args), folder / "generate.log")
    record.write_text(json.dumps(asdict(cost), indent=2))
    return folder, cost


def load_cost(fraction: float, shop: Path) -> Cost:
    stats = shop / "stats.json"
    command = seqrec_command("data", "stats", str(shop), "--json", str(stats))
    return measure("load (seqrec data stats)", fraction, command, shop / "stats.log")


def machine() -> dict[str, object]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def write_report(costs: list[Cost], name: str, title: str, notes: list[str]) -> Path:
    """``<name>.json``, ``<name>.md`` and ``<name>.png`` (log-log) in benchmarks/results."""
    report = {
        "title": title,
        "command": shlex.join(["python", *sys.argv]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "hm_size": HM_SIZE,
        "notes": notes,
        "costs": [asdict(cost) for cost in costs],
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(costs, RESULTS / f"{name}.png", title)
    (RESULTS / f"{name}.md").write_text(_markdown(report, f"{name}.png"))
    return RESULTS / f"{name}.md"


def _markdown(report: dict, plot: str) -> str:
    where = report["machine"]
    lines = [
        f"# {report['title']}",
        "",
        f"- command: `{report['command']}`",
        f"- date: {report['date']}",
        f"- machine: {where['cpu']}, {where['cores']} cores, python {where['python']}; "
        f"load average at the end {where['load_average']} (other processes share these cores)",
        f"- sizes are fractions of H&M's: {HM_SIZE['users']:,} customers, "
        f"{HM_SIZE['items']:,} articles, {HM_SIZE['purchases']:,} purchases",
        *(f"- {note}" for note in report["notes"]),
        "",
        "| step | size | purchases | seconds | CPU seconds | peak RSS (GB) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for cost in report["costs"]:
        lines.append(
            f"| {cost['step']} | {cost['fraction'] * 100:g}% | {cost['purchases']:,} | "
            f"{cost['seconds']:.1f} | {cost['cpu_seconds']:.1f} | {cost['peak_rss_gb']:.2f} |"
        )
    lines += ["", "Commands:", ""]
    lines += [f"- `{cost['command']}`" for cost in report["costs"]]
    return "\n".join([*lines, "", f"![time and memory against size]({plot})", ""])


def _plot(costs: list[Cost], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for step in dict.fromkeys(cost.step for cost in costs):
        points = sorted((c.purchases, c.seconds, c.peak_rss_gb) for c in costs if c.step == step)
        x = [p[0] for p in points]
        left.plot(x, [p[1] for p in points], marker="o", label=step)
        right.plot(x, [p[2] for p in points], marker="o", label=step)
    for axes, label in ((left, "seconds (wall)"), (right, "peak RSS (GB)")):
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("purchases")
        axes.set_ylabel(label)
        axes.grid(True, which="both", alpha=0.3)
    left.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0.01,0.1,1", help="fractions of H&M's size")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the shops are kept")
    parser.add_argument("--name", default="scale_load", help="report name in results/")
    args = parser.parse_args()
    costs = []
    for fraction in (float(x) for x in args.sizes.split(",")):
        shop, generated = hm_shop(fraction, args.cache)
        costs += [generated, load_cost(fraction, shop)]
        print(costs[-2], costs[-1], sep="\n", flush=True)
    notes = [
        "each step ran once, alone in its own process; generation is measured when a shop is "
        f"first written and kept beside it in {args.cache}",
        "goal at 100%: load in 60 s or less and 3 GB or less peak RSS, on 2 cores",
    ]
    print(write_report(costs, args.name, "Generating and loading H&M-size shops", notes))


if __name__ == "__main__":
    main()
