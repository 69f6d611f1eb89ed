"""Non-neural baselines on the real H&M split, next to the reference figures of the data README.

    python benchmarks/hm_baselines.py --data ../shared/data/hm

Split: leave-last-basket-out (a customer's last purchase day held out), stage "test": fitted on
every purchase before each customer's last basket, 910 customers ranked against all 17,033
articles, K = 12, seen items kept (repeat purchases are targets). Evaluation ranks ties
pessimistically (`seqrec.metrics`). Prints and writes benchmarks/results/hm_baselines.md: the six
reference rankers with 95% bootstrap CIs and relative differences, then the variants explored
(tie-breaking, similarity, TF-IDF settings, history length) to find what the reference used.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from seqrec.baselines import (
    ContentKNN,
    ItemKNN,
    Popularity,
    RepeatThenContentKNN,
    RepeatThenPopularity,
    lexicographic,
)
from seqrec.bench import CONTENT_TFIDF, cpu_model, tfidf_terms
from seqrec.data.load import HM_TEXT_COLUMNS, load_dataset
from seqrec.data.split import SplitConfig, split_dataset
from seqrec.evaluate import evaluate

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["ndcg@12", "map@12", "recall@12", "hr@12", "cold:recall@12"]
HEADERS = ["NDCG@12", "MAP@12", "Recall@12", "HR@12", "cold Recall@12"]
# data README: (ndcg, map, recall, hr, cold recall) computed independently of the project
REFERENCE = {
    "popularity (all training purchases)": (0.0063, 0.0032, 0.0104, 0.0264, 0.0),
    "popularity, last 28 days": (0.0017, 0.0008, 0.0019, 0.0088, 0.0),
    "item co-occurrence KNN": (0.0199, 0.0124, 0.0322, 0.0560, 0.0),
    "TF-IDF content KNN, last 5 purchases": (0.0353, 0.0249, 0.0505, 0.0846, 0.0130),
    "repeat, then 28-day popularity": (0.0452, 0.0353, 0.0577, 0.0912, 0.0),
    "repeat, then TF-IDF content KNN": (0.0489, 0.0370, 0.0655, 0.1055, 0.0085),
}
TOLERANCE = 0.05
ROUNDING = 0.00005  # the reference figures are rounded to 4 decimals

NOTES = """## Findings

- Tie-breaking decides most of the gaps. This project ranks a target tied with other items after
  all of them (pessimistic), so a scorer is never rewarded for an arbitrary order. The reference
  evidently took some arbitrary order: all-time popularity is reproduced to the 4th decimal on
  every column, and 28-day popularity within 4%, when ties follow `np.argsort(scores)[::-1]`
  (variants). With pessimistic ties, popularity loses one tie at the 12th slot (two articles
  with 23 purchases) and lands 8-13% low.
- Item co-occurrence KNN is the most tie-sensitive: on this sparse subset every article bought
  only by the customer scores the same sum, so the top 12 is largely decided by ties. Pure
  cosine sums score NDCG 0.0150 with pessimistic ties, 0.0199 with ties by lower index and
  0.0247 with ties by higher index. The shipped default breaks ties by popularity (a choice
  made for the recommender, not fitted to the reference) and is 10-14% low on NDCG, MAP and
  HR, 1% on recall. No variant tried here is within 5% on all four columns with pessimistic
  ties, and the spread between plausible variants is larger than the gap, so the reference
  configuration cannot be identified from these figures.
- TF-IDF content KNN over the last 5 purchases matches within 4% on the four headline columns
  with English stop words removed (sklearn's defaults otherwise). That setting was picked as
  the closest of the variants below; sklearn's plain defaults give NDCG -2%, HR -9%. Cold
  recall: 0.0142 vs 0.0130, a difference of about one customer.
- Repeat-then-popularity matches exactly: repeats ordered by recency (last purchase first,
  strictly ordered). Ordering repeats by frequency is 7-12% worse on NDCG/MAP.
- Repeat-then-TF-IDF matches within 3.1% on the four headline columns; its cold recall
  (0.0052 vs 0.0085) rests on a handful of customers: cold targets only reach the top 12 when
  few repeats fill it.
- Relative differences on the smallest figures are coarse: 0.0008 stands for 0.00075-0.00085
  (+-6%), and one customer moves HR@12 by 0.0011. The 95% CIs are several times wider than any
  gap reported here.
"""


def machine() -> str:
    model = cpu_model()
    cores = len(os.sched_getaffinity(0))
    return f"{model}, {cores} cores, Python {platform.python_version()}, numpy {np.__version__}"


def tfidf_vectors(items, stop_words: str, ngram_range=(1, 1), min_df=1, sublinear=False):
    """[N, V] sparse TF-IDF rows of the H&M text columns: the bench's with some settings changed."""
    config = dataclasses.replace(
        CONTENT_TFIDF,
        stop_words=stop_words,
        ngram_range=ngram_range,
        min_df=min_df,
        sublinear_tf=sublinear,
    )
    return tfidf_terms(items, HM_TEXT_COLUMNS, config)


class StrictOrder:
    """A scorer with every tie broken: by item index ("low" or "high" index first), or as
    ``np.argsort(scores)[::-1]`` orders them ("numpy", numpy's default unstable sort). Emulates
    an evaluator that takes an arbitrary top-k order instead of ranking ties pessimistically."""

    def __init__(self, model, prefer: str):
        self.model, self.prefer = model, prefer

    def fit(self, interactions, n_items):
        self.model.fit(interactions, n_items)
        self.index_ = np.arange(n_items, dtype=np.float64)  # [N]
        if self.prefer == "low":
            self.index_ = -self.index_
        return self

    def score(self, histories):
        scores = self.model.score(histories)  # [B, N]
        if self.prefer != "numpy":
            return lexicographic([scores, self.index_])
        order = np.argsort(scores, axis=1)[:, ::-1]  # [B, N] best first
        strict = np.empty(scores.shape, dtype=np.float32)
        np.put_along_axis(
            strict, order, np.arange(scores.shape[1], 0, -1, dtype=np.float32)[None], 1
        )
        return strict


def run(model, task, bootstrap: int):
    start = time.perf_counter()
    result = evaluate(model.fit(task.fit, task.n_items), task, ks=(12,), bootstrap=bootstrap)
    return result, time.perf_counter() - start


def relative(value: float, reference: float) -> str:
    if reference == 0:
        return "=" if value == 0 else "n/a"
    return f"{value / reference - 1:+.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    started = time.perf_counter()

    dataset = load_dataset(args.data)
    task = split_dataset(dataset, SplitConfig("leave_last_basket_out")).task("test")
    cold = task.cold_items()[task.target_items]
    tfidf = tfidf_vectors(dataset.items, stop_words="english")
    tfidf_plain = tfidf_vectors(dataset.items, stop_words="")
    tfidf_module = tfidf_vectors(
        dataset.items, "english", ngram_range=(1, 2), min_df=2, sublinear=True
    )  # the features module's TextConfig defaults, without SVD

    headline = {
        "popularity (all training purchases)": Popularity(),
        "popularity, last 28 days": Popularity(window_days=28),
        "item co-occurrence KNN": ItemKNN(),
        "TF-IDF content KNN, last 5 purchases": ContentKNN(tfidf, last_n=5),
        "repeat, then 28-day popularity": RepeatThenPopularity(window=28),
        "repeat, then TF-IDF content KNN": RepeatThenContentKNN(tfidf, last_n=5),
    }
    configs = {
        "popularity (all training purchases)": "Popularity()",
        "popularity, last 28 days": "Popularity(window_days=28)",
        "item co-occurrence KNN": "ItemKNN() (cosine, whole history, popularity tie-break)",
        "TF-IDF content KNN, last 5 purchases": "ContentKNN(tfidf, last_n=5)",
        "repeat, then 28-day popularity": "RepeatThenPopularity(window=28)",
        "repeat, then TF-IDF content KNN": "RepeatThenContentKNN(tfidf, last_n=5)",
    }
    variants = {
        "popularity, ties by lower index": StrictOrder(Popularity(), "low"),
        "popularity, ties by higher index": StrictOrder(Popularity(), "high"),
        "popularity, ties as np.argsort(scores)[::-1]": StrictOrder(Popularity(), "numpy"),
        "popularity 28d, ties by lower index": StrictOrder(Popularity(28), "low"),
        "popularity 28d, ties by higher index": StrictOrder(Popularity(28), "high"),
        "popularity 28d, ties as np.argsort(scores)[::-1]": StrictOrder(Popularity(28), "numpy"),
        "ItemKNN, no tie-break (pure cosine sums)": ItemKNN(tie_break=()),
        "ItemKNN, ties by lower index": StrictOrder(ItemKNN(tie_break=()), "low"),
        "ItemKNN, ties by higher index": StrictOrder(ItemKNN(tie_break=()), "high"),
        "ItemKNN, ties as np.argsort(scores)[::-1]": StrictOrder(ItemKNN(tie_break=()), "numpy"),
        "ItemKNN, ties by recency then popularity": ItemKNN(tie_break=("recency", "popularity")),
        "ItemKNN, keep self-similarity": ItemKNN(keep_self=True),
        "ItemKNN, last 10 items": ItemKNN(last_n=10),
        "ItemKNN, last 10, ties by popularity then recency": ItemKNN(
            last_n=10, tie_break=("popularity", "recency")
        ),
        "ItemKNN, count similarity, last 10": ItemKNN(last_n=10, similarity="count"),
        "ItemKNN, top-100 neighbours": ItemKNN(neighbours=100),
        "ContentKNN, TF-IDF without stop-word removal": ContentKNN(tfidf_plain, last_n=5),
        "ContentKNN, TF-IDF 1-2 grams, min_df 2, sublinear": ContentKNN(tfidf_module, last_n=5),
        "ContentKNN, distinct items among the last 5": ContentKNN(
            tfidf, last_n=5, binary_history=True
        ),
        "ContentKNN, last 3 purchases": ContentKNN(tfidf, last_n=3),
        "ContentKNN, last 10 purchases": ContentKNN(tfidf, last_n=10),
        "ContentKNN, ties by lower index": StrictOrder(ContentKNN(tfidf, last_n=5), "low"),
        "repeat by frequency, then 28-day popularity": RepeatThenPopularity(28, "frequency"),
        "repeat, then TF-IDF without stop-word removal": RepeatThenContentKNN(tfidf_plain, 5),
        "repeat, then TF-IDF content KNN over the last 10": RepeatThenContentKNN(tfidf, 10),
    }

    lines = [
        "# H&M baselines against the reference figures",
        "",
        f"Command: `{shlex.join(['python', *sys.argv])}`  ",
        f"Machine: {machine()}  ",
        f"Date: {datetime.date.today().isoformat()}",
        "",
        f"Split: leave-last-basket-out, stage test (fit on every purchase before each customer's "
        f"last basket: {len(task.fit):,} rows); {len(task)} customers, {len(task.target_items):,} "
        f"targets ({cold.mean():.1%} cold), ranked against all {task.n_items:,} articles, seen "
        f"items kept, ties ranked pessimistically. TF-IDF: `TfidfVectorizer(stop_words='english')`"
        f" over {', '.join(HM_TEXT_COLUMNS)} ({tfidf.shape[1]:,} terms).",
        "",
        "## The six reference rankers",
        "",
        "Ours / reference / relative difference; 95% bootstrap CI over customers "
        f"({args.bootstrap} resamples) below each value. One customer is "
        f"{1 / len(task):.4f} of HR@12.",
        "",
        "| ranker | " + " | ".join(HEADERS) + " | cold customers hit | within 5% |",
        "| --- |" + " --- |" * (len(HEADERS) + 2),
    ]
    within = []
    for name, model in headline.items():
        result, seconds = run(model, task, args.bootstrap)
        cells, ok = [], True
        for column, reference in zip(COLUMNS, REFERENCE[name], strict=True):
            value = result.metrics[column]
            low, high = result.ci[column]
            gap = max(0.0, abs(value - reference) - ROUNDING)
            close = gap <= TOLERANCE * reference if reference else value == 0
            ok &= close
            cells.append(
                f"{value:.4f} / {reference:.4f} / {relative(value, reference)}"
                f"<br>[{low:.4f}, {high:.4f}]"
            )
        within.append(ok)
        cold_hits = int((result.per_user["cold:recall@12"] > 0).sum())
        lines.append(
            f"| {name}<br>`{configs[name]}` | "
            + " | ".join(cells)
            + f" | {cold_hits} / {result.counts['cold:users']} | {'yes' if ok else 'no'} |"
        )
        print(
            f"{name:40s} "
            + " ".join(f"{result.metrics[c]:.4f}" for c in COLUMNS)
            + f"  ref {' '.join(f'{r:.4f}' for r in REFERENCE[name])}"
            + f"  cold users hit {cold_hits}/{result.counts['cold:users']}  {seconds:.1f}s",
            flush=True,
        )
    lines += [
        "",
        f"{sum(within)} of {len(within)} rankers within 5% of the reference on every column "
        "(allowing for the reference's rounding to 4 decimals).",
        "",
        "## Variants explored",
        "",
        "Same protocol, no CIs; relative differences against the reference row of the same "
        "family. `ties by lower/higher index` turn every tie into a strict order by item index, "
        "as an evaluator taking an arbitrary top-12 order would.",
        "",
        "| variant | " + " | ".join(HEADERS) + " | rel. NDCG / MAP / Recall / HR |",
        "| --- |" + " --- |" * (len(HEADERS) + 1),
    ]
    family = {
        "popularity 28d": "popularity, last 28 days",
        "popularity": "popularity (all training purchases)",
        "ItemKNN": "item co-occurrence KNN",
        "ContentKNN": "TF-IDF content KNN, last 5 purchases",
        "repeat by frequency": "repeat, then 28-day popularity",
        "repeat, then TF-IDF": "repeat, then TF-IDF content KNN",
    }
    for name, model in variants.items():
        result, seconds = run(model, task, 0)
        reference = next(REFERENCE[ref] for key, ref in family.items() if name.startswith(key))
        values = [result.metrics[c] for c in COLUMNS]
        rel = " / ".join(relative(v, r) for v, r in zip(values[:4], reference[:4], strict=True))
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in values) + f" | {rel} |")
        print(f"  {name:55s} " + " ".join(f"{v:.4f}" for v in values) + f"  {rel}", flush=True)
    lines += ["", NOTES, f"Total time: {time.perf_counter() - started:.0f} s", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hm_baselines.md").write_text("\n".join(lines))
    print(f"wrote {args.out / 'hm_baselines.md'}")


if __name__ == "__main__":
    main()
