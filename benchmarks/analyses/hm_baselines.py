"""Non-neural baselines on the real H&M split, next to the reference figures of the data README.

    python benchmarks/analyses/hm_baselines.py --data ../shared/data/hm

Split: leave-last-basket-out (a customer's last purchase day held out), stage "test": fitted on
every purchase before each customer's last basket, each customer ranked against every article,
K = 12, seen items kept (repeat purchases are targets). Evaluation ranks ties
pessimistically (`seqrec.metrics`). Prints and writes benchmarks/results/hm_baselines.md: the six
reference rankers with 95% bootstrap CIs and relative differences, then the variants explored
(tie-breaking, similarity, TF-IDF settings, history length) to find what the reference used.
The findings are written in the report, below its notes marker, and kept when it is rewritten.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from hm_analysis import arguments, hm_split

from seqrec.baselines import (
    ContentKNN,
    ItemKNN,
    Popularity,
    RepeatThenContentKNN,
    RepeatThenPopularity,
    lexicographic,
)
from seqrec.data.load import HM_TEXT_COLUMNS
from seqrec.evaluate import evaluate
from seqrec.features.text import CONTENT_TFIDF, tfidf_terms
from seqrec.report import markdown_table, run_facts, run_lines, write_keeping_notes

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


HEADLINE_CODE = {
    "popularity (all training purchases)": "Popularity()",
    "popularity, last 28 days": "Popularity(window_days=28)",
    "item co-occurrence KNN": "ItemKNN() (cosine, whole history, popularity tie-break)",
    "TF-IDF content KNN, last 5 purchases": "ContentKNN(tfidf, last_n=5)",
    "repeat, then 28-day popularity": "RepeatThenPopularity(window=28)",
    "repeat, then TF-IDF content KNN": "RepeatThenContentKNN(tfidf, last_n=5)",
}
# a variant's name starts with its family's prefix; its reference row is the family's
FAMILY = {
    "popularity 28d": "popularity, last 28 days",
    "popularity": "popularity (all training purchases)",
    "ItemKNN": "item co-occurrence KNN",
    "ContentKNN": "TF-IDF content KNN, last 5 purchases",
    "repeat by frequency": "repeat, then 28-day popularity",
    "repeat, then TF-IDF": "repeat, then TF-IDF content KNN",
}


def headline_rankers(tfidf) -> dict:
    """The six reference rankers, as this project configures them."""
    return {
        "popularity (all training purchases)": Popularity(),
        "popularity, last 28 days": Popularity(window_days=28),
        "item co-occurrence KNN": ItemKNN(),
        "TF-IDF content KNN, last 5 purchases": ContentKNN(tfidf, last_n=5),
        "repeat, then 28-day popularity": RepeatThenPopularity(window=28),
        "repeat, then TF-IDF content KNN": RepeatThenContentKNN(tfidf, last_n=5),
    }


def variant_rankers(items, tfidf) -> dict:
    """Tie-breaking, similarity, TF-IDF settings and history lengths around the six."""
    plain = tfidf_vectors(items, stop_words="")
    module = tfidf_vectors(  # the features module's TextConfig defaults, without SVD
        items, "english", ngram_range=(1, 2), min_df=2, sublinear=True
    )
    return {
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
        "ContentKNN, TF-IDF without stop-word removal": ContentKNN(plain, last_n=5),
        "ContentKNN, TF-IDF 1-2 grams, min_df 2, sublinear": ContentKNN(module, last_n=5),
        "ContentKNN, distinct items among the last 5": ContentKNN(
            tfidf, last_n=5, binary_history=True
        ),
        "ContentKNN, last 3 purchases": ContentKNN(tfidf, last_n=3),
        "ContentKNN, last 10 purchases": ContentKNN(tfidf, last_n=10),
        "ContentKNN, ties by lower index": StrictOrder(ContentKNN(tfidf, last_n=5), "low"),
        "repeat by frequency, then 28-day popularity": RepeatThenPopularity(28, "frequency"),
        "repeat, then TF-IDF without stop-word removal": RepeatThenContentKNN(plain, 5),
        "repeat, then TF-IDF content KNN over the last 10": RepeatThenContentKNN(tfidf, 10),
    }


def headline_table(task, tfidf, bootstrap: int) -> tuple[list[str], int]:
    """The six against the reference (ours / reference / relative, CI below), and how many are
    within `TOLERANCE` on every column."""
    rows, within = [], 0
    for name, model in headline_rankers(tfidf).items():
        result, seconds = run(model, task, bootstrap)
        cells, ok = [], True
        for column, reference in zip(COLUMNS, REFERENCE[name], strict=True):
            value = result.metrics[column]
            low, high = result.ci[column]
            gap = max(0.0, abs(value - reference) - ROUNDING)
            ok &= gap <= TOLERANCE * reference if reference else value == 0
            cells.append(
                f"{value:.4f} / {reference:.4f} / {relative(value, reference)}"
                f"<br>[{low:.4f}, {high:.4f}]"
            )
        within += ok
        cold_hits = f"{int((result.per_user['cold:recall@12'] > 0).sum())} / "
        cold_hits += str(result.counts["cold:users"])
        rows.append(
            [f"{name}<br>`{HEADLINE_CODE[name]}`", *cells, cold_hits, "yes" if ok else "no"]
        )
        print(
            f"{name:40s} "
            + " ".join(f"{result.metrics[c]:.4f}" for c in COLUMNS)
            + f"  ref {' '.join(f'{r:.4f}' for r in REFERENCE[name])}"
            + f"  cold users hit {cold_hits}  {seconds:.1f}s",
            flush=True,
        )
    header = ["ranker", *HEADERS, "cold customers hit", "within 5%"]
    return markdown_table(header, rows), within


def variants_table(task, items, tfidf) -> list[str]:
    """Each variant's figures, no CIs, relative to its family's reference row."""
    rows = []
    for name, model in variant_rankers(items, tfidf).items():
        result, _ = run(model, task, 0)
        reference = next(REFERENCE[ref] for key, ref in FAMILY.items() if name.startswith(key))
        values = [result.metrics[c] for c in COLUMNS]
        rel = " / ".join(relative(v, r) for v, r in zip(values[:4], reference[:4], strict=True))
        rows.append([name, *(f"{v:.4f}" for v in values), rel])
        print(f"  {name:55s} " + " ".join(f"{v:.4f}" for v in values) + f"  {rel}", flush=True)
    return markdown_table(["variant", *HEADERS, "rel. NDCG / MAP / Recall / HR"], rows)


def main() -> None:
    args = arguments(__doc__).parse_args()
    started = time.perf_counter()
    dataset, split = hm_split(args.data)
    task = split.task("test")
    cold = task.cold_items()[task.target_items]
    tfidf = tfidf_vectors(dataset.items, stop_words="english")
    headline, within = headline_table(task, tfidf, args.bootstrap)
    lines = [
        "# H&M baselines against the reference figures",
        "",
        *run_lines(run_facts(numpy=np.__version__)),
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
        *headline,
        "",
        f"{within} of {len(REFERENCE)} rankers within 5% of the reference on every column "
        "(allowing for the reference's rounding to 4 decimals).",
        "",
        "## Variants explored",
        "",
        "Same protocol, no CIs; relative differences against the reference row of the same "
        "family. `ties by lower/higher index` turn every tie into a strict order by item index, "
        "as an evaluator taking an arbitrary top-12 order would.",
        "",
        *variants_table(task, dataset.items, tfidf),
        "",
        f"Total time: {time.perf_counter() - started:.0f} s",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    write_keeping_notes(args.out / "hm_baselines.md", "\n".join(lines) + "\n")
    print(f"wrote {args.out / 'hm_baselines.md'}")


if __name__ == "__main__":
    main()
