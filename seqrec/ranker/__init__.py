"""Two-stage recommendation: candidate sources, then a learned LightGBM re-ranker.

Data flow, one module per step:

    queries.py     who asks, with which history, at which moment (the cutoff)
    events.py      the purchase log as time-aware counts: what was bought before a cutoff
    context.py     what sources and features read: events, item groups, categories, prices,
                   content vectors per modality, the sequence model
    sources.py     candidate sources (repeats, variants, co-purchase, content per modality,
                   trending, new arrivals, the sequence model), each usable alone as a ranker
    candidates.py  the union of the sources' candidates per query, each source's score and rank
    features.py    one feature row per (query, candidate), from data strictly before the cutoff
    examples.py    training queries from past baskets (each earlier basket a target)
    model.py       LightGBM LambdaRank: fit with early stopping on validation, predict
    scorer.py      the fitted ranker as a full-catalogue scorer (`seqrec.evaluate`, bundles, serve)

Settings: ``[ranker]`` of the experiment TOML (`seqrec.ranker.config.RankerConfig`).
"""
