"""The ranker's trees compiled to native code: LightGBM's scores, bit for bit, or not used."""

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from seqrec.ranker import compiled
from seqrec.ranker.compiled import (
    LOW_WORD,
    ZERO,
    CompiledTrees,
    compile_trees,
    probe_rows,
    split_thresholds,
)
from seqrec.ranker.config import LightGBMConfig, RankerConfig
from seqrec.ranker.model import LabelledPairs, Ranker, train_lambdarank

needs_compiler = pytest.mark.skipif(compiled.compiler() is None, reason="no C compiler on PATH")


def _pairs(seed: int, n_queries: int = 80, size: int = 10) -> LabelledPairs:
    """Four features, some missing (NaN), a label the first two decide; the second is 0 for
    half the rows, negative for the others (LightGBM splits it at -1e-35, `ZERO`)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n_queries * size, 4))  # [P, F]
    features[:, 1] = np.where(rng.random(len(features)) < 0.5, 0.0, -np.abs(features[:, 1]))
    features[rng.random(features.shape) < 0.1] = np.nan
    score = np.nan_to_num(features[:, 0]) + 0.5 * (np.nan_to_num(features[:, 1]) == 0)
    labels = np.zeros(len(features), dtype=np.int32)
    for query in range(n_queries):
        rows = slice(query * size, (query + 1) * size)
        labels[rows][np.argmax(score[rows])] = 1
    names = ["a", "b", "noise_c", "noise_d"]
    return LabelledPairs(features.astype(np.float32), labels, np.full(n_queries, size), names)


@pytest.fixture(scope="module")
def ranker() -> Ranker:
    gbm = LightGBMConfig(n_estimators=60, num_leaves=7, min_data_in_leaf=5, threads=1)
    return train_lambdarank(_pairs(0), _pairs(1), RankerConfig(lightgbm=gbm))


def _rows(seed: int, n: int = 3000) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, 4))
    rows[np.random.default_rng(seed + 1).random(rows.shape) < 0.15] = np.nan
    return rows


@needs_compiler
def test_compiled_trees_score_as_lightgbm_bit_for_bit(ranker):
    plain = ranker.predict(_rows(5), threads=1)
    copy = dataclasses.replace(ranker)  # its own compiled trees
    assert copy.compile() == ""
    assert copy.trees is not None
    assert np.array_equal(copy.predict(_rows(5)), plain)
    assert np.array_equal(copy.predict(np.asfortranarray(_rows(5))), plain)  # any memory order
    single = _rows(5).astype(np.float32)
    assert np.array_equal(copy.predict(single), ranker.predict(single, threads=1))
    probes = probe_rows(ranker.booster)  # on each side of every split, and missing values
    expected = ranker.booster.predict(probes, num_iteration=ranker.best_iteration)
    assert np.array_equal(copy.predict(probes), expected)
    assert copy.predict(np.zeros((0, 4))).shape == (0,)
    trees = copy.trees
    assert copy.compile() == "" and copy.trees is trees  # compiled once


@needs_compiler
def test_calls_from_several_threads_score_as_alone(ranker):
    trees, reason = compile_trees(ranker.booster, ranker.best_iteration)
    assert trees is not None, reason
    batches = [_rows(seed, 200) for seed in range(8)]
    alone = [trees(rows) for rows in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(trees, batches * 5))
    for at, scores in enumerate(together):
        assert np.array_equal(scores, alone[at % len(batches)])


@needs_compiler
def test_only_the_first_trees_are_compiled(ranker):
    first = ranker.booster.num_trees() - 3
    trees, reason = compile_trees(ranker.booster, first)
    assert trees is not None, reason
    expected = ranker.booster.predict(_rows(6), num_iteration=first)
    assert np.array_equal(trees(_rows(6)), expected)
    assert not np.array_equal(trees(_rows(6)), ranker.booster.predict(_rows(6)))


@needs_compiler
def test_the_compiler_options_are_the_callers(ranker):
    """Any options give LightGBM's scores; options the compiler refuses leave LightGBM's walk
    in place, with the reason."""
    unrolled, reason = compile_trees(ranker.booster, ranker.booster.num_trees(), ("-O3",))
    assert unrolled is not None, reason
    assert np.array_equal(unrolled(_rows(8)), ranker.booster.predict(_rows(8)))
    refused, reason = compile_trees(ranker.booster, 5, ("-fno-such-option-seqrec",))
    assert refused is None
    assert "could not compile" in reason


@needs_compiler
def test_a_value_the_compiled_code_would_read_as_missing_is_scored_by_lightgbm(ranker):
    trees, reason = compile_trees(ranker.booster, ranker.best_iteration)
    assert trees is not None, reason
    rows = _rows(7, 50)
    rows[3, 0] = 0.5
    bits = rows.view(np.uint64)
    bits[3, 0] |= np.uint64(LOW_WORD)  # a present value whose low 32 bits are all set
    assert not np.isnan(rows[3, 0])
    expected = ranker.booster.predict(rows, num_iteration=ranker.best_iteration)
    assert np.array_equal(trees(rows), expected)


@needs_compiler
def test_values_lightgbm_reads_as_zero_are_read_so(ranker):
    assert -ZERO in split_thresholds(ranker.booster)[1]  # between 0 and the values below it
    trees, reason = compile_trees(ranker.booster, ranker.best_iteration)
    assert trees is not None, reason
    rows = np.tile(_rows(8, 4), (6, 1))  # [24, 4]
    rows[:, 1] = np.repeat([ZERO, -ZERO, 1e-36, -1e-40, 5e-324, 0.0], 4)
    expected = ranker.booster.predict(rows, num_iteration=ranker.best_iteration)
    assert np.array_equal(trees(rows), expected)


def test_without_a_compiler_lightgbm_walks_the_trees(ranker, monkeypatch):
    monkeypatch.setattr(compiled, "COMPILERS", ("no-such-compiler-here",))
    copy = dataclasses.replace(ranker)
    assert "no C compiler on PATH" in copy.compile()
    assert copy.trees is None
    expected = ranker.booster.predict(_rows(5), num_iteration=ranker.best_iteration)
    assert np.array_equal(copy.predict(_rows(5)), expected)


@needs_compiler
def test_compiled_trees_that_score_otherwise_are_not_used(ranker, monkeypatch):
    original = CompiledTrees.__call__
    monkeypatch.setattr(CompiledTrees, "__call__", lambda self, rows: original(self, rows) + 1e-12)
    copy = dataclasses.replace(ranker)
    reason = copy.compile()
    assert "probe rows otherwise" in reason
    assert copy.trees is None


def test_probe_rows_reach_both_sides_of_every_split(ranker):
    probes = probe_rows(ranker.booster, n_rows=2000)
    assert probes.shape == (2000, 4)
    assert np.isnan(probes).any(axis=0).all()  # every column has missing values
    leaves = ranker.booster.predict(probes, pred_leaf=True)  # [P, trees]
    trees = ranker.booster.dump_model()["tree_info"]
    for tree, info in enumerate(trees):  # every leaf of every tree is reached
        assert len(np.unique(leaves[:, tree])) == info["num_leaves"]
