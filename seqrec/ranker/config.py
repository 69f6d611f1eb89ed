"""``[ranker]``: the two-stage recommender's settings (candidate sources, features, LightGBM).

Off by default (``enabled = false``): an experiment then trains the sequence model alone. Each
value declares its allowed range beside it (`seqrec.constraints`) and is checked when the TOML
file is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from seqrec.constraints import at_least, choice, in_range, positive

ABLATIONS = ("image", "text", "sequence")  # feature families a ranker can be trained without


@dataclass
class SourceSizes:
    """``[ranker.sources]``: candidates each source proposes per query (0 = source off)."""

    repeats: int = at_least(0, 50)  # the shopper's own purchases, latest and most bought first
    variants: int = at_least(0, 30)  # other items of the groups (products) the shopper bought
    cooccurrence: int = at_least(0, 30)  # items bought by the buyers of the shopper's items
    content_tfidf: int = at_least(0, 30)  # nearest items by TF-IDF terms to the last items
    content_text: int = at_least(0, 0)  # ... by the text embedding (features.text)
    content_image: int = at_least(0, 20)  # ... by the image embedding
    content_fused: int = at_least(0, 0)  # ... by the sequence model's fused item vector
    trending: int = at_least(0, 20)  # most sold in the last ``trending_days`` days
    new_arrivals: int = at_least(0, 20)  # first sold in the last ``new_arrival_days`` days
    # items not sold before the cutoff (or first sold within ``new_arrival_days``) nearest to
    # the last items by TF-IDF terms / by the image embedding: new articles by content
    new_tfidf: int = at_least(0, 0)
    new_image: int = at_least(0, 0)
    # the sequence model's top items: on by default, chosen on validation on the demo shop
    # (benchmarks/results/demo_ranker.md); experiments/hm_ranker.toml sets its own sizes
    sequence: int = at_least(0, 50)


SOURCES = tuple(spec.name for spec in fields(SourceSizes))  # every source, in config order


@dataclass
class LightGBMConfig:
    """``[ranker.lightgbm]``: the LambdaRank model."""

    num_leaves: int = at_least(2, 31)
    learning_rate: float = positive(0.05)
    n_estimators: int = at_least(1, 400)  # boosting rounds at most (early stopping picks)
    min_data_in_leaf: int = at_least(1, 50)
    feature_fraction: float = in_range(0.0, 1.0, 0.8)
    bagging_fraction: float = in_range(0.0, 1.0, 0.8)
    lambda_l2: float = at_least(0.0, 1.0)
    early_stopping_rounds: int = at_least(1, 40)
    seed: int = 0
    threads: int = at_least(0, 0)  # 0 = LightGBM's default (every core)


@dataclass
class RankerConfig:
    enabled: bool = False
    sources: SourceSizes = field(default_factory=SourceSizes)
    trending_days: int = at_least(1, 7)
    new_arrival_days: int = at_least(1, 28)
    history_last_n: int = at_least(1, 5)  # latest history items compared with each candidate
    # past baskets per shopper turned into training queries (the latest ones before validation)
    train_baskets: int = at_least(1, 3)
    # co-occurrence is refitted on the log before each period of this many days, so a query
    # never reads pairs bought at or after its cutoff
    refit_days: int = at_least(1, 28)
    # co-occurrence counts only the last this many days before each refit period (0 = the whole
    # log before it), within each shopper's purchases or within each basket (one shopper, one
    # timestamp)
    cooccurrence_days: int = at_least(0, 0)
    cooccurrence_within: str = choice("shopper", "shopper", "basket")
    # refit periods whose co-occurrence stays in memory (least recently used dropped): bounds a
    # long-running service; queries spanning more periods refit the dropped ones when asked again
    cached_periods: int = at_least(1, 8)
    # candidates of a query scored by the ranker; the rest of the catalogue ranks below them
    max_candidates: int = at_least(1, 300)
    # image vectors read by the ranker's sources and features, projected onto this many of their
    # principal directions (fitted at training, saved with the ranker; 0 = as encoded): fewer
    # bytes per query (seqrec/ranker/projection.py)
    image_dim: int = at_least(0, 0)
    # feature families left out (ablations): their features and the sources built on them
    without: list[str] | None = choice(None, *ABLATIONS)
    lightgbm: LightGBMConfig = field(default_factory=LightGBMConfig)
