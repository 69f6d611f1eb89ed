"""The live catalogue against a real uvicorn server and a real SQLite file: items added without
retraining (ranked by content, as a full re-index ranks them), sold-out items, restarts, tokens
and bad uploads."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from PIL import Image

from seqrec.bundle import load_bundle, model_for_catalogue
from seqrec.models.affinity import unit_rows
from seqrec.neighbours import exact_top
from seqrec.scoring import ModelScorer
from seqrec.serve import ServeConfig, create_app
from seqrec.serve.live_catalogue import extended_graph
from seqrec.serve.store import Store

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def bundle(bundle_path):
    return load_bundle(bundle_path)


@pytest.fixture(scope="module")
def shop_items(demo_shop) -> pd.DataFrame:
    return pd.read_csv(demo_shop / "items.csv", dtype={"item_id": str})


@pytest.fixture
def config(tmp_path) -> ServeConfig:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    return ServeConfig(token_file=str(token_file))


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'shop.db'}"


def fields_like(shop_items: pd.DataFrame, item_id: str, new_id: str) -> dict:
    """The item file's fields of ``item_id`` under ``new_id`` (the image column left out)."""
    row = shop_items.set_index("item_id").loc[item_id]
    fields = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items() if k != "image"}
    return {**fields, "item_id": new_id}


def post_item(client, fields: dict, image: bytes | None = None, headers=AUTH) -> httpx.Response:
    files = {"image": ("photo.png", image, "image/png")} if image is not None else None
    return client.post("/items", data={"item": json.dumps(fields)}, files=files, headers=headers)


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def recommended(client, history: list[str], k: int = 12) -> list[str]:
    response = client.post("/recommend", json={"history": history, "k": k})
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


@pytest.fixture
def live(bundle, config, db_url, serve_on_loopback):
    """(client, app) of a fresh service over the test bundle and an empty database."""
    app = create_app(bundle, config, Store(db_url))
    with serve_on_loopback(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client, app


def similar_history(bundle, shop_items: pd.DataFrame, seed: str) -> list[str]:
    """Up to five bundle items of ``seed``'s category and colour, ``seed`` last."""
    row = shop_items.set_index("item_id").loc[seed]
    same = shop_items[(shop_items.category == row.category) & (shop_items.colour == row.colour)]
    known = [i for i in same.item_id if i in bundle.item_index() and i != seed]
    return [*known[:4], seed]


def test_added_item_is_recommended_by_content_as_a_full_reindex_ranks_it(live, bundle, shop_items):
    client, app = live
    seed = bundle.items["item_id"].iloc[10]
    history = similar_history(bundle, shop_items, seed)
    assert "NEW-1" not in recommended(client, history)
    response = post_item(client, fields_like(shop_items, seed, "NEW-1"), png_bytes())
    assert response.status_code == 201, response.text
    assert response.json()["n_items"] == bundle.n_items + 1
    top = recommended(client, history)
    assert "NEW-1" in top  # a twin of the shopper's items: ranked by its content
    detail = client.get("/items/NEW-1").json()
    assert detail["title"] == shop_items.set_index("item_id").loc[seed, "title"]
    assert client.get("/items/NEW-1/image").content == png_bytes()
    # the same ranking as the bundle's model re-indexed to the extended catalogue from scratch
    items = pd.concat(
        [shop_items, pd.DataFrame([{**fields_like(shop_items, seed, "NEW-1"), "image": None}])]
    )
    order = [*bundle.items["item_id"], "NEW-1"]
    items = items.set_index("item_id").loc[order].reset_index()
    model, _, n_new = model_for_catalogue(bundle, items)
    assert n_new == 1
    index = {item_id: i for i, item_id in enumerate(order)}
    scores = ModelScorer(model, bundle.config.model.max_len).score([[index[i] for i in history]])
    expected = np.argsort(-scores[0], kind="stable")[:12]
    assert top == [order[i] for i in expected]


def test_sold_out_item_is_never_recommended_and_comes_back(live, bundle):
    client, _ = live
    history = list(bundle.items["item_id"].iloc[[3, 9, 3]])
    best = recommended(client, history)[0]
    popular = recommended(client, [])[0]
    for item_id in (best, popular):
        response = client.patch(f"/items/{item_id}", json={"available": False}, headers=AUTH)
        assert response.status_code == 200, response.text
    assert best not in recommended(client, history, k=100)
    assert popular not in recommended(client, [], k=100)
    assert client.get(f"/items/{best}").json()["available"] is False
    events = [{"user_id": "u1", "item_id": i, "type": "view", "timestamp": 1} for i in history]
    assert client.post("/events", json={"events": events}, headers=AUTH).status_code == 200
    by_user = client.get("/users/u1/recommendations", params={"k": 100}).json()
    assert best not in [item["item_id"] for item in by_user["items"]]
    client.patch(f"/items/{best}", json={"available": True}, headers=AUTH)
    assert recommended(client, history)[0] == best
    assert client.patch("/items/nope", json={"available": False}, headers=AUTH).status_code == 404


def test_added_and_sold_out_items_survive_a_restart(
    bundle, config, db_url, shop_items, serve_on_loopback
):
    seed = bundle.items["item_id"].iloc[7]
    first = create_app(bundle, config, Store(db_url))
    with serve_on_loopback(first) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert post_item(client, fields_like(shop_items, seed, "NEW-2"), png_bytes()).is_success
        client.patch("/items/NEW-2", json={"available": False}, headers=AUTH)
        before = recommended(client, [seed, "NEW-2"], k=20)
    again = create_app(bundle, config, Store(db_url))  # a new process on the same database
    with serve_on_loopback(again) as url, httpx.Client(base_url=url, timeout=60) as client:
        detail = client.get("/items/NEW-2").json()
        assert detail["available"] is False
        assert client.get("/items/NEW-2/image").content == png_bytes()
        assert recommended(client, [seed, "NEW-2"], k=20) == before
        assert post_item(client, fields_like(shop_items, seed, "NEW-2")).status_code == 409


def test_servers_sharing_the_database_take_in_each_others_items(
    bundle, config, db_url, shop_items, serve_on_loopback
):
    import dataclasses
    import time

    seed = bundle.items["item_id"].iloc[5]
    manual = dataclasses.replace(config, sync_seconds=0)  # this test calls sync itself
    first, second = (create_app(bundle, manual, Store(db_url)) for _ in range(2))
    with (
        serve_on_loopback(first) as one_url,
        serve_on_loopback(second) as two_url,
        httpx.Client(base_url=one_url, timeout=60) as one,
        httpx.Client(base_url=two_url, timeout=60) as two,
    ):
        assert post_item(one, fields_like(shop_items, seed, "NEW-3"), png_bytes()).is_success
        assert two.get("/items/NEW-3").status_code == 404  # not taken in yet
        assert second.state.catalogue.sync() == 1
        assert two.get("/items/NEW-3").json()["title"] == one.get("/items/NEW-3").json()["title"]
        history = [seed, "NEW-3"]
        assert recommended(two, history, k=20) == recommended(one, history, k=20)
        one.patch(f"/items/{seed}", json={"available": False}, headers=AUTH)
        assert seed in recommended(two, history, k=100)
        assert second.state.catalogue.sync() == 0  # no item added, the sold-out one taken in
        assert seed not in recommended(two, history, k=100)
        assert second.state.catalogue.sync() == 0  # nothing changed since
    watching = create_app(bundle, dataclasses.replace(config, sync_seconds=0.1), Store(db_url))
    with serve_on_loopback(watching) as url, httpx.Client(base_url=url, timeout=60) as client:
        other = first.state.catalogue
        other.set_available(seed, True)  # another server puts it back on sale
        deadline = time.monotonic() + 30
        while seed not in recommended(client, history, k=100) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert seed in recommended(client, history, k=100)  # taken in by the watch thread


def test_writes_need_the_token(live, bundle, shop_items):
    client, _ = live
    seed = bundle.items["item_id"].iloc[0]
    wrong = {"Authorization": "Bearer nope"}
    for headers in ({}, wrong):
        assert (
            post_item(client, fields_like(shop_items, seed, "X"), headers=headers).status_code
            == 401
        )
        assert (
            client.patch(f"/items/{seed}", json={"available": False}, headers=headers).status_code
            == 401
        )
        assert client.post("/admin/reload", headers=headers).status_code == 401
    assert client.get("/items/X").status_code == 404
    assert client.get(f"/items/{seed}").json()["available"] is True


def test_bad_items_are_refused_and_nothing_is_added(live, bundle, shop_items):
    client, app = live
    seed = bundle.items["item_id"].iloc[0]
    duplicate = post_item(client, fields_like(shop_items, seed, seed))
    assert duplicate.status_code == 409 and seed in duplicate.json()["detail"]
    no_id = {k: v for k, v in fields_like(shop_items, seed, "Y").items() if k != "item_id"}
    assert "item_id" in post_item(client, no_id).json()["detail"]
    broken = post_item(client, fields_like(shop_items, seed, "Y"), b"\x89PNG not really")
    assert broken.status_code == 422 and "image" in broken.json()["detail"]
    nested = post_item(client, {**fields_like(shop_items, seed, "Y"), "title": ["a"]})
    assert nested.status_code == 422 and "title" in nested.json()["detail"]
    assert client.get("/items/Y").status_code == 404
    assert app.state.store.stored_items() == []
    assert not list(app.state.catalogue.image_folder().iterdir())


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n_old", [52, 6])  # 6: fewer items than neighbours, the lists grow
def test_extended_graph_equals_the_graph_of_the_whole_catalogue(sparse, n_old):
    rng = np.random.default_rng(0)
    dense = rng.random((60, 8)).astype(np.float32) * (rng.random((60, 8)) < 0.5)
    dense[5] = 0  # an item without content
    content = unit_rows(sp.csr_matrix(dense) if sparse else dense)
    items, sims = exact_top(content[:n_old], min(10, n_old))
    got_items, got_sims = extended_graph(items, sims, content, n_old, 10)
    want_items, want_sims = exact_top(content, 10)
    np.testing.assert_allclose(got_sims, want_sims, atol=1e-6)
    assert (got_items == want_items).mean() > 0.99  # equal up to the order of exact ties
