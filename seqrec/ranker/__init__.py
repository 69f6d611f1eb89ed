"""Two-stage recommendation: candidate sources, then a learned LightGBM re-ranker.

Data flow, one module per step:

    queries.py     who asks, with which history, at which moment (the cutoff)
    events.py      the purchase log as time-aware counts: what was bought before a cutoff
    context.py     what sources and features read: events, item groups, categories, prices,
                   content vectors per modality, the sequence model; beside it
                   projection.py (image vectors narrowed, when ``image_dim`` is set)
    sources.py     candidate sources (repeats, variants, co-purchase, content per modality,
                   the sequence model), each usable alone as a ranker; beside it
                   shop_wide.py (trending, new arrivals: one list per cutoff for everyone)
                   and new_items.py (items new at the cutoff, by content)
    cosines.py     cosines of candidates to the latest history items (sources and features)
    candidates.py  the union of the sources' candidates per query, each source's score and rank
    features.py    one feature row per (query, candidate), from data strictly before the cutoff
    examples.py    training queries from past baskets (each earlier basket a target)
    model.py       LightGBM LambdaRank: fit with early stopping on validation, predict;
                   beside it compiled.py (the trees compiled to native code for serving)
    scorer.py      the fitted ranker as a full-catalogue scorer (`seqrec.evaluate`, bundles, serve)

Settings: ``[ranker]`` of the experiment TOML (`seqrec.ranker.config.RankerConfig`).

The per-pair loops (cosines, category shares, sales counts, each source's top n) are compiled
with numba: the few hundred candidates of one request cost less than numpy's per-call overhead
would (benchmarks/results/ranker_latency.md). They compile on first use in each process (a
service does it in its warm-up) and are not cached on disk: an install without a writable
directory would otherwise fail at import.
"""
