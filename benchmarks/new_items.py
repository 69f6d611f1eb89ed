"""How fast a new product becomes recommendable: ``POST /items`` timed through a real server.

Serves ``--bundle`` under uvicorn (in this process, on a loopback port, a fresh SQLite store in a
temporary folder) and adds ``--items`` products copied from catalogue items of ``--data`` under
new ids (fields and image file as the item file has them). For each: the wall time of the
``POST /items`` call (encoding the text and image, fusing, extending the model and swapping it
in: recommendable when it returns), where the new item ranks in ``POST /recommend`` for a
history of its original, and when the configured runtime (ONNX) of the extended catalogue was
swapped in by the background thread. Writes ``<out>.json`` and ``<out>.md``.

    python benchmarks/new_items.py --bundle runs/hm --data ../shared/data/hm \
        --out benchmarks/results/new_items
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "serve"))

TOKEN = "benchmark-token"
QUICK_RUNTIME = "eager"  # seqrec.serve.live_catalogue.QUICK_RUNTIME


def product_fields(dataset, row: int, new_id: str) -> tuple[dict, bytes | None]:
    """The item file's fields of catalogue row ``row`` under ``new_id``, and its image bytes."""
    item = dataset.items.iloc[row]
    image_column = dataset.schema.image_column
    fields = {}
    for key, value in item.items():
        if key == image_column:
            continue
        value = value.item() if hasattr(value, "item") else value
        fields[key] = None if isinstance(value, float) and np.isnan(value) else value
    path = item.get(image_column) if image_column else None
    image = Path(path).read_bytes() if isinstance(path, str) and Path(path).is_file() else None
    return {**fields, "item_id": new_id}, image


def measure(url: str, dataset, rows: list[int], app) -> list[dict]:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    results = []
    with httpx.Client(base_url=url, timeout=600) as client:
        for row in rows:
            original = str(dataset.items["item_id"].iloc[row])
            new_id = f"live-{original}"
            fields, image = product_fields(dataset, row, new_id)
            files = {"image": ("image.jpg", image, "image/jpeg")} if image else None
            start = time.perf_counter()
            response = client.post(
                "/items", data={"item": json.dumps(fields)}, files=files, headers=auth
            )
            post_s = time.perf_counter() - start
            response.raise_for_status()
            answer = client.post("/recommend", json={"history": [original], "k": 100}).json()
            ranked = [item["item_id"] for item in answer["items"]]
            fast_s = None  # until the background build swaps the eager model out
            while time.perf_counter() - start < 300:
                if app.state.served.current.recommender.runtime != QUICK_RUNTIME:
                    fast_s = time.perf_counter() - start
                    break
                time.sleep(0.05)
            results.append(
                {
                    "item_id": new_id,
                    "image_bytes": len(image or b""),
                    "post_s": post_s,
                    "rank_after_original": ranked.index(new_id) + 1 if new_id in ranked else None,
                    "served_runtime_after_s": fast_s,
                    "runtime": app.state.served.current.recommender.runtime,
                }
            )
            print(results[-1], flush=True)
    return results


def report(args, results: list[dict], load_s: float) -> None:
    posts = np.array([r["post_s"] for r in results])
    summary = {
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPU cores visible, torch threads {torch.get_num_threads()}",
        "bundle": str(args.bundle),
        "bundle_load_s": load_s,
        "post_items_s": {"first": float(posts[0]), "median_rest": float(np.median(posts[1:]))},
        "items": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    lines = [
        "# New items: POST /items until recommendable",
        "",
        f"`{summary['command']}`, {summary['date']}, {summary['machine']}"
        + (" (a busy machine: other work ran at the same time)" if args.busy else ""),
        "",
        f"Bundle {args.bundle}: loaded in {load_s:.1f} s. The item is recommendable when "
        "POST /items returns (served by the eager model); the fast runtime follows. The rank "
        "is the new copy's in POST /recommend for a history of its original alone.",
        "",
        "| item | image bytes | POST /items s | rank after its original | fast runtime after s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        fast = "-" if r["served_runtime_after_s"] is None else f"{r['served_runtime_after_s']:.2f}"
        rank = "> 100" if r["rank_after_original"] is None else r["rank_after_original"]
        lines.append(
            f"| {r['item_id']} | {r['image_bytes']} | {r['post_s']:.3f} | {rank} | {fast} |"
        )
    lines += [
        "",
        f"First POST (loads the image encoder): {posts[0]:.3f} s; "
        f"median of the others: {np.median(posts[1:]):.3f} s.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def old_featurizers_readable() -> None:
    """A featurizer.pkl pickled before `ImageConfig.finetune` existed lacks the attribute:
    read it as the default (no tuned tower), as a bundle trained then was encoded."""
    from seqrec.features.image_config import FinetuneConfig, ImageConfig

    if not hasattr(ImageConfig, "finetune") and "finetune" in ImageConfig.__dataclass_fields__:
        ImageConfig.finetune = FinetuneConfig()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--data", required=True, help="the dataset the items are copied from")
    parser.add_argument("--items", type=int, default=6)
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--busy", action="store_true", help="say that the machine was shared")
    parser.add_argument("--out", default="benchmarks/results/new_items")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["SEQREC_SERVE_TOKEN"] = TOKEN
    from conftest import served  # the tests' loopback uvicorn server

    from seqrec.data.load import load_dataset
    from seqrec.serve import ServeConfig, create_app
    from seqrec.serve.store import Store

    old_featurizers_readable()
    dataset = load_dataset(args.data)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        store = Store(f"sqlite:///{folder}/shop.db")
        app = create_app(args.bundle, ServeConfig(runtime=args.runtime), store)
        load_s = time.perf_counter() - start
        rows = np.random.default_rng(0).choice(len(dataset.items), args.items, replace=False)
        with served(app) as url:
            results = measure(url, dataset, rows.tolist(), app)
    report(args, results, load_s)


if __name__ == "__main__":
    main()
