"""Encoding product pictures at H&M's catalogue size: `seqrec encode` with images for 1%, 10%
and 100% of H&M's 105,542 articles, and an encoding stopped and resumed (a script, not a test).

For each size it writes once, under the scale shops' cache, an H&M-layout shop whose catalogue
is that fraction of H&M's articles with one synthetic picture per article (``seqrec data demo
--purchases P``, pictures on; a few shoppers and purchases, since only the catalogue is
encoded), then measures ``seqrec encode --set features.use_text=false`` into an empty feature
cache, in its own process: every picture read, decoded, padded to 224 x 224 and run through
EfficientNet-Lite0 (the default image settings of ``experiments/hm.toml``).

At ``--resume-size`` it also kills an encoding (SIGKILL) after ``--resume-after`` of that
size's full run time, counts the pictures its cache already holds, and measures the run that
completes the encoding from there. Report: ``benchmarks/results/scale_images.{md,json}``.

    python benchmarks/scale_images.py                         # 1%, 10% and 100%
    python benchmarks/scale_images.py --sizes 0.01,0.1        # a quicker look
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale_load import CACHE, RESULTS, Cost, machine, measure, seqrec_command  # noqa: E402

from seqrec.data.demo_scale import HM_SIZE  # noqa: E402
from seqrec.report import markdown_table  # noqa: E402

EXPERIMENT = ROOT / "experiments" / "hm.toml"
SHOPPERS_PER_ITEM = 0.1  # the shop's shoppers and purchases: enough for a valid shop
PURCHASES_PER_ITEM = 2


def shop_purchases(fraction: float) -> int:
    return max(1, round(HM_SIZE["items"] * fraction)) * PURCHASES_PER_ITEM


def image_shop(fraction: float, cache: Path) -> tuple[Path, Cost | None]:
    """The shop with pictures at ``fraction`` of H&M's catalogue; the cost of writing it when
    it was written now (None when it was there)."""
    items = max(1, round(HM_SIZE["items"] * fraction))
    users, purchases = max(10, round(items * SHOPPERS_PER_ITEM)), shop_purchases(fraction)
    folder = cache / f"hm_images_{items}i"
    if (folder / "done").is_file():
        return folder, None
    command = seqrec_command("data", "demo", "--out", str(folder), "--users", str(users),
                             "--items", str(items), "--purchases", str(purchases))  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    cost = measure("generate (pictures)", fraction, command, folder.parent / f"{folder.name}.log")
    cost = replace(cost, purchases=purchases)
    (folder / "done").write_text(json.dumps(asdict(cost)))
    return folder, cost


def encode_command(shop: Path, features: Path) -> list[str]:
    args = ["encode", "--data", str(shop), "--config", str(EXPERIMENT)]
    return seqrec_command(*args, "--cache-dir", str(features), "--set", "features.use_text=false")


def cached_pictures(features: Path) -> int:
    """Picture vectors the feature cache holds (every image namespace together)."""
    from seqrec.features.cache import VectorCache

    folders = [path for path in features.glob("image-*") if path.is_dir()]
    return sum(len(VectorCache(features, folder.name)) for folder in folders)


def encode(fraction: float, shop: Path, work: Path) -> tuple[Cost, int]:
    """``seqrec encode`` of the shop's pictures into an empty cache; the cost, pictures cached."""
    features = work / "features"
    shutil.rmtree(features, ignore_errors=True)
    cost = measure("encode pictures", fraction, encode_command(shop, features), work / "encode.log")
    return replace(cost, purchases=shop_purchases(fraction)), cached_pictures(features)


def resumed(fraction: float, shop: Path, work: Path, after_s: float) -> dict:
    """An encoding killed after ``after_s`` seconds, then run again to the end."""
    features = work / "features_resumed"
    shutil.rmtree(features, ignore_errors=True)
    with open(work / "killed.log", "w") as log:
        child = subprocess.Popen(encode_command(shop, features), stdout=log,
                                 stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip
        time.sleep(after_s)
        child.kill()
        child.wait()
    before = cached_pictures(features)
    cost = measure("encode pictures, resumed", fraction, encode_command(shop, features),
                   work / "resumed.log")  # fmt: skip
    cost = replace(cost, purchases=shop_purchases(fraction))
    return {"killed_after_s": round(after_s, 1), "cached_when_killed": before,
            "cost": asdict(cost), "cached_at_end": cached_pictures(features)}  # fmt: skip


def markdown(runs: list[dict], resume: dict | None) -> str:
    rows = []
    for run in runs:
        cost, items = run["encode"], run["items"]
        rows.append([f"{run['fraction'] * 100:g}%", f"{items:,}", f"{run['cached']:,}",
                     f"{cost['seconds']:.1f}", f"{cost['cpu_seconds']:.1f}",
                     f"{cost['peak_rss_gb']:.2f}", f"{items / cost['seconds']:.1f}"])  # fmt: skip
    header = ["size", "articles (pictures)", "vectors cached", "seconds", "CPU seconds",
              "peak RSS GB", "pictures/s (end to end)"]  # fmt: skip
    lines = [
        "# Encoding product pictures at H&M's catalogue size",
        "",
        f"- command: `{shlex.join(['python', *sys.argv])}`",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {machine()}",
        "- each encoding ran alone in its own process into an empty feature cache: "
        "`seqrec encode` with the image settings of experiments/hm.toml, text off "
        "(EfficientNet-Lite0, 224 x 224 padded, ONNX Runtime); synthetic 64 x 96 JPEG "
        "pictures, one per article",
        "",
        *markdown_table(header, rows),
        "",
    ]
    if resume is not None:
        cost = resume["cost"]
        lines += [
            f"Stopped and resumed at {resume['fraction'] * 100:g}%: the encoding was killed "
            f"(SIGKILL) after {resume['killed_after_s']} s with {resume['cached_when_killed']:,}"
            f" pictures in its cache; the next run finished in {cost['seconds']:.1f} s "
            f"(CPU {cost['cpu_seconds']:.1f} s) with {resume['cached_at_end']:,} cached.",
            "",
        ]
    lines += ["Commands:", ""]
    lines += [f"- `{run['encode']['command']}`" for run in runs]
    lines += [f"- `{run['generate']['command']}`" for run in runs if run["generate"]]
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0.01,0.1,1", help="fractions of H&M's catalogue")
    parser.add_argument("--resume-size", type=float, default=0.1, help="size of the resume check")
    parser.add_argument("--resume-after", type=float, default=0.5, help="share of the run time")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the shops are kept")
    parser.add_argument("--name", default="scale_images", help="report name in results/")
    args = parser.parse_args()
    runs, resume = [], None
    for fraction in (float(x) for x in args.sizes.split(",")):
        shop, generated = image_shop(fraction, args.cache)
        work = args.cache / f"scale_{shop.name}"
        work.mkdir(parents=True, exist_ok=True)
        cost, cached = encode(fraction, shop, work)
        items = max(1, round(HM_SIZE["items"] * fraction))
        run = {"fraction": fraction, "items": items, "cached": cached, "encode": asdict(cost),
               "generate": None if generated is None else asdict(generated)}  # fmt: skip
        runs.append(run)
        print(json.dumps(run), flush=True)
        if fraction == args.resume_size:
            resume = resumed(fraction, shop, work, cost.seconds * args.resume_after)
            resume["fraction"] = fraction
            print(json.dumps(resume), flush=True)
    text = markdown(runs, resume)
    (RESULTS / f"{args.name}.md").write_text(text)
    summary = {"machine": machine(), "runs": runs, "resume": resume}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
