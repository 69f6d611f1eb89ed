"""How far the signals a ranker can read go on the H&M split, and where the model loses.

    python benchmarks/analyses/hm_ceiling.py --data ../shared/data/hm [--bundle runs/hm_train_only]

1. What the targets are: at each stage, the share of target articles the customer bought
   before (repeats), that only other customers bought before (warm), and that nobody bought
   before (cold).
2. Blends of the non-neural signals: the customer's own purchases first (latest first), then
   TF-IDF content KNN over the last 5 purchases plus weighted item co-occurrence KNN,
   all-time popularity and "trending" popularity (purchases in the 28 days before the
   customer's basket date, strictly before it: this one assumes the visit date is known when
   recommending, as it is in a shop). Weights are chosen on validation NDCG@12; the chosen
   blend's test figure comes with its CI. The best test figure of any blend in the grid is
   shown too, as the family's upper bound read on test, not as a result.
3. With ``--bundle`` (a model trained on train only: ``seqrec train --config
   experiments/hm.toml ... --set train.refit=false``): the model's ranking in two halves, its
   order of the repeats and its ranking of the other articles, each swapped for the
   heuristic's; and the model's scores added to content KNN with a weight.

Writes benchmarks/results/hm_ceiling.md and .json.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
from hm_analysis import arguments, hm_split

from seqrec.baselines import ContentKNN, ItemKNN, Popularity, repeat_first, repeat_scores
from seqrec.bundle import load_bundle
from seqrec.data.load import HM_TEXT_COLUMNS
from seqrec.evaluate import evaluate
from seqrec.features.text import tfidf_terms
from seqrec.report import markdown_table, run_facts, run_lines, write_keeping_notes

COLUMNS = ["ndcg@12", "recall@12", "hr@12", "cold:recall@12"]
TREND_DAYS = 28
GRID = {  # weight of each signal added to content KNN (scaled to a row maximum of 1)
    "trend": [0.0, 0.1, 0.3, 1.0],
    "co-occurrence": [0.0, 0.1, 0.3],
    "popularity": [0.0, 0.1, 0.3],
}
MODEL_WEIGHTS = [0.1, 0.3, 1.0, 3.0]


class Fixed:
    """A precomputed [U, N] score matrix as a `seqrec.evaluate.Scorer` (one batch of all users)."""

    def __init__(self, scores: np.ndarray):
        self.scores = scores

    def score(self, histories):
        assert len(histories) == len(self.scores)
        return self.scores.astype(np.float32)


def measure(scores: np.ndarray, task, bootstrap: int = 0) -> dict:
    result = evaluate(Fixed(scores), task, ks=(12,), batch_size=len(task), bootstrap=bootstrap)
    out = {name: result.metrics[name] for name in COLUMNS}
    out.update({f"{name} ci": list(result.ci[name]) for name in COLUMNS if name in result.ci})
    return out


def row_max_scaled(scores: np.ndarray) -> np.ndarray:
    return scores / np.maximum(np.abs(scores).max(axis=1, keepdims=True), 1e-12)


def standardised(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.mean(axis=1, keepdims=True)) / (
        scores.std(axis=1, keepdims=True) + 1e-9
    )


def blended(scores: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Content KNN plus each signal times its weight ([U, N])."""
    return scores["content"] + sum(weight * scores[name] for name, weight in weights.items())


def target_shares(task) -> dict:
    cold = task.cold_items()
    repeats = warm = colds = 0
    for history, targets in zip(task.histories(), task.targets(), strict=True):
        bought = np.isin(targets, history)
        repeats += int(bought.sum())
        colds += int(cold[targets[~bought]].sum())
        warm += int((~cold[targets[~bought]]).sum())
    total = repeats + warm + colds
    return {"targets": total, "repeat": repeats, "warm": warm, "cold": colds}


def trend_scores(split, stage: str, task) -> np.ndarray:
    """[U, N] purchases of each article in the fit table during the TREND_DAYS before each
    customer's basket date (strictly before it)."""
    held_out = split.valid if stage == "valid" else split.test
    day = held_out.groupby("user_id")["timestamp"].first().reindex(task.users).to_numpy()  # [U]
    times = task.fit["timestamp"].to_numpy()
    items = task.fit["item_idx"].to_numpy()
    out = np.zeros((len(task), task.n_items))
    for row, when in enumerate(day):
        window = (times < when) & (times >= when - TREND_DAYS)
        out[row] = np.bincount(items[window], minlength=task.n_items)
    return out


def signals(split, stage: str, tfidf) -> tuple[object, dict[str, np.ndarray]]:
    task = split.task(stage)
    histories = task.histories()
    fitted = {
        "content": ContentKNN(tfidf, last_n=5),
        "co-occurrence": ItemKNN(),
        "popularity": Popularity(),
    }
    scores = {
        name: np.asarray(model.fit(task.fit, task.n_items).score(histories), dtype=np.float64)
        for name, model in fitted.items()
    }
    scores["trend"] = trend_scores(split, stage, task)
    for name in ("co-occurrence", "popularity", "trend"):
        scores[name] = row_max_scaled(scores[name])
    return task, scores


def model_halves(scorer, task, content: np.ndarray) -> dict:
    """The model's ranking, each half swapped for the heuristic's, and content + w * model."""
    histories = task.histories()
    model = np.concatenate(
        [scorer.score(histories[start : start + 256]) for start in range(0, len(task), 256)]
    ).astype(np.float64)  # [U, N] the model's final scores (its own history order)
    in_history = repeat_scores(histories, task.n_items) > 0  # [U, N]
    # the model's order of the history items on top of content KNN for the rest
    model_order = np.argsort(np.argsort(np.where(in_history, model, -np.inf), axis=1), axis=1)
    above = np.ceil(content.max(axis=1, keepdims=True)) + 1.0
    rows = {
        "the model (its repeat order, its ranking of the rest)": model,
        "its repeat order, then content KNN": np.where(in_history, above + model_order, content),
        "repeats latest first, then the model": repeat_first(model, histories, "recency"),
        "repeats latest first, then content KNN (the heuristic)": repeat_first(
            content, histories, "recency"
        ),
    }
    for weight in MODEL_WEIGHTS:
        blend = standardised(content) + weight * standardised(model)
        rows[f"repeats latest first, then content + {weight} x model"] = repeat_first(
            blend, histories, "recency"
        )
    return {name: measure(scores, task) for name, scores in rows.items()}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--bundle", type=Path, help="a model trained on train only")
    args = parser.parse_args()
    started = time.perf_counter()
    dataset, split = hm_split(args.data)
    tfidf = tfidf_terms(dataset.items, HM_TEXT_COLUMNS)  # what the bench's content KNN reads
    document = {**run_facts(), "blends": []}
    stages = {stage: signals(split, stage, tfidf) for stage in ("valid", "test")}
    document["targets"] = {stage: target_shares(task) for stage, (task, _) in stages.items()}
    names = list(GRID)
    for weights in itertools.product(*GRID.values()):
        row = {"weights": dict(zip(names, weights, strict=True))}
        for stage, (task, scores) in stages.items():
            blend = blended(scores, row["weights"])
            row[stage] = measure(repeat_first(blend, task.histories(), "recency"), task)
        document["blends"].append(row)
    chosen = max(document["blends"], key=lambda row: row["valid"]["ndcg@12"])
    task, scores = stages["test"]
    blend = blended(scores, chosen["weights"])
    document["chosen"] = {
        "weights": chosen["weights"],
        "valid": chosen["valid"],
        "test": measure(repeat_first(blend, task.histories(), "recency"), task, args.bootstrap),
    }
    document["best on test"] = max(document["blends"], key=lambda row: row["test"]["ndcg@12"])
    if args.bundle is not None:
        document["bundle"] = str(args.bundle)
        scorer = load_bundle(args.bundle).scorer()
        document["halves"] = {
            stage: model_halves(scorer, task, scores["content"])
            for stage, (task, scores) in stages.items()
        }
    document["seconds"] = round(time.perf_counter() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hm_ceiling.json").write_text(json.dumps(document, indent=1) + "\n")
    report = render(document)
    write_keeping_notes(args.out / "hm_ceiling.md", report)
    print(report)


def weights_text(weights: dict) -> str:
    used = [f"{weight} x {name}" for name, weight in weights.items() if weight]
    return "content KNN" + "".join(f" + {term}" for term in used)


def render(document: dict) -> str:
    """hm_ceiling.md above the notes marker, from the JSON document alone."""
    lines = [
        "# H&M: how far the readable signals go",
        "",
        *run_lines(document),
        f"- wall time: {document['seconds']} s",
        "- split: leave-last-basket-out; every article ranked, k = 12, pessimistic ties",
        "",
        "## What the targets are",
        "",
        *targets_table(document["targets"]),
        "",
        "## Blends of the non-neural signals",
        "",
        f"{len(document['blends'])} blends: the customer's own articles first (latest first), "
        "then content KNN plus each weighted signal (scaled to a row maximum of 1); weights "
        f"from {json.dumps(GRID)}.",
        "",
        *blends_table(document),
    ]
    if "halves" in document:
        lines += [
            "",
            "## Where the model loses to the heuristic",
            "",
            f"Model: `{document['bundle']}` (trained on train only; at the test stage its "
            "histories include the validation basket, its weights do not).",
            "",
            *halves_table(document["halves"]),
        ]
    return "\n".join(lines) + "\n"


def targets_table(targets: dict) -> list[str]:
    header = ["stage", "target articles", "bought by the customer before"]
    header += ["bought only by others before (warm)", "bought by nobody before (cold)"]
    rows = [
        [stage, shares["targets"]]
        + [
            f"{shares[part]} ({100 * shares[part] / shares['targets']:.1f}%)"
            for part in ("repeat", "warm", "cold")
        ]
        for stage, shares in targets.items()
    ]
    return markdown_table(header, rows)


def blends_table(document: dict) -> list[str]:
    """The blend chosen on validation (test with CIs), the best read on test, and no blend."""
    chosen, best = document["chosen"], document["best on test"]
    plain = next(row for row in document["blends"] if not any(row["weights"].values()))
    test = chosen["test"]
    with_ci = [
        f"{test[name]:.4f} [{test[name + ' ci'][0]:.4f}, {test[name + ' ci'][1]:.4f}]"
        for name in COLUMNS
    ]
    rows = [
        [f"chosen on validation: {weights_text(chosen['weights'])}", valid_ndcg(chosen), *with_ci],
        [
            f"best on test (read on test: a bound, not a result): {weights_text(best['weights'])}",
            valid_ndcg(best),
            *(f"{best['test'][name]:.4f}" for name in COLUMNS),
        ],
        [
            "no blend: repeat, then content KNN",
            valid_ndcg(plain),
            *(f"{plain['test'][name]:.4f}" for name in COLUMNS),
        ],
    ]
    header = ["blend", "valid ndcg@12", *(f"test {name}" for name in COLUMNS)]
    return markdown_table(header, rows)


def valid_ndcg(row: dict) -> str:
    return f"{row['valid']['ndcg@12']:.4f}"


def halves_table(halves: dict) -> list[str]:
    rows = []
    for name, valid in halves["valid"].items():
        test = halves["test"][name]
        figures = [valid["ndcg@12"], valid["recall@12"], test["ndcg@12"], test["recall@12"]]
        rows.append([name, *(f"{value:.4f}" for value in figures)])
    header = ["ranking", "valid ndcg@12", "valid recall@12", "test ndcg@12", "test recall@12"]
    return markdown_table(header, rows)


if __name__ == "__main__":
    main()
