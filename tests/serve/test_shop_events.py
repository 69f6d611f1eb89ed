"""The live shop's event endpoints (`seqrec.serve.shop_routes`) on a real SQLite file: POST
/events, GET /users/{id}/recommendations, DELETE /users/{id}, against a real uvicorn server."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi.testclient import TestClient

from seqrec.config import ConfigError
from seqrec.serve import ServeConfig, create_app
from seqrec.serve.auth import ENV_TOKEN

TOKEN = "s3cret-shop-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def shop_app(bundle_path, folder, **options):
    """The service of ``bundle_path`` with its event database and token file in ``folder``."""
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    options = {"db": str(folder / "shop.db"), "token_file": str(token_file), **options}
    config = ServeConfig(warmup=False, **options)
    return create_app(bundle_path, config)


@pytest.fixture(scope="module")
def shop(bundle_path, serve_on_loopback, tmp_path_factory):
    """(URL of the shop served by uvicorn with max_events = 5, the bundle's item ids)."""
    app = shop_app(bundle_path, tmp_path_factory.mktemp("shop"), max_events=5)
    ids = list(app.state.served.current.recommender.index)
    with serve_on_loopback(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http, ids


def events_of(user, items, start=1_600_000_000, kind="view"):
    return [
        {"user_id": user, "item_id": item, "type": kind, "timestamp": start + i}
        for i, item in enumerate(items)
    ]


def test_events_round_trip_recommend_by_id_equals_post_recommend(shop):
    http, ids = shop
    events = events_of("alice", ids[3:6])
    events[1]["timestamp"] = "2020-09-13T12:26:50Z"  # ISO: 1_600_000_010, the latest
    posted = http.post("/events", json={"events": events[::-1]}, headers=AUTH)
    assert posted.status_code == 200
    assert posted.json() == {"stored": 3, "unknown_ids": []}
    by_id = http.get("/users/alice/recommendations", params={"k": 7})
    history = [ids[3], ids[5], ids[4]]  # in time order, whatever order they were posted in
    direct = http.post("/recommend", json={"history": history, "k": 7})
    assert by_id.status_code == direct.status_code == 200
    assert by_id.json() == direct.json()
    assert by_id.json()["source"] == "model" and by_id.json()["history_used"] == 3


def test_query_options_are_those_of_post_recommend(shop):
    http, ids = shop
    http.post("/events", json={"events": events_of("bob", ids[:4])}, headers=AUTH)
    params = {"k": 5, "remove_seen": "true", "exclude": [ids[10], ids[11]]}
    by_id = http.get("/users/bob/recommendations", params=params).json()
    body = {"history": ids[:4], "k": 5, "remove_seen": True, "exclude": [ids[10], ids[11]]}
    assert by_id == http.post("/recommend", json=body).json()
    served = {item["item_id"] for item in by_id["items"]}
    assert not served & {*ids[:4], ids[10], ids[11]}


def test_unknown_item_ids_are_reported_and_not_stored(shop):
    http, ids = shop
    events = events_of("carol", [ids[7], "no-such-item", ids[8], "no-such-item", "nope"])
    answer = http.post("/events", json={"events": events}, headers=AUTH).json()
    assert answer == {"stored": 2, "unknown_ids": ["no-such-item", "nope"]}
    recommended = http.get("/users/carol/recommendations").json()
    assert recommended["history_used"] == 2 and recommended["unknown_ids"] == []


def test_shopper_without_events_gets_popularity(shop):
    http, _ = shop
    answer = http.get("/users/nobody-yet/recommendations", params={"k": 4}).json()
    assert answer["source"] == "popularity" and len(answer["items"]) == 4
    assert answer == http.post("/recommend", json={"k": 4}).json()


def test_erasure(shop):
    http, ids = shop
    http.post("/events", json={"events": events_of("dave", ids[:3])}, headers=AUTH)
    assert http.delete("/users/dave").status_code == 401  # erasing needs the token too
    assert http.get("/users/dave/recommendations").json()["source"] == "model"
    erased = http.delete("/users/dave", headers=AUTH)
    assert erased.status_code == 200 and erased.json() == {"user_id": "dave", "deleted": 3}
    assert http.get("/users/dave/recommendations").json()["source"] == "popularity"
    assert http.delete("/users/dave", headers=AUTH).json()["deleted"] == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"X": TOKEN}],
)
def test_writes_without_the_token_are_refused(shop, headers):
    http, ids = shop
    answer = http.post("/events", json={"events": events_of("eve", ids[:2])}, headers=headers)
    assert answer.status_code == 401 and "token" in answer.json()["detail"]
    assert answer.headers["www-authenticate"] == "Bearer"
    assert http.get("/users/eve/recommendations").json()["source"] == "popularity"


def test_batch_over_the_cap_is_refused_whole(shop):
    http, ids = shop
    answer = http.post("/events", json={"events": events_of("fay", ids[:6])}, headers=AUTH)
    assert answer.status_code == 413 and "at most 5" in answer.json()["detail"]
    assert http.get("/users/fay/recommendations").json()["source"] == "popularity"


def test_a_full_batch_of_long_ids_fits_the_events_body_limit(bundle_path, tmp_path):
    app = shop_app(bundle_path, tmp_path, max_body_bytes=1024)  # other bodies: 1 KiB
    ids = list(app.state.served.current.recommender.index)
    events = events_of("g" * 256, [ids[i % len(ids)] for i in range(ServeConfig.max_events)])
    with TestClient(app) as client:
        answer = client.post("/events", json={"events": events}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stored"] == ServeConfig.max_events
        over = client.post("/recommend", json={"history": ids[:200]})
        assert over.status_code == 413 and "1024 bytes" in over.json()["detail"]


@pytest.mark.parametrize(
    "change, where",
    [
        ({"type": "click"}, "type"),
        ({"timestamp": "yesterday-ish"}, "timestamp"),
        ({"timestamp": 1.5}, "timestamp"),
        ({"user_id": ""}, "user_id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_malformed_events_are_refused_whole(shop, change, where):
    http, ids = shop
    events = events_of("gus", ids[:2])
    events[1].update(change)
    answer = http.post("/events", json={"events": events}, headers=AUTH)
    assert answer.status_code == 422 and where in str(answer.json()["detail"])
    assert http.get("/users/gus/recommendations").json()["source"] == "popularity"


def test_event_types_and_window_choose_the_history(bundle_path, tmp_path):
    now = int(time.time())
    app = shop_app(bundle_path, tmp_path, event_types=["purchase", "cart"], event_window_days=2)
    ids = list(app.state.served.current.recommender.index)
    events = [
        {"user_id": "u", "item_id": ids[1], "type": "purchase", "timestamp": now - 5 * 86400},
        {"user_id": "u", "item_id": ids[2], "type": "view", "timestamp": now - 60},
        {"user_id": "u", "item_id": ids[3], "type": "cart", "timestamp": now - 86400},
        {"user_id": "u", "item_id": ids[4], "type": "purchase", "timestamp": now - 30},
    ]
    with TestClient(app) as client:
        assert client.post("/events", json={"events": events}, headers=AUTH).status_code == 200
        by_id = client.get("/users/u/recommendations").json()
        direct = client.post("/recommend", json={"history": [ids[3], ids[4]]}).json()
    assert by_id == direct  # the view and the purchase older than 2 days are not read


def test_writes_without_a_configured_token_are_unavailable(bundle_path, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    app = shop_app(bundle_path, tmp_path, token_file=None)
    with TestClient(app) as client:
        answer = client.post("/events", json={"events": []}, headers=AUTH)
        assert answer.status_code == 403 and "--token-file" in answer.json()["detail"]
    monkeypatch.setenv(ENV_TOKEN, "from-the-environment")
    app = shop_app(bundle_path, tmp_path, token_file=None)
    with TestClient(app) as client:
        env_auth = {"Authorization": "Bearer from-the-environment"}
        assert client.post("/events", json={"events": []}, headers=env_auth).json()["stored"] == 0
        assert client.post("/events", json={"events": []}, headers=AUTH).status_code == 401


@pytest.mark.parametrize("content, message", [(None, "does not exist"), (" \n", "is empty")])
def test_unusable_token_file_stops_the_start(bundle_path, tmp_path, content, message):
    token_file = tmp_path / "token.txt"
    if content is not None:
        token_file.write_text(content)
    config = ServeConfig(warmup=False, db=str(tmp_path / "shop.db"), token_file=str(token_file))
    with pytest.raises(ConfigError, match=message):
        create_app(bundle_path, config)
