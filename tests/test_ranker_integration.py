"""The two-stage ranker in the product: ``[ranker]`` read and checked, ``seqrec train`` writing a
ranker bundle, ``seqrec eval`` reproducing its figures, the bundle's files checked, and the
service ranking as evaluation does for the same history and time."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from seqrec.bundle import load_bundle
from seqrec.bundle_ranker import RANKER_FILES, ranker_scorer
from seqrec.config import ConfigError, apply_overrides, load_config
from seqrec.data.dataset import DataError
from seqrec.data.split import split_dataset
from seqrec.evaluate import top_k
from seqrec.experiment import load_data, run_eval, run_train
from seqrec.ranker import candidates
from seqrec.ranker.compiled import compiler
from seqrec.ranker.model import BASIS_FILE
from seqrec.ranker.queries import Queries, queries_from_task
from seqrec.ranker.scorer import RankerScorer
from seqrec.report import code_version
from seqrec.scoring import ModelScorer
from seqrec.serve import ServeConfig, create_app
from seqrec.serve.live_catalogue import LiveCatalogue, NewItem
from seqrec.serve.recommender import RankQuery, Recommender
from seqrec.serve.store import Store


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ranker.sources.trending": -1}, r"ranker\.sources\.trending = -1 must be >= 0"),
        ({"ranker.tree_count": 5}, r"unknown key ranker\.tree_count"),
        ({"ranker.without": ["imag"]}, r"ranker\.without\[0\] = 'imag' is not one of"),
        ({"ranker.lightgbm.learning_rate": 0}, r"ranker\.lightgbm\.learning_rate = 0\.0 must"),
        ({"ranker.enabled": "yes"}, r"ranker\.enabled must be bool"),
        ({"ranker.cooccurrence_within": "day"}, r"ranker\.cooccurrence_within = 'day'"),
        ({"ranker.cached_periods": 0}, r"ranker\.cached_periods = 0 must be >= 1"),
        ({"ranker.sources.new_tfidf": -2}, r"ranker\.sources\.new_tfidf = -2 must be >= 0"),
        ({"ranker.image_dim": -1}, r"ranker\.image_dim = -1 must be >= 0"),
    ],
)
def test_bad_ranker_values_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(load_config(None), overrides)


def test_a_ranker_section_in_a_toml_file_is_read_and_checked(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text(
        '[ranker]\nenabled = true\nwithout = ["image"]\n[ranker.sources]\nrepeats = 7\n'
    )
    config = load_config(path)
    assert config.ranker.enabled and config.ranker.without == ["image"]
    assert config.ranker.sources.repeats == 7 and load_config(None).ranker.enabled is False
    path.write_text("[ranker.sources]\ntrending = -1\n")
    with pytest.raises(ConfigError, match=r"ranker\.sources\.trending = -1"):
        load_config(path)


def test_hm_ranker_toml_is_hm_toml_with_the_ranker_on():
    hm, ranker = load_config("experiments/hm.toml"), load_config("experiments/hm_ranker.toml")
    assert ranker.ranker.enabled
    for section in ("data", "split", "features", "model", "train", "eval"):
        assert getattr(ranker, section) == getattr(hm, section), section


@pytest.fixture(scope="module")
def trained(demo_shop, tiny_config, tmp_path_factory):
    """(config, outcome, bundle path, feature cache) of ``seqrec train`` with the ranker on."""
    config = apply_overrides(tiny_config, {"ranker.enabled": True})
    base = tmp_path_factory.mktemp("ranker")
    out, cache = base / "bundle", base / "cache"
    return config, run_train(config, demo_shop, out, cache_dir=cache), out, cache


@pytest.fixture(scope="module")
def bundle(trained):
    return load_bundle(trained[2])


def test_train_writes_a_ranker_bundle_with_the_rankers_figures(trained, demo_shop):
    config, outcome, out, _ = trained
    files = json.loads((out / "bundle.json").read_text())["files"]
    assert set(RANKER_FILES) <= set(files)
    assert all(files[name]["bytes"] == (out / name).stat().st_size for name in RANKER_FILES)
    metrics = json.loads((out / "metrics.json").read_text())
    assert outcome.ranker is not None and outcome.model_test is not None
    assert metrics["test"] == pytest.approx(outcome.test.metrics)  # the ranker's
    assert metrics["model_test"] == pytest.approx(outcome.model_test.metrics)  # kept
    assert metrics["test"] != metrics["model_test"]
    # the log served: the test stage's fit table (train + valid), with item ids
    split = split_dataset(load_data(config, demo_shop), config.split)
    fit = split.fit_interactions("test")
    log = pd.read_parquet(out / "events.parquet")
    assert list(log.columns) == ["item_id", "timestamp", "user_id"] and len(log) == len(fit)
    assert log["timestamp"].max() < split.test["timestamp"].max()


def test_eval_reproduces_the_test_figures_written_at_training(trained, demo_shop):
    _, outcome, out, cache = trained
    evaluated = run_eval(out, demo_shop, cache_dir=cache)
    assert evaluated.result.metrics == outcome.test.metrics
    assert json.loads((out / "metrics.json").read_text())["test"] == pytest.approx(
        evaluated.result.metrics
    )


def test_the_bundles_scorer_reads_its_own_log_as_eval_reads_the_data(trained, bundle, demo_shop):
    config = trained[0]
    dataset = load_data(config, demo_shop)
    task = split_dataset(dataset, config.split).task("test")
    model = ModelScorer(bundle.model, config.model.max_len)
    evaluated = ranker_scorer(bundle.ranker.ranker, dataset, bundle.features, task.fit, model)
    scorer = bundle.scorer()
    assert isinstance(scorer, RankerScorer)
    queries = queries_from_task(task).subset(slice(0, 40))
    np.testing.assert_array_equal(scorer.score_queries(queries), evaluated.score_queries(queries))


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("ranker.txt", "delete", "ranker.txt is missing"),
        ("ranker.txt", "change", "ranker.txt does not match the sha256"),
        ("events.parquet", "delete", "events.parquet is missing"),
        ("ranker.json", "change", "ranker.json does not match the sha256"),
    ],
)
def test_a_missing_or_changed_ranker_file_is_refused_by_name(
    trained, tmp_path, name, damage, message
):
    copy = shutil.copytree(trained[2], tmp_path / "bundle")
    if damage == "delete":
        (copy / name).unlink()
    else:
        data = bytearray((copy / name).read_bytes())
        data[len(data) // 2] ^= 1  # one bit, same size
        (copy / name).write_bytes(bytes(data))
    with pytest.raises(DataError, match=message):
        load_bundle(copy)


def test_a_manifest_listing_only_some_ranker_files_is_refused(trained, tmp_path):
    copy = shutil.copytree(trained[2], tmp_path / "bundle")
    manifest = json.loads((copy / "bundle.json").read_text())
    del manifest["files"]["events.parquet"]
    (copy / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="does not list events.parquet"):
        load_bundle(copy)


# --- image vectors projected (ranker.image_dim) ---------------------------------------------------

IMAGE_DIM = 4


@pytest.fixture(scope="module")
def projected(demo_shop, tiny_config, tmp_path_factory):
    """(outcome, bundle path, feature cache) of ``seqrec train`` with images (a tiny random
    encoder) and the ranker reading them on a basis of ``IMAGE_DIM`` directions."""
    config = apply_overrides(
        tiny_config,
        {
            "ranker.enabled": True,
            "ranker.image_dim": IMAGE_DIM,
            "ranker.sources.new_image": 10,
            "features.use_image": True,
            "features.image.backbone": "tiny_cnn",
            "features.image.runtime": "torch",
            "features.image.size": 32,
            "features.image.num_workers": 0,
        },
    )
    base = tmp_path_factory.mktemp("projected")
    out, cache = base / "bundle", base / "cache"
    return run_train(config, demo_shop, out, cache_dir=cache), out, cache


def test_a_projecting_ranker_is_bundled_evaluated_and_served_alike(projected, demo_shop):
    outcome, out, cache = projected
    assert BASIS_FILE in json.loads((out / "bundle.json").read_text())["files"]
    assert outcome.ranker is not None and outcome.ranker.image_basis is not None
    bundle = load_bundle(out)
    scorer = bundle.scorer()
    assert isinstance(scorer, RankerScorer)
    image = scorer.context.vectors["image"]  # the catalogue's vectors on the saved basis
    assert image.shape == (bundle.n_items, IMAGE_DIM)
    np.testing.assert_array_equal(bundle.ranker.ranker.image_basis, outcome.ranker.image_basis)
    assert run_eval(out, demo_shop, cache_dir=cache).result.metrics == outcome.test.metrics
    rec = Recommender(bundle, runtime="eager")
    history = np.array([4, 9, 33, 60])
    ranked = rec.rank([RankQuery(history, 12, np.zeros(0, dtype=np.int64))])[0]
    assert ranked.source == "ranker"
    assert ranked.items.tolist() == top_k(scorer.score([history]), 12)[0].tolist()


def test_an_item_a_live_shop_adds_is_projected_on_the_rankers_basis(projected, demo_shop, tmp_path):
    bundle = load_bundle(projected[1])
    catalogue = LiveCatalogue(bundle, Store(f"sqlite:///{tmp_path / 'shop.db'}"), ServeConfig())
    picture = sorted(path for path in Path(demo_shop).rglob("*") if path.suffix == ".png")[3]
    fields = {"item_id": "new-item", "title": "a new striped dress"}
    catalogue.add(NewItem("new-item", fields, str(picture)), picture.read_bytes(), ".png")
    grown = catalogue.bundle
    vectors = grown.scorer().context.vectors["image"]  # [N + 1, IMAGE_DIM]
    assert vectors.shape == (bundle.n_items + 1, IMAGE_DIM)
    encoded = grown.features.image[-1].numpy()  # [D] the new item's image vector
    assert np.abs(encoded).sum() > 0
    expected = (encoded / np.linalg.norm(encoded)) @ bundle.ranker.ranker.image_basis.T
    np.testing.assert_allclose(vectors[-1], expected, atol=1e-6)
    np.testing.assert_array_equal(vectors[:-1], bundle.scorer().context.vectors["image"])


def test_an_image_width_not_below_the_encoders_is_refused_at_training(
    projected, demo_shop, tmp_path
):
    config = apply_overrides(load_bundle(projected[1]).config, {"ranker.image_dim": 10_000})
    with pytest.raises(DataError, match=r"ranker\.image_dim = 10000 is not below"):
        run_train(config, demo_shop, tmp_path / "b", cache_dir=projected[2])


# --- the service --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(bundle):
    with TestClient(create_app(bundle, ServeConfig(runtime="eager"))) as http:
        yield http


def ids_of(bundle, indices) -> list[str]:
    return [bundle.items["item_id"].iloc[i] for i in indices]


def served(bundle, answer: dict) -> list[int]:
    index = bundle.item_index()
    return [index[item["item_id"]] for item in answer["items"]]


def day_of(timestamp: int) -> str:
    return str(pd.Timestamp(timestamp, unit="s"))[:10]


def test_served_top_k_is_the_rankers_for_the_same_history_and_time(client, bundle):
    scorer = bundle.scorer()
    rng = np.random.default_rng(0)
    for length in (1, 4, 30):
        history = rng.integers(0, bundle.n_items, length)
        # default times: right after the log, the history right before it
        answer = client.post("/recommend", json={"history": ids_of(bundle, history), "k": 12})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        expected = top_k(scorer.score([history]), 12)[0]
        assert body["source"] == "ranker" and served(bundle, body) == expected.tolist()
        assert body["history_used"] == length
        # a time in the middle of the log, given as a date; history times as raw timestamps
        at = "2024-03-15"
        cutoff = int(pd.Timestamp(at).timestamp())
        times = np.sort(rng.integers(cutoff - 90 * 86400, cutoff, length))
        request = {"history": ids_of(bundle, history), "k": 12, "at": at}
        request["history_times"] = times.tolist()
        answer = client.post("/recommend", json=request)
        assert answer.status_code == 200, answer.text
        queries = Queries([history], [times], np.array([cutoff]))
        scores = scorer.score_queries(queries)
        assert served(bundle, answer.json()) == top_k(scores, 12)[0].tolist()
        np.testing.assert_allclose(
            [item["score"] for item in answer.json()["items"]], scores[0, top_k(scores, 12)[0]]
        )


def test_the_times_of_unknown_history_ids_are_dropped_with_them(client, bundle):
    known, at = ids_of(bundle, [7, 30]), "2024-04-01"
    with_unknown = {
        "history": ["nope", *known],
        "history_times": ["2024-03-01", 1711000000, 1711500000],
    }
    plain = {"history": known, "history_times": [1711000000, 1711500000]}
    first = client.post("/recommend", json={**with_unknown, "at": at}).json()
    second = client.post("/recommend", json={**plain, "at": at}).json()
    assert first["items"] == second["items"] and first["unknown_ids"] == ["nope"]


def test_the_time_asked_changes_what_a_ranker_reads(client, bundle):
    history = ids_of(bundle, [3, 8, 21])
    early = client.post("/recommend", json={"history": history, "at": day_of(1706000000)})
    late = client.post("/recommend", json={"history": history})
    assert early.status_code == late.status_code == 200
    assert early.json()["items"] != late.json()["items"]


@pytest.mark.parametrize(
    ("extra", "status", "message"),
    [
        ({"at": "not a date"}, 400, "at = 'not a date' is not an ISO date"),
        ({"at": 1700000000, "history_times": [1800000000]}, 400, "before the time asked"),
        ({"history_times": [1, 2]}, 400, "history_times has 2 values for 1 history ids"),
        ({"history_times": ["soon"]}, 400, "history_times[0] = 'soon' is not an ISO date"),
        ({"at": 10**16}, 422, "less than or equal"),
    ],
)
def test_bad_times_are_refused_with_a_message(client, bundle, extra, status, message):
    answer = client.post("/recommend", json={"history": ids_of(bundle, [5]), **extra})
    assert answer.status_code == status, answer.text
    assert message in json.dumps(answer.json()["detail"])


def test_micro_batched_ranker_queries_rank_as_one_at_a_time(bundle):
    rec = Recommender(bundle, runtime="eager")
    rng = np.random.default_rng(2)
    empty = np.zeros(0, dtype=np.int64)
    cutoff = rec.default_cutoff - 20 * 86400
    queries = [
        RankQuery(rng.integers(0, bundle.n_items, n), 10, empty, None, cutoff if n % 2 else None)
        for n in (1, 2, 5, 9)
    ]
    queries.append(RankQuery(empty, 10, empty))  # no history: popularity
    together = rec.rank(queries)
    for query, ranking in zip(queries[:-1], together, strict=False):
        alone = rec.rank([query])[0]
        assert ranking.source == "ranker"
        np.testing.assert_array_equal(ranking.items, alone.items)
    assert together[-1].source == "popularity"


def test_a_ranker_bundle_read_by_other_code_than_wrote_it_warns(trained, tmp_path):
    manifest = json.loads((trained[2] / "bundle.json").read_text())
    assert manifest["code"] == code_version()  # the seqrec that wrote it
    copy = tmp_path / "bundle"
    shutil.copytree(trained[2], copy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same code: no warning
        load_bundle(copy)
    manifest["code"] = "seqrec 0.0.9 at 0123456789ab"
    (copy / "bundle.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match=r"written by seqrec 0\.0\.9 at 0123456789ab"):
        load_bundle(copy)


@pytest.mark.skipif(compiler() is None, reason="no C compiler on PATH")
def test_the_service_walks_compiled_trees_with_lightgbms_scores(trained, client):
    assert client.get("/health").json()["trees"] == "compiled"
    compiled = Recommender(load_bundle(trained[2]), runtime="eager")
    plain = Recommender(load_bundle(trained[2]), runtime="eager", compile_trees=False)
    assert (compiled.trees, plain.trees) == ("compiled", "lightgbm")
    assert plain.ranker is not None and plain.ranker.ranker.trees is None
    assert compiled.ranker is not None
    rng = np.random.default_rng(4)
    histories = [rng.integers(0, compiled.n_items, n) for n in (1, 3, 8, 20, 40)]
    found, scores = compiled.ranker.candidates_and_scores(
        candidates.latest_queries(histories, compiled.ranker.context.events)
    )
    assert len(found) > 50
    _, expected = plain.ranker.candidates_and_scores(
        candidates.latest_queries(histories, plain.ranker.context.events)
    )
    np.testing.assert_array_equal(scores, expected)  # bit for bit
