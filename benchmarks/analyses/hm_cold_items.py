"""What "cold" means on the H&M subset: which articles lack a training purchase, and why.

    python benchmarks/analyses/hm_cold_items.py --data ../shared/data/hm

The subset's catalogue holds the articles its customers bought, and nothing else. So an
article without a purchase in a stage's fit table is one that is bought later, at that stage or
the next one: "has no training purchase" predicts "is a target". A real shop's catalogue also
holds articles nobody buys. This script counts that, describes the cold targets (same product as
a history article? a product never sold before?), and measures how far a ranker that used the
coldness itself would go: TF-IDF content KNN with every cold article put first. No ranker of
this project reads coldness; the figure shows what `cold:recall@12` is worth on this subset as
a goal. Writes benchmarks/results/hm_cold_items.md.
"""

from __future__ import annotations

import time

import numpy as np
from hm_analysis import arguments, hm_split
from sklearn.metrics import roc_auc_score

from seqrec.baselines import ContentKNN, RepeatThenContentKNN, lexicographic, repeat_first
from seqrec.data.load import HM_TEXT_COLUMNS
from seqrec.evaluate import evaluate
from seqrec.features.text import tfidf_terms
from seqrec.report import markdown_table, run_facts, run_lines

COLUMNS = ["ndcg@12", "recall@12", "cold:recall@12", "warm:recall@12"]


class ColdFirst:
    """Diagnostic only: the articles without a purchase in the fit table above all others,
    each group ordered by ``model``. It reads what the subset's construction leaks."""

    def __init__(self, model, repeats_first: bool = False):
        self.model = model
        self.repeats_first = repeats_first  # the customer's own articles above the cold ones

    def fit(self, interactions, n_items):
        self.model.fit(interactions, n_items)
        bought = np.zeros(n_items, dtype=bool)
        bought[interactions["item_idx"].to_numpy()] = True
        self.cold_ = (~bought).astype(np.float64)  # [N]
        return self

    def score(self, histories):
        scores = lexicographic([self.cold_, self.model.score(histories)])  # [B, N]
        return repeat_first(scores, histories, "recency") if self.repeats_first else scores


def stage_rows(split) -> list[dict]:
    tasks = {stage: split.task(stage) for stage in ("valid", "test")}
    later = {"valid": tasks["test"], "test": None}
    rows = []
    for stage, task in tasks.items():
        cold = task.cold_items()  # [N]
        here = np.zeros(task.n_items, dtype=bool)
        here[task.target_items] = True
        after = np.zeros(task.n_items, dtype=bool)
        if later[stage] is not None:
            after[later[stage].target_items] = True
        rows.append(
            {
                "stage": stage,
                "catalogue": task.n_items,
                "cold": int(cold.sum()),
                "cold_here": int((cold & here).sum()),
                "cold_later": int((cold & ~here & after).sum()),
                "cold_never": int((cold & ~here & ~after).sum()),
            }
        )
    return rows


def target_rows(split, product: np.ndarray) -> list[dict]:
    rows = []
    for stage in ("valid", "test"):
        task = split.task(stage)
        cold = task.cold_items()
        sold = np.zeros(product.max() + 1, dtype=bool)
        sold[product[~cold]] = True
        n_targets = n_cold = same_product = new_product = 0
        for history, targets in zip(task.histories(), task.targets(), strict=True):
            in_history = set(product[history].tolist())
            n_targets += len(targets)
            for item in targets[cold[targets]]:
                n_cold += 1
                same_product += product[item] in in_history
                new_product += not sold[product[item]]
        rows.append(
            {
                "stage": stage,
                "targets": n_targets,
                "cold": n_cold,
                "same_product": same_product,
                "new_product": new_product,
            }
        )
    return rows


def stage_table(split) -> list[str]:
    header = ["stage", "catalogue", "cold articles", "bought at this stage"]
    header += ["bought at the next stage only", "never bought later"]
    rows = [
        [row["stage"], row["catalogue"], row["cold"]]
        + [percent(row[part], row["cold"]) for part in ("cold_here", "cold_later", "cold_never")]
        for row in stage_rows(split)
    ]
    return markdown_table(header, rows)


def target_table(split, product: np.ndarray) -> list[str]:
    header = ["stage", "targets", "cold targets", "same product as a history article"]
    header += ["product never sold before"]
    rows = [
        [row["stage"], row["targets"], percent(row["cold"], row["targets"])]
        + [percent(row[part], row["cold"]) for part in ("same_product", "new_product")]
        for row in target_rows(split, product)
    ]
    return markdown_table(header, rows)


def feature_table(dataset, split) -> list[str]:
    """Per stage: AUC of price as a score for "cold", and articles without an image."""
    price = dataset.items["price"].to_numpy()
    no_image = dataset.items["image_path"].isna().to_numpy()
    rows = []
    for stage in ("valid", "test"):
        cold = split.task(stage).cold_items()
        images = f"{int(no_image[cold].sum())} / {int(no_image[~cold].sum())}"
        rows.append([stage, f"{roc_auc_score(cold, price):.3f}", images])
    return markdown_table(["stage", "AUC of price", "articles without an image, cold / warm"], rows)


def ranker_rows(task, tfidf, bootstrap: int) -> list[list[str]]:
    """The bench's TF-IDF content baselines and two diagnostic rankers that read coldness, on
    the test stage, each figure with its CI. ``tfidf`` is the bench's content KNN input."""
    rankers = {
        "TF-IDF content KNN (the bench baseline)": ContentKNN(tfidf, last_n=5),
        "repeat, then TF-IDF content KNN (the bench baseline)": RepeatThenContentKNN(tfidf, 5),
        "cold articles first, then TF-IDF content KNN (reads coldness)": ColdFirst(
            ContentKNN(tfidf, last_n=5)
        ),
        "repeat, then cold articles, then TF-IDF content KNN (reads coldness)": ColdFirst(
            ContentKNN(tfidf, last_n=5), repeats_first=True
        ),
    }
    rows = []
    for name, ranker in rankers.items():
        result = evaluate(ranker.fit(task.fit, task.n_items), task, ks=(12,), bootstrap=bootstrap)
        cells = []
        for column in COLUMNS:
            low, high = result.ci.get(column, (np.nan, np.nan))
            cells.append(f"{result.metrics[column]:.4f} [{low:.4f}, {high:.4f}]")
        rows.append([name, *cells])
    return rows


def percent(part: int, whole: int) -> str:
    return f"{part} ({part / whole:.0%})" if whole else str(part)


def main() -> None:
    args = arguments(__doc__).parse_args()
    started = time.perf_counter()
    dataset, split = hm_split(args.data)
    product = dataset.items["item_id"].astype(str).str[:7].astype(np.int64).to_numpy()  # [N]

    lines = [
        "# H&M: what the cold articles are",
        "",
        *run_lines(run_facts()),
        "",
        "A cold article has no purchase in the stage's fit table (valid: train; test: train +",
        "valid). The catalogue holds only articles these customers bought, so each cold article",
        "is bought at the stage itself or the next one:",
        "",
        *stage_table(split),
        "",
        "The cold targets, by their product code (the first 7 digits of the article id; the",
        "articles of one product are its colours and prints):",
        "",
        *target_table(split, product),
        "",
        "Can the item features tell a cold article from a warm one? AUC of each feature as a",
        'score for "cold" (0.5 = no signal); price is the median price paid over the file\'s',
        "purchases (`seqrec.data.load`), so a cold article's comes from its held-out sale:",
        "",
        *feature_table(dataset, split),
    ]

    task = split.task("test")
    rows = ranker_rows(task, tfidf_terms(dataset.items, HM_TEXT_COLUMNS), args.bootstrap)
    lines += [
        "",
        f"Test stage ({len(task)} customers, all {task.n_items:,} articles, k = 12, pessimistic "
        "ties, 95%",
        "bootstrap CIs over customers):",
        "",
        *markdown_table(["ranker", *COLUMNS], rows),
        "",
        f"Wall time {time.perf_counter() - started:.0f} s.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hm_cold_items.md").write_text(report)


if __name__ == "__main__":
    main()
